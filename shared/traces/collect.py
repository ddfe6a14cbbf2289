"""Collect a dataset: the server under test, the tracer and the load, block by block.

Every exit path (normal, exception, SIGINT, SIGTERM, SIGHUP) unwinds one ExitStack that stops the load
and stress workers, removes the tracefs instance and the uprobes, stops the servers by process group
and deletes the temporary configuration. Completed blocks are kept, so rerunning the same command
resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from shared.io import atomic_write_json
from shared.progress import progress
from shared.traces import procs
from shared.traces.behaviours import BEHAVIOURS, DEFAULT, parse_behaviours
from shared.traces.dataset import MANIFEST, REQUESTS, build_dataset, read_parquet
from shared.traces.errors import OptionError, TraceError
from shared.traces.events import FORMATS_FILE, TASKS_FILE, decode_capture
from shared.traces.load import Load, run_load, run_stress
from shared.traces.options import check, check_all, check_load
from shared.traces.requests import cut_requests, handler_rows
from shared.traces.schedule import Block, schedule
from shared.traces.server import APACHE, PHP_FPM, Stack, check_installed
from shared.traces.tracefs import Tracer, Uprobe, tracefs_root

log = logging.getLogger(__name__)

COLLECTOR_VERSION = "2.0"
INSTANCE_PREFIX = "repro-traces-"
EVENTS = (
    "raw_syscalls/sys_enter",
    "raw_syscalls/sys_exit",
    "sched/sched_switch",
    "sched/sched_wakeup",
    "sched/sched_process_fork",
    "sched/sched_process_exit",
)
LIBAPR = "/usr/lib/x86_64-linux-gnu/libapr-1.so.0"
UPROBES = (
    # request handler: arg = r->connection (the conn_rec pointer, second field of request_rec)
    Uprobe("req_begin", APACHE, "ap_process_async_request", fetch="+8(%di):u64"),
    Uprobe("req_end", APACHE, "ap_process_async_request", ret=True),
    # connection creation on the worker thread (event MPM process_socket): arg = the socket's fd
    # (apr_socket_t's second field), then its return value, the new conn_rec
    Uprobe("conn_new", APACHE, "ap_run_create_connection", fetch="+8(%dx):s32"),
    Uprobe("conn_made", APACHE, "ap_run_create_connection", ret=True, fetch="$retval:u64"),
    # the socket's close after the lingering close (any thread): arg = fd
    Uprobe("sock_close", LIBAPR, "apr_socket_close", fetch="+8(%di):s32"),
    Uprobe("php_begin", PHP_FPM, "php_request_startup"),
    Uprobe("php_end", PHP_FPM, "php_request_shutdown"),
)
BOUNDARIES = ("auto", "uprobe", "marker")


@dataclass
class CollectOptions:
    """One collection. `requests` is per block; the total is requests x blocks."""

    out: Path
    behaviours: list[str] = field(default_factory=lambda: list(DEFAULT))
    requests: int = 1000
    rounds: int = 4
    seed: int = 0
    warmup: int = 1000
    threads: int = 1  # one wrk thread: one evenly spaced schedule (two threads drift in phase per run, see README)
    connections: int = 10
    rate: int = 400
    cpu_workers: int = 32
    queue_connections: int = 100
    buffer_kb: int = 131072
    boundaries: str = "auto"
    keep: int = 0
    nice: int = -5

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.behaviours = [b.name for b in parse_behaviours(["normal", *self.behaviours])]
        self.validate()

    def validate(self) -> None:
        """Every option in range (OptionError, a ValueError, names the first that is not); `collect`
        checks again before it touches anything, in case a field was changed after construction."""
        if self.boundaries not in BOUNDARIES:
            raise OptionError("boundaries", self.boundaries, ", ".join(BOUNDARIES), "is unknown")
        check_all(
            {"rounds": self.rounds, "seed": self.seed, "buffer_kb": self.buffer_kb, "cpu_workers": self.cpu_workers}
        )
        check("nice", self.nice)
        check_load(self.requests, self.warmup, self.threads, self.connections, self.rate)
        check(
            "queue_connections",
            self.queue_connections,
            low=max(26, self.connections + 1),
            why=f"more than MaxRequestWorkers 25 and than the normal load's {self.connections} connections",
        )
        check("keep", self.keep, high=self.requests, why=f"at most the {self.requests} traced requests per block")

    def key(self) -> str:
        """What must match for a rerun to resume an existing output folder."""
        fields = {k: v for k, v in asdict(self).items() if k != "out"}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    def blocks(self) -> list[Block]:
        return schedule(self.behaviours, self.rounds)


class Interrupted(Exception):
    """Raised inside the collector when SIGINT/SIGTERM/SIGHUP arrives, so cleanup runs."""


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn the first termination signal into Interrupted; ignore further ones while cleaning up."""
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def handler(signum, _frame):
        for s in sigs:
            signal.signal(s, signal.SIG_IGN)
        raise Interrupted(f"stopped by {signal.Signals(signum).name}")

    old = {s: signal.signal(s, handler) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def collect(opts: CollectOptions, drop_raw: bool = False) -> Path:
    """Run every block not yet captured in opts.out, then build the dataset there. Needs root.
    `drop_raw` deletes the raw pages afterwards (a shippable dataset; no resume after that)."""
    opts.validate()
    root = tracefs_root()
    check_installed()
    raw = opts.out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    _check_resume(opts, raw)
    blocks = opts.blocks()
    todo = [b for b in blocks if not (raw / b.id / "block.json").is_file()]
    log.info("%d blocks (%d to capture), %d requests each", len(blocks), len(todo), opts.requests)
    if todo:
        with signals_raise(), contextlib.ExitStack() as stack:
            _capture(opts, root, todo, stack)
    out = build_dataset(opts.out, blocks, collection=_collection_info(opts), source=_source(opts.keep))
    record_effects(out)
    if drop_raw:
        shutil.rmtree(raw)
    return out


def _source(keep: int):
    """build_dataset's source of one block's events: the decoded raw capture, cut to its middle `keep`
    requests when keep > 0 (a shippable steady-state slice: every event in that time span is kept)."""

    def source(out: Path, block: Block) -> tuple[pa.Table | None, dict]:
        raw = out / "raw" / block.id
        info = json.loads((raw / "block.json").read_text())
        if (out / "events" / f"{block.id}.parquet").is_file():
            return None, info
        table = decode_capture(raw)
        info["traced_requests"] = cut_requests(table).num_rows
        if keep:
            table, info["kept_span_ns"] = steady_slice(table, keep)
        return table, info

    return source


def steady_slice(events: pa.Table, keep: int) -> tuple[pa.Table, list[int]]:
    """The events of the time span of the middle `keep` requests (all of them, from every process),
    so a request kept has every event it had in the full capture; requests are cut again from it.
    A request whose handler lies in the span but whose connection-extended window does not loses its
    req_begin/req_end probes, so no request of the slice differs from the same request in the full cut."""
    req = cut_requests(events)
    ts = events.column("ts").to_numpy()
    if req.num_rows <= keep:
        return events, [int(ts[0]), int(ts[-1])] if len(ts) else [0, 0]
    mid = req.slice((req.num_rows - keep) // 2, keep)
    t0, t1 = int(np.min(mid.column("begin_ns").to_numpy())), int(np.max(mid.column("end_ns").to_numpy()))
    b_rows, e_rows = handler_rows(events)
    begin, end = req.column("begin_ns").to_numpy(), req.column("end_ns").to_numpy()
    straddles = ((begin < t0) | (end > t1)) & (ts[b_rows] <= t1) & (ts[e_rows] >= t0)
    keep_row = (ts >= t0) & (ts <= t1)
    keep_row[b_rows[straddles]] = keep_row[e_rows[straddles]] = False
    return events.filter(pa.array(keep_row)), [t0, t1]


def record_effects(root: Path) -> dict:
    """What each behaviour did to the requests, measured, into the manifest: per block the median
    request duration (window and handler alone); per behaviour requests, medians, slowdown against
    normal (handler medians), client latency, server time and queueing (wrk's median latency minus
    Apache's median %D time per request: the wait for a worker), request rate and lost events."""
    path = Path(root) / MANIFEST
    manifest = json.loads(path.read_text())
    req = read_parquet(Path(root) / REQUESTS)
    block_col = np.asarray(req.column("block").cast(pa.string()).to_pylist())
    dur = req.column("duration_ns").to_numpy() / 1e6
    begin = req.column("begin_ns").to_numpy()
    handler = req.column("handler_ns").to_numpy() / 1e6 if "handler_ns" in req.column_names else dur
    per: dict[str, dict] = {}
    for b in manifest["blocks"]:
        m = block_col == b["id"]
        b["duration_ms_p50"] = round(float(np.median(dur[m])), 3) if m.any() else None
        b["handler_ms_p50"] = round(float(np.median(handler[m])), 3) if m.any() else None
        begins = np.sort(begin[m])
        span = (begins[-1] - begins[0]) / 1e9 if m.sum() > 1 else 0.0
        b["traced_rps"] = round((len(begins) - 1) / span, 1) if span > 0 else None  # the rate the trace saw
        e = per.setdefault(b["behaviour"], {"mask": np.zeros(len(dur), bool), "blocks": []})
        e["mask"] |= m
        e["blocks"].append(b)

    def med(blocks: list[dict], key: str) -> float | None:
        vals = [b["load"][key] for b in blocks if b.get("load", {}).get(key) is not None]
        return round(float(np.median(vals)), 3) if vals else None

    effects = {}
    for name, e in per.items():
        m, blocks = e["mask"], e["blocks"]
        effects[name] = {
            "blocks": len(blocks),
            "requests": int(m.sum()),
            "duration_ms_p50": round(float(np.median(dur[m])), 3) if m.any() else None,
            "handler_ms_p50": round(float(np.median(handler[m])), 3) if m.any() else None,
            "rps": med(blocks, "rps"),
            "traced_rps": round(float(np.median([b["traced_rps"] for b in blocks if b.get("traced_rps")] or [0])), 1),
            "latency_ms_p50": med(blocks, "latency_ms_p50"),
            "server_ms_p50": med(blocks, "server_ms_p50"),
            "queueing_ms_p50": med(blocks, "queueing_ms_p50"),
            "connections": blocks[0].get("load", {}).get("connections"),
            "lost_events": int(sum(sum(b.get("lost_events", {}).values()) for b in blocks)),
        }
    normal = effects.get("normal", {})
    for e in effects.values():
        for key in ("handler_ms_p50", "duration_ms_p50", "server_ms_p50"):
            base = normal.get(key)
            e[f"slowdown_{key.removesuffix('_ms_p50')}"] = (
                round(e[key] / base, 2) if base and e.get(key) is not None else None
            )
    manifest["effects"] = effects
    atomic_write_json(path, manifest)
    return effects


def _capture(opts: CollectOptions, root: Path, todo: list[Block], stack: contextlib.ExitStack) -> None:
    state_path = opts.out / "raw" / "collector.json"
    work = Path(tempfile.mkdtemp(prefix=INSTANCE_PREFIX, dir="/tmp"))
    stack.callback(shutil.rmtree, work, True)
    server = Stack(work, seed=opts.seed)
    stack.callback(server.stop)
    name = f"{INSTANCE_PREFIX}{os.getpid()}"
    marker = _use_marker(opts)
    tracer = Tracer(name, EVENTS, () if marker else UPROBES, buffer_kb=opts.buffer_kb, root=root)
    stack.callback(tracer.close)
    state = {"pid": os.getpid(), "instance": str(tracer.dir), "group": tracer.group, "work": str(work), "pgids": []}

    def save_state() -> None:
        state["pgids"] = sorted(set(state["pgids"]) | set(server.pgids()))
        atomic_write_json(state_path, state)

    save_state()
    _set_autogroup_nice(opts.nice, stack)
    server.prepare()
    tracer.open()
    if marker:
        server.marker = tracer.dir / "trace_marker"
        os.chmod(server.marker, 0o222)
    for block in progress(todo, desc="blocks"):
        t0 = time.perf_counter()
        behaviour = BEHAVIOURS[block.behaviour]
        server.apply(behaviour)
        save_state()
        with contextlib.ExitStack() as block_stack:
            if behaviour.cpu_stress:
                stress = run_stress(opts.cpu_workers, work / "logs/stress-ng.log")
                block_stack.callback(procs.stop, stress)
                state["pgids"].append(stress.pid)
                save_state()
                time.sleep(1.0)
            info = _capture_block(opts, block, server, tracer)
        info["wall_s"] = round(time.perf_counter() - t0, 2)
        partial = opts.out / "raw" / f".{block.id}.partial"
        atomic_write_json(partial / "block.json", info)
        final = opts.out / "raw" / block.id
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        lost = sum(info["lost_events"].values())
        log.info(
            "block %s (%s): %d requests at %.0f req/s, latency p50 %s ms, server p50 %s ms, %s lost events, %.1f s",
            block.id, block.split, info["load"]["requests"], info["load"]["rps"], info["load"].get("latency_ms_p50"),
            info["load"].get("server_ms_p50"), lost, info["wall_s"],
        )  # fmt: skip
        if lost:
            log.warning("block %s lost %d events: it is flagged in the manifest", block.id, lost)


AUTOGROUP = Path("/proc/self/autogroup")


def _set_autogroup_nice(nice: int, stack: contextlib.ExitStack) -> None:
    """Run this session's scheduler autogroup (the servers and stress workers are in it, see procs.spawn)
    at `nice` until cleanup, then restore it. Other sessions on the machine (other users' jobs) then take
    less CPU from the server under test: on a shared 2-core VM their load came in phases of tens of
    seconds that slowed whole blocks (handler median 0.6 to 1.4 ms between normal blocks) and moved
    the normal-vs-normal check. A dedicated server, as in the paper, has no such neighbours."""
    try:
        old = int(AUTOGROUP.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        log.warning("no scheduler autogroups here (%s); --nice has no effect", AUTOGROUP)
        return
    try:
        AUTOGROUP.write_text(str(nice))
    except OSError as exc:
        log.warning("could not set the autogroup nice to %d: %s", nice, exc)
        return
    stack.callback(_restore_autogroup, old)


def _restore_autogroup(old: int) -> None:
    try:
        AUTOGROUP.write_text(str(old))
    except OSError as exc:
        log.warning("could not restore the autogroup nice to %d: %s", old, exc)


def _capture_block(opts: CollectOptions, block: Block, server: Stack, tracer: Tracer) -> dict:
    logs = server.work / "logs"
    access = logs / "apache-access.log"
    behaviour = BEHAVIOURS[block.behaviour]
    connections = opts.queue_connections if behaviour.many_connections else opts.connections
    url = server.url_for(behaviour)
    burst = behaviour.many_connections
    load = Load(opts.requests, opts.threads, connections, opts.rate, burst=burst)
    warmup = None
    if opts.warmup:  # untraced: caches, OPcache, php-fpm children and the stress workers reach steady state
        warm = Load(opts.warmup, opts.threads, connections, opts.rate, burst=burst)
        warmup = run_load(warm, url, logs / "wrk.log", access)
    tasks = server.tasks()
    tracer.set_pids(tasks)
    tracer.start()
    try:
        stats = run_load(load, url, logs / "wrk.log", access)
    finally:
        tracer.stop()
    tasks.update(server.tasks())
    partial = opts.out / "raw" / f".{block.id}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    lost = tracer.drain(partial)
    (partial / FORMATS_FILE).write_text(json.dumps(tracer.formats(), indent=1))
    (partial / TASKS_FILE).write_text(json.dumps({str(k): list(v) for k, v in sorted(tasks.items())}))
    return {
        **asdict(block),
        "id": block.id,
        "load": {
            **stats,
            "connections": connections,
            "burst": burst,
            "https": behaviour.https,
            "target_rps": opts.rate,
        },  # noqa: E501
        "warmup_load": warmup,
        "cpu_workers": opts.cpu_workers if behaviour.cpu_stress else 0,
        "lost_events": lost,
        "flagged": bool(sum(lost.values())),
        "captured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _use_marker(opts: CollectOptions) -> bool:
    if opts.boundaries != "auto":
        return opts.boundaries == "marker"
    try:
        for probe in UPROBES:
            probe.definition("check")
    except TraceError as exc:
        log.warning("uprobes unavailable (%s); request boundaries come from trace_marker writes", exc)
        return True
    return False


def _check_resume(opts: CollectOptions, raw: Path) -> None:
    path = raw / "options.json"
    mine = {"key": opts.key(), **{k: v for k, v in asdict(opts).items() if k != "out"}}
    if path.is_file():
        theirs = json.loads(path.read_text())
        if theirs.get("key") != mine["key"]:
            diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v and k != "key"}
            raise TraceError(f"{opts.out} holds a collection with other options {diff}; use another --out")
    else:
        atomic_write_json(path, mine)


def _collection_info(opts: CollectOptions) -> dict:
    return {
        "collector_version": COLLECTOR_VERSION,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items() if k != "out"},
        "events": list(EVENTS),
        "uprobes": [f"{p.name}: {p.binary}:{p.symbol}{' (return)' if p.ret else ''}" for p in UPROBES],
        "boundaries": "trace_marker" if _use_marker(opts) else "uprobes",
    }
