"""request_analysis: the tables' reader and its errors, thread states by hand, the pipeline's behaviour."""

from __future__ import annotations

import ast
import gzip
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from papers.request_analysis import data as data_module
from papers.request_analysis.data import DEFAULT, ENV, DataError, data_dir, load_group, load_tables, tables_not_found
from papers.request_analysis.pipeline import analyse, cluster_outliers, outliers
from papers.request_analysis.states import CODE, HEADER, N_STATES
from papers.request_analysis.traces import S, Timeline, requests_from_traces, thread_states

SAMPLE = Path(__file__).resolve().parents[1] / "sample"
REAL_RESULTS = Path(__file__).resolve().parents[1] / "results" / "mini" / "results.json"


def _write_group(folder: Path, gid: str = "7", rows: int = 3, gz: bool = True) -> None:
    def put(kind: str, lines: list[str]) -> None:
        text = "\n".join(lines) + "\n"
        path = folder / (f"{gid}_{kind}.csv" + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())

    keys = [f"{gid}_1_{1000 + i}" for i in range(rows)]
    times = [[0, 10, 20, 0, 5, 0, 0, 0, 0, 0] for _ in keys]
    put("count", [",".join([k, "0", "2", "1", "0", "1", "0", "0", "0", "0", "0", "35"]) for k in keys])
    put("times", [",".join([k, *map(str, t), str(sum(t))]) for k, t in zip(keys, times, strict=True)])
    put("states", [f"{k}:2142$" for k in keys])
    put("syscalls", [f"{k}:read,write,close,$" for k in keys])


def test_reads_a_group(tmp_path):
    _write_group(tmp_path)
    req = load_group(tmp_path, "7")
    assert len(req) == 3 and req.times_ns.shape == (3, N_STATES) and req.duration_ns.tolist() == [35] * 3
    assert req.states[0] == "2142" and req.syscalls[0] == ["read", "write", "close"]


def test_missing_file_is_named(tmp_path):
    _write_group(tmp_path)
    (tmp_path / "7_states.csv.gz").unlink()
    with pytest.raises(DataError, match="group 7 has no 7_states.csv"):
        load_tables(tmp_path)


def test_mismatched_keys_and_bad_rows_are_named(tmp_path):
    _write_group(tmp_path, gz=False)
    lines = (tmp_path / "7_syscalls.csv").read_text().splitlines()
    (tmp_path / "7_syscalls.csv").write_text("\n".join(lines[:2] + ["7_1_9999:read,$"]) + "\n")
    with pytest.raises(DataError, match=r"7_syscalls.csv: its request keys differ"):
        load_group(tmp_path, "7")
    _write_group(tmp_path, gz=False)
    (tmp_path / "7_times.csv").write_text("7_1_1000,1,2,3\n")
    with pytest.raises(DataError, match=r"7_times.csv:1: 4 fields"):
        load_group(tmp_path, "7")
    _write_group(tmp_path, gz=False)
    (tmp_path / "7_states.csv").write_text("\n".join(f"7_1_{1000 + i}:21x2$" for i in range(3)) + "\n")
    with pytest.raises(DataError, match=r"7_states.csv: row 1 \(7_1_1000\): a state that is not a digit"):
        load_group(tmp_path, "7")


def test_thread_states_by_hand():
    # user 0-10, read 10-20 (sleeps 12-18, woken 17, back on CPU 18), user 20-25, preempted 25-30, user to 40
    tl = Timeline(
        ts=np.array([10, 12, 17, 18, 20, 25, 30]),
        kind=np.array([0, 2, 4, 3, 1, 2, 3]),
        name=np.array(["read", "", "", "", "read", "", ""], dtype=object),
        state=np.array([0, 1, 0, 0, 0, 0, 0]),
    )
    times, counts, digits, calls = thread_states(tl, 0, 40)
    expect = np.zeros(N_STATES, dtype=int)
    expect[S["USERMODE"]] = 10 + 5 + 10
    expect[S["SYSTEMCALL"]] = 2 + 2
    expect[S["BLOCKED_WAITPROCESS"]] = 5
    expect[S["BLOCKED_CPU"]] = 1 + 5
    assert times.tolist() == expect.tolist() and times.sum() == 40
    assert digits == "21641242" and counts.sum() == len(digits) and calls == ["read"]


def test_a_window_that_opens_while_the_thread_sleeps_starts_asleep():
    """A connection's window opens at the listener's accept, while the worker still sleeps in futex
    (switched out at 5, before the window): by hand, futex sleep 8-14, woken and waiting for a CPU 14-16,
    back in the futex call 16-17, user 17-20. The old rule (running at the window's start) would have
    counted the sleep as user time."""
    tl = Timeline(
        ts=np.array([4, 5, 14, 16, 17]),
        kind=np.array([0, 2, 4, 3, 1]),
        name=np.array(["futex", "", "", "", "futex"], dtype=object),
        state=np.array([0, 1, 0, 0, 0]),
    )
    times, counts, digits, calls = thread_states(tl, 8, 20)
    expect = np.zeros(N_STATES, dtype=int)
    expect[S["BLOCKED_FOR_FUTEX"]] = 6
    expect[S["BLOCKED_CPU_FUTEX"]] = 2
    expect[S["SYSTEMCALL"]] = 1
    expect[S["USERMODE"]] = 3
    assert times.tolist() == expect.tolist() and times.sum() == 12
    order = ("BLOCKED_FOR_FUTEX", "BLOCKED_CPU_FUTEX", "SYSTEMCALL", "USERMODE")
    assert digits == "".join(str(S[n]) for n in order) and calls == []  # the futex call began before
    assert thread_states(tl, 0, 4)[0][S["USERMODE"]] == 4  # before the first event: running


@pytest.mark.parametrize(
    "override,message",
    [
        ("sample_eps_share=0", r"sample_eps_share: 0(\.0)? must be > 0"),
        ("sample_eps_share=1.5", r"sample_eps_share: 1.5 is out of range"),
        ("sample_min_samples=0", r"sample_min_samples: 0 is out of range"),
        ("sample_injected=100", r"sample_injected=100 must be below sample_min_samples=100"),
        ("analyse_sample=3", r"analyse_sample"),
    ],
)
def test_the_shared_sample_settings_out_of_range_are_one_clear_error(override, message):
    from papers.request_analysis.config import Config
    from shared.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=message):
        load_config(Config, Path(__file__).resolve().parents[1] / "configs" / "mini.yaml", [override])


def test_traces_sample_features_are_consistent():
    from shared.traces import load_dataset

    req, labels = requests_from_traces(load_dataset(SAMPLE))
    assert len(req) == len(labels) > 1000 and set(labels) == {"normal", "contention"}
    assert np.array_equal(req.times_ns.sum(1), req.duration_ns) and (req.times_ns >= 0).all()
    assert np.array_equal(req.counts.sum(1), [len(d) for d in req.states])


def test_dbscan_and_kmeans_find_planted_groups():
    rng = np.random.default_rng(0)
    normal = rng.normal(100, 5, (500, N_STATES)).clip(0)
    slow = rng.normal(100, 5, (6, N_STATES)).clip(0)
    slow[:, 3] += 400
    x = np.vstack([normal, slow])
    out = outliers(x, eps=25, min_samples=20)
    assert out[-6:].all() and out[:-6].sum() == 0
    counts = np.vstack(
        [np.tile([1, 2, 3, 0, 0, 0, 0, 0, 0, 0], (10, 1)), np.tile([9, 9, 9, 0, 0, 0, 0, 0, 0, 0], (4, 1))]
    )
    labels = cluster_outliers(counts + rng.random(counts.shape) * 0.1, k=2)
    assert labels[:10].tolist() == [0] * 10 and labels[10:].tolist() == [1] * 4  # numbered by size


def test_state_order_does_not_change_outliers_or_clusters():
    assert HEADER[6] == CODE[7] and HEADER[7] == CODE[6]
    rng = np.random.default_rng(1)
    x = np.vstack([rng.normal(50, 3, (300, N_STATES)), rng.normal(50, 3, (8, N_STATES)) + 200])
    swapped = x[:, [0, 1, 2, 3, 4, 5, 7, 6, 8, 9]]
    assert np.array_equal(outliers(x, 25, 20), outliers(swapped, 25, 20))
    c = rng.integers(0, 50, (30, N_STATES))
    assert np.array_equal(cluster_outliers(c, 3), cluster_outliers(c[:, [0, 1, 2, 3, 4, 5, 7, 6, 8, 9]], 3))


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT.is_dir(), reason=f"the authors' tables are absent ({DEFAULT})")
def test_the_papers_numbers_on_the_authors_tables():
    req = load_tables(DEFAULT)
    assert len(req) == 45413
    a = analyse(req, 5.0, 25, 100, 3)
    assert a.dropped == 2 and a.outlier.sum() == 157 and np.bincount(a.cluster).tolist() == [116, 36, 5]


# -- where the tables come from ---------------------------------------------------------------------
def test_a_named_tables_folder_must_exist_and_hold_tables(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    missing = tmp_path / "nonexistent"
    with pytest.raises(DataError, match=f"data.dir={re.escape(str(missing))}: no such folder; expected"):
        data_dir(str(missing))
    monkeypatch.setenv(ENV, str(tmp_path))  # exists, but holds no tables
    with pytest.raises(DataError, match=rf"\${ENV}={re.escape(str(tmp_path))}: no <id>_count.csv"):
        data_dir(None)
    _write_group(tmp_path)
    assert data_dir(None) == tmp_path
    # data.dir wins over the environment, and is never silently replaced by it
    with pytest.raises(DataError, match="data.dir="):
        data_dir(str(missing))


def test_nothing_named_and_no_default_is_none(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(data_module, "DEFAULT", tmp_path / "absent")
    assert data_dir(None) is None
    (tmp_path / "absent").mkdir()  # the default folder without tables is not "found" either
    assert data_dir(None) is None
    _write_group(tmp_path / "absent")
    assert data_dir(None) == tmp_path / "absent"


def test_unreadable_or_empty_tables_are_named(tmp_path):
    _write_group(tmp_path, gz=True)
    (tmp_path / "7_times.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"7_times.csv.gz: not a readable text table"):
        load_group(tmp_path, "7")
    _write_group(tmp_path, gz=False, gid="8")
    for kind in ("count", "times", "states", "syscalls"):
        (tmp_path / f"8_{kind}.csv").write_text("")
    with pytest.raises(DataError, match=r"8_count.csv: no rows"):
        load_group(tmp_path, "8")


def _reproduce(argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    from papers.request_analysis import reproduce

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = reproduce.main(argv)
    return rc, err.getvalue()


@pytest.mark.parametrize("how", ["data.dir", "env"])
def test_reproduce_with_a_missing_named_folder_exits_2_writing_nothing(tmp_path, monkeypatch, how):
    monkeypatch.delenv(ENV, raising=False)
    argv = ["--scale", "mini", "--out", str(tmp_path / "runs")]
    if how == "env":
        monkeypatch.setenv(ENV, "/nonexistent")
    else:
        argv += ["--set", "data.dir=/nonexistent"]
    rc, err = _reproduce(argv)
    name = "data.dir" if how == "data.dir" else f"${ENV}"
    assert rc == 2 and err.startswith(f"error: {name}=/nonexistent: no such folder") and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def paper_copy(tmp_path, monkeypatch) -> Path:
    """A temporary copy of the paper's configs, paper.yaml and committed results that reproduce.main
    uses instead of the real folder, so no test can touch the committed files."""
    from papers.request_analysis import reproduce

    copy = tmp_path / "request_analysis"
    for name in ("configs", "results"):
        shutil.copytree(reproduce.PAPER_DIR / name, copy / name)
    shutil.copy(reproduce.PAPER_DIR / "paper.yaml", copy / "paper.yaml")
    monkeypatch.setattr(reproduce, "PAPER_DIR", copy)
    return copy


@pytest.mark.slow
def test_no_tables_found_is_a_degraded_run_that_is_not_published(tmp_path, monkeypatch, paper_copy):
    """A new user's mini run (no tables anywhere): the traces analysis runs, results.json says why it is
    degraded, and --publish leaves the committed results (tables measured) as they were."""
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(data_module, "DEFAULT", tmp_path / "no-tables")
    committed = paper_copy / "results" / "mini" / "results.json"
    real = REAL_RESULTS.read_bytes()
    before = committed.read_bytes()
    assert json.loads(before)["targets"], "the committed results measured targets"
    rc, err = _reproduce(["--scale", "mini", "--out", str(tmp_path / "runs"), "--publish"])
    assert rc == 3 and "not published" in err and "degraded: the authors' tables were not found" in err, err
    (results_path,) = (tmp_path / "runs").glob("request_analysis/mini/*/results.json")
    results = json.loads(results_path.read_text())
    assert results["degraded"] == [tables_not_found()] and str(tmp_path / "no-tables") in results["degraded"][0]
    verdicts = {t["name"]: t["verdict"] for t in results["targets"]}
    assert verdicts and any(v != "not run" for v in verdicts.values())  # the traces analysis did run
    assert committed.read_bytes() == before and REAL_RESULTS.read_bytes() == real


@pytest.mark.slow
def test_the_shared_sample_analysis_keeps_every_normal_request_and_a_few_of_each_behaviour():
    from papers.request_analysis.config import Config
    from papers.request_analysis.reproduce import run_sample
    from shared.config import load_config
    from shared.traces import SAMPLE_DIR

    cfg = load_config(Config, Path(__file__).resolve().parents[1] / "configs" / "mini.yaml", ["sample_injected=10"])
    out = run_sample(cfg, SAMPLE_DIR)
    counts = out["all_requests"]
    assert out["behaviours"]["normal"] == counts["normal"] > 100
    assert all(out["behaviours"][b] == min(10, n) for b, n in counts.items() if b != "normal")
    flagged = out["flagged_by_behaviour"]
    assert set(flagged) == set(counts) and all(0 <= v <= 1 for v in flagged.values())
    assert sum(c["size"] for c in out["clusters"]) == out["outliers"]["size"]
    assert out["slowdown_by_behaviour"]["normal"] == pytest.approx(1.0)


def test_characterise_ties_do_not_depend_on_the_hash_seed():
    """Tied n-grams come out in one order whatever PYTHONHASHSEED is (a set of strings iterates in hash
    order; the published cluster text once swapped two tied 3-grams between runs of the same seed)."""
    import subprocess
    import sys

    code = (
        "from papers.request_analysis.pipeline import characterise\n"
        "seqs = [['read', 'write', 'poll', 'close', 'open', 'stat', 'mmap', 'brk']] * 3\n"
        "out = characterise({'normal': [['futex']] * 3, 'c': seqs}, 'normal', n_max=3, top=12)['c']\n"
        "print([r['ngram'] for r in out])\n"
    )
    outputs = set()
    for hash_seed in ("0", "1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.add(run.stdout)
    assert len(outputs) == 1, outputs
    # every row ties (each n-gram once per request, never in the reference): order is (n, text)
    first = ast.literal_eval(outputs.pop())
    assert first[:8] == sorted(["read", "write", "poll", "close", "open", "stat", "mmap", "brk"])
