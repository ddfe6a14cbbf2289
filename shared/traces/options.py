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
    "delay_ms": (0, 60_000),  # pause per connection between requests
    "buffer_kb": (64, 4 * 1024 * 1024),  # tracefs buffer per CPU
    "seconds": (1, 3_600),  # bench: one fixed-time wrk run
    "repeats": (1, 100),  # bench: traced/untraced pairs
    "skip": (0, 1_000_000_000),  # ctf: requests dropped at the start of each trace
    "max_seconds": (1, 3_600),  # wrk's -d cap of one load run
}
WHY = {"rounds": "novelties need a valid and a test block each"}
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


def check_load(requests: int, warmup: int, threads: int, connections: int, delay_ms: int) -> None:
    """The load's own ranges, then what wrk needs of them together: a connection per thread, and
    paced requests that fit in half its time cap (else it fails after the servers ran)."""
    check_all({"requests": requests, "warmup": warmup, "threads": threads})
    check("connections", connections, low=threads, why=f"wrk needs a connection per thread; threads = {threads}")
    per_connection = math.ceil(max(requests, warmup) / connections)
    high = min(RANGES["delay_ms"][1], LOAD_SECONDS * 1000 // 2 // per_connection)
    why = f"{per_connection} paced requests per connection must fit in half of wrk's {LOAD_SECONDS} s cap"
    check("delay_ms", delay_ms, high=high, why=why)
