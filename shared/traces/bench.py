"""Benchmarks of the trace pipeline, each a ratio measured in one run.

1. Tracing overhead: saturating wrk against the normal server, untraced and traced runs alternating
   (order flipped every repeat); ratio of mean throughputs (target: at most 15% lost).
2. Parse rate: events decoded per second on one core by our vectorised raw-page decoder, against the
   reference path, a regex parser over the kernel's own text rendering of the same capture
   (target: at least 1 million events/s).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from shared.environment import machine_summary
from shared.io import atomic_write_json
from shared.traces.behaviours import BEHAVIOURS
from shared.traces.collect import EVENTS, INSTANCE_PREFIX, UPROBES, signals_raise
from shared.traces.events import FORMATS_FILE, TASKS_FILE, decode_capture
from shared.traces.load import run_for
from shared.traces.options import check_all
from shared.traces.server import Stack, check_installed
from shared.traces.tracefs import Tracer, tracefs_root

log = logging.getLogger(__name__)

OVERHEAD_TARGET = 0.15
PARSE_TARGET = 1_000_000

# The reference parser: one regex per line of the kernel's text output (`trace` file).
_LINE = re.compile(
    rb"^\s*(?P<comm>.+?)-(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+\S+\s+(?P<ts>[\d.]+):\s+(?P<event>\w+):\s?(?P<payload>.*)$"
)
_NR = re.compile(rb"NR (\d+)(?: = (-?\d+))?")


def parse_text_reference(path: Path) -> int:
    """Parse every line of a text trace into fields (the slow path we compare against); returns events."""
    n = 0
    rows = []
    with open(path, "rb") as fh:
        for line in fh:
            if line.startswith(b"#"):
                continue
            m = _LINE.match(line)
            if not m:
                continue
            nr = _NR.match(m.group("payload"))
            rows.append((m.group("comm"), int(m.group("tid")), int(m.group("cpu")), float(m.group("ts")),
                         m.group("event"), int(nr.group(1)) if nr else -1))  # fmt: skip
            n += 1
    return n


def run_bench(out: Path, seconds: int = 4, repeats: int = 3, keep_capture: bool = False) -> dict:
    check_all({"seconds": seconds, "repeats": repeats})
    root = tracefs_root()
    check_installed()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    capture = Path(tempfile.mkdtemp(prefix=f"{INSTANCE_PREFIX}bench-", dir="/tmp"))
    with signals_raise(), contextlib.ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix=INSTANCE_PREFIX, dir="/tmp"))
        stack.callback(shutil.rmtree, work, True)
        server = Stack(work)
        stack.callback(server.stop)
        tracer = Tracer(f"{INSTANCE_PREFIX}{os.getpid()}", EVENTS, UPROBES, root=root)
        stack.callback(tracer.close)
        server.prepare()
        server.apply(BEHAVIOURS["normal"])
        tracer.open()
        run_for(2, server.url, work / "logs/wrk.log")  # warm caches and OPcache
        for r in range(repeats):
            for traced in (False, True) if r % 2 == 0 else (True, False):
                if traced:
                    tasks = server.tasks()
                    tracer.set_pids(tasks)
                    tracer.start()
                stats = run_for(seconds, server.url, work / "logs/wrk.log")
                if traced:
                    tracer.stop()
                    lost = tracer.lost_events()
                    if r == repeats - 1:
                        shutil.rmtree(capture, ignore_errors=True)
                        capture.mkdir(parents=True)
                        shutil.copyfile(tracer.dir / "trace", capture / "trace.txt")
                        tracer.drain(capture)
                        (capture / FORMATS_FILE).write_text(json.dumps(tracer.formats()))
                        tasks.update(server.tasks())
                        (capture / TASKS_FILE).write_text(json.dumps({str(k): list(v) for k, v in tasks.items()}))
                    else:
                        tracer.drain(capture / "discard")
                        shutil.rmtree(capture / "discard")
                    stats["lost_events"] = sum(lost.values())
                stats["traced"] = traced
                stats["repeat"] = r
                runs.append(stats)
                log.info("repeat %d %s: %.0f req/s", r, "traced" if traced else "untraced", stats["rps"])
    untraced = np.array([x["rps"] for x in runs if not x["traced"]])
    traced = np.array([x["rps"] for x in runs if x["traced"]])
    loss = 1.0 - traced.mean() / untraced.mean()

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    ours, n_events = [], 0
    for _ in range(3):
        t0 = time.perf_counter()
        table = decode_capture(capture)
        ours.append(time.perf_counter() - t0)
        n_events = table.num_rows
    t0 = time.perf_counter()
    n_text = parse_text_reference(capture / "trace.txt")
    ref = time.perf_counter() - t0
    result = {
        "machine": machine_summary(),
        "kernel": os.uname().release,
        "command": f"python -m shared.traces bench --out {out} --seconds {seconds} --repeats {repeats}",
        "overhead": {
            "untraced_rps": untraced.round(1).tolist(),
            "traced_rps": traced.round(1).tolist(),
            "throughput_lost": round(float(loss), 4),
            "target_at_most": OVERHEAD_TARGET,
            "met": bool(loss <= OVERHEAD_TARGET),
            "lost_events": [x.get("lost_events", 0) for x in runs if x["traced"]],
        },
        "parse": {
            "events": n_events,
            "ours_s": round(min(ours), 4),
            "ours_events_per_s": round(n_events / min(ours)),
            "reference_events": n_text,
            "reference_s": round(ref, 3),
            "reference_events_per_s": round(n_text / ref),
            "speedup": round((n_events / min(ours)) / (n_text / ref), 1),
            "target_at_least": PARSE_TARGET,
            "met": bool(n_events / min(ours) >= PARSE_TARGET),
            "threads": 1,
        },
    }
    atomic_write_json(out / "bench.json", result)
    if keep_capture:
        log.info("capture kept in %s", capture)
    else:
        shutil.rmtree(capture, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return result
