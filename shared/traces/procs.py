"""Child processes in their own process groups, so one killpg stops a server and all its workers."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


def spawn(
    cmd: list[str], log_path: Path, env: dict[str, str] | None = None, own_session: bool = True
) -> subprocess.Popen:
    """Start `cmd` in its own process group, output appended to `log_path`.

    `own_session` (setsid) also gives it its own scheduler autogroup (kernel.sched_autogroup_enabled),
    which shares CPU between sessions, not tasks. The servers and the cpu behaviour's stress workers
    are started with own_session=False, in the collector's session and autogroup, so stress workers
    compete with the server's threads task for task (in separate sessions, 128 workers took no more
    CPU from the server than 1 did); the load generator keeps its own session, out of that contest."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=own_session, process_group=None if own_session else 0,
        )  # fmt: skip


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after `timeout` seconds."""
    pgid = proc.pid
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and group_members(pgid):
            proc.poll()
            time.sleep(0.05)
        if not group_members(pgid):
            break
    proc.poll()
    if proc.returncode is None:
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            log.warning("process %s did not exit", proc.args)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids whose process group is `pgid`."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def tasks_of(pgids: list[int]) -> dict[int, tuple[int, str]]:
    """tid -> (tgid, comm) for every thread of every process in these process groups."""
    tasks: dict[int, tuple[int, str]] = {}
    for pgid in pgids:
        for pid in group_members(pgid):
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                for task in Path(f"/proc/{pid}/task").iterdir():
                    tasks[int(task.name)] = (pid, comm)
            except OSError:
                continue
    return tasks
