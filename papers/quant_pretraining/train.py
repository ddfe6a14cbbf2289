"""Pre-train one (configuration, seed) with the shared engine and measure it.

Every configuration sees the same initial weights and the same batches for a given seed (both come
from the seed alone), so differences between configurations are the quantizers' doing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from papers.quant_pretraining.config import Config
from papers.quant_pretraining.configurations import Configuration
from papers.quant_pretraining.data import Corpus, RandomWindows, eval_windows
from papers.quant_pretraining.model import GPT, GPTConfig, lm_loss
from papers.quant_pretraining.optim import make_optimizer
from papers.quant_pretraining.quantize import quantize_linears
from shared.engine import LoopConfig, cosine_lr, fit, make_fabric
from shared.seeding import seed_everything


def build_model(cfg: Config, vocab_size: int, configuration: Configuration) -> GPT:
    m = cfg.model
    model = GPT(GPTConfig(vocab_size, cfg.data.seq_len, m.n_layer, m.n_head, m.n_embd, m.dropout))
    c = configuration
    if c.gemm == "torchao":
        to_torchao_float8(model, c.head)
    elif c.quantizes_layers:
        quantize_linears(model, c.w, c.a, c.g, c.gemm, () if c.head else ("lm_head",))  # type: ignore[arg-type]
    return model


def to_torchao_float8(model: GPT, head: bool) -> GPT:
    """torchao's float8 training (tensorwise dynamic scaling, e4m3 forward / e5m2 gradients) on every
    nn.Linear, the LM head included when `head`: the library path beside our own FP8 layer. torchao is an
    optional extra (pip install --no-deps torchao==0.18.0; it needs no other torch)."""
    try:
        from torchao.float8 import convert_to_float8_training
    except ImportError as exc:
        raise RuntimeError(
            "configuration fp8_torchao needs torchao: pip install --no-deps torchao==0.18.0 "
            "(or drop fp8_torchao from the configurations)"
        ) from exc
    convert_to_float8_training(model, module_filter_fn=lambda _m, fqn: head or fqn != "lm_head")
    model.lm_head.weight = model.wte.weight  # keep the tie whatever the swap did
    return model


@torch.no_grad()
def evaluate_streams(model: torch.nn.Module, windows: dict[str, torch.Tensor], batch: int) -> dict[str, float]:
    """Mean next-token loss (nats) per named set of windows, and over all of them (token-weighted)."""
    device = next(model.parameters()).device
    out, total, count = {}, 0.0, 0
    for name, w in windows.items():
        losses = []
        for i in range(0, len(w), batch):
            chunk = w[i : i + batch].to(device)
            losses.append(float(lm_loss(model, (chunk[:, :-1], chunk[:, 1:]))) * len(chunk))
        out[f"val_loss_{name}"] = sum(losses) / len(w)
        total, count = total + sum(losses), count + len(w)
    out["val_loss"] = total / count
    return out


def train_one(cfg: Config, corpus: Corpus, configuration: Configuration, seed: int, ckpt: Path) -> dict[str, Any]:
    """Train to cfg.train.steps (resuming from `ckpt`), evaluate, return a JSON-able summary."""
    t = cfg.train
    seed_everything(seed)
    model = build_model(cfg, corpus.vocab_size, configuration)
    n_params = model.num_params()
    flops_per_token = model.flops_per_token(cfg.data.seq_len)
    optimizer = make_optimizer(
        model, configuration.optimizer, t.lr, t.betas, t.eps, t.weight_decay, configuration.m, configuration.v
    )
    fabric = make_fabric(cfg.engine)
    if cfg.engine.compile:
        model = torch.compile(model)
    model, optimizer = fabric.setup(model, optimizer)
    batches = RandomWindows(corpus.train, cfg.data.seq_len, t.batch_size, t.micro_batch, seed)
    windows = {k: eval_windows(v, cfg.data.seq_len, t.eval_batches * t.micro_batch) for k, v in corpus.valid.items()}
    loop = LoopConfig(t.steps, cfg.grad_accum(), t.clip, t.eval_every, t.checkpoint_every, t.log_every)
    history = fit(
        fabric,
        model,
        optimizer,
        lm_loss,
        batches,
        loop,
        lr_at=lambda s: cosine_lr(s, t.lr, t.warmup, t.steps, t.min_lr),
        evaluate=lambda m: evaluate_streams(m, windows, t.micro_batch),
        checkpoint=ckpt,
        tokens_per_step=t.batch_size * cfg.data.seq_len,
        desc=f"{configuration.name} s{seed}",
    )
    losses = [row["loss"] for row in history.steps]
    final = history.evals[-1]
    tokens = t.steps * t.batch_size * cfg.data.seq_len
    return {
        "configuration": configuration.name,
        "seed": seed,
        "params": n_params,
        "tokens": tokens,
        "train_seconds": history.train_seconds,
        "tokens_per_s": tokens / max(history.train_seconds, 1e-9),
        "flops_per_token": flops_per_token,
        "final": {k: v for k, v in final.items() if k != "step"},
        "diverged": not all(math.isfinite(x) for x in losses) or not math.isfinite(final["val_loss"]),
        "max_loss_spike": _max_spike(losses),
        "curve": {"step": [r["step"] for r in history.steps], "loss": losses},
        "evals": history.evals,
    }


def _max_spike(losses: list[float], window: int = 10) -> float:
    """Largest rise of the training loss above its running minimum over the previous `window` steps,
    after the first 10% of training (a measure of instability; 0 for a monotone curve)."""
    start = max(window, len(losses) // 10)
    spikes = [losses[i] - min(losses[i - window : i]) for i in range(start, len(losses))]
    if not spikes:
        return 0.0
    return max(0.0, *spikes) if all(math.isfinite(s) for s in spikes) else float("inf")
