"""shared.launch: the rendered sbatch scripts, parsed (directives, the srun command) and run under bash with
stub srun / scontrol / sbatch that record what the script asked of SLURM. tests/test_slurm_cluster.py runs
the same scripts on a real local SLURM."""

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from papers import UnknownPaperError, paper_names
from shared.launch import LOG_DIR, REQUEUE_EXIT, SlurmJob, main, render_job, render_slurm, submit


def directives(script: str) -> dict[str, str]:
    """The script's #SBATCH options as {name: value} ('' for a flag); a repeated option fails the test."""
    out: dict[str, str] = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH "):
            name, _, value = line.removeprefix("#SBATCH --").partition("=")
            assert name not in out, f"--{name} given twice"
            out[name] = value
    return out


def srun_words(script: str) -> list[str]:
    """The words of the script's srun command (continued lines joined, before ` || rc=$?`), as bash splits them."""
    (line,) = [ln for ln in script.replace("\\\n", " ").splitlines() if ln.startswith("srun ")]
    return shlex.split(line.split(" || rc=$?")[0])


def srun_argv(script: str) -> list[str]:
    """The command each task runs, behind srun's options and the task wrapper."""
    words = srun_words(script)
    return words[words.index("$PY") :]


def sets(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--set")


def stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fake_slurm(tmp_path: Path) -> dict[str, str]:
    """A submit directory and PATH whose srun and scontrol record their calls (srun: its argv and the
    rendezvous it was given; scontrol: answers hostnames and NodeAddr like SLURM, records requeues)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    rec = tmp_path / "rec"
    rec.mkdir()
    # srun runs the task (one, here) and may report another status, as --kill-on-bad-exit makes it do
    stub(bin_dir, "srun", 'while [[ "$1" == --* ]]; do shift; done; "$@"; rc=$?; exit "${SRUN_STATUS:-$rc}"\n')
    stub(
        bin_dir,
        "python",
        f'printf "%s\\n" "$@" > {rec}/srun.argv\n'
        f'echo "$MASTER_ADDR $MASTER_PORT ${{SITE_VAR:-}}" > {rec}/srun.env\nexit "${{TASK_RC:-0}}"\n',
    )
    stub(
        bin_dir,
        "scontrol",
        'case "$1 $2" in\n'
        '  "show hostnames") echo gpu07; echo gpu08;;\n'
        '  "show node") echo "NodeName=$3 Arch=x86_64"; echo "   NodeAddr=10.1.0.${3#gpu0} NodeHostName=$3";;\n'
        f'  "requeue "*) echo "$2" >> {rec}/requeued;;\n'
        "esac\n",
    )
    submit_dir = tmp_path / "repo"
    (submit_dir / "requirements").mkdir(parents=True)
    (submit_dir / "requirements" / "base.txt").write_text("torch\n")
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_SUBMIT_DIR": str(submit_dir),
        "SLURM_JOB_ID": "123456",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
        "REPRO_SETUP": f"echo ran >> {rec}/setup.log",
        "REPRO_PYTHON": str(bin_dir / "python"),
        "REPRO_STAMP_DIR": str(tmp_path / "stamps"),
        "REC": str(rec),
    }


def run_script(script: str, env: dict[str, str], **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], env={**env, **extra}, capture_output=True, text=True, timeout=60)


def test_script_passes_nodes_and_gpus_into_the_engine_config():
    script = render_slurm(SlurmJob("quant_pretraining", "full", gpus=4, nodes=2))
    opts = directives(script)
    assert (opts["nodes"], opts["ntasks-per-node"], opts["gpus-per-node"]) == ("2", "4", "4")
    assert opts["output"] == f"{LOG_DIR}/%x-%j.out" and "array" not in opts
    assert srun_words(script)[1] == "--kill-on-bad-exit=1"
    argv = srun_argv(script)
    assert argv[:5] == ["$PY", "-m", "papers.quant_pretraining.reproduce", "--scale", "$SCALE"]
    assert sets(argv) == {"engine.num_nodes": "2", "engine.devices": "4"} and argv[-1] == "--publish"
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_every_paper_full_config_renders_a_script_bash_accepts():
    for paper in paper_names():
        script = render_slurm(SlurmJob(paper, "full"))
        assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0, paper
        assert directives(script)["output"].startswith(f"{LOG_DIR}/"), paper
        assert srun_argv(script)[2] == f"papers.{paper}.reproduce"


def test_script_sets_rendezvous_prepares_once_and_requeues(fake_slurm, tmp_path):
    hook = tmp_path / "site.sh"
    hook.write_text("export SITE_VAR=from-hook\n")
    job = SlurmJob("quant_pretraining", "full", gpus=4, nodes=2, setup_hook=str(hook))
    script = render_slurm(job)
    rec = Path(fake_slurm["REC"])
    first = run_script(script, fake_slurm)
    assert first.returncode == 0, first.stderr
    argv = (rec / "srun.argv").read_text().split("\n")[:-1]
    assert argv[:4] == ["-m", "papers.quant_pretraining.reproduce", "--scale", "full"]
    # the first node's NodeAddr, a port from the job id; the site hook's exports reach the tasks
    assert (rec / "srun.env").read_text().split() == ["10.1.0.7", str(20000 + 123456 % 20000), "from-hook"]
    preempted = run_script(script, fake_slurm, TASK_RC=str(REQUEUE_EXIT), SLURM_RESTART_COUNT="1")
    assert preempted.returncode == REQUEUE_EXIT and (rec / "requeued").read_text().split() == ["123456"]
    # --kill-on-bad-exit: srun says 143 when it ended the other tasks; the task's flag still requeues
    killed = run_script(script, fake_slurm, TASK_RC=str(REQUEUE_EXIT), SRUN_STATUS="143")
    assert killed.returncode == 143 and (rec / "requeued").read_text().split() == ["123456"] * 2
    failed = run_script(script, fake_slurm, TASK_RC="1", SRUN_STATUS="143")
    assert failed.returncode == 143 and (rec / "requeued").read_text().split() == ["123456"] * 2  # no requeue
    assert not list((Path(fake_slurm["SLURM_SUBMIT_DIR"]) / LOG_DIR).glob(".preempted-*"))
    assert (rec / "setup.log").read_text() == "ran\n"  # once for three starts: the stamp
    stamps = list(Path(fake_slurm["REPRO_STAMP_DIR"]).glob(".setup-*"))
    assert len(stamps) == 1
    (Path(fake_slurm["SLURM_SUBMIT_DIR"]) / "requirements" / "base.txt").write_text("torch\nnumpy\n")
    assert run_script(script, fake_slurm).returncode == 0
    assert (rec / "setup.log").read_text() == "ran\nran\n"  # new requirements: prepared again


def test_failed_setup_stops_the_job_before_srun(fake_slurm):
    script = render_slurm(SlurmJob("quant_pretraining", "full", gpus=4))
    out = run_script(script, fake_slurm, REPRO_SETUP="false")
    rec = Path(fake_slurm["REC"])
    assert out.returncode != 0 and not (rec / "srun.argv").exists()
    assert not list(Path(fake_slurm["REPRO_STAMP_DIR"]).glob(".setup-*"))  # no stamp for a failed setup


def test_array_over_scales(fake_slurm):
    script = render_slurm(SlurmJob("dim_reduction", array=["full", "full_mnist", "full_cifar10"]))
    assert directives(script)["array"] == "0-2" and directives(script)["output"] == f"{LOG_DIR}/%x-%A_%a.out"
    assert run_script(script, fake_slurm, SLURM_ARRAY_TASK_ID="1").returncode == 0
    argv = (Path(fake_slurm["REC"]) / "srun.argv").read_text().split()
    assert argv[2:4] == ["--scale", "full_mnist"]


def test_shards_of_a_grid_then_one_merge_job(fake_slurm):
    rendered = render_job(SlurmJob("peft_alignment", "full", shards=4))
    assert directives(rendered.main)["array"] == "0-3"
    assert run_script(rendered.main, fake_slurm, SLURM_ARRAY_TASK_ID="2").returncode == 0
    argv = (Path(fake_slurm["REC"]) / "srun.argv").read_text().split()
    assert sets(argv) == {"grid.shard": "2", "grid.num_shards": "4"} and "--publish" not in argv
    assert rendered.merge is not None and "array" not in directives(rendered.merge)
    merge = srun_argv(rendered.merge)
    assert sets(merge) == {} and merge[-1] == "--publish"  # unsharded: reads every cell back, reports
    with pytest.raises(ValueError, match="either an array of scales or shards"):
        render_slurm(SlurmJob("peft_alignment", "full", shards=2, array=["full"]))
    with pytest.raises(ValueError, match="syscall_novelty cannot be sharded"):
        render_job(SlurmJob("syscall_novelty", "full", shards=3))
    # quant_pretraining's 18 configurations: one array task each, then the merge
    quant = render_job(SlurmJob("quant_pretraining", "full", gpus=4, shards=18))
    assert directives(quant.main)["array"] == "0-17" and quant.merge is not None


def test_submit_creates_the_log_folder_before_sbatch_and_chains_the_merge(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    # a fake sbatch that, like the real one, fails when the --output folder is missing
    stub(
        bin_dir,
        "sbatch",
        'script="${@: -1}"; out=$(sed -n "s/^#SBATCH --output=//p" "$script")\n'
        '[ -d "$(dirname "$out")" ] || { echo "sbatch: error: no folder for $out" >&2; exit 1; }\n'
        f'echo "$*" >> {calls}\nn=$(wc -l < {calls}); echo "$((700 + n));cluster"\n',
    )
    rendered = render_job(SlurmJob("peft_alignment", "full", shards=2))
    ids = submit(rendered, tmp_path / "repo", sbatch=str(bin_dir / "sbatch"))
    assert ids == ["701", "702"] and (tmp_path / "repo" / LOG_DIR).is_dir()
    lines = calls.read_text().splitlines()
    assert lines[0].startswith("--parsable ") and lines[1].startswith("--parsable --dependency=afterok:701 ")
    failing = tmp_path / "bin" / "sbatch-refuses"
    stub(bin_dir, "sbatch-refuses", 'echo "sbatch: error: invalid partition" >&2; exit 1\n')
    with pytest.raises(RuntimeError, match="invalid partition"):
        submit(rendered, tmp_path / "repo", sbatch=str(failing))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--paper", "quant_pretraining", "--gpus", "-2"], "--gpus: expected an integer >= 1, got -2"),
        (["--paper", "nope"], "unknown paper 'nope'; valid: dim_reduction"),
        (["--paper", "dim_reduction", "--scale", "huge"], "unknown scale 'huge'; valid: full"),
        (["--paper", "quant_pretraining", "--gpus", "3"], "not a multiple of micro_batch=32 x 3 device"),
        (["--paper", "dim_reduction", "--nodes", "2"], "trains on one node"),
        (["--paper", "peft_alignment", "--shards", "1"], "shards must be 0 (no array) or an integer >= 2"),
        (["--paper", "dim_reduction", "--mem", "lots"], "mem must look like 64G"),
        (["--paper", "dim_reduction", "--partition", "a b"], "partition must be"),
        (["--paper", "dim_reduction", "--setup-hook", "/no/such/file"], "no such file"),
        (["--paper", "dim_reduction", "--array", "full,huge"], "unknown scale(s) ['huge']"),
    ],
)
def test_bad_values_are_refused_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:  # argparse's own refusal exits; ours returns 2
        raise SystemExit(main(["slurm", *argv]))
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err and "Traceback" not in err


def test_dry_run_prints_the_scripts_and_the_submission(capsys):
    assert main(["slurm", "--paper", "peft_alignment", "--shards", "3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    main_script, merge = out.split("# ---- merge job ----\n")
    assert directives(main_script)["array"] == "0-2" and "array" not in directives(merge)
    assert f"#   mkdir -p {LOG_DIR}\n" in out and "--dependency=afterok:JOB" in out
    assert main(["slurm", "--paper", "quant_pretraining"]) == 0  # the config's 4 GPUs on 1 node by default
    opts = directives(capsys.readouterr().out)
    assert (opts["nodes"], opts["gpus-per-node"]) == ("1", "4")


def test_cpu_job_asks_for_no_gpu_and_sets_the_accelerator():
    script = render_slurm(SlurmJob("quant_pretraining", "smoke", gpus=2, accelerator="cpu"))
    assert "gpus-per-node" not in directives(script)
    assert sets(srun_argv(script)) == {"engine.num_nodes": "1", "engine.devices": "2", "engine.accelerator": "cpu"}


def test_slurm_rejects_unknown_paper_and_scale():
    with pytest.raises(UnknownPaperError, match="valid: .*dim_reduction"):
        render_slurm(SlurmJob("nope"))
    with pytest.raises(ValueError, match="unknown scale.*valid: full"):
        render_slurm(SlurmJob("dim_reduction", "huge"))


def test_torchrun_command_one_and_many_nodes():
    from shared.launch import render_torchrun

    one = render_torchrun("dim_reduction", "full", gpus=4)
    assert one.startswith("torchrun --nnodes=1 --nproc_per_node=4 --standalone -m papers.dim_reduction.reproduce")
    two = render_torchrun("dim_reduction", "full", gpus=8, nodes=2)
    assert "--nnodes=2" in two and "--rdzv-backend=c10d" in two
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        render_torchrun("dim_reduction", "huge")


def test_dry_run_of_a_gpu_engine_config_prints_its_launchers():
    out = subprocess.run(
        [sys.executable, "-m", "papers.quant_pretraining.reproduce", "--scale", "full", "--dry-run",
         "--set", "train.lr=0.001"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "torchrun --nnodes=1 --nproc_per_node=4 --standalone -m papers.quant_pretraining.reproduce" in out
    script = out[out.index("#!/bin/bash") :]
    argv = srun_argv(script)
    assert directives(script)["gpus-per-node"] == "4" and argv[-1] == "--publish"
    assert "train.lr=0.001" in argv  # the user's --set values reach the job it prints
