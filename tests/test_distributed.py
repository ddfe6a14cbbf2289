"""shared.distributed and the rank-safe run folder: ranks from torchrun's, SLURM's and Lightning's environment;
two processes through cached stages compute each once (rank 0), the others read it; --fresh waits for
rank 0 to clear the cache; the report, results and --publish are rank 0's; log lines carry the rank."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shared import distributed
from shared.distributed import DistributedError, file_barrier, rank, rank_zero_first, world_size
from shared.run import Run

ROOT = Path(__file__).resolve().parents[1]
RANK_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "LOCAL_WORLD_SIZE", "SLURM_PROCID", "SLURM_LOCALID",
             "SLURM_NTASKS", "SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_RESTART_COUNT", "TORCHELASTIC_RUN_ID",
             "TORCHELASTIC_RESTART_COUNT", "SHARED_JOB_TOKEN", "SHARED_RANK_WAIT_S")  # fmt: skip


@pytest.fixture
def env(monkeypatch):
    """A clean rank environment; the test sets what a launcher would."""
    for name in RANK_VARS:
        monkeypatch.delenv(name, raising=False)

    def set_(**values: object) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))

    return set_


def test_ranks_come_from_torchrun_then_slurm_then_lightning(env):
    assert (rank(), distributed.local_rank(), world_size(), distributed.rank_tag()) == (0, 0, 1, "")
    env(SLURM_PROCID=5, SLURM_LOCALID=1, SLURM_NTASKS=8)  # srun, 4 tasks per node
    assert (rank(), distributed.local_rank(), world_size()) == (5, 1, 8)
    assert not distributed.is_rank_zero() and not distributed.is_rank_zero(local=True)
    env(RANK=2, LOCAL_RANK=0, WORLD_SIZE=4)  # torchrun inside an allocation wins over SLURM's task ids
    assert (rank(), distributed.local_rank(), world_size(), distributed.rank_tag()) == (2, 0, 4, "[rank 2/4] ")
    assert distributed.is_rank_zero(local=True) and not distributed.is_rank_zero()
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS"):
        os.environ.pop(name)
    env(LOCAL_RANK=1, WORLD_SIZE=2)  # a child of Lightning's subprocess launcher: no RANK
    assert (rank(), world_size()) == (1, 2)
    env(RANK="one")
    with pytest.raises(DistributedError, match="RANK='one' in the environment is not an integer"):
        rank()


@pytest.mark.slow
def test_two_ranks_compute_each_cached_stage_once_and_only_rank_zero_reports(tmp_path):
    """Rank 1 starts first and must wait for rank 0's entries (a 0.3 s compute each), not compute them."""
    outs, logs = _two_ranks(tmp_path, value=3)
    computed = (tmp_path / "computed.log").read_text().split()
    assert computed == ["prep", "0", "summary", "0", "corpus", "0"], computed
    assert outs[0]["prep"] == outs[1]["prep"] == [0, 3, 6, 9, 12]
    assert outs[0]["summary"] == outs[1]["summary"] == {"value": 3, "nested": {"list": [1, 2]}}
    assert (outs[0]["first"], outs[1]["first"]) == (True, False)
    assert json.loads((tmp_path / "report.json").read_text()) == {"rank": 0}  # rank 1 ended at the stage
    run_dir = next((tmp_path / "toy" / "smoke").iterdir())
    assert json.loads((run_dir / "wall_time_s.json").read_text()).keys() == {"prep", "report"}
    assert "[rank 1/2] " in logs[1] and "stage report is rank 0's" in logs[1]
    assert "[rank 0/2] " in logs[0] and "rank 0's" not in logs[0]


@pytest.mark.slow
def test_fresh_on_two_ranks_never_reads_the_cache_rank_zero_clears(tmp_path):
    """An earlier run left value 1 in the cache; a --fresh two-rank run with value 2 must give 2 on
    both ranks, although rank 1 starts a second before rank 0 removes the old entries."""
    stale = Run("toy", "smoke", {"k": 1}, [0], root=tmp_path)  # the worker's run folder, in this process
    stale.cached("prep", {"v": 1}, lambda: {"x": np.arange(5)})
    stale.cached_json("summary", {"v": 1}, lambda: {"value": 1})
    outs, _ = _two_ranks(tmp_path, value=2, fresh=True)
    assert outs[0]["prep"] == outs[1]["prep"] == [0, 2, 4, 6, 8]
    assert outs[1]["summary"]["value"] == 2
    assert (tmp_path / "computed.log").read_text().split() == ["prep", "0", "summary", "0", "corpus", "0"]


def test_a_rank_waiting_for_a_rank_zero_that_never_writes_stops_with_the_reason(tmp_path, env):
    env(RANK=1, WORLD_SIZE=2, SHARED_RANK_WAIT_S=0.3)
    run = Run("toy", "smoke", {"k": 1}, [0], root=tmp_path)
    assert not (run.dir / "config.yaml").exists()  # the folder's files are rank 0's
    start = time.monotonic()
    with pytest.raises(
        DistributedError, match=r"\[rank 1/2\] waited 0 s for rank 0 to compute stage prep .*every_rank"
    ):
        run.cached("prep", {"v": 1}, lambda: pytest.fail("rank 1 computed a rank-0 stage"))
    assert time.monotonic() - start < 5
    computed = run.cached("train", {"v": 1}, lambda: {"x": np.ones(2)}, every_rank=True)  # collectives inside
    assert computed["x"].tolist() == [1.0, 1.0] and not list(run.cache_dir.glob("train-*"))  # rank 0 writes
    with pytest.raises(DistributedError, match="the corpus"):
        with rank_zero_first(tmp_path / "corpus.done", "the corpus"):
            pytest.fail("rank 1 ran the block before rank 0 wrote its output")
    with pytest.raises(SystemExit) as ended:
        with run.stage("report"):
            pytest.fail("rank 1 ran the report")
    assert ended.value.code == 0


def test_rank_zero_first_refuses_a_block_that_writes_nothing_and_barriers_need_a_launch_id(tmp_path, env):
    env(RANK=0, WORLD_SIZE=2)
    with pytest.raises(DistributedError, match="ended without writing .*done"):
        with rank_zero_first(tmp_path / "done"):
            pass
    with pytest.raises(DistributedError, match="needs a launch id: run under torchrun or srun"):
        file_barrier(tmp_path, "fresh")
    env(SHARED_JOB_TOKEN="t1", SHARED_RANK_WAIT_S=0.2)
    with pytest.raises(DistributedError, match="rank 1 at barrier 'fresh'"):
        file_barrier(tmp_path, "fresh")
    (tmp_path / ".barrier-fresh-t1" / "rank1").touch()  # rank 1 arrives
    file_barrier(tmp_path, "fresh")


def test_only_rank_zero_publishes(tmp_path, env):
    from types import SimpleNamespace

    from papers.status import finish_run, publish_run
    from shared.run import PublishError

    env(RANK=1, WORLD_SIZE=2)
    args = SimpleNamespace(publish=True, force_publish=True, scale="smoke")
    run = SimpleNamespace(dir=tmp_path, results_path=lambda: tmp_path / "results.json")
    assert finish_run(run, args, tmp_path / "paper", SimpleNamespace(figures=[]), time.perf_counter()) == 0
    with pytest.raises(PublishError, match="only rank 0 publishes"):
        publish_run(tmp_path, tmp_path / "paper", "smoke", [], force=True)
    assert not (tmp_path / "paper").exists()


def test_log_lines_name_the_rank_and_bars_stay_off_elsewhere(env, monkeypatch):
    from shared import progress

    formatter = progress._RankFormatter("%(message)s")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    assert formatter.format(record) == "hello"
    env(RANK=1, WORLD_SIZE=2)
    assert formatter.format(record) == "[rank 1/2] hello"
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert not progress.bars_enabled()
    env(RANK=0)
    assert progress.bars_enabled()


def _run_rank(root: Path, rank_: int, value: int, fresh: bool = False) -> subprocess.Popen:
    """One rank of the worker in the background; its log goes to ROOT/log<rank>.txt."""
    env = {k: v for k, v in os.environ.items() if k not in RANK_VARS}
    env.update(PYTHONPATH=str(ROOT), VALUE=str(value), SHARED_RANK_WAIT_S="60", TQDM_DISABLE="1")
    env.update(RANK=str(rank_), LOCAL_RANK=str(rank_), WORLD_SIZE="2", SHARED_JOB_TOKEN=f"test-{root.name}")
    script = str(ROOT / "tests" / "workers" / "rank_stage.py")
    out = root / f"out{rank_}.json"
    cmd = [sys.executable, script, str(root), str(out), *(["--fresh"] if fresh else [])]
    with open(root / f"log{rank_}.txt", "w") as log_file:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)


def _two_ranks(root: Path, value: int, fresh: bool = False) -> tuple[list[dict], list[str]]:
    """Rank 1 runs until it reads the cache (or waits at the --fresh barrier) before rank 0 starts."""
    late = _run_rank(root, 1, value, fresh)
    deadline = time.monotonic() + 60
    while not any(mark in (root / "log1.txt").read_text() for mark in ("stage prep: start", "at barrier")):
        assert late.poll() is None and time.monotonic() < deadline, (root / "log1.txt").read_text()
        time.sleep(0.05)
    first = _run_rank(root, 0, value, fresh)
    codes = [p.wait(timeout=60) for p in (first, late)]
    logs = [(root / f"log{r}.txt").read_text() for r in (0, 1)]
    assert codes == [0, 0], "\n".join(text[-3000:] for text in logs)
    return [json.loads((root / f"out{r}.json").read_text()) for r in (0, 1)], logs
