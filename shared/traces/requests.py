"""Cut an events table into requests, by the paper's rule extended to each request's connection.

A request starts when an Apache worker thread enters its request handler (uprobe `req_begin` on
`ap_process_async_request`, the point where the paper's patched httpd fired enter_event_handler) and
ends when that handler returns on the same thread (`req_end`).

Connections (one rule for every behaviour): the first request of a connection begins at the
`accept4` that returned the connection's socket (on the listener thread, before the worker's
`ap_run_create_connection`, uprobe `conn_new`), and its last request ends at the `close` of that socket
(uprobe `sock_close` on libapr's `apr_socket_close`, after `ap_start_lingering_close`'s shutdown and the
lingering read). A keep-alive connection carries many requests, so only its first and last are
extended; with KeepAlive Off every request is its own connection, so its accept, shutdown and close lie
inside it. Requests are matched to connections by the `conn_rec` pointer (req_begin's argument,
`r->connection`; the return value of `ap_run_create_connection`, uprobe `conn_made`), sockets by file
descriptor within the process. A connection whose creation or close was not traced (it spans the
capture's edge) leaves its request at the handler's bounds.

In the paper's *global* mode a request's sequence is every syscall event strictly between `row_begin`
and `row_end`, from any traced process; *thread* mode keeps only the worker thread's own events.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shared.traces.events import equals

BEGIN, END = "req_begin", "req_end"
CONN_NEW, CONN_MADE, SOCK_CLOSE = "conn_new", "conn_made", "sock_close"
MODES = ("global", "thread")

REQUEST_SCHEMA = pa.schema(
    [
        ("request", pa.int32()),
        ("tid", pa.int32()),
        ("pid", pa.int32()),
        ("begin_ns", pa.int64()),
        ("end_ns", pa.int64()),
        ("duration_ns", pa.int64()),
        ("row_begin", pa.int64()),  # the row just before the window's first event (exclusive bound)
        ("row_end", pa.int64()),  # the row just after its last event (exclusive bound)
        ("length", pa.int32()),
        ("handler_ns", pa.int64()),  # the request handler alone: req_begin to req_end
        ("connection", pa.int32()),  # index of its connection in the block, -1 when not traced
    ]
)


def cut_requests(events: pa.Table) -> pa.Table:
    """One row per complete request: worker tid, time window, the events rows it spans and its
    global-mode length (syscall events strictly between row_begin and row_end). Incomplete requests at
    the capture's edges are dropped."""
    is_syscall = equals(events.column("kind"), "syscall")
    is_probe = equals(events.column("kind"), "probe")
    tid_all = events.column("tid").to_numpy()
    b_rows, e_rows = handler_rows(events)

    ts = events.column("ts").to_numpy()
    pid = events.column("pid").to_numpy()
    win_b, win_e = b_rows.astype(np.int64), e_rows.astype(np.int64)
    first_row, last_row = win_b + 1, win_e - 1  # rows of the window's first and last event
    conn = np.full(len(b_rows), -1, dtype=np.int32)
    if len(b_rows):
        conn, starts, ends = _connections(events, b_rows, is_probe, is_syscall)
        for i, row in starts.items():
            win_b[i], first_row[i] = row - 1, row
        for i, row in ends.items():
            win_e[i], last_row[i] = row + 1, row
    syscall_count = np.concatenate([[0], np.cumsum(is_syscall)])
    length = syscall_count[win_e] - syscall_count[win_b + 1]
    begin_ns = np.where(first_row == b_rows + 1, ts[b_rows], ts[np.clip(first_row, 0, len(ts) - 1)])
    end_ns = np.where(last_row == e_rows - 1, ts[e_rows], ts[np.clip(last_row, 0, len(ts) - 1)])
    cols = {
        "request": np.arange(len(b_rows), dtype=np.int32),
        "tid": tid_all[b_rows],
        "pid": pid[b_rows],
        "begin_ns": begin_ns,
        "end_ns": end_ns,
        "duration_ns": end_ns - begin_ns,
        "row_begin": win_b,
        "row_end": win_e,
        "length": length.astype(np.int32),
        "handler_ns": ts[e_rows] - ts[b_rows],
        "connection": conn,
    }
    return pa.Table.from_pydict(cols, schema=REQUEST_SCHEMA)


def handler_rows(events: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Rows of each complete request's req_begin and req_end probes, in the order of cut_requests."""
    is_probe = equals(events.column("kind"), "probe")
    names = events.column("name")
    rows = np.nonzero(equals(names, BEGIN, END) & is_probe)[0]
    tids = events.column("tid").to_numpy()[rows]
    is_begin = equals(names, BEGIN)[rows]
    order = np.lexsort((rows, tids))
    rows, tids, is_begin = rows[order], tids[order], is_begin[order]
    pair = is_begin[:-1] & ~is_begin[1:] & (tids[:-1] == tids[1:])
    b_rows, e_rows = rows[:-1][pair], rows[1:][pair]
    chrono = np.argsort(b_rows, kind="stable")
    return b_rows[chrono], e_rows[chrono]


def _probe_arg(events: pa.Table) -> np.ndarray:
    """The probes' fetched argument (stored in `ret`); 0 where absent."""
    return pc.fill_null(events.column("ret"), 0).to_numpy()


def _connections(
    events: pa.Table, b_rows: np.ndarray, is_probe: np.ndarray, is_syscall: np.ndarray
) -> tuple[np.ndarray, dict[int, int], dict[int, int]]:
    """Per request its connection index (-1 unknown); for the first request of each traced connection
    the row of its accept4 entry, for the last the row of its socket's close exit."""
    names = events.column("name")
    arg = _probe_arg(events)
    tid = events.column("tid").to_numpy()
    pid = events.column("pid").to_numpy()
    entry = events.column("entry").to_numpy()
    new_rows = np.nonzero(equals(names, CONN_NEW) & is_probe)[0]
    made_rows = np.nonzero(equals(names, CONN_MADE) & is_probe)[0]
    close_rows = np.nonzero(equals(names, SOCK_CLOSE) & is_probe)[0]
    accept_exit = np.nonzero(equals(names, "accept4", "accept") & is_syscall & (entry == 2))[0]
    accept_entry = np.nonzero(equals(names, "accept4", "accept") & is_syscall & (entry == 1))[0]
    close_exit = np.nonzero(equals(names, "close") & is_syscall & (entry == 2))[0]
    conn = np.full(len(b_rows), -1, dtype=np.int32)
    if not len(new_rows) or not len(made_rows):
        return conn, {}, {}

    by_tid: dict[int, list[int]] = defaultdict(list)  # rows per tid, ascending, for "next/previous on this thread"
    for rows in (made_rows, accept_entry, close_exit, close_rows):
        for r in rows.tolist():
            by_tid[int(tid[r])].append(r)
    for v in by_tid.values():
        v.sort()
    made_set, accept_entry_set = set(made_rows.tolist()), set(accept_entry.tolist())
    close_exit_set = set(close_exit.tolist())

    sock_close_set = set(close_rows.tolist())

    def next_on_thread(row: int, wanted: set[int], stop: set[int] = frozenset()) -> int | None:
        rows = by_tid[int(tid[row])]
        for r in rows[bisect.bisect_right(rows, row) :]:
            if r in wanted:
                return r
            if r in stop:
                return None
        return None

    def prev_on_thread(row: int, wanted: set[int]) -> int | None:
        rows = by_tid[int(tid[row])]
        for r in reversed(rows[: bisect.bisect_left(rows, row)]):
            if r in wanted:
                return r
        return None

    accepts: dict[tuple[int, int], list[int]] = defaultdict(list)  # (pid, fd) -> accept exit rows
    for r in accept_exit.tolist():
        accepts[(int(pid[r]), int(arg[r]))].append(r)
    closes: dict[tuple[int, int], list[int]] = defaultdict(list)  # (pid, fd) -> sock_close rows
    for r in close_rows.tolist():
        closes[(int(pid[r]), int(arg[r]))].append(r)

    # connection: (pid, conn_rec pointer, made row, begin row or None, end row or None)
    conns: list[tuple[int, int, int, int | None, int | None]] = []
    for r in new_rows.tolist():
        made = next_on_thread(r, made_set)
        if made is None:
            continue
        key = (int(pid[r]), int(arg[r]))
        acc = [a for a in accepts.get(key, []) if a < r]
        begin = prev_on_thread(acc[-1], accept_entry_set) if acc else None
        cl = [c for c in closes.get(key, []) if c > r]
        end = None
        if cl:
            # the close(2) that apr_socket_close made: before this thread's next apr_socket_close
            end = next_on_thread(cl[0], close_exit_set, stop=sock_close_set) or cl[0]
        conns.append((int(pid[r]), int(arg[made]), made, begin, end))

    live: dict[tuple[int, int], list[int]] = defaultdict(list)  # (pid, ptr) -> connection indices by made row
    for i, c in enumerate(conns):
        live[(c[0], c[1])].append(i)
    members: dict[int, list[int]] = defaultdict(list)
    for j, r in enumerate(b_rows.tolist()):
        cands = live.get((int(pid[r]), int(arg[r])), [])
        best = None
        for i in cands:  # the latest connection with this pointer created before the request, not yet closed
            made, end = conns[i][2], conns[i][4]
            if made < r and (end is None or end > r):
                best = i
        if best is not None:
            conn[j] = best
            members[best].append(j)
    starts, ends = {}, {}
    for i, reqs in members.items():
        _, _, _, begin, end = conns[i]
        if begin is not None:
            starts[min(reqs)] = begin
        if end is not None:
            ends[max(reqs)] = end
    return conn, starts, ends


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
