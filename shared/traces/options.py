"""The valid range of every numeric option of the trace tools, checked before anything touches tracefs.

One table serves the Python API (CollectOptions, Load, schedule, Stack, run_bench raise OptionError, a
ValueError) and the command line (`python -m shared.traces` turns the same check into parser.error),
so a bad value never mounts tracefs, starts a server or writes into the output folder first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from shared.traces.errors import OptionError

# name: (lowest, highest), both inclusive
RANGES: dict[str, tuple[int, int]] = {
    "requests": (1, 1_000_000),  # traced requests per block
    "rounds": (2, 1_000),  # novelties need a valid and a test block each
    "seed": (0, 2**32 - 1),
    "warmup": (0, 1_000_000),  # untraced requests before each block
    "threads": (1, 256),  # wrk threads
    "connections": (1, 10_000),  # wrk connections (at least one per thread)
    "rate": (10, 5_000),  # requests per second, all connections together (fixed rate)
    "cpu_workers": (1, 256),  # stress-ng matrix workers of the cpu behaviour
    "queue_connections": (26, 10_000),  # client connections of the connection behaviour (> MaxRequestWorkers 25)
    "nice": (-20, 19),  # the collection session's scheduler autogroup nice (servers and stress workers)
    "keep": (0, 1_000_000),  # requests per block kept in the written dataset (0: all); a steady-state slice
    "buffer_kb": (64, 4 * 1024 * 1024),  # tracefs buffer per CPU
    "seconds": (1, 3_600),  # bench: one fixed-time wrk run
    "repeats": (1, 100),  # bench: traced/untraced pairs
    "skip": (0, 1_000_000_000),  # ctf: requests dropped at the start of each trace
    "max_seconds": (1, 3_600),  # wrk's -d cap of one load run
}
WHY = {
    "rounds": "novelties need a valid and a test block each",
    "queue_connections": "more connections than the connection behaviour's MaxRequestWorkers 25",
}
LOAD_SECONDS = 60  # wrk's -d cap for a paced load (load.Load.max_seconds)


def check(option: str, value: object, low: int | None = None, high: int | None = None, why: str = "") -> None:
    """Raise OptionError unless `value` is an int within RANGES[option] (or the given bounds)."""
    lo, hi = RANGES[option]
    lo, hi = lo if low is None else low, hi if high is None else high
    why = why or WHY.get(option, "")
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise OptionError(option, value, f"an integer {lo} <= {option} <= {hi}" + (f" ({why})" if why else ""))


def check_all(values: Mapping[str, object]) -> None:
    """Check each named option against its range (the first bad one raises)."""
    for name, value in values.items():
        check(name, value)


def check_load(requests: int, warmup: int, threads: int, connections: int, rate: int) -> None:
    """The load's own ranges, then what wrk needs of them together: a connection per thread, and
    requests at `rate` that fit in half its time cap (else it fails after the servers ran)."""
    check_all({"requests": requests, "warmup": warmup, "threads": threads})
    check("connections", connections, low=threads, why=f"wrk needs a connection per thread; threads = {threads}")
    most = max(requests, warmup)
    low = max(RANGES["rate"][0], math.ceil(most / (LOAD_SECONDS / 2)))
    why = f"{most} requests per load run must fit in half of wrk's {LOAD_SECONDS} s cap"
    check("rate", rate, low=low, why=why)
