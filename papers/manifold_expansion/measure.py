"""Every metric of one expanded model, each timed: the manifold estimates and the baselines."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from papers.manifold_expansion import baselines
from papers.manifold_expansion.config import METRICS, TRAINED, Config
from papers.manifold_expansion.data import Dataset
from papers.manifold_expansion.manifold import SimplexResult, directional_size, simplex_size


def measure_all(
    model: nn.Module, ds: Dataset, cfg: Config, seed: int, device: torch.device, reference_loss: float | None = None
) -> dict[str, float]:
    """{metric: value} and {metric + '_s': seconds} for every metric in METRICS, on the probe set.
    reference_loss: the base model's probe loss, the level of the manifold the two estimates measure."""
    x, y = ds.x_probe.to(device), ds.y_probe.to(device)
    xb, yb = x[: cfg.baselines.batch_size], y[: cfg.baselines.batch_size]
    simplex: list[SimplexResult] = []

    def manifold() -> float:
        simplex.append(simplex_size(model, x, y, cfg.simplex, seed, reference_loss))
        return simplex[0].log_volume

    jobs: dict[str, Callable[[], float]] = {
        "manifold": manifold,
        "manifold_dir": lambda: directional_size(model, x, y, cfg.directional, seed, reference_loss),
        "grad_norm_at_expansion": lambda: baselines.grad_norm_at_expansion(model, xb, yb),
        "hessian_trace": lambda: baselines.hutchinson_trace(model, xb, yb, cfg.baselines.hutchinson_probes, seed),
        "zc_grad_norm": lambda: baselines.zc_grad_norm(model, xb, yb),
        "snip": lambda: baselines.snip(model, xb, yb),
        "synflow": lambda: baselines.synflow(model, ds.in_shape),
    }
    assert tuple(jobs) == METRICS
    out = _timed(jobs)
    out["manifold_scale"] = simplex[0].scale  # 2^-bisect_steps: the expansion is off the base's manifold
    return out


def measure_trained(model: nn.Module, ds: Dataset, cfg: Config, seed: int, device: torch.device) -> dict[str, float]:
    """The two manifold estimates at the trained expanded solution (the brief's proxy protocol, step 4), each
    timed: there the model sits in its own minimum, so the level is its own probe loss + epsilon."""
    x, y = ds.x_probe.to(device), ds.y_probe.to(device)
    simplex: list[SimplexResult] = []

    def manifold() -> float:
        simplex.append(simplex_size(model, x, y, cfg.simplex, seed))
        return simplex[0].log_volume

    jobs: dict[str, Callable[[], float]] = {
        "manifold_trained": manifold,
        "manifold_dir_trained": lambda: directional_size(model, x, y, cfg.directional, seed),
    }
    assert tuple(jobs) == TRAINED
    out = _timed(jobs)
    out["manifold_trained_scale"] = simplex[0].scale
    return out


def _timed(jobs: dict[str, Callable[[], float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, job in jobs.items():
        start = time.perf_counter()
        out[name] = float(job())
        out[f"{name}_s"] = time.perf_counter() - start
    return out
