import subprocess

import pytest

from papers import UnknownPaperError
from shared.launch import SlurmJob, render_slurm


def test_slurm_script_runs_the_paper_at_the_scale():
    script = render_slurm(SlurmJob("dim_reduction", "full", gpus=2))
    assert script.startswith("#!/bin/bash") and "#SBATCH --gpus-per-node=2" in script
    assert (
        "SCALE=full" in script and 'srun .venv/bin/python -m papers.dim_reduction.reproduce --scale "$SCALE"' in script
    )
    assert "--array" not in script


def test_slurm_array_over_scales():
    script = render_slurm(SlurmJob("dim_reduction", array=["full", "full_mnist", "full_cifar10"]))
    assert "#SBATCH --array=0-2" in script and "SCALES=(full full_mnist full_cifar10)" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_slurm_array_over_shards_of_one_grid():
    script = render_slurm(SlurmJob("peft_alignment", "full", shards=4))
    assert "#SBATCH --array=0-3" in script and "SCALE=full" in script
    assert '--set grid.shard="$SLURM_ARRAY_TASK_ID" --set grid.num_shards=4' in script
    with pytest.raises(ValueError, match="either an array of scales or shards"):
        render_slurm(SlurmJob("peft_alignment", "full", shards=2, array=["full"]))


def test_slurm_rejects_unknown_paper_and_scale():
    with pytest.raises(UnknownPaperError, match="valid: .*dim_reduction"):
        render_slurm(SlurmJob("nope"))
    with pytest.raises(ValueError, match="unknown scale.*valid: full"):
        render_slurm(SlurmJob("dim_reduction", "huge"))


def test_slurm_script_requeues_on_preemption():
    from shared.launch import REQUEUE_EXIT

    script = render_slurm(SlurmJob("dim_reduction", "full"))
    assert "#SBATCH --requeue" in script and "#SBATCH --signal=USR1@120" in script
    assert f'if [ "$rc" -eq {REQUEUE_EXIT} ]; then' in script and 'scontrol requeue "$SLURM_JOB_ID"' in script


def test_torchrun_command_one_and_many_nodes():
    from shared.launch import render_torchrun

    one = render_torchrun("dim_reduction", "full", gpus=4)
    assert one.startswith("torchrun --nnodes=1 --nproc_per_node=4 --standalone -m papers.dim_reduction.reproduce")
    two = render_torchrun("dim_reduction", "full", gpus=8, nodes=2)
    assert "--nnodes=2" in two and "--rdzv-backend=c10d" in two
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        render_torchrun("dim_reduction", "huge")


def test_dry_run_of_a_gpu_engine_config_prints_its_launchers():
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "papers.quant_pretraining.reproduce", "--scale", "full", "--dry-run"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "torchrun --nnodes=1 --nproc_per_node=4 --standalone -m papers.quant_pretraining.reproduce" in out
    assert "#SBATCH --gpus-per-node=4" in out and '--scale "$SCALE" --publish' in out
