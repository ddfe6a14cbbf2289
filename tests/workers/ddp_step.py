"""Run by tests/test_engine.py under torchrun: one engine step over a fixed global batch, then three
more fitted steps; rank 0 saves the step's loss, the synchronised gradients and the final weights.

python -m torch.distributed.run --standalone --nproc_per_node=2 tests/workers/ddp_step.py OUT.pt
(or plain python for the single-process reference, which sees the whole global batch).
"""

from __future__ import annotations

import os
import sys

import torch

from shared.engine import EngineConfig, LoopConfig, accumulate_gradients, fit, make_fabric

GLOBAL_BATCH, DIM = 8, 6


def model_and_data() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(DIM, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    g = torch.Generator().manual_seed(1)
    return model, torch.randn(100, GLOBAL_BATCH, DIM, generator=g), torch.randn(100, GLOBAL_BATCH, 1, generator=g)


def main(out: str) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    fabric = make_fabric(EngineConfig(accelerator="cpu", devices=world, strategy="ddp" if world > 1 else "auto"))
    model, xs, ys = model_and_data()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer = fabric.setup(model, optimizer)
    accum = 2
    per = GLOBAL_BATCH // (world * accum)

    def batch_fn(step: int, micro: int, rank: int, world_: int) -> tuple[torch.Tensor, torch.Tensor]:
        chunk = micro * world_ + rank
        return xs[step, chunk * per : (chunk + 1) * per], ys[step, chunk * per : (chunk + 1) * per]

    def loss_fn(m: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return torch.nn.functional.mse_loss(m(batch[0]), batch[1])

    loss = accumulate_gradients(fabric, model, loss_fn, batch_fn, 0, accum)
    grads = [p.grad.detach().clone() for p in model.parameters()]
    optimizer.zero_grad()
    fit(fabric, model, optimizer, loss_fn, batch_fn, LoopConfig(steps=3, grad_accum=accum, clip=1.0, log_every=0))
    if fabric.global_rank == 0:
        weights = [p.detach().clone() for p in model.parameters()]
        torch.save({"loss": loss, "grads": grads, "weights": weights, "world": fabric.world_size}, out)


if __name__ == "__main__":
    main(sys.argv[1])
