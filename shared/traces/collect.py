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

from shared.io import atomic_write_json
from shared.progress import progress
from shared.traces import procs
from shared.traces.behaviours import BEHAVIOURS, parse_behaviours
from shared.traces.dataset import build_dataset
from shared.traces.errors import OptionError, TraceError
from shared.traces.events import FORMATS_FILE, TASKS_FILE
from shared.traces.load import Load, run_load, run_stress
from shared.traces.options import check_all, check_load
from shared.traces.schedule import Block, schedule
from shared.traces.server import APACHE, PHP_FPM, Stack, check_installed
from shared.traces.tracefs import Tracer, Uprobe, tracefs_root

log = logging.getLogger(__name__)

COLLECTOR_VERSION = "1.0"
INSTANCE_PREFIX = "repro-traces-"
EVENTS = (
    "raw_syscalls/sys_enter",
    "raw_syscalls/sys_exit",
    "sched/sched_switch",
    "sched/sched_wakeup",
    "sched/sched_process_fork",
    "sched/sched_process_exit",
)
UPROBES = (
    Uprobe("req_begin", APACHE, "ap_process_async_request"),
    Uprobe("req_end", APACHE, "ap_process_async_request", ret=True),
    Uprobe("php_begin", PHP_FPM, "php_request_startup"),
    Uprobe("php_end", PHP_FPM, "php_request_shutdown"),
)
BOUNDARIES = ("auto", "uprobe", "marker")


@dataclass
class CollectOptions:
    """One collection. `requests` is per block; the total is requests x blocks."""

    out: Path
    behaviours: list[str] = field(default_factory=lambda: list(BEHAVIOURS))
    requests: int = 150
    rounds: int = 4
    seed: int = 0
    warmup: int = 200
    threads: int = 2
    connections: int = 10
    delay_ms: int = 10
    buffer_kb: int = 131072
    boundaries: str = "auto"

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.behaviours = [b.name for b in parse_behaviours(["normal", *self.behaviours])]
        self.validate()

    def validate(self) -> None:
        """Every option in range (OptionError, a ValueError, names the first that is not); `collect`
        checks again before it touches anything, in case a field was changed after construction."""
        if self.boundaries not in BOUNDARIES:
            raise OptionError("boundaries", self.boundaries, ", ".join(BOUNDARIES), "is unknown")
        check_all({"rounds": self.rounds, "seed": self.seed, "buffer_kb": self.buffer_kb})
        check_load(self.requests, self.warmup, self.threads, self.connections, self.delay_ms)

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
    out = build_dataset(opts.out, blocks, collection=_collection_info(opts))
    if drop_raw:
        shutil.rmtree(raw)
    return out


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
                stress = run_stress(os.cpu_count() or 1, work / "logs/stress-ng.log")
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
            "block %s (%s): %d requests at %.0f req/s, %s lost events, %.1f s",
            block.id, block.split, info["load"]["requests"], info["load"]["rps"], lost, info["wall_s"],
        )  # fmt: skip
        if lost:
            log.warning("block %s lost %d events: it is flagged in the manifest", block.id, lost)


def _capture_block(opts: CollectOptions, block: Block, server: Stack, tracer: Tracer) -> dict:
    logs = server.work / "logs"
    access = logs / "apache-access.log"
    load = Load(opts.requests, opts.threads, opts.connections, opts.delay_ms)
    if opts.warmup:
        run_load(Load(opts.warmup, opts.threads, opts.connections, opts.delay_ms), server.url, logs / "wrk.log", access)
    tasks = server.tasks()
    tracer.set_pids(tasks)
    tracer.start()
    try:
        stats = run_load(load, server.url, logs / "wrk.log", access)
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
        "load": stats,
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
