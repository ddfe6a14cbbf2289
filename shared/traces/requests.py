"""Cut an events table into requests, by the paper's rule.

A request starts when an Apache worker thread enters its request handler (uprobe `req_begin` on
`ap_process_async_request`, the point where the paper's patched httpd fired enter_event_handler) and
ends when that handler returns on the same thread (`req_end`). In the paper's *global* mode a request's
sequence is every syscall event in between, from any traced process; *thread* mode keeps only the
worker thread's own events.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from shared.traces.events import equals

BEGIN, END = "req_begin", "req_end"
MODES = ("global", "thread")

REQUEST_SCHEMA = pa.schema(
    [
        ("request", pa.int32()),
        ("tid", pa.int32()),
        ("pid", pa.int32()),
        ("begin_ns", pa.int64()),
        ("end_ns", pa.int64()),
        ("duration_ns", pa.int64()),
        ("row_begin", pa.int64()),
        ("row_end", pa.int64()),
        ("length", pa.int32()),
    ]
)


def cut_requests(events: pa.Table) -> pa.Table:
    """One row per complete request: worker tid, time window, the events rows it spans and its
    global-mode length (syscall events strictly between begin and end). Incomplete requests at the
    capture's edges are dropped."""
    is_syscall = equals(events.column("kind"), "syscall")
    rows = np.nonzero(equals(events.column("name"), BEGIN, END) & equals(events.column("kind"), "probe"))[0]
    tids = events.column("tid").to_numpy()[rows]
    is_begin = equals(events.column("name"), BEGIN)[rows]
    order = np.lexsort((rows, tids))
    rows, tids, is_begin = rows[order], tids[order], is_begin[order]
    pair = is_begin[:-1] & ~is_begin[1:] & (tids[:-1] == tids[1:])
    b_rows, e_rows = rows[:-1][pair], rows[1:][pair]
    chrono = np.argsort(b_rows, kind="stable")
    b_rows, e_rows = b_rows[chrono], e_rows[chrono]

    syscall_count = np.concatenate([[0], np.cumsum(is_syscall)])
    ts = events.column("ts").to_numpy()
    length = syscall_count[e_rows] - syscall_count[b_rows + 1]
    pid = events.column("pid").to_numpy()
    cols = {
        "request": np.arange(len(b_rows), dtype=np.int32),
        "tid": events.column("tid").to_numpy()[b_rows],
        "pid": pid[b_rows],
        "begin_ns": ts[b_rows],
        "end_ns": ts[e_rows],
        "duration_ns": ts[e_rows] - ts[b_rows],
        "row_begin": b_rows.astype(np.int64),
        "row_end": e_rows.astype(np.int64),
        "length": length.astype(np.int32),
    }
    return pa.Table.from_pydict(cols, schema=REQUEST_SCHEMA)


def request_rows(
    is_syscall: np.ndarray, events_tid: np.ndarray, row_begin: int, row_end: int, tid: int, mode: str
) -> np.ndarray:
    """Row indices of one request's syscall events in `mode` (global or thread)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    span = np.arange(row_begin + 1, row_end)
    keep = is_syscall[span]
    if mode == "thread":
        keep &= events_tid[span] == tid
    return span[keep]
