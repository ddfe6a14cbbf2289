"""The load generator: wrk on 127.0.0.1, bounded by a request count, paced by a per-connection delay."""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from shared.traces import procs
from shared.traces.errors import TraceError
from shared.traces.options import check

LUA = Path(__file__).with_name("load.lua")


@dataclass(frozen=True)
class Load:
    """`requests` in all over `connections` connections; each waits `delay_ms` between its requests."""

    requests: int = 300
    threads: int = 2
    connections: int = 10
    delay_ms: int = 10
    max_seconds: int = 60

    def __post_init__(self) -> None:
        check("requests", self.requests, low=0)  # 0: no count, run_for's fixed-time load
        check("threads", self.threads)
        check("connections", self.connections, low=self.threads, why="wrk needs a connection per thread")
        check("delay_ms", self.delay_ms)
        check("max_seconds", self.max_seconds)

    def command(self, url: str) -> list[str]:
        return ["wrk", f"-t{self.threads}", f"-c{self.connections}", f"-d{self.max_seconds}s", "-s", str(LUA), url]

    def env(self) -> dict[str, str]:
        per_thread = math.ceil(self.requests / self.threads) if self.requests else 0
        return {
            **os.environ,
            "REPRO_WRK_REQUESTS_PER_THREAD": str(per_thread),
            "REPRO_WRK_DELAY_MS": str(self.delay_ms),
        }


def run_load(load: Load, url: str, log_path: Path, access_log: Path) -> dict[str, float]:
    """Run wrk until the server has logged `load.requests` more requests (wrk itself always runs for its
    -d cap), then stop it; returns requests, seconds and requests/s."""
    before = _lines(access_log)
    t0 = time.perf_counter()
    proc = procs.spawn(load.command(url), log_path, env=load.env())
    done = before
    try:
        deadline = t0 + load.max_seconds
        while time.perf_counter() < deadline and proc.poll() is None:
            done = _lines(access_log)
            if done - before >= load.requests:
                break
            time.sleep(0.01)
    finally:
        seconds = time.perf_counter() - t0
        procs.stop(proc, timeout=2)
    done = _lines(access_log) - before
    if done < load.requests:
        raise TraceError(f"wrk served {done}/{load.requests} requests in {seconds:.1f} s; see {log_path}")
    return {"requests": done, "seconds": seconds, "rps": done / seconds}


def run_for(seconds: int, url: str, log_path: Path, threads: int = 2, connections: int = 10) -> dict[str, float]:
    """Saturating wrk (no pause) for a fixed time: the throughput measurement."""
    load = Load(requests=0, threads=threads, connections=connections, delay_ms=0, max_seconds=seconds)
    start = log_path.stat().st_size if log_path.exists() else 0
    proc = procs.spawn(load.command(url), log_path, env=load.env())
    try:
        proc.wait(timeout=seconds + 30)
    finally:
        procs.stop(proc)
    return parse_wrk(log_path.read_bytes()[start:].decode(errors="replace"))


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return fh.read().count(b"\n")
    except FileNotFoundError:
        return 0


def parse_wrk(text: str) -> dict[str, float]:
    """requests, seconds, requests/s and error counts from wrk's summary of a fixed-time run."""
    m = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)\b", text)
    if not m:
        raise TraceError(f"wrk printed no summary:\n{text[-1000:]}")
    seconds = float(m.group(2)) * {"ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "requests": int(m.group(1)),
        "seconds": seconds,
        "rps": int(m.group(1)) / seconds if seconds else 0.0,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sum(map(int, sock.groups())) if sock else 0,
    }


def run_stress(cpus: int, log_path: Path) -> subprocess.Popen:
    """stress-ng matrix workers, as the paper's CPU novelty (it ran 48 on a 48-thread server)."""
    cmd = ["stress-ng", "--matrix", str(cpus), "--matrix-method", "prod", "--matrix-size", "256", "--timeout", "600"]
    return procs.spawn(cmd, log_path)
