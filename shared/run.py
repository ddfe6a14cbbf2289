"""Run folders: runs/<paper>/<scale>/<run-id>/ with config, environment, timings, metrics, caches.

The run id defaults to a hash of the resolved config and seeds, so running the same command again
lands in the same folder and every cached stage is read back instead of recomputed (resume).
`publish` copies results.json and figures into papers/<name>/results/<scale>/, the committed copy.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from shared.environment import REPO_ROOT, describe
from shared.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from shared.progress import get_logger
from shared.results import Results

log = get_logger(__name__)

CacheValue = dict[str, Any]


def content_hash(obj: Any, length: int = 12) -> str:
    """A short, stable hash of anything JSON can encode (dict keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


class Run:
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
        if fresh and self.cache_dir.exists():
            shutil.rmtree(self.cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.wall_time_s: dict[str, float] = self._read_times()
        atomic_write_text(self.dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        atomic_write_json(self.dir / "seeds.json", self.seeds)
        self.environment = describe()
        atomic_write_json(self.dir / "environment.json", self.environment)
        log.info("run folder %s", self.dir)

    def _read_times(self) -> dict[str, float]:
        path = self.dir / "wall_time_s.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage; the wall time is saved as soon as it ends."""
        log.info("stage %s: start", name)
        start = time.perf_counter()
        yield
        elapsed = time.perf_counter() - start
        self.wall_time_s[name] = round(elapsed, 3)
        atomic_write_json(self.dir / "wall_time_s.json", self.wall_time_s)
        log.info("stage %s: done in %.1f s", name, elapsed)

    def log_metrics(self, **values: Any) -> None:
        """Append one JSON line to metrics.jsonl."""
        line = json.dumps({"time": round(time.time(), 3), **values}, default=float)
        with open(self.dir / "metrics.jsonl", "a") as fh:
            fh.write(line + "\n")

    def cached(self, stage: str, key: Any, compute: Callable[[], CacheValue]) -> CacheValue:
        """Return `compute()`, stored under cache/<stage>-<hash(key)>.npz and read back on a rerun.

        Values are arrays or scalars (int, float, str); the file is written atomically, so an
        interrupted run never leaves a cache entry that looks complete.
        """
        value = self.lookup(stage, key)
        if value is None:
            value = compute()
            atomic_write_bytes(self._cache_path(stage, key), _npz_bytes(value))
        return value

    def lookup(self, stage: str, key: Any) -> CacheValue | None:
        """The cached value of (stage, key), or None when it was never computed."""
        path = self._cache_path(stage, key)
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            return {k: (data[k].item() if data[k].ndim == 0 else data[k]) for k in data.files}

    def cached_json(self, stage: str, key: Any, compute: Callable[[], dict]) -> dict:
        """As `cached`, for a nested JSON-able result (a summary rather than arrays)."""
        path = self.cache_dir / f"{stage}-{content_hash(key)}.json"
        if path.is_file():
            return json.loads(path.read_text())
        value = compute()
        atomic_write_json(path, value)
        return json.loads(path.read_text())  # the same types a rerun reads back

    def lookup_json(self, stage: str, key: Any) -> dict | None:
        """The cached_json value of (stage, key), or None when it was never computed."""
        path = self.cache_dir / f"{stage}-{content_hash(key)}.json"
        return json.loads(path.read_text()) if path.is_file() else None

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
            **fields,
        )

    def write_results(self, results: Results) -> Path:
        results.wall_time_s = dict(self.wall_time_s)
        return results.write(self.results_path())


def _npz_bytes(value: CacheValue) -> bytes:
    import io

    arrays = {k: np.asarray(v) for k, v in value.items()}
    for k, arr in arrays.items():
        if arr.dtype == object:
            raise TypeError(f"cache value {k!r} is not an array or scalar")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def publish(run_dir: str | Path, paper_dir: str | Path, scale: str, figures: list[str]) -> Path:
    """Copy results.json and the named figures of a run into <paper>/results/<scale>/."""
    run_dir, dest = Path(run_dir), Path(paper_dir) / "results" / scale
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest / "results.json", (run_dir / "results.json").read_bytes())
    for name in figures:
        atomic_write_bytes(dest / name, (run_dir / name).read_bytes())
    log.info("published %s -> %s", run_dir, dest)
    return dest
