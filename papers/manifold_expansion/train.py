"""A plain training loop (Adam, cross-entropy, shuffled minibatches from a seeded generator) and evaluation.

Small models on in-memory tensors: a readable loop is cheaper than a trainer here, and budgets are epochs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Evaluation:
    accuracy: float
    loss: float


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> Evaluation:
    model.eval()
    device = next(model.parameters()).device
    correct, total_loss = 0, 0.0
    for i in range(0, len(y), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        logits = model(xb)
        total_loss += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    return Evaluation(correct / len(y), total_loss / len(y))


def _epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opt, batch_size: int, gen: torch.Generator) -> None:
    device = next(model.parameters()).device
    model.train()
    order = torch.randperm(len(y), generator=gen)
    for i in range(0, len(y), batch_size):
        idx = order[i : i + batch_size]
        loss = F.cross_entropy(model(x[idx].to(device)), y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def train(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, batch_size: int, seed: int
) -> float:
    """Train in place for `epochs` with a fresh Adam; returns the wall time in seconds."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    start = time.perf_counter()
    for _ in range(epochs):
        _epoch(model, x, y, opt, batch_size, gen)
    return time.perf_counter() - start


def train_to_convergence(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    lr: float,
    batch_size: int,
    seed: int,
    patience: int = 3,
    max_epochs: int = 100,
) -> tuple[float, int]:
    """Train until the validation loss has not improved for `patience` epochs: (seconds, epochs)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best, bad, start = float("inf"), 0, time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        _epoch(model, x, y, opt, batch_size, gen)
        loss = evaluate(model, x_val, y_val).loss
        if loss < best - 1e-4:
            best, bad = loss, 0
        else:
            bad += 1
            if bad >= patience:
                return time.perf_counter() - start, epoch
    return time.perf_counter() - start, max_epochs
