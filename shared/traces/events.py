"""Raw pages of one capture -> one time-ordered events table (Arrow), the input of every paper.

Columns: ts (ns, CLOCK_MONOTONIC), cpu, tid, pid (tgid), comm, kind (syscall | sched | probe), name
(syscall name, sched event or probe name), entry (1 entry, 2 exit, 0 neither: the papers' encoding),
ret (syscall exits; a probe's fetched argument), target_tid (next task of sched_switch, woken task,
forked child), state (prev_state of sched_switch: 0 = preempted/runnable, else the sleep state bits).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shared.traces.errors import TraceError
from shared.traces.ringbuf import EventFormat, RawRecords, read_cpu
from shared.traces.syscalls import syscall_names

SCHEMA = pa.schema(
    [
        ("ts", pa.int64()),
        ("cpu", pa.int16()),
        ("tid", pa.int32()),
        ("pid", pa.int32()),
        ("comm", pa.dictionary(pa.int32(), pa.string())),
        ("kind", pa.dictionary(pa.int8(), pa.string())),
        ("name", pa.dictionary(pa.int32(), pa.string())),
        ("entry", pa.int8()),
        ("ret", pa.int64()),
        ("target_tid", pa.int32()),
        ("state", pa.int64()),
    ]
)
# Syscalls made by our own instrumentation, not by the server: since Linux 6.11 a return uprobe on
# x86-64 returns through the uretprobe syscall (NR 335), whose exit the kernel reports as NR -1.
# Dropped, so sequences hold only the server's own calls.
NO_SYSCALL = "no_syscall"
TRACER_ARTIFACTS = ("uretprobe", NO_SYSCALL)
FORMATS_FILE = "formats.json"
TASKS_FILE = "tasks.json"


def load_formats(raw_dir: Path) -> dict[int, EventFormat]:
    path = raw_dir / FORMATS_FILE
    if not path.is_file():
        raise TraceError(f"{path}: missing; a capture folder holds cpuN.raw files and {FORMATS_FILE}")
    formats = [EventFormat.parse(text) for text in json.loads(path.read_text()).values()]
    return {f.id: f for f in formats}


def decode_capture(raw_dir: str | Path, arch: str | None = None) -> pa.Table:
    """Decode every cpuN.raw of a capture folder (written by Tracer.drain) into one events table."""
    raw_dir = Path(raw_dir)
    formats = load_formats(raw_dir)
    tasks = {}
    if (raw_dir / TASKS_FILE).is_file():
        tasks = {int(k): tuple(v) for k, v in json.loads((raw_dir / TASKS_FILE).read_text()).items()}
    names = syscall_names(arch)
    cpu_files = sorted(raw_dir.glob("cpu*.raw"), key=lambda p: int(p.stem[3:]))
    if not cpu_files:
        raise TraceError(f"{raw_dir}: no cpuN.raw files")
    vocab: dict[str, int] = {}
    parts = [_decode_cpu(read_cpu(p), int(p.stem[3:]), formats, names, vocab) for p in cpu_files]
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "comms"}
    comms: dict[int, str] = {0: "swapper"}
    for p in parts:
        comms.update(p["comms"])
    artifacts = [vocab[a] for a in TRACER_ARTIFACTS if a in vocab]
    keep = ~((cols["kind"] == 0) & np.isin(cols["name"], artifacts))
    order = np.nonzero(keep)[0][np.argsort(cols["ts"][keep], kind="stable")]
    cols = {k: v[order] for k, v in cols.items()}
    return _to_table(cols, tasks, comms, list(vocab))


def _code(vocab: dict[str, int], name: str) -> int:
    return vocab.setdefault(name, len(vocab))


def _decode_cpu(
    rec: RawRecords, cpu: int, formats: dict[int, EventFormat], names: dict[int, str], vocab: dict[str, int]
) -> dict:
    n = len(rec.ts)
    out = {
        "ts": rec.ts,
        "cpu": np.full(n, cpu, dtype=np.int16),
        "tid": np.zeros(n, dtype=np.int32),
        "kind": np.zeros(n, dtype=np.int8),
        "name": np.zeros(n, dtype=np.int32),
        "entry": np.zeros(n, dtype=np.int8),
        "ret": np.zeros(n, dtype=np.int64),
        "has_ret": np.zeros(n, dtype=bool),
        "target_tid": np.zeros(n, dtype=np.int32),
        "has_target": np.zeros(n, dtype=bool),
        "state": np.zeros(n, dtype=np.int64),
        "has_state": np.zeros(n, dtype=bool),
    }
    comms: dict[int, str] = {}
    unknown = set(np.unique(rec.type_id).tolist()) - set(formats)
    if unknown:
        raise TraceError(f"records with event ids {sorted(unknown)} have no format in {FORMATS_FILE}")
    for type_id, fmt in formats.items():
        m = rec.type_id == type_id
        if not m.any():
            continue
        out["tid"][m] = rec.take(m, fmt, "common_pid")
        if fmt.name in ("sys_enter", "sys_exit"):
            nr = rec.take(m, fmt, "id")
            out["name"][m] = _syscall_codes(nr, names, vocab)
            out["kind"][m] = 0
            out["entry"][m] = 1 if fmt.name == "sys_enter" else 2
            if fmt.name == "sys_exit":
                out["ret"][m] = rec.take(m, fmt, "ret")
                out["has_ret"][m] = True
        elif fmt.name.startswith("sched_"):
            out["kind"][m] = 1
            out["name"][m] = _code(vocab, fmt.name)
            target = {"sched_switch": "next_pid", "sched_process_fork": "child_pid"}.get(fmt.name, "pid")
            if target in fmt.fields:
                out["target_tid"][m] = rec.take(m, fmt, target)
                out["has_target"][m] = True
            if fmt.name == "sched_switch":
                out["state"][m] = rec.take(m, fmt, "prev_state")
                out["has_state"][m] = True
                _learn(comms, rec.take(m, fmt, "prev_pid"), rec.take(m, fmt, "prev_comm"))
                _learn(comms, rec.take(m, fmt, "next_pid"), rec.take(m, fmt, "next_comm"))
            elif fmt.name == "sched_process_fork":
                _learn(comms, rec.take(m, fmt, "child_pid"), rec.take(m, fmt, "child_comm"))
            elif "comm" in fmt.fields:
                _learn(comms, rec.take(m, fmt, "pid"), rec.take(m, fmt, "comm"))
        elif fmt.name == "print":  # a trace_marker write: its text is the boundary's name
            out["kind"][m] = 2
            text = [t.decode("utf-8", "replace").strip() for t in rec.take(m, fmt, "buf")]
            out["name"][m] = np.array([_code(vocab, t) for t in text], dtype=np.int32)
        else:  # a uprobe: its event name is the probe's name, its fetched argument (if any) goes to ret
            out["kind"][m] = 2
            out["name"][m] = _code(vocab, fmt.name)
            if "arg" in fmt.fields:
                out["ret"][m] = rec.take(m, fmt, "arg").astype(np.int64)
                out["has_ret"][m] = True
    out["comms"] = comms
    return out


def _syscall_codes(nr: np.ndarray, names: dict[int, str], vocab: dict[str, int]) -> np.ndarray:
    """Vocabulary codes of syscall numbers, through a lookup table (no per-event work in Python)."""
    if not len(nr):
        return np.zeros(0, dtype=np.int32)
    lo, hi = int(nr.min()), int(nr.max())
    table = np.full(hi - lo + 1, -1, dtype=np.int32)
    for n in np.nonzero(np.bincount(nr - lo))[0]:
        nr_n = int(n) + lo
        table[n] = _code(vocab, NO_SYSCALL if nr_n == -1 else names.get(nr_n, f"syscall_{nr_n}"))
    return table[nr - lo]


def _learn(comms: dict[int, str], tids: np.ndarray, names: np.ndarray) -> None:
    """Remember each task's latest name (tid 0 is the idle task)."""
    _, last = np.unique(tids[::-1], return_index=True)
    for tid, name in zip(tids[::-1][last].tolist(), names[::-1][last].tolist(), strict=True):
        if tid:
            comms[tid] = name.decode("utf-8", "replace")


def _to_table(
    cols: dict[str, np.ndarray], tasks: dict[int, tuple[int, str]], comms: dict[int, str], vocab: list[str]
) -> pa.Table:
    tid = cols["tid"]
    uniq, inv = np.unique(tid, return_inverse=True)
    pid = np.array([tasks.get(int(t), (int(t), ""))[0] for t in uniq], dtype=np.int32)[inv]
    comm_of = [comms.get(int(t)) or tasks.get(int(t), (0, ""))[1] or "<unknown>" for t in uniq]
    comm_vocab = sorted(set(comm_of))
    comm_code = np.array([comm_vocab.index(c) for c in comm_of], dtype=np.int32)
    comm = _dictionary(comm_code[inv] if len(tid) else np.zeros(0, np.int32), comm_vocab)
    kind = pa.DictionaryArray.from_arrays(
        pa.array(cols["kind"], pa.int8()), pa.array(["syscall", "sched", "probe"], pa.string())
    )
    arrays = [
        pa.array(cols["ts"], pa.int64()),
        pa.array(cols["cpu"], pa.int16()),
        pa.array(tid, pa.int32()),
        pa.array(pid, pa.int32()),
        comm,
        kind,
        _dictionary(cols["name"], vocab),
        pa.array(cols["entry"], pa.int8()),
        pa.array(cols["ret"], pa.int64(), mask=~cols["has_ret"]),
        pa.array(cols["target_tid"], pa.int32(), mask=~cols["has_target"]),
        pa.array(cols["state"], pa.int64(), mask=~cols["has_state"]),
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _dictionary(codes: np.ndarray, values: list[str]) -> pa.DictionaryArray:
    """Codes into `values`, re-coded so the dictionary is sorted (equal captures give equal files)."""
    order = np.argsort(np.array(values, dtype=object)) if values else np.zeros(0, dtype=np.int64)
    rank = np.empty(len(values), dtype=np.int32)
    rank[order] = np.arange(len(values), dtype=np.int32)
    indices = rank[codes] if len(codes) else np.zeros(0, dtype=np.int32)
    return pa.DictionaryArray.from_arrays(
        pa.array(indices, pa.int32()), pa.array([values[i] for i in order], pa.string())
    )


def dict_codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[str]]:
    """(codes, values) of a dictionary column, unified over its chunks: fast equality tests."""
    if isinstance(column, pa.ChunkedArray):
        column = column.unify_dictionaries().combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    return column.indices.to_numpy(zero_copy_only=False), column.dictionary.to_pylist()


def equals(column: pa.ChunkedArray | pa.Array, *values: str) -> np.ndarray:
    """Boolean mask: rows of a dictionary column equal to any of `values`."""
    codes, dictionary = dict_codes(column)
    wanted = [i for i, v in enumerate(dictionary) if v in values]
    return np.isin(codes, wanted)
