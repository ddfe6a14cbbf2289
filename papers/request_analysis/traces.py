"""Per-request features from our own kernel traces (a shared.traces dataset), in the authors' format.

A request is the dataset's request window: the Apache worker's handler (req_begin .. req_end) or, in
collector 2.0's datasets, its connection's lifetime (the listener's accept4 .. the socket's close). Its
thread states follow the critical path: the worker thread's states, except while the PHP backend handles
the request (the php-fpm worker's php_begin .. php_end window that opens first after the request's own
handler starts), where the php-fpm thread's states are used. States come from syscall entry/exit and
sched_switch / sched_wakeup:

  USERMODE / SYSTEMCALL   running outside / inside a syscall
  BLOCKED_CPU             runnable but not running (preempted, or woken and waiting for a CPU)
  BLOCKED_CPU_FUTEX       woken from a futex wait, waiting for a CPU
  BLOCKED_IO              uninterruptible sleep (D)
  BLOCKED_FOR_FUTEX       sleeping in futex
  BLOCKED_WAITPROCESS     sleeping on a socket, pipe or child (read, poll, epoll_wait, ...): waiting on
                          another process
  BLOCKED_WAITKERNEL      sleeping anywhere else in the kernel (flock, nanosleep, ...)

The state vector's times sum to the request duration, as the authors' tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from papers.request_analysis.data import Requests
from papers.request_analysis.states import HEADER
from shared.traces import TraceDataset

S = {name: i for i, name in enumerate(HEADER)}
WAIT_PROCESS = {
    "read", "readv", "recvfrom", "recvmsg", "poll", "ppoll", "select", "pselect6", "epoll_wait", "epoll_pwait",
    "epoll_pwait2", "accept", "accept4", "connect", "wait4", "waitid", "sendto", "sendmsg", "write", "writev",
}  # fmt: skip


@dataclass
class Timeline:
    """One thread's events inside a window, as parallel lists (already time-ordered)."""

    ts: np.ndarray
    kind: np.ndarray  # 0 sys_enter, 1 sys_exit, 2 switched out, 3 switched in, 4 woken
    name: np.ndarray  # syscall name for 0/1
    state: np.ndarray  # prev_state for 2
    _after: tuple[list[int], list[str | None]] | None = None  # the thread's state after each event

    def state_before(self, i: int) -> tuple[int, str | None]:
        """(state, syscall in progress) just before event i, from every earlier event of the thread: a
        window that opens on another thread (a connection accepted by the listener) finds the worker
        asleep, not running. Before the thread's first traced event: running in user mode."""
        if i <= 0:
            return S["USERMODE"], None
        if self._after is None:
            states, calls = [], []
            state, syscall = S["USERMODE"], None
            for kind, name, prev in zip(self.kind.tolist(), self.name.tolist(), self.state.tolist(), strict=True):
                state, syscall = _step(state, syscall, kind, name, prev)
                states.append(state)
                calls.append(syscall)
            self._after = (states, calls)
        return self._after[0][i - 1], self._after[1][i - 1]


def _sleep_state(prev_state: int, syscall: str | None) -> int:
    if prev_state & 0xFF == 0:
        return S["BLOCKED_CPU"]
    if prev_state & 2:
        return S["BLOCKED_IO"]
    if syscall == "futex":
        return S["BLOCKED_FOR_FUTEX"]
    if syscall in WAIT_PROCESS:
        return S["BLOCKED_WAITPROCESS"]
    return S["BLOCKED_WAITKERNEL"]


def _step(state: int, syscall: str | None, kind: int, name: str, prev: int) -> tuple[int, str | None]:
    """The thread's (state, syscall in progress) after one event."""
    if kind == 0:
        return S["SYSTEMCALL"], name
    if kind == 1:
        return S["USERMODE"], None
    if kind == 2:
        return _sleep_state(prev, syscall), syscall
    if kind == 3:
        return (S["SYSTEMCALL"] if syscall else S["USERMODE"]), syscall
    if kind == 4 and state not in (S["USERMODE"], S["SYSTEMCALL"], S["BLOCKED_CPU"]):
        return (S["BLOCKED_CPU_FUTEX"] if syscall == "futex" else S["BLOCKED_CPU"]), syscall
    return state, syscall


def thread_states(tl: Timeline, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
    """(ns per state, intervals per state, state digits, syscall names) of one thread over [t0, t1]. The
    state at t0 follows from the thread's earlier events (Timeline.state_before)."""
    times = np.zeros(len(HEADER), dtype=np.int64)
    counts = np.zeros(len(HEADER), dtype=np.int64)
    digits: list[str] = []
    syscalls: list[str] = []
    i0, i1 = int(np.searchsorted(tl.ts, t0, "left")), int(np.searchsorted(tl.ts, t1, "right"))
    state, syscall = tl.state_before(i0)
    since = t0
    for ts, kind, name, prev in zip(
        tl.ts[i0:i1].tolist(), tl.kind[i0:i1].tolist(), tl.name[i0:i1].tolist(), tl.state[i0:i1].tolist(), strict=True
    ):
        if kind == 0:
            syscalls.append(name)
        new, syscall = _step(state, syscall, kind, name, prev)
        if new != state:
            times[state] += ts - since
            if ts > since:
                counts[state] += 1
                digits.append(str(state))
            state, since = new, ts
    times[state] += t1 - since
    if t1 > since:
        counts[state] += 1
        digits.append(str(state))
    return times, counts, "".join(digits), syscalls


def _timelines(ev) -> dict[int, Timeline]:
    """Every thread's own timeline in one block's events table."""
    name = np.asarray(pc.cast(ev.column("name"), "string").to_numpy(zero_copy_only=False))
    kind = np.asarray(pc.cast(ev.column("kind"), "string").to_numpy(zero_copy_only=False))
    ts, tid = ev.column("ts").to_numpy(), ev.column("tid").to_numpy()
    entry = ev.column("entry").to_numpy()
    target = ev.column("target_tid").fill_null(-1).to_numpy()
    prev = ev.column("state").fill_null(0).to_numpy()
    rows_tid, rows_kind, rows = [], [], []
    sys = kind == "syscall"
    for mask, who, k in (
        (sys & (entry == 1), tid, 0),
        (sys & (entry == 2), tid, 1),
        (name == "sched_switch", tid, 2),
        (name == "sched_switch", target, 3),
        (name == "sched_wakeup", target, 4),
    ):
        idx = np.nonzero(mask)[0]
        rows.append(idx)
        rows_tid.append(who[idx])
        rows_kind.append(np.full(len(idx), k))
    idx, who, k = np.concatenate(rows), np.concatenate(rows_tid), np.concatenate(rows_kind)
    order = np.lexsort((k, idx, who))
    idx, who, k = idx[order], who[order], k[order]
    out = {}
    bounds = np.r_[0, np.nonzero(np.diff(who))[0] + 1, len(who)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        r = idx[a:b]
        out[int(who[a])] = Timeline(ts[r], k[a:b], name[r], prev[r])
    return out


def requests_from_traces(ds: TraceDataset, behaviours: list[str] | None = None) -> tuple[Requests, list[str]]:
    """The authors' four features for every request of `ds` (optionally only some behaviours), and each
    request's behaviour label."""
    keys, times, counts, durations, digits, syscalls, labels = [], [], [], [], [], [], []
    for block in ds.manifest["blocks"]:
        if behaviours and block["behaviour"] not in behaviours:
            continue
        ev = ds.events(block["id"])
        lines = _timelines(ev)
        names = np.asarray(pc.cast(ev.column("name"), "string").to_numpy(zero_copy_only=False))
        ts, tid = ev.column("ts").to_numpy(), ev.column("tid").to_numpy()
        php_begin = np.nonzero(names == "php_begin")[0]
        php_end = np.nonzero(names == "php_end")[0]
        handler = np.nonzero(names == "req_begin")[0]
        handler_ts = {int(t): ts[handler[tid[handler] == t]] for t in np.unique(tid[handler])}
        req = ds.requests.filter(pc.equal(ds.requests.column("block"), block["id"])).to_pydict()
        for i in range(len(req["request"])):
            t0, t1, worker = req["begin_ns"][i], req["end_ns"][i], req["tid"][i]
            # the PHP window opens after the request's own handler starts: a connection's window opens at
            # its accept, and while it waits for a worker other requests' PHP windows open
            starts = handler_ts.get(int(worker), np.zeros(0, dtype=np.int64))
            j = int(np.searchsorted(starts, t0))
            h0 = int(starts[j]) if j < len(starts) and starts[j] <= t1 else t0
            php = _php_window(ts, tid, php_begin, php_end, h0, t1)
            tl = lines.get(worker, Timeline(*(np.zeros(0),) * 4))
            if php is None:
                t, c, d, s = thread_states(tl, t0, t1)
            else:
                p_tid, p0, p1 = php
                t_a, c_a, d_a, s_a = thread_states(tl, t0, p0)
                t_p, c_p, d_p, s_p = thread_states(lines.get(p_tid, Timeline(*(np.zeros(0),) * 4)), p0, p1)
                t_b, c_b, d_b, s_b = thread_states(tl, p1, t1)
                t, c, d, s = t_a + t_p + t_b, c_a + c_p + c_b, d_a + d_p + d_b, s_a + s_p + s_b
            keys.append(f"{block['id']}_{worker}_{t0}")
            times.append(t)
            counts.append(c)
            durations.append(t1 - t0)
            digits.append(d)
            syscalls.append(s)
            labels.append(block["behaviour"])
    req = Requests(keys, np.array(counts).reshape(-1, len(HEADER)), np.array(times).reshape(-1, len(HEADER)),
                   np.array(durations, dtype=np.int64), digits, syscalls, str(ds.root))  # fmt: skip
    return req, labels


def _php_window(ts, tid, begins, ends, t0: int, t1: int) -> tuple[int, int, int] | None:
    """The first PHP request window (tid, start, end) that opens inside [t0, t1] and closes inside it."""
    i = np.searchsorted(ts[begins], t0)
    while i < len(begins) and ts[begins[i]] <= t1:
        b = begins[i]
        later = ends[(ts[ends] >= ts[b]) & (tid[ends] == tid[b])]
        if len(later) and ts[later[0]] <= t1:
            return int(tid[b]), int(ts[b]), int(ts[later[0]])
        i += 1
    return None
