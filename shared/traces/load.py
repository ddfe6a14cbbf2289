"""The load generator: wrk on 127.0.0.1, bounded by a request count, at a fixed request rate.

wrk is stopped with SIGINT once the server has logged the requests, so it prints its latency
distribution (client side: request written to response read); with Apache's own time per request
(%D in the access log) that gives the time a request waited before a worker served it.
"""

from __future__ import annotations

import math
import os
import re
import signal
import statistics
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
    """`requests` in all over `connections` connections at `rate` requests/s in all (0: as fast as
    the server answers)."""

    requests: int = 300
    threads: int = 2
    connections: int = 10
    rate: int = 400
    max_seconds: int = 60
    burst: bool = False  # connections send in step (see load.lua): the same mean rate, arriving together

    def __post_init__(self) -> None:
        check("requests", self.requests, low=0)  # 0: no count, run_for's fixed-time load
        check("threads", self.threads)
        check("connections", self.connections, low=self.threads, why="wrk needs a connection per thread")
        check("rate", self.rate, low=0)
        check("max_seconds", self.max_seconds)

    def command(self, url: str) -> list[str]:
        return ["wrk", f"-t{self.threads}", f"-c{self.connections}", f"-d{self.max_seconds}s", "--latency",
                "-s", str(LUA), url]  # fmt: skip

    def env(self) -> dict[str, str]:
        per_thread = math.ceil(self.requests / self.threads) if self.requests else 0
        interval = 1000.0 * self.threads / self.rate if self.rate else 0.0
        return {
            **os.environ,
            "REPRO_WRK_REQUESTS_PER_THREAD": str(per_thread),
            "REPRO_WRK_INTERVAL_MS": f"{interval:.6f}",
            "REPRO_WRK_BURST": "1" if self.burst else "0",
            "REPRO_WRK_CONNECTIONS_PER_THREAD": str(math.ceil(self.connections / self.threads)),
        }


def run_load(load: Load, url: str, log_path: Path, access_log: Path) -> dict[str, float]:
    """Run wrk until the server has logged `load.requests` more requests (wrk itself always runs for its
    -d cap), then stop it with SIGINT (it prints its summary). Returns requests, seconds, requests/s,
    wrk's latency percentiles (client side, ms), Apache's median time per request (%D, ms) and the
    median queueing estimate: client latency minus server time."""
    before = _lines(access_log)
    offset = access_log.stat().st_size if access_log.exists() else 0
    start = log_path.stat().st_size if log_path.exists() else 0
    t0 = time.perf_counter()
    proc = procs.spawn(load.command(url), log_path, env=load.env())
    try:
        deadline = t0 + load.max_seconds
        while time.perf_counter() < deadline and proc.poll() is None:
            if _lines(access_log) - before >= load.requests:
                break
            time.sleep(0.01)
    finally:
        seconds = time.perf_counter() - t0
        _interrupt(proc)
    served = _read_from(access_log, offset)
    done = len(served)
    if done < load.requests:
        raise TraceError(f"wrk served {done}/{load.requests} requests in {seconds:.1f} s; see {log_path}")
    stats: dict[str, float] = {"requests": done, "seconds": round(seconds, 3), "rps": round(done / seconds, 1)}
    server_ms = [int(line.rsplit(maxsplit=1)[-1]) / 1000 for line in served if line.rsplit(maxsplit=1)[-1].isdigit()]
    if server_ms:
        stats["server_ms_p50"] = round(statistics.median(server_ms), 3)
    text = log_path.read_bytes()[start:].decode(errors="replace")
    stats.update(parse_latency(text))
    if "latency_ms_p50" in stats and "server_ms_p50" in stats:
        stats["queueing_ms_p50"] = round(max(0.0, stats["latency_ms_p50"] - stats["server_ms_p50"]), 3)
    return stats


def _interrupt(proc: subprocess.Popen) -> None:
    """SIGINT (wrk then prints its summary), then the usual TERM/KILL of the group."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    procs.stop(proc, timeout=2)


def _read_from(path: Path, offset: int) -> list[str]:
    """The log's complete lines from byte `offset` on."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return []
    return data[: data.rfind(b"\n") + 1].decode(errors="replace").splitlines()


UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def parse_latency(text: str) -> dict[str, float]:
    """wrk --latency's distribution: 50/75/90/99th percentile latencies in ms (empty if absent)."""
    out = {}
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        out[f"latency_ms_p{pct}"] = round(float(value) * UNITS_MS[unit], 3)
    return out


def run_for(seconds: int, url: str, log_path: Path, threads: int = 2, connections: int = 10) -> dict[str, float]:
    """Saturating wrk (no pause) for a fixed time: the throughput measurement."""
    load = Load(requests=0, threads=threads, connections=connections, rate=0, max_seconds=seconds)
    start = log_path.stat().st_size if log_path.exists() else 0
    proc = procs.spawn(load.command(url), log_path, env=load.env())
    try:
        proc.wait(timeout=seconds + 30)
    finally:
        procs.stop(proc)
    return parse_wrk(log_path.read_bytes()[start:].decode(errors="replace"))


_counted: dict[Path, tuple[int, int]] = {}  # path -> (bytes counted, newlines in them)


def _lines(path: Path) -> int:
    """Newlines in a growing log, reading only what was appended since the last call."""
    done, lines = _counted.get(path, (0, 0))
    try:
        with open(path, "rb") as fh:
            if fh.seek(0, 2) < done:  # truncated or replaced: count again
                done, lines = 0, 0
            fh.seek(done)
            chunk = fh.read()
    except FileNotFoundError:
        return 0
    _counted[path] = (done + len(chunk), lines + chunk.count(b"\n"))
    return _counted[path][1]


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


def run_stress(workers: int, log_path: Path) -> subprocess.Popen:
    """stress-ng matrix workers, as the paper's CPU novelty (it ran 48 on a 48-thread server: one per
    hardware thread). Here more workers than cores, so the server's threads get a small CPU share."""
    cmd = ["stress-ng", "--matrix", str(workers), "--matrix-method", "prod", "--matrix-size", "256", "--timeout",
           "600"]  # fmt: skip
    return procs.spawn(cmd, log_path, own_session=False)
