"""Train one classifier for a fixed number of updates and score it on the test split.

Budgets are counted in updates, never seconds, so the result does not depend on what else runs
on the machine. Schedule: LRA's "constant * linear_warmup * rsqrt_decay" with AdamW.
"""

from __future__ import annotations

import contextlib
import math
import time

import torch

from papers.efficient_transformers.attention import AttentionParams
from papers.efficient_transformers.config import ModelConfig, TrainConfig
from papers.efficient_transformers.data.tasks import TaskData
from papers.efficient_transformers.model import Classifier, count_parameters
from shared.progress import get_logger, progress

log = get_logger("efficient_transformers.train")


def lr_factor(step: int, warmup: int) -> float:
    """min(step / warmup, sqrt(warmup / step)): linear warm-up, then inverse-square-root decay."""
    step = max(step, 1)
    return min(step / max(warmup, 1), math.sqrt(max(warmup, 1) / step))


def autocast(model_cfg: ModelConfig, device: str) -> contextlib.AbstractContextManager:
    if model_cfg.precision == "bfloat16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def correct_items(
    model: Classifier, x: torch.Tensor, y: torch.Tensor, batch: int, model_cfg: ModelConfig, device: str
) -> list[int]:
    """1 for each test item the model classifies correctly, else 0 (in test order): the per-item record
    that paired confidence intervals of accuracy differences resample."""
    model.eval()
    out: list[int] = []
    for i in range(0, len(x), batch):
        with autocast(model_cfg, device):
            logits = model(x[i : i + batch].to(device))
        out += (logits.argmax(-1).cpu() == y[i : i + batch]).int().tolist()
    model.train()
    return out


def accuracy(
    model: Classifier, x: torch.Tensor, y: torch.Tensor, batch: int, model_cfg: ModelConfig, device: str
) -> float:
    return sum(correct_items(model, x, y, batch, model_cfg, device)) / len(x)


def train_and_score(
    task: TaskData, variant: str, params: AttentionParams, model_cfg: ModelConfig, train_cfg: TrainConfig, seed: int
) -> dict:
    """Test accuracy (and the last training losses) of `variant` after train_cfg.steps updates."""
    torch.manual_seed(seed)
    device = train_cfg.device
    max_len = task.x_train.shape[1]
    model = Classifier(model_cfg, task.vocab_size, task.n_classes, max_len, variant, params).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s + 1, train_cfg.warmup))
    gen = torch.Generator().manual_seed(seed)
    losses = []
    start = time.perf_counter()
    for _ in progress(range(train_cfg.steps), desc=f"{task.name}/{variant}"):
        idx = torch.randint(len(task.x_train), (train_cfg.batch,), generator=gen)
        with autocast(model_cfg, device):
            logits = model(task.x_train[idx].to(device))
        loss = torch.nn.functional.cross_entropy(logits.float(), task.y_train[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    train_s = time.perf_counter() - start
    correct = correct_items(model, task.x_test, task.y_test, train_cfg.eval_batch, model_cfg, device)
    acc = sum(correct) / len(correct)
    tail = losses[-max(1, len(losses) // 10) :]
    log.info(
        "%s/%s seed %d: test accuracy %.4f, final loss %.3f, %.1f s",
        task.name,
        variant,
        seed,
        acc,
        sum(tail) / len(tail),
        train_s,
    )
    return {
        "accuracy": acc,
        "final_loss": sum(tail) / len(tail),
        "train_s": train_s,
        "params": count_parameters(model),
        "correct": correct,
    }
