"""Decode tracefs raw ring-buffer pages (per_cpu/cpuN/trace_pipe_raw) into columns, vectorised.

Page layout (events/header_page): u64 timestamp, u64 commit (bytes used; bit 31 = events were lost
before this page), then data. Each record starts with a u32 header: type_len (5 bits) and time_delta
(27 bits). type_len 1..28: payload of type_len*4 bytes; 0: payload length in the next u32; 29: padding;
30: time extend (delta += array[0] << 27); 31: absolute time stamp.

Records are variable-length, so a page must be walked in order; we walk all pages in lock step, one
record per page per numpy step, which makes the cost per event a few array operations instead of a
Python iteration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.traces.errors import TraceError

PAGE_HEADER = 16
MISSED_EVENTS = 1 << 31
COMMIT_MASK = (1 << 30) - 1
ABS_TS_MASK = (1 << 59) - 1

_FIELD = re.compile(r"field:(?P<type>[^;]*?)\s+(?P<name>\w+)(?:\[\d*\])?;\s*offset:(\d+);\s*size:(\d+);\s*signed:(\d)")


@dataclass
class EventFormat:
    """One event's id and field layout, from its tracefs `format` file."""

    name: str
    id: int
    fields: dict[str, tuple[int, int, bool, str]] = field(default_factory=dict)  # name -> offset, size, signed, type

    @classmethod
    def parse(cls, text: str) -> EventFormat:
        name = re.search(r"^name:\s*(\S+)", text, re.M)
        ident = re.search(r"^ID:\s*(\d+)", text, re.M)
        if not name or not ident:
            raise TraceError(f"not a tracefs event format (no name/ID line): {text[:80]!r}")
        fmt = cls(name.group(1), int(ident.group(1)))
        for m in _FIELD.finditer(text):
            fmt.fields[m.group("name")] = (int(m.group(3)), int(m.group(4)), m.group(5) == "1", m.group("type"))
        return fmt


@dataclass
class RawRecords:
    """Every data record of one CPU: timestamp (ns), event id and the payload's byte offset."""

    buf: np.ndarray  # uint8, the whole file plus padding
    ts: np.ndarray
    type_id: np.ndarray
    offset: np.ndarray
    pages: int
    pages_with_loss: int

    def take(self, mask: np.ndarray, fmt: EventFormat, name: str) -> np.ndarray:
        """Field `name` of the records selected by `mask`, decoded by its format."""
        off, size, signed, ftype = fmt.fields[name]
        starts = self.offset[mask] + off
        if "__data_loc" in ftype:
            loc = _gather(self.buf, starts, 4, False)
            return _strings(self.buf, self.offset[mask] + (loc & 0xFFFF), (loc >> 16) & 0xFFFF)
        if "char" in ftype and size == 0:  # char buf[] at the end (trace_marker text)
            lengths = np.minimum(64, len(self.buf) - starts)
            return _strings(self.buf, starts, lengths)
        if "char" in ftype and size > 8:  # fixed char[N]: bytes, NUL-padded (numpy strips the padding)
            return np.ascontiguousarray(self.buf[starts[:, None] + np.arange(size)]).view(f"S{size}").ravel()
        return _gather(self.buf, starts, size, signed)


def _gather(buf: np.ndarray, starts: np.ndarray, size: int, signed: bool) -> np.ndarray:
    dtype = np.dtype(f"<{'i' if signed else 'u'}{size}")
    idx = starts[:, None] + np.arange(size)
    return np.ascontiguousarray(buf[idx]).view(dtype).ravel()


def _strings(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Variable-length (__data_loc) strings as bytes; rare events (forks), so a plain loop."""
    out = np.empty(len(starts), dtype="S64")
    for i, (s, n) in enumerate(zip(starts.tolist(), np.asarray(lengths).tolist(), strict=True)):
        out[i] = buf[s : s + n].tobytes().split(b"\0", 1)[0][:64]
    return out


def read_cpu(path: str | Path, page_size: int = 4096) -> RawRecords:
    """Walk every page of one cpuN.raw file; returns its data records in time order."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) % page_size:
        raise TraceError(f"{path}: {len(data)} bytes is not a whole number of {page_size}-byte pages (truncated?)")
    n_pages = len(data) // page_size
    buf = np.frombuffer(data + b"\0" * 16, dtype=np.uint8)
    if n_pages == 0:
        empty = np.empty(0, dtype=np.int64)
        return RawRecords(buf, empty, empty.astype(np.uint16), empty, 0, 0)
    words = buf[: n_pages * page_size + 16].view("<u4")
    page_ts = buf[: n_pages * page_size].reshape(n_pages, page_size)[:, :8].copy().view("<u8").ravel()
    commit = buf[: n_pages * page_size].reshape(n_pages, page_size)[:, 8:16].copy().view("<u8").ravel()
    size = (commit & COMMIT_MASK).astype(np.int64)
    if (size > page_size - PAGE_HEADER).any():
        raise TraceError(f"{path}: a page claims more data than fits in {page_size} bytes (corrupt or wrong page size)")

    words_per_page = page_size // 4
    off = np.zeros(n_pages, dtype=np.int64)
    steps: list[tuple[np.ndarray, ...]] = []
    active = np.nonzero(size > 0)[0]
    step = 0
    while active.size:
        w = active * words_per_page + (PAGE_HEADER + off[active]) // 4
        head = words[w]
        tl = head & 31
        delta = (head >> 5).astype(np.int64)
        arr0 = words[w + 1].astype(np.int64)
        length = np.where(tl == 0, arr0 + 4, np.where(tl <= 28, tl.astype(np.int64) * 4 + 4, 8))
        null_pad = (tl == 29) & (delta == 0)
        length = np.where(tl == 29, np.where(null_pad, page_size, arr0 + 4), length)
        steps.append((active, np.full(active.size, step), tl, delta, arr0, off[active].copy()))
        off[active] += length
        active = active[off[active] < size[active]]
        step += 1

    page, order_step, tl, delta, arr0, rec_off = (np.concatenate(c) for c in zip(*steps, strict=True))
    order = np.lexsort((order_step, page))
    page, tl, delta, arr0, rec_off = page[order], tl[order], delta[order], arr0[order], rec_off[order]

    inc = np.where(tl <= 28, delta, 0)
    inc = np.where(tl == 30, delta + (arr0 << 27), inc)
    ts = _timestamps(page, tl, delta, arr0, inc, page_ts.astype(np.int64))

    is_data = tl <= 28
    payload = page * page_size + PAGE_HEADER + rec_off + np.where(tl == 0, 8, 4)
    payload = payload[is_data]
    type_id = _gather(buf, payload, 2, False)
    lost_pages = int(((commit & MISSED_EVENTS) != 0).sum())
    return RawRecords(buf, ts[is_data], type_id, payload, n_pages, lost_pages)


def _timestamps(page, tl, delta, arr0, inc, page_ts) -> np.ndarray:
    """Running clock per record: a segment starts at each page (its header stamp) and at each absolute
    stamp (type 31, whose top bits come from the page stamp); within a segment, deltas accumulate."""
    starts_seg = np.r_[True, page[1:] != page[:-1]] | (tl == 31)
    base = page_ts[page].copy()
    absolute = tl == 31
    if absolute.any():
        stamp = delta[absolute] | (arr0[absolute] << 27)
        top = base[absolute] & ~ABS_TS_MASK
        full = stamp | top
        base[absolute] = np.where(full < base[absolute], full + (1 << 59), full)
    total = np.cumsum(inc)
    seg = np.cumsum(starts_seg) - 1
    first = np.nonzero(starts_seg)[0]
    before = total[first] - inc[first]  # running sum just before each segment's first record
    return base[first][seg] + total - before[seg]
