"""The manifold-size metric: how large a region of linearly connected low loss surrounds the expanded model.

Simplex estimate (after Benton et al. 2021, "loss surface simplexes"): the expanded model is vertex 0;
k more vertices are trained so that points drawn uniformly inside the simplex have low training loss,
while a -lambda * log-volume term pushes the simplex to grow. The simplex is then shrunk towards vertex 0
(bisection on a scale s) until the mean loss over fixed uniform samples is within epsilon of the reference
loss, the loss of the base model before expansion: the manifold is that of the base's minima, at the base's
loss level. The metric is the log-volume of the shrunk simplex, log V + k log s. An expansion that leaves the
manifold (its own loss is above the level, as random init does) gets the smallest scale, 2^-bisect_steps.

Directional estimate (cheaper): over random filter-normalised directions d, the mean of the largest step t
(up to t_max, by bisection) with L(theta + t d) <= L_reference + epsilon (0 when theta itself is above it).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from papers.manifold_expansion.config import DirectionalConfig, SimplexConfig
from papers.manifold_expansion.params import FlatModel, filter_normalized_direction


def sample_simplex(n: int, vertices: int, gen: torch.Generator) -> torch.Tensor:
    """n barycentric weights drawn uniformly on the simplex of `vertices` vertices (Dirichlet(1, ..., 1),
    as normalised exponentials): rows are >= 0 and sum to 1."""
    e = -torch.log(torch.rand(n, vertices, generator=gen).clamp_min(1e-12))
    return e / e.sum(dim=1, keepdim=True)


def log_volume(edges: torch.Tensor) -> torch.Tensor:
    """log of the k-volume of the simplex spanned by vertex 0 and vertex 0 + edges[i] (k rows):
    V = sqrt(det(E E^T)) / k!  (the Gram-determinant form of the Cayley-Menger volume)."""
    k = edges.shape[0]
    gram = edges.double() @ edges.double().T
    return 0.5 * torch.logdet(gram) - math.lgamma(k + 1)


@dataclass
class SimplexResult:
    log_volume: float  # the metric: log-volume after the loss-threshold shrink
    raw_log_volume: float  # before the shrink
    scale: float  # the shrink factor s in (0, 1]
    base_loss: float
    seconds: float


def _mean_loss_at_scale(fm: FlatModel, edges: torch.Tensor, alphas: torch.Tensor, s: float, x, y) -> float:
    return sum(fm.batched_loss(fm.theta + s * (a[1:] @ edges), x, y) for a in alphas) / len(alphas)


def _largest_within(f, threshold: float, hi: float, steps: int) -> float:
    """Largest t in [0, hi] with f(t) <= threshold, by bisection (assumes f rises with t)."""
    if f(hi) <= threshold:
        return hi
    lo = 0.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        if f(mid) <= threshold:
            lo = mid
        else:
            hi = mid
    return lo


def simplex_size(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: SimplexConfig,
    seed: int,
    reference_loss: float | None = None,
) -> SimplexResult:
    """reference_loss: the loss level of the manifold (default: the model's own loss on x, y)."""
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    fm = FlatModel.of(model)
    k = cfg.vertices
    init = torch.stack([filter_normalized_direction(model, gen) * cfg.init_radius for _ in range(k)])
    edges = init.clone().requires_grad_(True)
    opt = torch.optim.Adam([edges], lr=cfg.lr)
    for _ in range(cfg.steps):
        idx = torch.randint(0, len(y), (min(cfg.batch_size, len(y)),), generator=gen)
        alphas = sample_simplex(cfg.samples, k + 1, gen).to(fm.theta.device)
        loss = sum(fm.loss(fm.theta + a[1:] @ edges, x[idx], y[idx]) for a in alphas) / cfg.samples
        objective = loss - cfg.volume_weight * log_volume(edges).float()
        opt.zero_grad(set_to_none=True)
        objective.backward()
        opt.step()
    edges = edges.detach()
    base = fm.batched_loss(fm.theta, x, y)
    alphas = sample_simplex(cfg.eval_samples, k + 1, gen).to(fm.theta.device)
    level = (base if reference_loss is None else reference_loss) + cfg.epsilon
    s = 0.0
    if base <= level:
        s = _largest_within(lambda t: _mean_loss_at_scale(fm, edges, alphas, t, x, y), level, 1.0, cfg.bisect_steps)
    s = max(s, 2.0**-cfg.bisect_steps)  # the bisection's resolution: the floor of the scale
    raw = float(log_volume(edges))
    return SimplexResult(raw + k * math.log(s), raw, s, base, time.perf_counter() - start)


def directional_size(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: DirectionalConfig,
    seed: int,
    reference_loss: float | None = None,
) -> float:
    """Mean over directions of the largest filter-normalised step that keeps the loss within epsilon of the
    reference level (default: the model's own loss)."""
    gen = torch.Generator().manual_seed(seed)
    fm = FlatModel.of(model)
    own = fm.batched_loss(fm.theta, x, y)
    threshold = (own if reference_loss is None else reference_loss) + cfg.epsilon
    if own > threshold:
        return 0.0
    steps = []
    for _ in range(cfg.directions):
        d = filter_normalized_direction(model, gen)
        steps.append(
            _largest_within(
                lambda t, d=d: fm.batched_loss(fm.theta + t * d, x, y), threshold, cfg.t_max, cfg.bisect_steps
            )
        )
    return sum(steps) / len(steps)
