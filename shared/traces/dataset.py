"""A trace dataset on disk: per-block events tables, one requests table and a manifest.

    <dir>/manifest.json            behaviours, splits, kernel, host, collector, counts, checksums
    <dir>/requests.parquet         one row per request: block, behaviour, split, tid, window, length
    <dir>/events/<block>.parquet   the time-ordered events of one capture block (see events.py)

Requests point into their block's events table (row_begin, row_end), so a request's global-mode
sequence is a slice, and no event is stored twice.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shared.environment import cpu_model, git_commit
from shared.io import atomic_write_bytes, atomic_write_json
from shared.progress import progress
from shared.traces.cutting import MODES, RULES, BlockCut, cut_block
from shared.traces.errors import ManifestError, TraceError
from shared.traces.events import decode_capture, equals
from shared.traces.requests import cut_requests
from shared.traces.schedule import Block, splits_of

MANIFEST = "manifest.json"
REQUESTS = "requests.parquet"
EVENTS_DIR = "events"
FORMAT_VERSION = 1
SEQUENCE_FIELDS = ("name", "entry", "ts", "comm", "pid", "tid", "ret")
HOW = (
    "collected with `python -m shared.traces collect` (shared/traces/collect.py): Apache httpd event MPM -> "
    "php-fpm -> MariaDB on loopback, wrk load, a private tracefs instance with raw_syscalls and sched "
    "events filtered to the server's tasks, request boundaries from uprobes on ap_process_async_request"
)


def write_parquet(table: pa.Table, path: Path) -> None:
    """zstd-compressed Parquet, written atomically; timestamps delta-encoded (they only grow)."""
    sink = io.BytesIO()
    delta = [c for c in ("ts", "begin_ns", "end_ns", "row_begin", "row_end") if c in table.column_names]
    pq.write_table(
        table, sink, compression="zstd", compression_level=9,
        use_dictionary=[c for c in table.column_names if c not in delta],
        column_encoding={c: "DELTA_BINARY_PACKED" for c in delta},
    )  # fmt: skip
    atomic_write_bytes(path, sink.getvalue())


def read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except FileNotFoundError as exc:
        raise TraceError(f"{path}: missing from the dataset") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise TraceError(f"{path}: not a readable Parquet file ({exc})") from exc


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- building -----------------------------------------------------------------------------------
def _raw_block(out: Path, block: Block) -> tuple[pa.Table | None, dict]:
    raw = out / "raw" / block.id
    info = json.loads((raw / "block.json").read_text())
    target = out / EVENTS_DIR / f"{block.id}.parquet"
    return (None if target.is_file() else decode_capture(raw)), info


def build_dataset(
    out: Path,
    blocks: list[Block],
    collection: dict,
    source: Callable[[Path, Block], tuple[pa.Table | None, dict]] = _raw_block,
    how: str = HOW,
    skip: int = 0,
) -> Path:
    """Write each block's events (from `source`, by default the raw captures under out/raw) to
    out/events, cut requests (dropping the first `skip` of each block), write the manifest."""
    out = Path(out)
    parts, block_info = [], []
    for block in progress(blocks, desc="decode"):
        table, info = source(out, block)
        target = out / EVENTS_DIR / f"{block.id}.parquet"
        if table is not None:
            write_parquet(table, target)
        events = read_parquet(target)
        req = cut_requests(events)
        req = req.slice(min(skip, req.num_rows))
        n = req.num_rows
        req = req.add_column(0, "block", pa.array([block.id] * n, pa.string()))
        req = req.add_column(1, "behaviour", pa.array([block.behaviour] * n, pa.string()))
        req = req.add_column(2, "split", pa.array([block.split] * n, pa.string()))
        parts.append(req)
        info.update(events=events.num_rows, requests=n)
        block_info.append(info)
    requests = pa.concat_tables(parts)
    for col in ("block", "behaviour", "split"):
        i = requests.column_names.index(col)
        requests = requests.set_column(i, col, pc.dictionary_encode(requests.column(col)))
    write_parquet(requests, out / REQUESTS)
    manifest = {
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "how": how,
        "collection": collection,
        "host": {
            "kernel": platform.release(),
            "machine": platform.machine(),
            "cpu": cpu_model(),
            "cores": __import__("os").cpu_count(),
            "os": _os_release(),
            "packages": _package_versions(),
        },
        "code_commit": git_commit(),
        "splits": _split_counts(requests, blocks),
        "blocks": block_info,
        "flagged_blocks": [b["id"] for b in block_info if b.get("flagged")],
    }
    files = [out / REQUESTS] + [out / EVENTS_DIR / f"{b.id}.parquet" for b in blocks]
    manifest["files"] = {str(f.relative_to(out)): {"sha256": sha256(f), "bytes": f.stat().st_size} for f in files}
    atomic_write_json(out / MANIFEST, manifest)
    return out


def _split_counts(requests: pa.Table, blocks: list[Block]) -> dict:
    split = requests.column("split").to_pylist()
    counts = {s: split.count(s) for s in set(split)}
    return {
        s: {"requests": counts.get(s, 0), "blocks": [b.id for b in blocks if b.split == s]} for s in splits_of(blocks)
    }


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def _package_versions() -> dict[str, str]:
    import subprocess

    out = {}
    for pkg in ("apache2", "php8.2-fpm", "mariadb-server", "wrk", "stress-ng"):
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
        out[pkg] = proc.stdout.strip() if proc.returncode == 0 else "unknown"
    return out


# -- loading ------------------------------------------------------------------------------------
@dataclass
class SplitStats:
    split: str
    requests: int
    length_mean: float
    length_sd: float
    duration_ms_mean: float
    duration_ms_sd: float


def _expect(path: Path, where: str, value: object, typ: type | tuple[type, ...], what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, typ):
        got = "missing" if value is _MISSING else f"of type {type(value).__name__}"
        raise ManifestError(f"{path}: manifest key {where} is {got}; expected {what} ({MANIFEST_HINT})")


_MISSING = object()
MANIFEST_HINT = "manifests are written by python -m shared.traces collect or ctf"


def check_manifest(path: Path, manifest: object) -> None:
    """The keys and types every reader relies on, and an events file per block; else ManifestError
    naming the manifest and the first key that is missing or of the wrong type."""
    _expect(path, "(the top level)", manifest, dict, "a JSON object")
    assert isinstance(manifest, dict)
    get = manifest.get
    _expect(path, "'created'", get("created", _MISSING), str, "a time string")
    host = get("host", _MISSING)
    _expect(path, "'host'", host, dict, "an object with the kernel and cores")
    _expect(path, "'host.kernel'", host.get("kernel", _MISSING), str, "the kernel release")
    splits = get("splits", _MISSING)
    _expect(path, "'splits'", splits, dict, "an object of split name -> {requests, blocks}")
    if not splits:
        raise ManifestError(f"{path}: manifest key 'splits' is empty; expected at least the train split")
    for name, split in splits.items():
        _expect(path, f"'splits.{name}'", split, dict, "an object with requests and blocks")
        _expect(path, f"'splits.{name}.requests'", split.get("requests", _MISSING), int, "a request count")
        _expect(path, f"'splits.{name}.blocks'", split.get("blocks", _MISSING), list, "a list of block ids")
    blocks = get("blocks", _MISSING)
    _expect(path, "'blocks'", blocks, list, "a list of capture blocks")
    for i, block in enumerate(blocks):
        _expect(path, f"'blocks[{i}]'", block, dict, "an object with id, behaviour and split")
        for key in ("id", "behaviour", "split"):
            _expect(path, f"'blocks[{i}].{key}'", block.get(key, _MISSING), str, "a string")
        if block["split"] not in splits:
            raise ManifestError(
                f"{path}: manifest key 'blocks[{i}].split' is {block['split']!r}, not one of 'splits' "
                f"({', '.join(splits)})"
            )
        events = path.parent / EVENTS_DIR / f"{block['id']}.parquet"
        if not events.is_file():
            raise ManifestError(f"{path}: block {block['id']!r} (manifest key 'blocks[{i}]') has no {events}")
    files = get("files", _MISSING)
    _expect(path, "'files'", files, dict, "an object of file -> {sha256, bytes}")
    _expect(path, f"'files.{REQUESTS}'", files.get(REQUESTS, _MISSING), dict, "the requests table's sha256, bytes")
    for rel, meta in files.items():
        _expect(path, f"'files.{rel}'", meta, dict, "an object with sha256 and bytes")
        _expect(path, f"'files.{rel}.sha256'", meta.get("sha256", _MISSING), str, "a hex digest")
        _expect(path, f"'files.{rel}.bytes'", meta.get("bytes", _MISSING), int, "a size in bytes")


class TraceDataset:
    """A collected dataset: requests per split, and each request's event sequence."""

    def __init__(self, root: str | Path, verify: bool = True):
        self.root = Path(root)
        path = self.root / MANIFEST
        if not self.root.is_dir():
            raise TraceError(f"{self.root}: no such dataset folder (a trace dataset folder holds {MANIFEST})")
        if not path.is_file():
            raise TraceError(f"{path}: no manifest; a trace dataset folder holds {MANIFEST}, {REQUESTS}, {EVENTS_DIR}/")
        try:
            self.manifest = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{path}: not valid JSON ({exc})") from exc
        check_manifest(path, self.manifest)
        if verify:
            self.verify()
        self.requests = read_parquet(self.root / REQUESTS)

    def verify(self) -> None:
        """Every file the manifest lists exists with its recorded size and checksum."""
        for rel, meta in self.manifest.get("files", {}).items():
            f = self.root / rel
            if not f.is_file():
                raise TraceError(f"{f}: listed in the manifest but missing")
            if f.stat().st_size != meta["bytes"] or sha256(f) != meta["sha256"]:
                raise TraceError(f"{f}: checksum differs from the manifest (corrupt or modified)")

    @property
    def splits(self) -> list[str]:
        return list(self.manifest["splits"])

    def split(self, name: str) -> pa.Table:
        if name not in self.manifest["splits"]:
            raise TraceError(f"unknown split {name!r}; valid: {', '.join(self.splits)}")
        return self.requests.filter(equals(self.requests.column("split"), name))

    @functools.lru_cache(maxsize=8)  # noqa: B019 - a dataset object lives as long as its user
    def events(self, block: str) -> pa.Table:
        return read_parquet(self.root / EVENTS_DIR / f"{block}.parquet")

    @functools.lru_cache(maxsize=8)  # noqa: B019
    def _columns(self, block: str, fields: tuple[str, ...]) -> dict[str, np.ndarray]:
        ev = self.events(block)
        cols = {"_syscall": equals(ev.column("kind"), "syscall")}
        for f in fields:
            col = ev.column(f)
            if pa.types.is_dictionary(col.type):
                cols[f] = np.asarray(pc.cast(col, pa.string()).to_numpy(zero_copy_only=False))
            else:
                cols[f] = col.to_numpy(zero_copy_only=False)
        return cols

    @functools.lru_cache(maxsize=8)  # noqa: B019
    def cut(self, block: str) -> tuple[BlockCut, dict[int, int]]:
        """The block's causal links (shared/traces/cutting.py), and row_begin -> its index there."""
        req = self.requests.filter(equals(self.requests.column("block"), block))
        row_begin = req.column("row_begin").to_numpy()
        cut = cut_block(self.events(block), row_begin, req.column("row_end").to_numpy(), req.column("tid").to_numpy())
        return cut, {int(r): i for i, r in enumerate(row_begin)}

    def sequences(self, split: str, mode: str = "global", fields: tuple[str, ...] = SEQUENCE_FIELDS) -> Iterator[dict]:
        """Each request of `split` as {field: array over its syscall events, 'duration_ns': int}, cut by
        `mode` (global: the paper's window, thread: the worker alone, causal: worker + its PHP-FPM child +
        MariaDB, see shared/traces/cutting.py)."""
        if mode not in MODES:
            raise TraceError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
        req = self.split(split).select(["block", "row_begin", "row_end", "duration_ns"]).to_pydict()
        for i in range(len(req["row_begin"])):
            block, lo, hi = req["block"][i], req["row_begin"][i], req["row_end"][i]
            cols = self._columns(block, tuple(fields))
            if mode == "global":
                rows = np.arange(lo + 1, hi)[cols["_syscall"][lo + 1 : hi]]
            else:
                cut, index = self.cut(block)
                rows = cut.rows(index[lo], mode)
            seq = {f: cols[f][rows] for f in fields}
            seq["duration_ns"] = req["duration_ns"][i]
            yield seq

    def links(self, split: str) -> dict[str, int]:
        """How the causal mode linked `split`'s requests to their PHP window: requests per rule (RULES)."""
        out = dict.fromkeys(RULES, 0)
        req = self.split(split).select(["block", "row_begin"]).to_pydict()
        for block in dict.fromkeys(req["block"]):
            cut, index = self.cut(block)
            rows = [index[r] for b, r in zip(req["block"], req["row_begin"], strict=True) if b == block]
            for r in cut.rule[rows]:
                out[RULES[r]] += 1
        return out

    def stats(self, mode: str = "global") -> list[SplitStats]:
        """The paper's dataset table: requests, length mean +- sd (syscall events), duration mean +- sd."""
        rows = []
        for split in self.splits:
            req = self.split(split)
            if mode == "global":
                length = req.column("length").to_numpy().astype(float)
            else:
                length = np.array([len(s["name"]) for s in self.sequences(split, mode, ("name",))], dtype=float)
            dur = req.column("duration_ns").to_numpy() / 1e6
            rows.append(SplitStats(split, req.num_rows, *_ms(length), *_ms(dur)))
        return rows


def _ms(x: np.ndarray) -> tuple[float, float]:
    return (float(x.mean()), float(x.std())) if len(x) else (float("nan"), float("nan"))


def load_dataset(root: str | Path, verify: bool = True) -> TraceDataset:
    return TraceDataset(root, verify=verify)
