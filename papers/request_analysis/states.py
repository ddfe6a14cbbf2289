"""The ten thread states of the paper's per-request tables, and the two orders its repository gives.

`data/header.txt` orders the columns of the count and times tables; `functions.py` maps the digits of the
states strings. They disagree on positions 6 and 7 (BLOCKED_WAITPROCESS vs BLOCKED_FOR_FUTEX), and which
one the released tables follow is unknown, so both are kept and the choice is a config value.
"""

from __future__ import annotations

HEADER = (
    "UNKNOWN",
    "SYSTEMCALL",
    "USERMODE",
    "BLOCKED_IO",
    "BLOCKED_CPU",
    "BLOCKED_WAITKERNEL",
    "BLOCKED_WAITPROCESS",
    "BLOCKED_FOR_FUTEX",
    "BLOCKED_CPU_FUTEX",
    "TRASH",
)
CODE = HEADER[:6] + ("BLOCKED_FOR_FUTEX", "BLOCKED_WAITPROCESS") + HEADER[8:]
ORDERS = {"header": HEADER, "code": CODE}
N_STATES = len(HEADER)


def state_names(order: str) -> tuple[str, ...]:
    if order not in ORDERS:
        raise ValueError(f"unknown state order {order!r}; valid: {', '.join(ORDERS)}")
    return ORDERS[order]
