"""Bad and hostile inputs to the shared entry points (Makefile, config, CLI, launcher): each gets one clear
error naming what was wrong and what is valid, and nothing runs or is written. The papers' own data inputs
are tested in their folders."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.cli import load_paper_config, parse_reproduce_args, run_command
from shared.config import ConfigError, from_dict, load_yaml, range_for
from shared.environment import REPO_ROOT, describe
from shared.io import atomic_dir, atomic_write_text
from shared.launch import SlurmJob, render_slurm, render_torchrun
from shared.launch import main as launch_main
from shared.run import Run

# ---- Makefile: PAPER, SCALE, SEEDS never reach a shell unchecked ---------------------------------------------


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("PAPER=", "PAPER is required; valid: dim_reduction"),
        ("PAPER=../papers/dim_reduction", "unknown PAPER '../papers/dim_reduction'"),
        ("PAPER=dim_reduction;touch {marker}", "unknown PAPER 'dim_reduction;touch"),
        ("PAPER=$(shell touch {marker})", "unknown PAPER '$(shell touch"),
        ("PAPER=dim_reduction mergealign", "unknown PAPER 'dim_reduction mergealign'"),
        ("SEEDS=0;touch {marker}", "SEEDS must be non-negative integers separated by commas"),
        ("SEEDS=-1", "SEEDS must be non-negative integers"),
        ("SEEDS=$$(touch {marker})", "SEEDS must be non-negative integers"),
        ("SCALE=mini;touch {marker}", "SCALE must be a config name"),
        ("SCALE=`touch {marker}`", "SCALE must be a config name"),
    ],
)
def test_makefile_rejects_hostile_variables_before_any_shell_runs_them(tmp_path, assignment, message):
    marker = tmp_path / "INJECTED"
    args = ["make", "-s", "-C", str(REPO_ROOT), "check-paper"]
    if not assignment.startswith("PAPER="):
        args.append("PAPER=dim_reduction")
    args.append(assignment.format(marker=marker))
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    assert message in out.stdout + out.stderr
    assert not marker.exists()


def test_makefile_accepts_good_variables():
    args = ["make", "-s", "-C", str(REPO_ROOT), "check-paper", "PAPER=dim_reduction", "SCALE=mini", "SEEDS=0,1,2"]
    assert subprocess.run(args, capture_output=True, text=True, timeout=60).returncode == 0


def test_makefile_passes_seeds_and_scale_quoted_to_the_paper():
    out = subprocess.run(
        ["make", "-n", "-C", str(REPO_ROOT), "reproduce", "PAPER=dim_reduction", "SEEDS=0,1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = next(x for x in out.stdout.splitlines() if ".reproduce" in x)
    assert '-m "papers.$PAPER.reproduce" --scale "$SCALE" ${SEEDS:+--seeds "$SEEDS"}' in line


# ---- Config: declared ranges, duplicate keys -------------------------------------------------------------------


@dataclass
class Train:
    steps: int = 10
    batch_size: int = 8
    warmup: int = 0
    lr: float = 1e-3
    dropout: float = 0.1
    val_fraction: float = 0.1
    n_jobs: int = 1
    layer: int = 0  # an index, not a count
    dims: list[int] = field(default_factory=lambda: [1, 2])


@dataclass
class Cfg:
    seeds: list[int] = field(default_factory=lambda: [0])
    train: Train = field(default_factory=Train)
    budget: dict[str, int] = field(default_factory=dict)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"train": {"steps": -1}}, "train.steps: -1 is out of range; valid: an integer >= 1"),
        ({"train": {"steps": 0}}, "train.steps: 0 is out of range; valid: an integer >= 1"),
        ({"train": {"batch_size": 0}}, "train.batch_size: 0 is out of range"),
        ({"train": {"warmup": -3}}, "train.warmup: -3 is out of range; valid: an integer >= 0"),
        ({"train": {"lr": 0.0}}, "train.lr: 0.0 is out of range; valid: a finite number > 0"),
        ({"train": {"lr": math.nan}}, "train.lr: nan is out of range"),
        ({"train": {"lr": math.inf}}, "train.lr: inf is out of range"),
        ({"train": {"dropout": 1.0}}, r"train.dropout: 1.0 is out of range; valid: a finite number \[0, 1\)"),
        ({"train": {"val_fraction": 1.5}}, r"train.val_fraction: 1.5 is out of range; valid: a finite number \[0, 1\]"),
        ({"train": {"n_jobs": 0}}, "train.n_jobs: 0 is out of range; valid: an integer >= 1 or -1"),
        ({"train": {"layer": -1}}, "train.layer: -1 is out of range; valid: an integer >= 0"),
        ({"train": {"dims": [3, 0]}}, r"train.dims\[1\]: 0 is out of range"),
        ({"seeds": [0, -1]}, r"seeds\[1\]: -1 is out of range; valid: an integer \[0, 4294967295\]"),
        ({"seeds": [2**32]}, r"seeds\[0\]: 4294967296 is out of range"),
        ({"budget": {"max_train": 5}}, None),  # dict values take their field's range: budget is >= 0
        ({"budget": {"max_train": -5}}, r"budget.max_train: -5 is out of range"),
    ],
)
def test_numbers_out_of_their_declared_range_are_one_clear_error(data, message):
    if message is None:
        assert from_dict(Cfg, data).budget == data["budget"]
        return
    with pytest.raises(ConfigError, match=message):
        from_dict(Cfg, data)


def test_in_range_values_and_zero_meaning_off_are_accepted():
    cfg = from_dict(Cfg, {"train": {"warmup": 0, "n_jobs": -1, "layer": 0, "dropout": 0.0}, "seeds": [0, 2**32 - 1]})
    assert cfg.train.n_jobs == -1 and cfg.seeds[-1] == 2**32 - 1


@pytest.mark.parametrize(
    "name, lo_ok, bad",
    [
        ("max_epochs", 1, 0),
        ("train_size", 1, 0),
        ("n_neighbors", 1, 0),
        ("eval_batch_size", 1, 0),
        ("seed", 0, -1),
        ("eval_every", 0, -1),
        ("n_benign", 0, -1),  # a count of optional items may be 0
        ("min_len", 0, -1),
        ("min_samples", 1, 0),
        ("patience", 0, -1),  # Keras: stop at the first epoch without a gain
        ("label_smoothing", 0, 1),
        ("mask_rate", 1, 1.01),
    ],
)
def test_range_table_by_field_name(name, lo_ok, bad):
    assert range_for(name).contains(lo_ok) and not range_for(name).contains(bad)


def test_duplicate_yaml_keys_name_the_key_and_both_lines(tmp_path):
    path = tmp_path / "mini.yaml"
    path.write_text("train:\n  steps: 10\n  lr: 0.1\n  steps: 20\n")
    with pytest.raises(ConfigError, match=r"mini.yaml: duplicate key 'steps' at line 4 \(first at line 2\)"):
        load_yaml(path)


def test_every_paper_config_is_within_the_declared_ranges():
    """All four scales of every paper load, defaults included (a config written back and read again, as the
    efficiency workers do): a range that rejected one of our own configs would be wrong."""
    import importlib

    from papers import REQUIRED_CONFIGS, paper_names
    from shared.config import load_config, to_dict

    names = paper_names()
    assert len(names) >= 9
    for name in names:
        cls = importlib.import_module(f"papers.{name}.config").Config
        for scale in REQUIRED_CONFIGS:
            cfg = load_config(cls, REPO_ROOT / "papers" / name / "configs" / f"{scale}.yaml")
            assert to_dict(from_dict(cls, to_dict(cfg))) == to_dict(cfg)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "-1"], r"seeds\[0\]: -1 is out of range"),
        (["--set", "ae.max_epochs=0"], "ae.max_epochs: 0 is out of range; valid: an integer >= 1"),
        (["--set", "ae.batch_size=0"], "ae.batch_size: 0 is out of range"),
    ],
)
def test_reproduce_flags_out_of_range_exit_2_with_one_line(capsys, argv, message):
    from papers.dim_reduction.config import Config

    paper_dir = REPO_ROOT / "papers" / "dim_reduction"
    args = parse_reproduce_args(paper_dir, ["pca"], ["--scale", "mini", *argv])
    with pytest.raises(SystemExit) as exc:
        load_paper_config(Config, paper_dir, args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    import re

    assert re.search(message, err)


def test_seeds_for_a_paper_without_seeds_is_an_error(capsys):
    from papers.request_analysis.config import Config

    paper_dir = REPO_ROOT / "papers" / "request_analysis"
    args = parse_reproduce_args(paper_dir, ["traces"], ["--seeds", "1"])
    with pytest.raises(SystemExit):
        load_paper_config(Config, paper_dir, args)
    assert "request_analysis has no seeds setting" in capsys.readouterr().err


# ---- Launcher ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["slurm", "--paper", "quant_pretraining", "--gpus", "-2"], "expected an integer >= 1, got -2"),
        (["slurm", "--paper", "quant_pretraining", "--nodes", "0"], "expected an integer >= 1, got 0"),
        (["torchrun", "--paper", "quant_pretraining", "--gpus", "two"], "expected an integer >= 1, got 'two'"),
        (["slurm", "--paper", "quant_pretraining", "--time", "1:00\nrm -rf ~"], "time must look like 24:00:00"),
        (["slurm", "--paper", "quant_pretraining", "--mem", "64G; reboot"], "mem must look like 64G"),
        (["slurm", "--paper", "nope"], "unknown paper 'nope'"),
    ],
)
def test_launcher_refuses_bad_values(capsys, argv, message):
    try:
        rc = launch_main(argv)
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    assert rc == 2 and message in capsys.readouterr().err


def test_launcher_api_refuses_counts_below_one():
    with pytest.raises(ValueError, match="gpus must be an integer >= 1, got -2"):
        render_slurm(SlurmJob("quant_pretraining", gpus=-2))
    with pytest.raises(ValueError, match="gpus and nodes must be integers >= 1"):
        render_torchrun("quant_pretraining", gpus=0)


# ---- Files, environment, interrupts ------------------------------------------------------------------------------


def test_written_files_and_folders_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.json", "{}")
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_environment_records_the_cpu_features_that_pick_code_paths():
    env = describe()
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split(":", 1)[1].split()
    assert env["cpu_flags"] == sorted(flags) and "sse2" in env["cpu_flags"]
    assert env["torch_cpu_capability"] in {"DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX", "SVE256"}


def test_run_command_turns_an_interrupt_swallowed_into_exit_1_into_130_and_a_resume_line(tmp_path, capsys):
    run = Run("p", "mini", {}, [0], root=tmp_path)
    # what the process inherited: Python's default handler, or SIG_IGN when a shell started it in the background
    before = signal.getsignal(signal.SIGINT)

    def main() -> int:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises here
        except KeyboardInterrupt:
            raise SystemExit(1) from None  # what Lightning does with it
        return 0

    assert run_command(main) == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("interrupted: run the same command again to resume") and str(run.dir) in last
    assert signal.getsignal(signal.SIGINT) == before  # restored
    assert run_command(lambda: 0) == 0 and "interrupted" not in capsys.readouterr().err


@pytest.mark.slow
def test_sigint_during_a_real_run_prints_how_to_resume(tmp_path):
    cmd = [sys.executable, "-m", "papers.dim_reduction.reproduce", "--scale", "smoke", "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "stage" in line and ": start" in line:
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, "".join(lines) + rest
    assert rest.strip().splitlines()[-1].startswith("interrupted: run the same command again to resume")
    assert "Traceback" not in rest
