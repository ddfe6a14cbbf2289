"""Which process am I, and who prepares the data: rank helpers for runs launched as several processes.

A paper is launched as N copies of the same command (torchrun, `srun` under SLURM, or Lightning's own
launcher). The copies agree on who does what without torch.distributed (it is not initialised before
training, and data preparation comes first) through the environment and the file system:

- `rank()`, `local_rank()`, `world_size()` read torchrun's RANK / LOCAL_RANK / WORLD_SIZE, else SLURM's
  SLURM_PROCID / SLURM_LOCALID / SLURM_NTASKS (one task per GPU: `srun --ntasks-per-node=GPUS`), else
  Lightning's launcher's LOCAL_RANK / WORLD_SIZE; one plain process is rank 0 of 1.
- `rank_zero_first(done)`: rank 0 (or each node's local rank 0, for node-local data) runs the block and
  writes `done` atomically; the other ranks wait for `done` to appear (a file barrier with a timeout,
  SHARED_RANK_WAIT_S seconds, default 6 h) and then run the same block, which reads what rank 0 wrote.
- `file_barrier(folder, name)`: every rank waits for every other; needs a job id (torchrun's run id or
  SLURM's job/step id) so that markers of an earlier launch do not count.

What the shared library does with them, so that papers need no code of their own:
- shared.run.Run: the run folder's files and stage timings are written by rank 0; `cached` and
  `cached_json` are computed by rank 0 and read by the others once written (`every_rank=True` for a
  compute that trains with DDP inside, whose collectives need every rank); `--fresh` clears the cache on
  rank 0 behind a barrier; the stage named "report" ends every other rank (exit 0): the report, the
  results and `--publish` are rank 0's.
- shared.progress: each log line reads "[rank 1/2]" when there are several ranks; progress bars only on 0.

Launching (what shared/launch.py renders): `torchrun --nproc_per_node=G --nnodes=N ... -m
papers.<name>.reproduce --scale full`, or under sbatch `srun --ntasks-per-node=G --kill-on-bad-exit=1
python -m papers.<name>.reproduce --scale full` with MASTER_ADDR/MASTER_PORT set from the allocation.
A rank that fails makes its waiting peers wait until the timeout unless the launcher stops them
(torchrun does; srun does with --kill-on-bad-exit=1).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)  # not shared.progress: it imports this module for the rank tag

DEFAULT_WAIT_S = 6 * 3600.0  # data preparation at full scale (tokenizing OpenWebText) takes hours
POLL_S = 0.05


class DistributedError(RuntimeError):
    """Ranks that cannot agree: a peer that never wrote what it should have, an unusable environment."""


def _env_int(*names: str) -> int | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return int(value)
            except ValueError as exc:
                raise DistributedError(f"{name}={value!r} in the environment is not an integer") from exc
    return None


def world_size() -> int:
    """How many processes the run has (1 when launched as one plain process)."""
    if "RANK" in os.environ or "LOCAL_RANK" in os.environ:
        return _env_int("WORLD_SIZE") or 1
    return _env_int("SLURM_NTASKS") or 1


def rank() -> int:
    """This process's global rank: 0 .. world_size() - 1."""
    if "RANK" in os.environ:
        return _env_int("RANK") or 0
    if "LOCAL_RANK" in os.environ:  # Lightning's subprocess launcher sets LOCAL_RANK and NODE_RANK only
        per_node = _env_int("LOCAL_WORLD_SIZE") or world_size()
        return (_env_int("NODE_RANK") or 0) * per_node + (_env_int("LOCAL_RANK") or 0)
    return _env_int("SLURM_PROCID") or 0


def local_rank() -> int:
    """This process's rank on its node (0 on each node)."""
    if "RANK" in os.environ or "LOCAL_RANK" in os.environ:
        return _env_int("LOCAL_RANK") or 0
    return _env_int("SLURM_LOCALID") or 0


def is_rank_zero(local: bool = False) -> bool:
    """True on the process that prepares shared data: global rank 0, or with `local` each node's rank 0."""
    return (local_rank() if local else rank()) == 0


def rank_tag() -> str:
    """'[rank 1/2] ' with several ranks, '' for one process (a prefix for log lines)."""
    world = world_size()
    return f"[rank {rank()}/{world}] " if world > 1 else ""


def job_token() -> str | None:
    """An id unique to this launch of the ranks (None when the launcher gives none): torchrun's run id
    and restart count, or SLURM's job, step and restart count, or SHARED_JOB_TOKEN when set."""
    env = os.environ
    if env.get("SHARED_JOB_TOKEN"):
        return env["SHARED_JOB_TOKEN"]
    if env.get("TORCHELASTIC_RUN_ID"):
        return f"torchrun-{env['TORCHELASTIC_RUN_ID']}-{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    if env.get("SLURM_JOB_ID"):
        step = env.get("SLURM_STEP_ID", "batch")
        return f"slurm-{env['SLURM_JOB_ID']}.{step}-{env.get('SLURM_RESTART_COUNT', '0')}"
    return None


def wait_s() -> float:
    """How long a rank waits for a peer (SHARED_RANK_WAIT_S, default 6 h)."""
    value = os.environ.get("SHARED_RANK_WAIT_S", "").strip()
    try:
        return float(value) if value else DEFAULT_WAIT_S
    except ValueError as exc:
        raise DistributedError(f"SHARED_RANK_WAIT_S={value!r} is not a number of seconds") from exc


def wait_for(path: Path, what: str, timeout: float | None = None, hint: str = "") -> None:
    """Block until `path` exists (written atomically by a peer); DistributedError after `timeout` seconds."""
    limit = wait_s() if timeout is None else timeout
    start = last_note = time.monotonic()
    while not path.exists():
        now = time.monotonic()
        if now - start > limit:
            raise DistributedError(
                f"{rank_tag()}waited {limit:.0f} s for {what} ({path}); it failed, was stopped or is still "
                f"working{hint}. Raise the limit with SHARED_RANK_WAIT_S=<seconds>."
            )
        if now - last_note > 300:
            log.info("%swaiting for %s (%s), %.0f s so far", rank_tag(), what, path, now - start)
            last_note = now
        time.sleep(POLL_S)


@contextmanager
def rank_zero_first(done: Path, what: str = "", local: bool = False) -> Iterator[bool]:
    """Run the block on rank 0 first (each node's rank 0 with `local`); the other ranks wait until the
    block has written `done`, then run it too (it should then find its outputs and read them). Yields
    whether this rank is the one that computes. With one process it is a plain block."""
    first = world_size() == 1 or is_rank_zero(local)
    if not first:
        who = "this node's local rank 0" if local else "rank 0"
        wait_for(done, f"{who} to prepare {what or done.name}")
    yield first
    if first and world_size() > 1 and not done.exists():
        raise DistributedError(f"{rank_tag()}the block prepared by rank 0 ended without writing {done}")


def file_barrier(folder: Path, name: str, timeout: float | None = None) -> None:
    """Every rank waits here for every other (through marker files in `folder`); no-op for one process."""
    world = world_size()
    if world == 1:
        return
    token = job_token()
    if token is None:
        raise DistributedError(
            f"a barrier ({name}) over {world} ranks needs a launch id: run under torchrun or srun, or set "
            "SHARED_JOB_TOKEN to the same new value on every rank"
        )
    marks = folder / f".barrier-{name}-{token}"
    marks.mkdir(parents=True, exist_ok=True)
    (marks / f"rank{rank()}").touch()
    log.info("%sat barrier %r, waiting for the other ranks", rank_tag(), name)
    for other in range(world):
        wait_for(marks / f"rank{other}", f"rank {other} at barrier {name!r}", timeout)
