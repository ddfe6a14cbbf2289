"""Run by tests/test_engine.py under torchrun: what trains at scale, quant_pretraining's GPT with its
weights, activations and gradients in 8 bits (w8a8g8_per_token) and AdamW's first moment in 8 bits per
channel (m8), through the shared engine. For each precision (fp32, then bf16 autocast) one engine step
over a fixed global batch, then four fitted steps; rank 0 saves the step's loss, the synchronised
gradients and the final weights.

python -m torch.distributed.run --standalone --nproc_per_node=2 tests/workers/ddp_step.py OUT.pt
(or plain python for the single-process reference, which sees the whole global batch; it also saves
the gradient of rank 0's half of the batch alone: what a rank whose all-reduce was lost would hold).
"""

from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np
import torch

from papers.quant_pretraining.config import Config, DataConfig, ModelConfig
from papers.quant_pretraining.configurations import get_configuration
from papers.quant_pretraining.data import RandomWindows
from papers.quant_pretraining.model import lm_loss
from papers.quant_pretraining.optim import make_optimizer
from papers.quant_pretraining.train import build_model
from shared.engine import EngineConfig, LoopConfig, accumulate_gradients, fit, make_fabric

GLOBAL_BATCH, ACCUM, SEQ, VOCAB = 8, 2, 32, 128
CONFIGURATION = dataclasses.replace(get_configuration("w8a8g8_per_token"), m=get_configuration("m8_per_channel").m)


def run(precision: str, world: int) -> dict:
    fabric = make_fabric(
        EngineConfig(accelerator="cpu", devices=world, strategy="ddp" if world > 1 else "auto", precision=precision)
    )
    torch.manual_seed(0)
    cfg = Config("test", ["baseline"], model=ModelConfig(2, 2, 64, 0.0), data=DataConfig(seq_len=SEQ))
    model = build_model(cfg, VOCAB, CONFIGURATION)
    optimizer = make_optimizer(model, "adamw", 3e-3, (0.9, 0.999), 1e-8, 0.1, CONFIGURATION.m, CONFIGURATION.v)
    model, optimizer = fabric.setup(model, optimizer)
    out: dict = {"world": fabric.world_size, "init": [p.detach().clone() for p in model.parameters()]}
    stream = np.random.default_rng(1).integers(0, VOCAB, 5000).astype(np.uint16)
    batches = RandomWindows(stream, SEQ, GLOBAL_BATCH, GLOBAL_BATCH // (world * ACCUM), seed=2)
    out["loss"] = accumulate_gradients(fabric, model, lm_loss, batches, 0, ACCUM)
    out["grads"] = [p.grad.detach().clone() for p in model.parameters()]
    optimizer.zero_grad()
    if world == 1:  # rank 0's two micro-batches of a 2-rank run, without the other rank's
        half = RandomWindows(stream, SEQ, GLOBAL_BATCH, GLOBAL_BATCH // (2 * ACCUM), seed=2)
        for micro in range(ACCUM):
            fabric.backward(lm_loss(model, half(0, micro, 0, 2)) / ACCUM)
        out["half_grads"] = [p.grad.detach().clone() for p in model.parameters()]
        optimizer.zero_grad()
    fit(fabric, model, optimizer, lm_loss, batches, LoopConfig(steps=4, grad_accum=ACCUM, clip=1.0, log_every=0))
    out["weights"] = [p.detach().clone() for p in model.parameters()]
    return out


def main(out: str) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(1)
    results = {precision: run(precision, world) for precision in ("32-true", "bf16-mixed")}
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save(results, out)


if __name__ == "__main__":
    main(sys.argv[1])
