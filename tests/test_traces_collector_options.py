"""The collector's parts that need no root: the connection-lifetime cutting rule on a hand-made events
table, the steady-state slice, wrk's latency parsing, the load's pacing environment and the measured
effects written into a manifest."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from shared.traces.collect import record_effects, steady_slice
from shared.traces.dataset import MANIFEST, build_dataset
from shared.traces.events import SCHEMA
from shared.traces.load import Load, parse_latency
from shared.traces.requests import cut_requests
from shared.traces.schedule import Block

LISTENER, W1, W2, OTHER = 10, 11, 12, 13  # threads of apache pid 1 (OTHER closes sockets); php is pid 2
PTR_A, PTR_B = 0x7F00, 0x7F80  # conn_rec pointers


def _events(rows: list[tuple]) -> pa.Table:
    """rows of (ts, tid, kind, name, entry, ret); pid 1 for apache's threads, 2 for php-fpm (tid 20)."""
    n = len(rows)
    cols = {
        "ts": [r[0] for r in rows],
        "cpu": [0] * n,
        "tid": [r[1] for r in rows],
        "pid": [2 if r[1] == 20 else 1 for r in rows],
        "comm": ["php-fpm8.2" if r[1] == 20 else "apache2" for r in rows],
        "kind": [r[2] for r in rows],
        "name": [r[3] for r in rows],
        "entry": [r[4] for r in rows],
        "ret": [r[5] for r in rows],
        "target_tid": [None] * n,
        "state": [None] * n,
    }
    return pa.Table.from_arrays([pa.array(cols[f.name]).cast(f.type) for f in SCHEMA], schema=SCHEMA)


# Connection A (fd 7, keep-alive) carries requests 1 and 2; connection B (fd 8) carries request 3 only.
# A third request on a connection created before the capture keeps its handler bounds.
ROWS = [
    (100, LISTENER, "syscall", "accept4", 1, None),  # row 0: A's accept
    (101, LISTENER, "syscall", "accept4", 2, 7),  # row 1
    (102, W1, "probe", "conn_new", 0, 7),  # row 2: fd 7
    (103, W1, "probe", "conn_made", 0, PTR_A),  # row 3
    (104, W1, "probe", "req_begin", 0, PTR_A),  # row 4: request 1 (first of A)
    (105, 20, "syscall", "read", 1, None),  # row 5: php, global mode counts it
    (106, 20, "syscall", "read", 2, 3),  # row 6
    (107, W1, "probe", "req_end", 0, None),  # row 7
    (110, W2, "probe", "req_begin", 0, 0x1234),  # row 8: request on an untraced connection
    (111, W2, "syscall", "write", 1, None),  # row 9
    (112, W2, "syscall", "write", 2, 5),  # row 10
    (113, W2, "probe", "req_end", 0, None),  # row 11
    (120, LISTENER, "syscall", "accept4", 1, None),  # row 12: B's accept
    (121, LISTENER, "syscall", "accept4", 2, 8),  # row 13
    (122, W2, "probe", "conn_new", 0, 8),  # row 14
    (123, W2, "probe", "conn_made", 0, PTR_B),  # row 15
    (124, W2, "probe", "req_begin", 0, PTR_B),  # row 16: request 3 (only one of B)
    (125, W2, "probe", "req_end", 0, None),  # row 17
    (126, W1, "probe", "req_begin", 0, PTR_A),  # row 18: request 2 (last of A)
    (127, W1, "probe", "req_end", 0, None),  # row 19
    (128, OTHER, "probe", "sock_close", 0, 9),  # row 20: another socket: not B's
    (129, OTHER, "probe", "sock_close", 0, 8),  # row 21: B's close
    (130, OTHER, "syscall", "close", 1, None),  # row 22
    (131, OTHER, "syscall", "close", 2, 0),  # row 23
    (140, OTHER, "probe", "sock_close", 0, 7),  # row 24: A's close
    (141, OTHER, "syscall", "close", 1, None),  # row 25
    (142, OTHER, "syscall", "close", 2, 0),  # row 26
]


def test_requests_span_their_connections_lifetime():
    req = cut_requests(_events(ROWS)).to_pydict()
    # chronological by handler entry: request 1 (A), the untraced one, request 3 (B), request 2 (A)
    assert req["tid"] == [W1, W2, W2, W1]
    assert req["connection"] == [0, -1, 1, 0]
    # first of A: from A's accept4 entry (row 0) to its handler's end; handler alone 104..107
    # the untraced connection's request: its handler (rows 8..11); B: accept (row 12) to B's close exit (row 23)
    # last of A: its handler's begin (row 18) to A's close exit (row 26)
    assert req["begin_ns"] == [100, 110, 120, 126]
    assert req["end_ns"] == [107, 113, 131, 142]
    assert req["duration_ns"] == [7, 3, 11, 16]
    assert req["handler_ns"] == [3, 3, 1, 1]
    # exclusive row bounds: the rows just outside the window
    assert req["row_begin"] == [-1, 8, 11, 18]
    assert req["row_end"] == [7, 11, 24, 27]
    # global length: syscall events inside the window, any thread (first of A: its accept4 and php's read)
    assert req["length"] == [4, 2, 4, 4]  # B: its accept4 and its close; last of A: B's close and its own


def test_a_close_probe_without_its_syscall_ends_at_the_probe():
    # A's socket closed by apr_socket_close without a close(2) of its own (already closed): the next close
    # exit on that thread belongs to a later apr_socket_close, so A's last request ends at the probe
    rows = [r for r in ROWS if r[0] not in (141, 142)] + [
        (150, OTHER, "probe", "sock_close", 0, 9),
        (151, OTHER, "syscall", "close", 1, None),
        (152, OTHER, "syscall", "close", 2, 0),
    ]
    req = cut_requests(_events(rows)).to_pydict()
    assert req["end_ns"] == [107, 113, 131, 140]


def test_without_connection_probes_the_handler_rule_holds():
    rows = [r for r in ROWS if r[3] not in ("conn_new", "conn_made", "sock_close")]
    req = cut_requests(_events(rows)).to_pydict()
    assert req["connection"] == [-1, -1, -1, -1]
    assert req["duration_ns"] == req["handler_ns"] == [3, 3, 1, 1]


def test_steady_slice_keeps_the_span_of_the_middle_requests():
    events = _events(ROWS)
    sliced, span = steady_slice(events, keep=2)
    # 4 requests; the middle two are the untraced-connection one (110..113) and B's (120..131)
    assert span == [110, 131]
    # every event in the span, except the handler probes of request 2 (126..127): its window runs to A's
    # close at 142, outside the span, so it is not cut from the slice (rather than cut shorter)
    assert sliced.column("ts").to_pylist() == [r[0] for r in ROWS if 110 <= r[0] <= 131 and r[0] not in (126, 127)]
    kept = cut_requests(sliced).to_pydict()
    assert kept["begin_ns"] == [110, 120] and kept["end_ns"] == [113, 131]  # B keeps its accept and close
    same, whole = steady_slice(events, keep=10)
    assert same is events and whole == [100, 142]


WRK_LATENCY = """Running 1m test @ http://127.0.0.1:4242/index.php
  2 threads and 10 connections
  Latency Distribution
     50%  812.00us
     75%    1.25ms
     90%    3.10ms
     99%    1.02s
  1000 requests in 2.50s, 210.00KB read
"""


def test_parse_latency_converts_units():
    assert parse_latency(WRK_LATENCY) == {
        "latency_ms_p50": 0.812, "latency_ms_p75": 1.25, "latency_ms_p90": 3.1, "latency_ms_p99": 1020.0,
    }  # fmt: skip
    assert parse_latency("no distribution") == {}


def test_load_paces_per_thread_and_bursts_on_request():
    env = Load(requests=1000, threads=2, connections=10, rate=400).env()
    assert float(env["REPRO_WRK_INTERVAL_MS"]) == pytest.approx(5.0)  # each of 2 threads: one slot per 5 ms
    assert env["REPRO_WRK_REQUESTS_PER_THREAD"] == "500" and env["REPRO_WRK_BURST"] == "0"
    burst = Load(requests=1000, threads=2, connections=100, rate=400, burst=True).env()
    assert burst["REPRO_WRK_BURST"] == "1" and burst["REPRO_WRK_CONNECTIONS_PER_THREAD"] == "50"
    assert "--latency" in Load().command("http://x/")
    assert Load(requests=0, rate=0).env()["REPRO_WRK_INTERVAL_MS"] == "0.000000"  # unpaced


def _block_events(handler_ns: int, n: int, t0: int) -> pa.Table:
    rows = []
    for i in range(n):
        begin = t0 + i * 1_000_000_000 // 100
        rows += [(begin, W1, "probe", "req_begin", 0, 0), (begin + 1, W1, "syscall", "read", 1, None)]
        rows += [(begin + handler_ns, W1, "probe", "req_end", 0, None)]
    return _events(rows)


def test_effects_measure_slowdown_and_queueing(tmp_path):
    blocks = [Block(0, "normal", "train", 0), Block(1, "cpu", "valid_ood_cpu", 0), Block(2, "normal", "train", 0)]
    handler = {"normal": 1_000_000, "cpu": 4_000_000}
    load = {
        "normal": {"latency_ms_p50": 1.5, "server_ms_p50": 1.0},
        "cpu": {"latency_ms_p50": 9.0, "server_ms_p50": 4.0},
    }

    def source(_out, block):
        info = {"id": block.id, "behaviour": block.behaviour, "split": block.split, "lost_events": {"overrun": 0}}
        lat, srv = load[block.behaviour]["latency_ms_p50"], load[block.behaviour]["server_ms_p50"]
        info["load"] = {"rps": 100.0, "latency_ms_p50": lat, "server_ms_p50": srv, "queueing_ms_p50": lat - srv}
        return _block_events(handler[block.behaviour], 50, block.index * 10**10), info

    out = build_dataset(tmp_path / "ds", blocks, collection={}, source=source)
    effects = record_effects(out)
    assert effects["normal"]["requests"] == 100 and effects["cpu"]["requests"] == 50
    assert effects["cpu"]["handler_ms_p50"] == 4.0 and effects["cpu"]["slowdown_handler"] == 4.0
    assert effects["normal"]["slowdown_handler"] == 1.0
    assert effects["cpu"]["queueing_ms_p50"] == 5.0 and effects["normal"]["queueing_ms_p50"] == 0.5
    assert effects["cpu"]["traced_rps"] == pytest.approx(100.0)  # 50 requests 10 ms apart
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["effects"] == effects
    assert [b["handler_ms_p50"] for b in manifest["blocks"]] == [1.0, 4.0, 1.0]
    assert np.isclose(manifest["blocks"][1]["duration_ms_p50"], 4.0)
