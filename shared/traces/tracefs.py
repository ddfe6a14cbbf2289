"""A private tracefs instance: syscall, scheduler and uprobe events of chosen tasks, read as raw pages.

A private instance leaves the global buffer and settings alone. Everything this module creates (the
instance folder, the uprobe definitions) is removed by `Tracer.close()`, which the collector calls on
every exit path.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from shared.traces.elf import symbol_offset
from shared.traces.errors import SAMPLE_HINT, TraceError

log = logging.getLogger(__name__)

TRACEFS_MOUNTS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
PAGE_READ = 1 << 16


def tracefs_root(mount: bool = True) -> Path:
    """The tracefs mount point; mounts it when absent and allowed. Needs root."""
    if os.geteuid() != 0:
        raise TraceError(f"collecting kernel traces needs root (running as uid {os.geteuid()}); {SAMPLE_HINT}")
    for path in TRACEFS_MOUNTS:
        if (path / "instances").is_dir():
            return path
    if mount and TRACEFS_MOUNTS[0].is_dir():
        proc = subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS_MOUNTS[0])], capture_output=True)
        if proc.returncode == 0 and (TRACEFS_MOUNTS[0] / "instances").is_dir():
            log.info("mounted tracefs at %s", TRACEFS_MOUNTS[0])
            return TRACEFS_MOUNTS[0]
    raise TraceError(
        f"no tracefs found at {', '.join(map(str, TRACEFS_MOUNTS))} and mounting it failed "
        f"(kernel without CONFIG_TRACING, or a container without it); {SAMPLE_HINT}"
    )


@dataclass(frozen=True)
class Uprobe:
    """A uprobe on a function of an installed binary; `ret` probes fire when it returns."""

    name: str
    binary: str
    symbol: str
    ret: bool = False
    fetch: str = ""  # one fetch argument stored as the event's `arg` field, e.g. "+8(%di):u64"

    def definition(self, group: str) -> str:
        offset = symbol_offset(self.binary, self.symbol)
        arg = f" arg={self.fetch}" if self.fetch else ""
        return f"{'r' if self.ret else 'p'}:{group}/{self.name} {self.binary}:{offset:#x}{arg}"


class Tracer:
    """One tracefs instance with events enabled, filtered to a set of tids (children follow).

    Use as a context manager, or call `open()` and then `close()` in a finally block.
    """

    def __init__(
        self,
        name: str,
        events: Iterable[str],
        uprobes: Iterable[Uprobe] = (),
        buffer_kb: int = 131072,
        root: Path | None = None,
    ):
        self.root = root or tracefs_root()
        self.name = name
        self.group = name.replace("-", "_")
        self.dir = self.root / "instances" / name
        self.events = list(events)
        self.uprobes = list(uprobes)
        self.buffer_kb = buffer_kb
        self._defined: list[str] = []

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> Tracer:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        for probe in self.uprobes:
            self._append(self.root / "uprobe_events", probe.definition(self.group))
            self._defined.append(probe.name)
        try:
            self.dir.mkdir()
        except FileExistsError as exc:
            raise TraceError(f"tracefs instance {self.dir} exists already; another collector is running?") from exc
        self._write("buffer_size_kb", str(self.buffer_kb))
        self._write("trace_clock", "mono")
        self._write("options/event-fork", "1")
        self._write("tracing_on", "0")
        for event in self.events + [f"{self.group}/{p.name}" for p in self.uprobes]:
            self._write(f"events/{event}/enable", "1")
        log.info("tracefs instance %s: %s + %d uprobes", self.dir, ", ".join(self.events), len(self.uprobes))

    def close(self) -> None:
        """Remove the instance and the uprobe definitions; safe to call twice or half-opened."""
        if self.dir.is_dir():
            for rel in ("tracing_on", "events/enable"):
                try:
                    self._write(rel, "0")
                except OSError:
                    pass
            try:
                self.dir.rmdir()
            except OSError as exc:
                log.warning("could not remove %s: %s", self.dir, exc)
        for name in reversed(self._defined):
            try:
                self._append(self.root / "uprobe_events", f"-:{self.group}/{name}")
            except OSError as exc:
                log.warning("could not remove uprobe %s/%s: %s", self.group, name, exc)
        self._defined.clear()

    # -- capture ------------------------------------------------------------------------------
    def set_pids(self, tids: Iterable[int]) -> None:
        """Trace only these tasks (and, through event-fork, their future children)."""
        self._write("set_event_pid", " ".join(str(t) for t in sorted(set(tids))))

    def start(self) -> None:
        with open(self.dir / "trace", "w"):  # opening for write truncates: drops anything left
            pass
        self._write("tracing_on", "1")

    def stop(self) -> None:
        self._write("tracing_on", "0")

    def drain(self, dest: Path) -> dict[str, int]:
        """Move every CPU's raw pages into dest/cpuN.raw and return the lost-event counts."""
        dest.mkdir(parents=True, exist_ok=True)
        lost = self.lost_events()
        for cpu_dir in sorted((self.dir / "per_cpu").iterdir()):
            cpu = int(cpu_dir.name.removeprefix("cpu"))
            _read_all(cpu_dir / "trace_pipe_raw", dest / f"cpu{cpu}.raw")
        return lost

    def lost_events(self) -> dict[str, int]:
        """Sum of overrun, commit overrun and dropped events over the CPUs (all should be 0)."""
        totals = {"overrun": 0, "commit overrun": 0, "dropped events": 0}
        for stats in (self.dir / "per_cpu").glob("cpu*/stats"):
            for line in stats.read_text().splitlines():
                key, _, value = line.partition(":")
                if key in totals:
                    totals[key] += int(value.strip().split()[0])
        return {k.replace(" ", "_"): v for k, v in totals.items()}

    def formats(self) -> dict[str, str]:
        """The `format` file of every enabled event; the raw pages are decoded against these."""
        names = self.events + [f"{self.group}/{p.name}" for p in self.uprobes] + ["ftrace/print"]
        out = {}
        for event in names:
            for fmt in (self.root / "events" / event).glob("**/format"):
                out["/".join(fmt.parent.relative_to(self.root / "events").parts)] = fmt.read_text()
        return out

    # -- helpers ------------------------------------------------------------------------------
    def _write(self, rel: str, value: str) -> None:
        path = self.dir / rel
        try:
            with open(path, "w") as fh:
                fh.write(value)
        except OSError as exc:
            raise TraceError(f"writing {value!r} to {path} failed: {exc}") from exc

    @staticmethod
    def _append(path: Path, line: str) -> None:
        try:  # os.open: Python's append mode seeks to the end, which tracefs rejects
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise TraceError(f"appending {line!r} to {path} failed: {exc} (see {path.parent}/error_log)") from exc


def _read_all(src: Path, dest: Path) -> None:
    fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with open(dest, "wb") as out:
            while True:
                try:
                    chunk = os.read(fd, PAGE_READ)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.EINTR:
                        continue
                    raise
                if not chunk:
                    break
                out.write(chunk)
    finally:
        os.close(fd)


def leftovers(root: Path, prefix: str) -> list[str]:
    """Instances and uprobe definitions whose name starts with `prefix` (empty after a clean exit)."""
    found = [str(p) for p in (root / "instances").glob(f"{prefix}*")]
    group = prefix.replace("-", "_")
    for line in (root / "uprobe_events").read_text().splitlines():
        if line.split()[0].split(":", 1)[-1].startswith(group):
            found.append(line)
    return found
