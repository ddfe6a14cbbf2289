"""shared.engine: the schedule, exact resume after a kill, FSDP refused, and DDP of quant_pretraining's
quantized GPT (two gloo processes, fp32 and bf16 autocast) against one process on the same global batch."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shared.config import ConfigError
from shared.engine import EngineConfig, LoopConfig, cosine_lr, fit, make_fabric

ROOT = Path(__file__).resolve().parents[1]


def test_cosine_lr_warms_up_then_decays_to_the_floor():
    assert cosine_lr(0, 1.0, 10, 110) == pytest.approx(0.1)
    assert cosine_lr(9, 1.0, 10, 110) == pytest.approx(1.0)
    assert cosine_lr(60, 1.0, 10, 110, floor=0.2) == pytest.approx(0.2 + 0.8 * 0.5)
    assert cosine_lr(110, 1.0, 10, 110, floor=0.2) == 0.2
    values = [cosine_lr(s, 1.0, 10, 110) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_engine_config_rejects_unknown_strategy_and_precision():
    with pytest.raises(ConfigError, match="engine.strategy='deepspeed'; valid: auto, ddp$"):
        EngineConfig(strategy="deepspeed")
    with pytest.raises(
        ConfigError, match="'fsdp' is not supported: .*per-shard.*DDP is the supported.*valid: auto, ddp"
    ):
        EngineConfig(strategy="fsdp")
    with pytest.raises(ConfigError, match="engine.precision='fp8'; valid"):
        EngineConfig(precision="fp8")


def _dropout_run(ckpt: Path | None, steps: int, stop_after: int | None = None) -> tuple[list[torch.Tensor], list]:
    """A small dropout MLP trained with the engine; dropout makes resume depend on the RNG state too."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Dropout(0.3), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    fabric = make_fabric(EngineConfig(threads=1))
    model, optimizer = fabric.setup(model, optimizer)

    def batch_fn(step: int, micro: int, rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(1000 * step + micro)
        x = torch.randn(8, 4, generator=g)
        return x, x.sum(1, keepdim=True)

    def loss_fn(m: torch.nn.Module, b: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return torch.nn.functional.mse_loss(m(b[0]), b[1])

    loop = LoopConfig(steps=steps, grad_accum=2, clip=0.5, checkpoint_every=2, log_every=0)
    history = fit(
        fabric, model, optimizer, loss_fn, batch_fn, loop, lr_at=lambda s: cosine_lr(s, 1e-2, 2, steps),
        checkpoint=ckpt, stop_after=stop_after,
    )  # fmt: skip
    return [p.detach().clone() for p in model.parameters()], history.steps


def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    straight, straight_steps = _dropout_run(None, steps=9)
    ckpt = tmp_path / "last.ckpt"
    _, first = _dropout_run(ckpt, steps=9, stop_after=5)  # preempted after step 5
    assert len(first) == 5 and ckpt.exists()
    resumed, steps = _dropout_run(ckpt, steps=9)
    assert [r["step"] for r in steps] == list(range(1, 10))
    assert [r["loss"] for r in steps] == [r["loss"] for r in straight_steps]
    for a, b in zip(straight, resumed, strict=True):
        assert torch.equal(a, b)
    no_tmp = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert not no_tmp, f"temporary checkpoint left behind: {no_tmp}"


def test_sigusr1_checkpoints_and_exits_for_a_requeue(tmp_path, monkeypatch):
    """SLURM's warning signal mid-run: checkpoint after the current step, exit REQUEUE_EXIT, resume exactly."""
    import signal

    from shared import engine
    from shared.launch import REQUEUE_EXIT

    straight, _ = _dropout_run(None, steps=9)
    real = engine.accumulate_gradients

    def signalling(fabric, model, loss_fn, batch_fn, step, grad_accum):  # noqa: ANN001
        if step == 3:
            os.kill(os.getpid(), signal.SIGUSR1)
        return real(fabric, model, loss_fn, batch_fn, step, grad_accum)

    monkeypatch.setattr(engine, "accumulate_gradients", signalling)
    ckpt = tmp_path / "last.ckpt"
    with pytest.raises(SystemExit) as exit_info:
        _dropout_run(ckpt, steps=9)
    assert exit_info.value.code == REQUEUE_EXIT
    assert torch.load(ckpt, weights_only=True)["step"] == 4
    assert signal.getsignal(signal.SIGUSR1) is not None
    monkeypatch.setattr(engine, "accumulate_gradients", real)
    resumed, _ = _dropout_run(ckpt, steps=9)
    for a, b in zip(straight, resumed, strict=True):
        assert torch.equal(a, b)


def test_a_different_seed_path_would_differ(tmp_path):
    """Guard for the resume test: without restoring the RNG the weights do differ."""
    straight, _ = _dropout_run(None, steps=9)
    ckpt = tmp_path / "last.ckpt"
    _dropout_run(ckpt, steps=9, stop_after=5)
    state = torch.load(ckpt, weights_only=True)
    state["rng"]["torch"] = torch.Generator().manual_seed(123).get_state()
    torch.save(state, ckpt)
    resumed, _ = _dropout_run(ckpt, steps=9)
    assert any(not torch.equal(a, b) for a, b in zip(straight, resumed, strict=True))


def _worker_env() -> dict[str, str]:
    """The environment of a test's worker processes: one thread each, and outside any job the test runs in
    (the single-process reference must not join it; torchrun sets the ranks of its own)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_JOB_ID"):
        env.pop(name, None)
    return env


def _worker(tmp_path: Path, nproc: int) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / f"world{nproc}.pt"
    env = _worker_env()
    script = str(ROOT / "tests" / "workers" / "ddp_step.py")
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else []
    cmd = [sys.executable, *launcher, script, str(out)]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), out


@pytest.mark.slow
def test_ddp_ranks_exit_cleanly_straight_after_their_last_backward():
    """Each of 4 gloo ranks takes one DDP step through make_fabric and exits at once; every rank must exit 0.

    Before the engine's exit hook a rank aborted (SIGABRT) in gloo's worker thread during interpreter
    shutdown: 3 of 8 runs of the DDP test above on 2 ranks, and this worker on 8 of 8 launches (it keeps
    the GIL until shutdown to widen the window; `DDP_EXIT_WITHOUT_HOOK=1` turns the hook off by hand).
    """
    env = _worker_env()
    env.pop("DDP_EXIT_WITHOUT_HOOK", None)
    script = str(ROOT / "tests" / "workers" / "ddp_exit.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", script]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.flatten().float() for t in tensors])


def _rel(a: list[torch.Tensor], b: list[torch.Tensor], scale: torch.Tensor | None = None) -> float:
    """||a - b|| relative to ||b|| (or to ||scale||)."""
    return float((_flat(a) - _flat(b)).norm() / (_flat(b) if scale is None else scale).norm())


@pytest.mark.slow
def test_ddp_of_the_quantized_gpt_on_two_gloo_processes_matches_one_process(tmp_path):
    """quant_pretraining's GPT with 8-bit weights, activations, gradients and first moment (what trains at
    scale), in fp32 and in bf16 autocast: 2 gloo ranks against 1 process on the same global batch.

    Tolerances. fp32: the loss is identical and the gradients agree to float rounding (measured 1.4e-7
    relative); after four steps the weights differ by < 1% of the update (measured 0.15%): the fake quantizers
    round, so a last-bit difference can move a weight across a rounding boundary, and AdamW's first steps
    move each weight by about lr * sign(gradient), whatever the size of a near-zero gradient. bf16: the
    weight-gradient GEMM rounds each rank's partial sum to bf16 before the fp32 all-reduce where one process
    rounds the whole sum once, so the gradients differ at bf16's half-ulp (2^-9 = 2e-3 measured, bound 2^-7);
    two ranks must differ from one process by less than bf16 differs from fp32 in that one process (gradients
    0.76%, weights 9.7% of the update, measured), and a rank that lost the all-reduce (half the batch's
    gradient) differs by ~97%, so the bounds do catch a broken DDP.
    """
    (p1, out1), (p2, out2) = _worker(tmp_path, 1), _worker(tmp_path, 2)  # both at once: the cost is imports
    for proc in (p1, p2):
        text = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, text[-3000:]
    one, two = torch.load(out1, weights_only=True), torch.load(out2, weights_only=True)
    f1, f2, b1, b2 = one["32-true"], two["32-true"], one["bf16-mixed"], two["bf16-mixed"]
    assert (f1["world"], f2["world"]) == (1, 2)
    for o in (f1, b1):  # the same initial weights everywhere
        assert _rel(o["init"], f1["init"]) == 0 and _rel(f2["init"], o["init"]) == 0
    update = _flat(f1["weights"]) - _flat(f1["init"])
    assert math.isclose(f1["loss"], f2["loss"], rel_tol=1e-6)
    assert _rel(f2["grads"], f1["grads"]) < 1e-5
    assert _rel(f2["weights"], f1["weights"], update) < 1e-2
    lost_all_reduce = _rel(f1["half_grads"], f1["grads"])
    assert lost_all_reduce > 0.5
    assert math.isclose(b1["loss"], b2["loss"], rel_tol=2**-8)
    grads_bf16, grads_precision = _rel(b2["grads"], b1["grads"]), _rel(b1["grads"], f1["grads"])
    assert grads_bf16 < 2**-7 and grads_bf16 < grads_precision, (grads_bf16, grads_precision)
    update = _flat(b1["weights"]) - _flat(b1["init"])
    weights_bf16, weights_precision = (
        _rel(b2["weights"], b1["weights"], update),
        _rel(b1["weights"], f1["weights"], update),
    )
    assert weights_bf16 < weights_precision, (weights_bf16, weights_precision)
