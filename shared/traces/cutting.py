"""Which events of a block belong to one request: the three cutting modes.

global  the paper's rule: every syscall event of the traced server processes strictly inside the request's
        window (the requests table's row_begin, row_end: the worker's req_begin and req_end, or its
        connection's accept4 and close), from whichever thread made it (concurrent requests included).
thread  only the Apache worker thread's own syscalls in that window.
causal  our extension: the worker thread's syscalls in its window, plus the PHP-FPM child serving this
        request, plus the MariaDB thread(s) that child talks to, all clipped to the worker's window.

How `causal` links an Apache request to the PHP window (php_begin/php_end uprobes on php_request_startup
and php_request_shutdown) that serves it, in this order of strength (a sched_wakeup event's waker is its
`tid`, the woken task its `target_tid`):

1. response wake: the first wakeup the PHP child C makes after its php_end (and before its next php_begin)
   whose target is an Apache worker W with an open request window around C's php window. That is C
   writing the FastCGI response and waking W in its poll: the strongest evidence.
2. nesting: exactly one still-unlinked worker window contains C's php window.
3. request wake: the last wakeup W makes of C after C's previous php_end and before this php_begin (W's
   connect waking C in accept), W's window again around C's php window. The weakest: the child woken
   is not always the one whose accept() takes the connection (on the shipped sample it names another
   worker than rule 1 for 113 of 1179 PHP windows where both apply, while rules 1 and 2 agreed on all
   800 windows where both apply).

Each request gets at most one PHP window and each PHP window at most one request; rules are applied in
that order over the whole block, so a weaker rule never takes a pair a stronger one already claimed.
A request left unlinked keeps only its worker's events (Dataset.links counts each rule). On the shipped
sample: 6,000 of 7,244 requests linked by response wake, 1,127 by nesting, 27 by request wake, 90 not.

C's part is its *serving segment*: from its `accept` exit before php_begin (the FastCGI connection from
W) to its next `accept` entry after php_end (so the FastCGI read, the script and the response write and
close are in), falling back to php_begin / the next php_begin when no accept is traced. MariaDB's part:
every mariadbd thread that C wakes, or is woken by, inside that segment (the thread serving C's
database connection), its syscalls inside the segment; not the mariadbd thread that accepts
connections (it serves every child, and its wakeups land in C's context only about two times in three).
On the shipped sample 7121 of the 7154 linked requests find their connection thread this way (23 find two).

When the requests table extends a window to its connection (the first request of a connection begins
at the listener's accept4, the last ends at the socket's close, shared/traces/requests.py) and another
thread made those calls, causal also takes that accept4's and that close's entry and exit, and nothing
else of that thread (it serves every connection).

Everything is clipped to the worker's window, so causal events are a subset of the global ones and a
superset of the thread ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from shared.traces.events import dict_codes

MODES = ("global", "thread", "causal")
PHP_BEGIN, PHP_END = "php_begin", "php_end"
ACCEPT = ("accept", "accept4")
DB_COMMS = ("mariadbd", "mysqld")
RULES = ("none", "response_wake", "nesting", "request_wake")


@dataclass
class BlockCut:
    """One block's numpy columns for cutting, and each of its requests' causal links.

    php_tid[i] is 0 when request i has no PHP window; seg_lo/seg_hi bound C's segment (rows, [lo, hi)),
    already clipped to the worker's window; db_tids[i] the MariaDB threads linked to it; rule[i] the
    index in RULES of the rule that linked it."""

    is_syscall: np.ndarray
    tid: np.ndarray
    row_begin: np.ndarray
    row_end: np.ndarray
    req_tid: np.ndarray
    php_tid: np.ndarray
    seg_lo: np.ndarray
    seg_hi: np.ndarray
    rule: np.ndarray
    db_tids: list[np.ndarray]
    conn_rows: list[np.ndarray]
    _by_tid: dict[int, np.ndarray]

    def rows(self, i: int, mode: str) -> np.ndarray:
        """Row indices (time order) of request i's syscall events in `mode`."""
        lo, hi = int(self.row_begin[i]), int(self.row_end[i])
        if mode == "global":
            span = np.arange(lo + 1, hi)
            return span[self.is_syscall[lo + 1 : hi]]
        own = self._tid_rows(int(self.req_tid[i]), lo + 1, hi)
        if mode == "thread" or not (self.php_tid[i] or len(self.conn_rows[i])):
            return own
        parts = [own, self.conn_rows[i]]
        if self.php_tid[i]:
            s_lo, s_hi = int(self.seg_lo[i]), int(self.seg_hi[i])
            parts.append(self._tid_rows(int(self.php_tid[i]), s_lo, s_hi))
            parts += [self._tid_rows(int(t), s_lo, s_hi) for t in self.db_tids[i]]
        return np.sort(np.concatenate(parts))

    def _tid_rows(self, tid: int, lo: int, hi: int) -> np.ndarray:
        """Syscall rows of `tid` in [lo, hi)."""
        rows = self._by_tid.get(tid)
        if rows is None or hi <= lo:
            return np.zeros(0, dtype=np.int64)
        return rows[rows.searchsorted(lo) : rows.searchsorted(hi)]


def _codes(column: pa.ChunkedArray | pa.Array, *values: str) -> np.ndarray:
    codes, dictionary = dict_codes(column)
    return np.isin(codes, [i for i, v in enumerate(dictionary) if v in values])


def _pair(rows: np.ndarray, tids: np.ndarray, is_begin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(begin rows, end rows, tids) of begin/end probe pairs on the same thread, in begin order."""
    order = np.lexsort((rows, tids))
    rows, tids, is_begin = rows[order], tids[order], is_begin[order]
    ok = is_begin[:-1] & ~is_begin[1:] & (tids[:-1] == tids[1:])
    b, e, t = rows[:-1][ok], rows[1:][ok], tids[:-1][ok]
    chrono = np.argsort(b, kind="stable")
    return b[chrono], e[chrono], t[chrono]


def _group(keys: np.ndarray, *values: np.ndarray) -> dict[int, tuple[np.ndarray, ...]]:
    """key -> the values at its positions (positions stay in their original, time, order)."""
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    cuts = np.flatnonzero(np.diff(k)) + 1
    starts, ends = np.concatenate([[0], cuts]), np.concatenate([cuts, [len(k)]])
    return {int(k[s]): tuple(v[order[s:e]] for v in values) for s, e in zip(starts, ends, strict=True) if e > s}


def _in(rows: np.ndarray, lo: int, hi: int) -> slice:
    """The slice of sorted `rows` strictly between lo and hi."""
    return slice(int(rows.searchsorted(lo, "right")), int(rows.searchsorted(hi, "left")))


def cut_block(events: pa.Table, row_begin: np.ndarray, row_end: np.ndarray, req_tid: np.ndarray) -> BlockCut:
    """Link each request (worker tid, events rows of req_begin and req_end) of one block to its PHP window
    and MariaDB threads (see the module docstring for the rule)."""
    n_ev, n_req = events.num_rows, len(row_begin)
    tid = events.column("tid").to_numpy()
    kind = events.column("kind")
    name = events.column("name")
    is_syscall = _codes(kind, "syscall")
    is_probe = _codes(kind, "probe")
    syscall_rows = np.flatnonzero(is_syscall)
    by_tid = {t: v[0] for t, v in _group(tid[syscall_rows], syscall_rows).items()} if len(syscall_rows) else {}

    row_begin, row_end = np.asarray(row_begin, np.int64), np.asarray(row_end, np.int64)
    req_tid = np.asarray(req_tid, np.int64)
    php_tid = np.zeros(n_req, np.int64)
    seg_lo, seg_hi = np.zeros(n_req, np.int64), np.zeros(n_req, np.int64)
    rule = np.zeros(n_req, np.int8)
    db_tids: list[np.ndarray] = [np.zeros(0, np.int64)] * n_req
    entry = events.column("entry").to_numpy()
    conn_rows = _connection_ends(events, is_syscall, is_probe, entry, tid, by_tid, row_begin, row_end, req_tid)
    cut = BlockCut(
        is_syscall, tid, row_begin, row_end, req_tid, php_tid, seg_lo, seg_hi, rule, db_tids, conn_rows, by_tid
    )

    php_rows = np.flatnonzero(is_probe & _codes(name, PHP_BEGIN, PHP_END))
    if not len(php_rows) or not n_req:
        return cut
    pb, pe, pt = _pair(php_rows, tid[php_rows], _codes(name, PHP_BEGIN)[php_rows])
    n_php = len(pb)
    if not n_php:
        return cut
    # each PHP window's neighbours on its own child: previous php_end, next php_begin
    prev_end, next_begin = np.full(n_php, -1, np.int64), np.full(n_php, n_ev, np.int64)
    for rows in _group(pt, np.arange(n_php)).values():
        k = rows[0]
        prev_end[k[1:]] = pe[k[:-1]]
        next_begin[k[:-1]] = pb[k[1:]]

    wake_rows = np.flatnonzero(_codes(kind, "sched") & _codes(name, "sched_wakeup"))
    target = events.column("target_tid").to_numpy(zero_copy_only=False)
    wake_target = np.nan_to_num(np.asarray(target[wake_rows], dtype=float), nan=0).astype(np.int64)
    wake_waker = tid[wake_rows].astype(np.int64)
    by_waker = _group(wake_waker, wake_rows, wake_target) if len(wake_rows) else {}
    by_target = _group(wake_target, wake_rows, wake_waker) if len(wake_rows) else {}

    # a worker thread has one open window at a time: containing windows, keyed by worker tid
    def candidates(k: int) -> dict[int, int]:
        inside = np.flatnonzero((row_begin < pb[k]) & (row_end > pe[k]))
        return {int(req_tid[i]): int(i) for i in inside}

    cands = [candidates(k) for k in range(n_php)]
    link = np.full(n_php, -1, np.int64)
    taken = np.zeros(n_req, bool)

    def claim(k: int, i: int, r: int) -> None:
        link[k] = i
        taken[i] = True
        rule[i] = r

    for k in range(n_php):  # 1. response wake
        rows, targets = by_waker.get(int(pt[k]), (np.zeros(0, np.int64),) * 2)
        for w in targets[_in(rows, pe[k], next_begin[k])]:
            i = cands[k].get(int(w))
            if i is not None:
                if not taken[i]:
                    claim(k, i, 1)
                break
    for k in np.flatnonzero(link < 0):  # 2. nesting, when unambiguous
        free = [i for i in cands[k].values() if not taken[i]]
        if len(free) == 1:
            claim(k, free[0], 2)

    for k in np.flatnonzero(link < 0):  # 3. request wake
        rows, wakers = by_target.get(int(pt[k]), (np.zeros(0, np.int64),) * 2)
        for w in wakers[_in(rows, prev_end[k], pb[k])][::-1]:
            i = cands[k].get(int(w))
            if i is not None:
                if not taken[i]:
                    claim(k, i, 3)
                break
    accept_rows = np.flatnonzero(is_syscall & _codes(name, *ACCEPT))
    acc = _group(tid[accept_rows], accept_rows, entry[accept_rows]) if len(accept_rows) else {}
    comm_codes, comm_values = dict_codes(events.column("comm"))
    db_codes = [i for i, v in enumerate(comm_values) if v.startswith(DB_COMMS)]
    db_threads = set(np.unique(tid[np.isin(comm_codes, db_codes)]).tolist())
    db_threads -= set(np.unique(tid[accept_rows]).tolist())  # the listener: it accepts every connection

    for k in np.flatnonzero(link >= 0):
        i, c = int(link[k]), int(pt[k])
        lo, hi = int(pb[k]), int(next_begin[k])
        if c in acc:
            a_rows, a_entry = acc[c]
            before = a_rows[_in(a_rows, prev_end[k], pb[k])]
            exits = before[a_entry[_in(a_rows, prev_end[k], pb[k])] == 2]
            lo = int(exits[-1]) if len(exits) else lo
            after = _in(a_rows, pe[k], next_begin[k])
            entries = a_rows[after][a_entry[after] == 1]
            hi = int(entries[0]) if len(entries) else hi
        lo, hi = max(lo, int(row_begin[i]) + 1), min(hi, int(row_end[i]))
        php_tid[i], seg_lo[i], seg_hi[i] = c, lo, hi
        linked = set()
        if c in by_waker:
            rows, targets = by_waker[c]
            linked |= set(targets[_in(rows, lo - 1, hi)].tolist())
        if c in by_target:
            rows, wakers = by_target[c]
            linked |= set(wakers[_in(rows, lo - 1, hi)].tolist())
        db_tids[i] = np.array(sorted(linked & db_threads), np.int64)
    return cut


def _connection_ends(
    events: pa.Table,
    is_syscall: np.ndarray,
    is_probe: np.ndarray,
    entry: np.ndarray,
    tid: np.ndarray,
    by_tid: dict[int, np.ndarray],
    row_begin: np.ndarray,
    row_end: np.ndarray,
    req_tid: np.ndarray,
) -> list[np.ndarray]:
    """Per request, the syscalls that open and close its connection when the requests table extended its
    window to them (a connection's first request begins at the listener's accept4 entry, its last ends at
    the socket's close exit; shared/traces/requests.py) and another thread than the worker made them: that
    accept4's entry and exit, that close's entry and exit. Only those: the listener serves every connection.
    A window is extended where its bound is not the worker's own req_begin / req_end probe."""
    n_ev, n_req = len(tid), len(row_begin)
    out = [np.zeros(0, np.int64)] * n_req
    if not n_req or not n_ev:
        return out
    codes, names = dict_codes(events.column("name"))
    probe_code = {v: i for i, v in enumerate(names)}
    is_rb = is_probe & (codes == probe_code.get("req_begin", -1))
    is_re = is_probe & (codes == probe_code.get("req_end", -1))
    b_in, e_in = np.clip(row_begin, 0, n_ev - 1), np.clip(row_end, 0, n_ev - 1)
    own_b = (row_begin >= 0) & is_rb[b_in] & (tid[b_in] == req_tid)
    own_e = (row_end < n_ev) & is_re[e_in] & (tid[e_in] == req_tid)
    for i in np.flatnonzero(~own_b | ~own_e):
        lo, hi, w, extra = int(row_begin[i]), int(row_end[i]), int(req_tid[i]), []
        first, last = lo + 1, hi - 1
        if not own_b[i] and first < hi and is_syscall[first] and tid[first] != w and entry[first] == 1:
            rows = by_tid[int(tid[first])]
            after = rows[rows.searchsorted(first) : rows.searchsorted(hi)]
            done = after[(codes[after] == codes[first]) & (entry[after] == 2)][:1]
            extra += [first, *done.tolist()]
        if not own_e[i] and last > lo and is_syscall[last] and tid[last] != w and entry[last] == 2:
            rows = by_tid[int(tid[last])]
            before = rows[rows.searchsorted(lo + 1) : rows.searchsorted(last)]
            began = before[(codes[before] == codes[last]) & (entry[before] == 1)][-1:]
            extra += [*began.tolist(), last]
        out[i] = np.array(sorted(set(extra)), np.int64)
    return out


def link_summary(cut: BlockCut) -> dict[str, int]:
    """How many requests each rule linked (and how many it could not)."""
    return {name: int(np.sum(cut.rule == r)) for r, name in enumerate(RULES)}
