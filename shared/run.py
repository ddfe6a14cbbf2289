"""Run folders: runs/<paper>/<scale>/<run-id>/ with config, environment, timings, metrics, caches.

The run id defaults to a hash of the resolved config and seeds, so running the same command again
lands in the same folder and every cached stage is read back instead of recomputed (resume).
`publish` copies results.json and figures into papers/<name>/results/<scale>/, the committed copy; it
refuses a degraded run (see `publish_refusals`) unless forced.

Launched as several ranks (torchrun, srun), every rank runs the same stages: rank 0 writes the folder's
files and computes cached entries, which the others wait for and read; the "report" stage is rank 0's
alone (shared.distributed says how).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from shared.distributed import DistributedError, file_barrier, is_rank_zero, rank_tag, wait_for
from shared.environment import REPO_ROOT, describe
from shared.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from shared.progress import get_logger
from shared.results import Results, ResultsError, load

log = get_logger(__name__)

CacheValue = dict[str, Any]
RANK_ZERO_STAGES = ("report",)  # every other rank ends on entering one: the report and --publish are rank 0's


class PublishError(RuntimeError):
    """A run that must not replace the committed results (degraded, from a dirty tree, lost targets)."""


def content_hash(obj: Any, length: int = 12) -> str:
    """A short, stable hash of anything JSON can encode (dict keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


class Run:
    latest: Run | None = None  # the run folder of this process, for the interrupt message (shared.cli)

    def __init__(
        self,
        paper: str,
        scale: str,
        config: dict[str, Any],
        seeds: list[int],
        root: str | Path = REPO_ROOT / "runs",
        run_id: str | None = None,
        fresh: bool = False,
    ) -> None:
        self.paper, self.scale, self.config, self.seeds = paper, scale, config, list(seeds)
        self.run_id = run_id or content_hash({"config": config, "seeds": self.seeds})
        self.dir = Path(root) / paper / scale / self.run_id
        self.cache_dir = self.dir / "cache"
        self.writer = is_rank_zero()  # the one rank that writes the folder's files
        if fresh and self.writer and self.cache_dir.exists():
            shutil.rmtree(self.cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if fresh:
            file_barrier(self.dir, "fresh")  # no rank reads a cache entry rank 0 is about to remove
        self.wall_time_s: dict[str, float] = self._read_times()
        self.degraded: list[str] = []
        self._replayed_s = 0.0
        self.environment = describe()
        if self.writer:
            atomic_write_text(self.dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
            atomic_write_json(self.dir / "seeds.json", self.seeds)
            atomic_write_json(self.dir / "environment.json", self.environment)
        log.info("run folder %s", self.dir)
        Run.latest = self

    def mark_degraded(self, reason: str) -> None:
        """Record that this run is not the configured experiment (it fell back to other data, say): its
        results carry the reason and `publish` refuses them unless forced."""
        log.warning("degraded run: %s", reason)
        self.degraded.append(reason)

    def _read_times(self) -> dict[str, float]:
        path = self.dir / "wall_time_s.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage; the wall time is saved as soon as it ends. Entries it reads back from the cache count
        with the time they took to compute, so a resumed run reports what the whole stage costs.

        On a rank other than 0, entering a stage of RANK_ZERO_STAGES ends the process (exit status 0)."""
        if name in RANK_ZERO_STAGES and not self.writer:
            log.info("stage %s is rank 0's: this rank's part of the run is done", name)
            raise SystemExit(0)
        log.info("stage %s: start", name)
        self._replayed_s = 0.0
        start = time.perf_counter()
        yield
        elapsed = time.perf_counter() - start + self._replayed_s
        self.wall_time_s[name] = round(elapsed, 3)
        if self.writer:
            atomic_write_json(self.dir / "wall_time_s.json", self.wall_time_s)
        replayed = (
            f" ({self._replayed_s:.1f} s of it computed earlier, read from the cache)" if self._replayed_s else ""
        )
        log.info("stage %s: done in %.1f s%s", name, elapsed, replayed)

    def log_metrics(self, **values: Any) -> None:
        """Append one JSON line to metrics.jsonl (rank 0's; the others' lines would repeat or interleave)."""
        if not self.writer:
            return
        line = json.dumps({"time": round(time.time(), 3), **values}, default=float)
        with open(self.dir / "metrics.jsonl", "a") as fh:
            fh.write(line + "\n")

    def cached(self, stage: str, key: Any, compute: Callable[[], CacheValue], every_rank: bool = False) -> CacheValue:
        """Return `compute()`, stored under cache/<stage>-<hash(key)>.npz and read back on a rerun.

        Values are arrays or scalars (int, float, str); the file is written atomically, so an
        interrupted run never leaves a cache entry that looks complete. With several ranks, rank 0
        computes and the others wait for its file and read it; `every_rank`: every rank computes (the
        compute has collectives, e.g. DDP training) and rank 0 writes.
        """
        path = self._cache_path(stage, key)
        value = self.lookup(stage, key)
        if value is not None:
            self._replayed_s += _compute_seconds(path)
            return value
        if not self.writer and not every_rank:
            self._wait(path, stage)
            return self.cached(stage, key, compute, every_rank)
        start = time.perf_counter()
        value = compute()
        if self.writer:
            _record_compute_seconds(path, time.perf_counter() - start)  # before the entry: peers read both
            atomic_write_bytes(path, _npz_bytes(value))
        return value

    def _wait(self, path: Path, stage: str) -> None:
        """A rank other than 0: wait for rank 0 to write the cache entry at `path`."""
        hint = f" (stage {stage}: if it trains with DDP inside, pass every_rank=True to Run.cached)"
        wait_for(path, f"rank 0 to compute stage {stage}", hint=hint)

    def lookup(self, stage: str, key: Any) -> CacheValue | None:
        """The cached value of (stage, key), or None when it was never computed."""
        path = self._cache_path(stage, key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: (data[k].item() if data[k].ndim == 0 else data[k]) for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            self._drop_corrupt(path, exc)
            return None

    def cached_json(self, stage: str, key: Any, compute: Callable[[], dict], every_rank: bool = False) -> dict:
        """As `cached`, for a nested JSON-able result (a summary rather than arrays)."""
        path = self.cache_dir / f"{stage}-{content_hash(key)}.json"
        cached = self.lookup_json(stage, key)
        if cached is not None:
            self._replayed_s += _compute_seconds(path)
            return cached
        if not self.writer and not every_rank:
            self._wait(path, stage)
            return self.cached_json(stage, key, compute, every_rank)
        start = time.perf_counter()
        value = compute()
        if not self.writer:
            return json.loads(json.dumps(value))  # the same types a rerun reads back
        _record_compute_seconds(path, time.perf_counter() - start)
        atomic_write_json(path, value)
        return json.loads(path.read_text())  # the same types a rerun reads back

    def lookup_json(self, stage: str, key: Any) -> dict | None:
        """The cached_json value of (stage, key), or None when it was never computed."""
        path = self.cache_dir / f"{stage}-{content_hash(key)}.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._drop_corrupt(path, exc)
            return None

    def _drop_corrupt(self, path: Path, exc: BaseException) -> None:
        """A cache file that cannot be read (truncated, not written by us): say which, remove it, recompute.
        Only rank 0 removes and recomputes; another rank stops, since it would wait for a file that exists."""
        if not self.writer:
            raise DistributedError(f"{rank_tag()}cache file {path} cannot be read ({type(exc).__name__}: {exc})")
        log.error("corrupt cache file %s (%s: %s): removed, recomputing it", path, type(exc).__name__, exc)
        path.unlink(missing_ok=True)

    def _cache_path(self, stage: str, key: Any) -> Path:
        return self.cache_dir / f"{stage}-{content_hash(key)}.npz"

    def results_path(self) -> Path:
        return self.dir / "results.json"

    def new_results(self, command: str, targets: list, **fields: Any) -> Results:
        """A Results for this run: paper, scale, seeds, machine, commit and time filled in."""
        from datetime import UTC, datetime

        return Results(
            paper=self.paper,
            scale=self.scale,
            command=command,
            seeds=list(self.seeds),
            machine=self.environment["machine"],
            created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            git_commit=self.environment["git_commit"],
            targets=targets,
            degraded=list(self.degraded),
            **fields,
        )

    def write_results(self, results: Results) -> Path:
        """results.json (rank 0's: the other ranks end before the report stage, see RANK_ZERO_STAGES)."""
        results.wall_time_s = dict(self.wall_time_s)
        if not self.writer:
            raise DistributedError(f"{rank_tag()}results are written by rank 0 only")
        return results.write(self.results_path())


def _compute_seconds(path: Path) -> float:
    """How long the cache entry at `path` took to compute (0 for entries written before this was kept)."""
    try:
        return float(path.with_name(path.name + ".seconds").read_text())
    except (OSError, ValueError):
        return 0.0


def _record_compute_seconds(path: Path, seconds: float) -> None:
    atomic_write_text(path.with_name(path.name + ".seconds"), f"{seconds:.3f}\n")


def _npz_bytes(value: CacheValue) -> bytes:
    import io

    arrays = {k: np.asarray(v) for k, v in value.items()}
    for k, arr in arrays.items():
        if arr.dtype == object:
            raise TypeError(f"cache value {k!r} is not an array or scalar")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def publish_refusals(results: Results, committed: Results | None) -> list[str]:
    """Why `results` must not replace the committed ones: a degraded run, a tree whose code is not a
    commit, or targets the committed results measured that this run left "not run". Empty: publishable."""
    reasons = [f"degraded: {r}" for r in results.degraded]
    commit = results.git_commit
    if commit == "unknown" or commit.endswith("+dirty"):
        reasons.append(f"the code is not a commit (git_commit {commit!r}): commit or stash the changes first")
    if committed is not None:
        now = {t.name: t.verdict for t in results.targets}
        lost = [t.name for t in committed.targets if t.verdict != "not run" and now.get(t.name, "not run") == "not run"]
        if lost:
            reasons.append(f"{len(lost)} target(s) the committed results measured are not run here: {', '.join(lost)}")
    return reasons


def publish(run_dir: str | Path, paper_dir: str | Path, scale: str, figures: list[str], force: bool = False) -> Path:
    """Copy results.json and the named figures of a run into <paper>/results/<scale>/; a run with
    `publish_refusals` raises PublishError (nothing copied) unless `force`."""
    run_dir, dest = Path(run_dir), Path(paper_dir) / "results" / scale
    results = load(run_dir / "results.json")
    try:
        committed = load(dest / "results.json") if (dest / "results.json").is_file() else None
    except ResultsError:
        committed = None  # an unreadable committed copy is replaced
    reasons = publish_refusals(results, committed)
    if reasons and not force:
        raise PublishError("; ".join(reasons))
    if reasons:
        log.warning("publishing despite: %s", "; ".join(reasons))
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest / "results.json", (run_dir / "results.json").read_bytes())
    for name in figures:
        atomic_write_bytes(dest / name, (run_dir / name).read_bytes())
    log.info("published %s -> %s", run_dir, dest)
    return dest
