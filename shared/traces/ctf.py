"""The paper's original datasets: LTTng CTF traces (kernel + ust channels) -> the same tables.

Read with babeltrace2's Python bindings (Debian python3-bt2; `make setup` links it into the venv).
Kernel events `syscall_entry_<name>` / `syscall_exit_<name>` become syscall rows; the patched httpd's
`httpd:enter_event_handler` / `exit_event_handler` become the req_begin / req_end boundaries, except
enters whose connection_state is 6 or 7 (lingering connections, "not real requests" in the paper's
code), whose exit is then left unmatched and dropped.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from shared.traces.behaviours import BEHAVIOURS
from shared.traces.dataset import build_dataset
from shared.traces.errors import TraceError
from shared.traces.events import SCHEMA
from shared.traces.options import check
from shared.traces.schedule import Block

log = logging.getLogger(__name__)

LINGER_STATES = (6, 7)
ENTER, EXIT = "httpd:enter_event_handler", "httpd:exit_event_handler"


def _bt2():
    try:
        import bt2
    except ImportError as exc:
        raise TraceError(
            "reading CTF needs babeltrace2's Python bindings: apt-get install python3-bt2, then `make setup` "
            "(it links /usr/lib/python3/dist-packages/bt2 into the venv)"
        ) from exc
    return bt2


def _field(event, name: str, default=None):
    try:
        return event[name]
    except KeyError:
        return default


_PREFLIGHT = "import sys, bt2; next(iter(bt2.TraceCollectionMessageIterator(sys.argv[1])))"


def _preflight(path: Path) -> None:
    """Open the trace in a child process first: on malformed metadata babeltrace2 2.0's bindings abort
    the whole interpreter instead of raising, so the child's death becomes an error naming the file."""
    proc = subprocess.run([sys.executable, "-c", _PREFLIGHT, str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        if proc.returncode < 0:
            why = "babeltrace2 aborted while opening it: malformed metadata?"
        else:
            why = f"babeltrace2: {lines[-1][:300] if lines else 'exit code ' + str(proc.returncode)}"
        raise TraceError(f"{path}: not a readable CTF trace ({why})")


def read_ctf(path: str | Path) -> pa.Table:
    """Every event of the CTF traces under `path` (all channels, merged by time) as an events table."""
    bt2 = _bt2()
    path = Path(path)
    if not path.exists():
        raise TraceError(f"{path}: no such CTF folder")
    _preflight(path)
    cols: dict[str, list] = {k: [] for k in ("ts", "cpu", "tid", "pid", "comm", "kind", "name", "entry", "ret")}
    try:
        messages = bt2.TraceCollectionMessageIterator(str(path))
        for msg in messages:
            if type(msg) is not bt2._EventMessageConst:
                continue
            _append(cols, msg)
    except (bt2._Error, RuntimeError, ValueError) as exc:
        raise TraceError(f"{path}: not a readable CTF trace ({str(exc).splitlines()[0] if str(exc) else exc})") from exc
    if not cols["ts"]:
        raise TraceError(f"{path}: no events (is it a CTF trace folder with metadata files?)")
    return _table(cols)


def _append(cols: dict[str, list], msg) -> None:
    ev = msg.event
    name = ev.name
    ret = None
    if name.startswith("syscall_entry_"):
        kind, entry, label = "syscall", 1, name.removeprefix("syscall_entry_")
    elif name.startswith("syscall_exit_"):
        kind, entry, label = "syscall", 2, name.removeprefix("syscall_exit_")
        ret = _field(ev, "ret")
        ret = int(ret) if ret is not None else None
    elif name == ENTER:
        if int(_field(ev, "connection_state", 0)) in LINGER_STATES:
            return
        kind, entry, label = "probe", 0, "req_begin"
    elif name == EXIT:
        kind, entry, label = "probe", 0, "req_end"
    elif name.startswith("sched_"):
        kind, entry, label = "sched", 0, name
    else:
        return
    tid = _field(ev, "tid", _field(ev, "vtid", -1))
    pid = _field(ev, "pid", _field(ev, "vpid", -1))
    packet_ctx = ev.packet.context_field if ev.packet is not None else None
    cpu = packet_ctx["cpu_id"] if packet_ctx is not None and "cpu_id" in packet_ctx else -1
    cols["ts"].append(msg.default_clock_snapshot.ns_from_origin)
    cols["cpu"].append(int(cpu))
    cols["tid"].append(int(tid))
    cols["pid"].append(int(pid))
    cols["comm"].append(str(_field(ev, "procname", "")))
    cols["kind"].append(kind)
    cols["name"].append(label)
    cols["entry"].append(entry)
    cols["ret"].append(ret)


def _table(cols: dict[str, list]) -> pa.Table:
    n = len(cols["ts"])
    order = np.argsort(np.array(cols["ts"], dtype=np.int64), kind="stable")
    comm_tid = {}
    for t, c in zip(cols["tid"], cols["comm"], strict=True):
        if c:
            comm_tid[t] = c
    comms = [c or comm_tid.get(t, "<unknown>") for t, c in zip(cols["tid"], cols["comm"], strict=True)]

    def take(values, typ):
        return pa.array([values[i] for i in order], typ)

    arrays = [
        take(cols["ts"], pa.int64()),
        take(cols["cpu"], pa.int16()),
        take(cols["tid"], pa.int32()),
        take(cols["pid"], pa.int32()),
        take(comms, pa.string()).dictionary_encode().cast(SCHEMA.field("comm").type),
        take(cols["kind"], pa.string()).dictionary_encode().cast(SCHEMA.field("kind").type),
        take(cols["name"], pa.string()).dictionary_encode().cast(SCHEMA.field("name").type),
        take(cols["entry"], pa.int8()),
        take(cols["ret"], pa.int64()),
        pa.nulls(n, pa.int32()),
        pa.nulls(n, pa.int64()),
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def behaviour_of(split: str) -> str:
    """The paper's folder names: train / valid_id / test_id are normal; *_ood_<novelty> the novelty."""
    if "_ood_" in split:
        novelty = split.split("_ood_", 1)[1]
        return {"dumpio": "io"}.get(novelty, novelty)
    return "normal"


def convert_ctf(src: str | Path, out: str | Path, split: str | None = None, skip: int = 0) -> Path:
    """Convert one split folder (kernel/ + ust/), or a folder of split folders, into a dataset at `out`."""
    check("skip", skip)
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise TraceError(f"{src}: not a folder")
    has_metadata = any(src.glob("**/metadata"))
    if not has_metadata:
        raise TraceError(f"{src}: no CTF metadata file below it; expected <split>/kernel/metadata (LTTng layout)")
    folders = [src] if split or any(p.name in ("kernel", "ust") for p in src.iterdir()) else sorted(
        p for p in src.iterdir() if p.is_dir() and any(p.glob("**/metadata"))
    )  # fmt: skip
    blocks = []
    for i, folder in enumerate(folders):
        name = split if (split and len(folders) == 1) else folder.name
        behaviour = behaviour_of(name)
        if behaviour not in BEHAVIOURS:
            log.warning("%s: behaviour %r is not one of ours; kept as is", folder, behaviour)
        blocks.append((Block(i, behaviour, name, 0), folder))
    by_block = {b.id: folder for b, folder in blocks}

    def source(_out: Path, block: Block) -> tuple[pa.Table, dict]:
        table = read_ctf(by_block[block.id])
        return table, {
            "id": block.id,
            "split": block.split,
            "behaviour": block.behaviour,
            "source": str(by_block[block.id]),
        }

    collection = {"source": str(src), "format": "LTTng CTF (babeltrace2)", "skip_first_requests": skip}
    how = (
        f"converted from the LTTng CTF traces in {src} with `python -m shared.traces ctf` "
        f"(babeltrace2 {_bt2().__version__})"
    )
    return build_dataset(out, [b for b, _ in blocks], collection, source=source, how=how, skip=skip)
