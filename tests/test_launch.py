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


def test_slurm_rejects_unknown_paper_and_scale():
    with pytest.raises(UnknownPaperError, match="valid: .*dim_reduction"):
        render_slurm(SlurmJob("nope"))
    with pytest.raises(ValueError, match="unknown scale.*valid: full"):
        render_slurm(SlurmJob("dim_reduction", "huge"))
