"""The training engine every training paper shares: one readable loop on Lightning Fabric.

One config moves a run from one CPU to DDP over many GPUs and nodes (Fabric reads torchrun's and
SLURM's environment). DDP is the one multi-process strategy: it is tested on two gloo processes against
one (tests/test_engine.py, the quantized GPT in bf16 autocast). FSDP is refused: Lightning refuses it
on CPU, so it could never be tested here, and under Fabric's FSDP (use_orig_params) the optimizer sees
each parameter as this rank's flat 1-D slice, so the quantized optimizer's per-channel states would
silently become per-shard states. A multi-process Fabric ends its process group at exit, after giving gloo's
threads a moment to let go of Python objects (without it a rank could abort in interpreter shutdown).

The loop is nanoGPT's: the learning rate set by hand each step, gradient accumulation over
micro-batches (no all-reduce until the last one), clipping, an optimizer step, an evaluation every
`eval_every` steps.

Batches are a pure function of (step, micro-batch, rank, world size), chosen by the paper, so a run
restarted from its last checkpoint sees exactly the batches it would have seen. The checkpoint holds
the model, the optimizer, the step, the history and every RNG state (dropout included), and is
written atomically; a killed run restarted with the same arguments ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import atexit
import math
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.fabric import Fabric

from shared.config import ConfigError
from shared.launch import REQUEUE_EXIT
from shared.progress import get_logger, progress

log = get_logger(__name__)

Batch = Any
BatchFn = Callable[[int, int, int, int], Batch]  # (step, micro, rank, world) -> this rank's micro-batch
LossFn = Callable[[torch.nn.Module, Batch], torch.Tensor]
EvalFn = Callable[[torch.nn.Module], dict[str, float]]
STRATEGIES = ("auto", "ddp")  # only strategies that a test runs
REFUSED_STRATEGIES = {
    "fsdp": "FSDP has never run here (Lightning refuses it on CPU) and it would shard the quantized optimizer's "
    "per-channel states into per-shard ones; DDP is the supported strategy (tested against one process)",
}
PRECISIONS = ("32-true", "bf16-mixed", "bf16-true", "16-mixed")
EXIT_GRACE_S = 0.2  # how long a DDP process yields to gloo's threads before it exits (see _destroy_process_group)


@dataclass
class EngineConfig:
    """Where and how a run executes; the experiment itself lives in the paper's config."""

    accelerator: Literal["cpu", "gpu", "cuda", "auto"] = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    compile: bool = False
    threads: int | None = None  # torch intra-op threads on CPU; null = torch's default

    def __post_init__(self) -> None:
        if self.strategy in REFUSED_STRATEGIES:
            raise ConfigError(
                f"engine.strategy={self.strategy!r} is not supported: {REFUSED_STRATEGIES[self.strategy]}; "
                f"valid: {', '.join(STRATEGIES)}"
            )
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"engine.strategy={self.strategy!r}; valid: {', '.join(STRATEGIES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"engine.precision={self.precision!r}; valid: {', '.join(PRECISIONS)}")
        if self.devices < 1 or self.num_nodes < 1:
            raise ConfigError(f"engine.devices={self.devices}, num_nodes={self.num_nodes}: both must be >= 1")


@dataclass
class LoopConfig:
    """How long and how: steps, micro-batches per step, clipping, when to evaluate and checkpoint."""

    steps: int
    grad_accum: int = 1
    clip: float | None = 1.0
    eval_every: int = 0  # 0: evaluate only at the end
    checkpoint_every: int = 0  # 0: checkpoint only at the end
    log_every: int = 50


@dataclass
class History:
    """What the loop measured: one row per step, one per evaluation."""

    steps: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "evals": self.evals, "train_seconds": self.train_seconds}


def make_fabric(cfg: EngineConfig) -> Fabric:
    """A launched Fabric for `cfg` (under torchrun or srun it joins the process group they set up)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    fabric = Fabric(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=cfg.precision,
    )
    fabric.launch()
    if fabric.world_size > 1:
        atexit.register(_destroy_process_group)
    return fabric


def _destroy_process_group() -> None:
    """End the process group while the interpreter is still whole.

    Every backward pass stashes a Python object (its contextvars) in the thread's state, and each DDP
    all-reduce launched during backward copies that state into a gloo work item. The gloo worker thread
    that ran the item drops the last reference a moment after the main thread stops waiting on it, and
    dropping it takes the GIL. If the main thread has gone on to interpreter shutdown by then, taking the
    GIL ends the worker thread inside a noexcept destructor and the process aborts after its work is done
    ("terminate called without an active exception", SIGABRT; gdb: pt_gloo_runloop in ~AsyncWork during
    Py_FinalizeEx): 3 of 8 two-rank runs of tests/workers/ddp_step.py. Here the main thread gives up the
    GIL for a moment before shutdown so those threads finish, then destroys the group (registered once
    per launched Fabric; after the first call the rest do nothing).
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        time.sleep(EXIT_GRACE_S)
        torch.distributed.destroy_process_group()


def cosine_lr(step: int, peak: float, warmup: int, total: int, floor: float = 0.0) -> float:
    """Linear warm-up to `peak` over `warmup` steps, then cosine decay to `floor` at `total`."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if step >= total:
        return floor
    progress_ = (step - warmup) / max(1, total - warmup)
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * progress_))


def accumulate_gradients(
    fabric: Fabric, model: torch.nn.Module, loss_fn: LossFn, batch_fn: BatchFn, step: int, grad_accum: int
) -> float:
    """Forward and backward over this step's micro-batches; gradients sync only on the last one.

    Returns the step's mean loss averaged over every rank (what one process would see on the
    global batch when ranks hold equal shares).
    """
    total = 0.0
    for micro in range(grad_accum):
        batch = fabric.to_device(batch_fn(step, micro, fabric.global_rank, fabric.world_size))
        with fabric.no_backward_sync(model, enabled=micro < grad_accum - 1):
            loss = loss_fn(model, batch) / grad_accum
            fabric.backward(loss)
        total += loss.detach()
    if fabric.world_size > 1:
        total = fabric.all_reduce(total, reduce_op="mean")
    return float(total)


def _rng_state() -> dict[str, Any]:
    """Every RNG the loop may draw from, as tensors and plain values (torch.load weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                   "has_gauss": has_gauss, "cached": cached}  # fmt: skip
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(fabric: Fabric, path: Path, state: dict[str, Any]) -> None:
    """Fabric's save (rank 0 writes under DDP) to a temporary name, then a rename: never half a checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    if fabric.global_rank == 0 and tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    fabric.barrier()
    fabric.save(tmp, state)
    fabric.barrier()
    if fabric.global_rank == 0:
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    fabric.barrier()


class Preemption:
    """SIGUSR1 (sent by SLURM before a job is stopped, see shared/launch.py) asks the loop to
    checkpoint and exit with REQUEUE_EXIT; every rank agrees on the step at which it stops."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> Preemption:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGUSR1, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGUSR1, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def should_stop(self, fabric: Fabric) -> bool:
        if fabric.world_size == 1:
            return self.requested
        flag = torch.tensor(float(self.requested), device=fabric.device)
        return bool(fabric.all_reduce(flag, reduce_op="sum") > 0)


def fit(
    fabric: Fabric,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    batch_fn: BatchFn,
    loop: LoopConfig,
    lr_at: Callable[[int], float] | None = None,
    evaluate: EvalFn | None = None,
    checkpoint: Path | None = None,
    tokens_per_step: int = 0,
    stop_after: int | None = None,
    desc: str = "train",
) -> History:
    """Train `model` (already set up with fabric.setup) for loop.steps steps, resuming from `checkpoint`.

    stop_after: end (checkpointed) after that many steps of this call, as a preempted job would.
    On SIGUSR1 the loop checkpoints after the current step and exits with status REQUEUE_EXIT.
    """
    history, start = History(), 0
    if checkpoint is not None and checkpoint.exists():
        state = {"model": model, "optimizer": optimizer}
        rest = fabric.load(checkpoint, state)
        start, history = rest["step"], History(**rest["history"])
        _set_rng_state(rest["rng"])
        log.info("%s: resumed from %s at step %d of %d", desc, checkpoint, start, loop.steps)

    def save(step: int) -> None:
        if checkpoint is not None:
            state = {"model": model, "optimizer": optimizer, "step": step, "rng": _rng_state()}
            save_checkpoint(fabric, checkpoint, {**state, "history": history.as_dict()})

    model.train()
    end = loop.steps if stop_after is None else min(loop.steps, start + stop_after)
    bar = progress(range(start, end), desc=desc, total=end - start) if fabric.global_rank == 0 else range(start, end)
    with Preemption() as preemption:
        done_here, seconds_here = 0, 0.0
        for step in bar:
            tic = time.perf_counter()
            lr = lr_at(step) if lr_at is not None else optimizer.param_groups[0]["lr"]
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = accumulate_gradients(fabric, model, loss_fn, batch_fn, step, loop.grad_accum)
            grad_norm = float("nan")
            if loop.clip:
                grad_norm = float(fabric.clip_gradients(model, optimizer, max_norm=loop.clip, error_if_nonfinite=False))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds_here += time.perf_counter() - tic
            done_here += 1
            history.train_seconds += time.perf_counter() - tic
            history.steps.append({"step": step + 1, "loss": loss, "lr": lr, "grad_norm": grad_norm})
            if loop.log_every and (step + 1) % loop.log_every == 0:
                rate = tokens_per_step * done_here / max(seconds_here, 1e-9)
                log.info("%s step %d/%d loss %.4f lr %.2e %.0f tok/s", desc, step + 1, loop.steps, loss, lr, rate)
            last = step + 1 == loop.steps
            if evaluate is not None and (last or (loop.eval_every and (step + 1) % loop.eval_every == 0)):
                model.eval()
                with torch.no_grad():
                    metrics = evaluate(model)
                model.train()
                history.evals.append({"step": step + 1, **metrics})
                log.info("%s step %d eval %s", desc, step + 1, {k: round(v, 4) for k, v in metrics.items()})
            stop = preemption.should_stop(fabric) and not last
            periodic = loop.checkpoint_every and (step + 1) % loop.checkpoint_every == 0
            if last or stop or periodic or step + 1 == end:
                save(step + 1)
            if stop:
                log.warning("%s: preempted; checkpointed at step %d, exiting for a requeue", desc, step + 1)
                raise SystemExit(REQUEUE_EXIT)
    return history
