"""The three cutting modes (shared/traces/cutting.py) against a block cut by hand, and their invariants on the
shipped sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from shared.traces import SAMPLE_DIR, TraceError, load_dataset
from shared.traces.cutting import RULES
from shared.traces.dataset import build_dataset
from shared.traces.events import SCHEMA
from shared.traces.schedule import Block

W1, W2, LISTENER = 11, 12, 10  # apache2 workers and the event MPM's listener thread
C1, C2 = 21, 22  # php-fpm children
M = 31  # the mariadbd thread of C1's database connection
COMM = {W1: "apache2", W2: "apache2", LISTENER: "apache2", C1: "php-fpm8.2", C2: "php-fpm8.2", M: "mariadbd"}

# (tid, kind, name, entry, target_tid); the row index is also the timestamp
ROWS = [
    (W1, "probe", "req_begin", 0, None),  # 0  request 1 on W1
    (W1, "syscall", "connect", 1, None),  # 1  W1 connects to php-fpm ...
    (W1, "sched", "sched_wakeup", 0, C1),  # 2  ... and wakes C1 in accept
    (W2, "probe", "req_begin", 0, None),  # 3  request 2 on W2, overlapping request 1
    (C1, "syscall", "accept", 2, None),  # 4  C1's accept returns: its serving segment starts
    (W2, "syscall", "connect", 1, None),  # 5  W2 connects ...
    (W2, "sched", "sched_wakeup", 0, C1),  # 6  ... and wakes C1 too (but C2 will take that connection)
    (C1, "syscall", "read", 1, None),  # 7
    (C1, "probe", "php_begin", 0, None),  # 8  C1's PHP window (nested in both requests' windows)
    (C2, "syscall", "accept", 2, None),  # 9  C2's accept returns
    (C2, "syscall", "read", 1, None),  # 10
    (C2, "probe", "php_begin", 0, None),  # 11 C2's PHP window (nested in both requests' windows too)
    (C1, "syscall", "sendto", 1, None),  # 12 C1 queries MariaDB ...
    (C1, "sched", "sched_wakeup", 0, M),  # 13 ... waking M
    (M, "syscall", "recvfrom", 2, None),  # 14
    (M, "syscall", "sendto", 1, None),  # 15
    (M, "sched", "sched_wakeup", 0, C1),  # 16 M answers C1
    (C2, "syscall", "poll", 1, None),  # 17 C2 uses no database
    (LISTENER, "syscall", "epoll_wait", 2, None),  # 18 unrelated server thread: global mode only
    (C1, "syscall", "recvfrom", 2, None),  # 19
    (C1, "probe", "php_end", 0, None),  # 20
    (C1, "syscall", "write", 1, None),  # 21 C1 writes the FastCGI response ...
    (C1, "sched", "sched_wakeup", 0, W1),  # 22 ... and wakes W1: request 1 <- C1
    (W1, "syscall", "read", 2, None),  # 23
    (C1, "syscall", "close", 1, None),  # 24
    (C2, "probe", "php_end", 0, None),  # 25
    (C2, "syscall", "write", 1, None),  # 26
    (C1, "syscall", "accept", 1, None),  # 27 C1 waits for its next connection: its segment ends
    (W1, "syscall", "close", 1, None),  # 28
    (W1, "probe", "req_end", 0, None),  # 29
    (C2, "sched", "sched_wakeup", 0, W2),  # 30 C2 wakes W2: request 2 <- C2
    (W2, "syscall", "read", 2, None),  # 31
    (M, "syscall", "futex", 1, None),  # 32 after C1's segment, inside request 2's window
    (W2, "probe", "req_end", 0, None),  # 33
]

# the exact event rows of each request in each mode, cut by hand from the comments above
EXPECTED = {
    "global": [
        [1, 4, 5, 7, 9, 10, 12, 14, 15, 17, 18, 19, 21, 23, 24, 26, 27, 28],
        [4, 5, 7, 9, 10, 12, 14, 15, 17, 18, 19, 21, 23, 24, 26, 27, 28, 31, 32],
    ],
    "thread": [[1, 23, 28], [5, 31]],
    "causal": [
        [1, 4, 7, 12, 14, 15, 19, 21, 23, 24, 28],  # W1 + C1's segment [4, 27) + M inside it
        [5, 9, 10, 17, 26, 31],  # W2 + C2 from its accept to W2's end; no database thread
    ],
}


def _table(rows: list[tuple]) -> pa.Table:
    n = len(rows)
    cols = {
        "ts": list(range(n)),
        "cpu": [0] * n,
        "tid": [r[0] for r in rows],
        "pid": [r[0] for r in rows],
        "comm": [COMM[r[0]] for r in rows],
        "kind": [r[1] for r in rows],
        "name": [r[2] for r in rows],
        "entry": [r[3] for r in rows],
        "ret": [None] * n,
        "target_tid": [r[4] for r in rows],
        "state": [None] * n,
    }
    return pa.Table.from_arrays([pa.array(cols[f.name]).cast(f.type) for f in SCHEMA], schema=SCHEMA)


def _dataset(tmp_path: Path, rows: list[tuple]):
    table = _table(rows)
    block = Block(0, "normal", "train", 0)
    info = {"id": block.id, "behaviour": "normal", "split": "train"}
    build_dataset(tmp_path / "ds", [block], {"fixture": "hand-cut"}, source=lambda _o, _b: (table, info))
    return load_dataset(tmp_path / "ds")


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_modes_equal_the_hand_cut_rows(tmp_path, mode):
    ds = _dataset(tmp_path, ROWS)
    seqs = list(ds.sequences("train", mode))
    assert [list(s["ts"]) for s in seqs] == EXPECTED[mode]  # ts == row index
    assert all(set(s) == {"name", "entry", "ts", "comm", "pid", "tid", "ret", "duration_ns"} for s in seqs)
    assert [s["duration_ns"] for s in seqs] == [29, 30]
    assert ds.links("train") == {"none": 0, "response_wake": 2, "nesting": 0, "request_wake": 0}


def test_nesting_links_what_the_response_wake_leaves(tmp_path):
    """Without C2's response wake, C2's window is nested in both requests, but request 1 is already
    C1's: nesting gives C2 to request 2 (W2's wake of C1 in row 6 must not)."""
    ds = _dataset(tmp_path, [r if r[4] != W2 else (C2, "syscall", "getpid", 1, None) for r in ROWS])
    causal = [list(s["ts"]) for s in ds.sequences("train", "causal")]
    assert causal[0] == EXPECTED["causal"][0]
    assert causal[1] == [5, 9, 10, 17, 26, 30, 31]  # row 30 is now C2's getpid
    assert ds.links("train") == {"none": 0, "response_wake": 1, "nesting": 1, "request_wake": 0}


def test_without_php_probes_causal_is_the_thread(tmp_path):
    ds = _dataset(tmp_path, [r for r in ROWS if r[2] not in ("php_begin", "php_end")])
    thread = [list(s["ts"]) for s in ds.sequences("train", "thread")]
    assert [list(s["ts"]) for s in ds.sequences("train", "causal")] == thread
    assert ds.links("train")["none"] == 2
    with pytest.raises(TraceError, match="unknown mode 'bogus'; valid: global, thread, causal"):
        next(ds.sequences("train", "bogus"))


@pytest.fixture(scope="module")
def sample():
    return load_dataset(SAMPLE_DIR, verify=False)


@pytest.mark.parametrize("split", ["valid_id", "test_ood_opcache"])
def test_sample_thread_within_causal_within_global(sample, split):
    fields = ("ts", "tid", "comm")
    g, t, c = (list(sample.sequences(split, m, fields)) for m in ("global", "thread", "causal"))
    req = sample.split(split).to_pydict()
    for i, (sg, st, sc) in enumerate(zip(g, t, c, strict=True)):
        keys = [{(int(a), int(b)) for a, b in zip(s["ts"], s["tid"], strict=True)} for s in (sg, st, sc)]
        assert keys[1] <= keys[2] <= keys[0]
        assert np.all(np.diff(sc["ts"]) >= 0)
        assert set(st["tid"]) <= {req["tid"][i]}
        assert set(sc["comm"]) <= {"apache2", "php-fpm8.2", "mariadbd"}
    links = sample.links(split)
    assert sum(links.values()) == len(g) and set(links) == set(RULES)
    # nearly every request finds its PHP window (the sample: about 98%)
    assert links["none"] <= 0.05 * len(g)
    linked = [len(set(s["tid"])) >= 2 for s in c]
    assert np.mean(linked) >= 0.95


# a connection's first and last request, with their windows extended to the connection (requests.py)
CONN_ROWS = [
    (LISTENER, "syscall", "epoll_wait", 2, None),  # 0
    (LISTENER, "syscall", "accept4", 1, None),  # 1  the connection's accept4: request 1's window starts here
    (LISTENER, "syscall", "accept4", 2, None),  # 2
    (LISTENER, "syscall", "epoll_wait", 1, None),  # 3  the listener's own business: not request 1's
    (W1, "syscall", "read", 2, None),  # 4  W1 reads the request before its handler runs
    (W1, "probe", "req_begin", 0, None),  # 5
    (LISTENER, "syscall", "accept4", 1, None),  # 6  another connection's accept4
    (LISTENER, "syscall", "accept4", 2, None),  # 7
    (W1, "syscall", "writev", 1, None),  # 8
    (W1, "probe", "req_end", 0, None),  # 9
    (W1, "syscall", "shutdown", 1, None),  # 10 lingering close starts on the worker
    (LISTENER, "syscall", "read", 2, None),  # 11 (not attributable without file descriptors)
    (LISTENER, "syscall", "close", 1, None),  # 12 the socket's close: the window ends at its exit
    (LISTENER, "syscall", "close", 2, None),  # 13
    (W2, "probe", "req_begin", 0, None),  # 14 an unextended request whose first event is ...
    (LISTENER, "syscall", "accept4", 1, None),  # 15 ... the listener's next accept4: not W2's
    (LISTENER, "syscall", "accept4", 2, None),  # 16
    (W2, "syscall", "read", 2, None),  # 17
    (W2, "probe", "req_end", 0, None),  # 18
]


def test_causal_takes_the_connections_accept_and_close_when_the_window_has_them():
    from shared.traces.cutting import cut_block

    # request 1: extended from the accept4 entry (row_begin = 1 - 1) to the close exit (row_end = 13 + 1)
    cut = cut_block(_table(CONN_ROWS), np.array([0, 14]), np.array([14, 18]), np.array([W1, W2]))
    assert list(cut.rows(0, "thread")) == [4, 8, 10]
    assert list(cut.rows(0, "causal")) == [1, 2, 4, 8, 10, 12, 13]
    assert list(cut.rows(0, "global")) == [r for r in range(1, 14) if r not in (5, 9)]  # probes are no syscalls
    assert list(cut.rows(1, "causal")) == list(cut.rows(1, "thread")) == [17]
    assert list(cut.rows(1, "global")) == [15, 16, 17]
