"""The signal report (shared/traces/signal.py) on a generated dataset whose behaviours are known: one carries a
planted count signal, one carries none, and every block drifts a little as real blocks do."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from shared.traces import TraceError, load_dataset
from shared.traces.dataset import build_dataset
from shared.traces.events import SCHEMA
from shared.traces.schedule import Block
from shared.traces.signal import block_disjoint_auroc, count_matrices, signal_report, signal_table

REPO = Path(__file__).resolve().parents[1]
REQUESTS_PER_BLOCK = 40
# capture order, as the collector alternates them: normal blocks between every behaviour block
ORDER = ["normal", "planted", "normal", "null", "normal", "normal"] * 4


def _block_events(rng: np.random.Generator, behaviour: str) -> pa.Table:
    """Sequential requests on three worker threads: read/write/futex counts, a per-block drift on futex,
    and for 'planted' one openat call plus Poisson(1) more."""
    drift = rng.uniform(5, 6)  # this block's machine state
    rows = []
    for i in range(REQUESTS_PER_BLOCK):
        tid = 100 + i % 3
        calls = ["read"] * rng.poisson(6) + ["write"] * rng.poisson(4) + ["futex"] * rng.poisson(drift)
        if behaviour == "planted":
            calls += ["openat"] * (1 + rng.poisson(1))
        calls = list(rng.permutation(np.array(calls, dtype=object))) if calls else []
        rows += [(tid, "probe", "req_begin")] + [(tid, "syscall", c) for c in calls] + [(tid, "probe", "req_end")]
    n = len(rows)
    cols = {
        "ts": list(range(0, 10 * n, 10)), "cpu": [0] * n, "tid": [r[0] for r in rows], "pid": [100] * n,
        "comm": ["apache2"] * n, "kind": [r[1] for r in rows], "name": [r[2] for r in rows],
        "entry": [1 if r[1] == "syscall" else 0 for r in rows], "ret": [None] * n, "target_tid": [None] * n,
        "state": [None] * n,
    }  # fmt: skip
    return pa.Table.from_arrays([pa.array(cols[f.name]).cast(f.type) for f in SCHEMA], schema=SCHEMA)


def _build(out: Path, order: list[str], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    blocks = [Block(i, b, "train" if b == "normal" else f"test_ood_{b}", i // 6) for i, b in enumerate(order)]
    tables = {b.id: _block_events(rng, b.behaviour) for b in blocks}

    def source(_out: Path, block: Block):
        return tables[block.id], {"id": block.id, "behaviour": block.behaviour, "split": block.split}

    return build_dataset(out, blocks, {"fixture": "signal"}, source=source)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("signal") / "ds", ORDER)


def test_planted_signal_scores_high_null_and_floor_near_half(planted):
    rows = signal_report(load_dataset(planted), modes=("global", "causal"))
    by = {(r["mode"], r["behaviour"]): r for r in rows}
    assert set(by) == {(m, b) for m in ("global", "causal") for b in ("normal", "planted", "null")}
    for mode in ("global", "causal"):  # no PHP probes here: causal is the worker's own events, as global
        floor, hit, null = by[mode, "normal"], by[mode, "planted"], by[mode, "null"]
        assert abs(floor["auroc"] - 0.5) <= 0.1 and len(floor["floor_draws"]) == 10
        assert floor["floor_band"][0] <= 0.45 and floor["floor_band"][1] >= 0.55
        assert hit["auroc"] >= 0.9 and hit["verdict"] == "signal"
        assert abs(null["auroc"] - 0.5) <= 0.1 and null["verdict"] == "no signal"
        assert hit["moved"][0]["name"] == "openat" and hit["moved"][0]["normal"] == 0
        assert hit["moved"][0]["behaviour"] == pytest.approx(2, abs=0.3)
        assert hit["length_ratio"] > 1.05 and null["length_ratio"] == pytest.approx(1, abs=0.1)
        assert (hit["blocks"], hit["requests"], floor["blocks"]) == (4, 4 * REQUESTS_PER_BLOCK, 16)
    assert by["causal", "planted"]["linked"] == 0 and by["global", "planted"]["linked"] is None
    json.dumps(rows)  # JSON-ready as it is
    columns, table = signal_table(rows)
    assert len(table) == 6 and all(len(r) == len(columns) for r in table)


def test_counts_are_the_requests_own(planted):
    ds = load_dataset(planted)
    c = count_matrices(ds, ("global",))["global"]
    req = ds.requests.to_pydict()
    assert c.x.shape[0] == len(req["request"]) and sorted(c.vocab) == ["futex", "openat", "read", "write"]
    assert np.array_equal(c.x.sum(axis=1), np.array(req["length"]))
    first = next(ds.sequences("train", "global", ("name",)))["name"]
    assert {n: int(c.x[0, c.vocab.index(n)]) for n in c.vocab} == {n: int(np.sum(first == n)) for n in c.vocab}
    capped = count_matrices(ds, ("global",), per_block=10)["global"]
    assert capped.x.shape[0] == 10 * len(ORDER) and set(capped.block) == set(c.block)


def test_held_out_blocks_are_never_trained_on():
    """A feature that only names the block: block-disjoint folds cannot learn it (AUROC 0.5, ties), while
    training on every block would separate the classes perfectly."""
    block = np.repeat(np.arange(8), 20)
    y = (block % 4 >= 2).astype(int)  # blocks 2, 3, 6, 7 are the behaviour
    fold = (block % 2 == 1).astype(int)  # so each fold holds both classes
    x = np.eye(8)[block] * 5.0  # one-hot block identity as counts
    assert block_disjoint_auroc(x, y, fold) == pytest.approx(0.5)
    assert np.isnan(block_disjoint_auroc(x, y, np.zeros_like(fold)))  # one fold only: no held-out blocks


def test_too_few_normal_blocks_is_a_clear_error(tmp_path):
    ds = load_dataset(_build(tmp_path / "ds", ["normal", "planted", "normal", "planted", "normal"]))
    with pytest.raises(TraceError, match="at least 4 normal blocks \\(has 3\\)"):
        signal_report(ds)


def test_cli_inspect_prints_and_writes_the_report(planted, tmp_path):
    out, planted = tmp_path / "signal.json", Path(shutil.copytree(planted, tmp_path / "ds"))
    manifest = json.loads((planted / "manifest.json").read_text())
    effects = {"normal": {"blocks": 16, "queueing_ms_p50": 0.1}, "planted": {"blocks": 4, "queueing_ms_p50": 7.5}}
    (planted / "manifest.json").write_text(json.dumps({**manifest, "effects": effects}))
    cmd = [sys.executable, "-m", "shared.traces", "inspect", str(planted)]
    proc = subprocess.run(
        [*cmd, "--signal-modes", "global", "--json", str(out)], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    assert "| split | requests |" in proc.stdout and "signal report:" in proc.stdout
    assert "| global | null |" in proc.stdout and "no signal" in proc.stdout
    effect_row = next(line for line in proc.stdout.splitlines() if line.startswith("| planted | 4 |"))
    assert effect_row.split(" | ")[8].startswith("7.5")  # the collector's queueing, in its column
    written = json.loads(out.read_text())
    rows = written["signal_report"]
    assert written["effects"] == effects
    assert [(r["mode"], r["behaviour"]) for r in rows] == [("global", b) for b in ("normal", "planted", "null")]
    bad = subprocess.run([*cmd, "--signal-modes", "global,bogus"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "--signal-modes 'bogus' is not a cutting mode" in bad.stderr
