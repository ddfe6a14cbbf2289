"""Baselines the manifold metric is compared with, all computed on the expanded model before more training.

- grad_norm_at_expansion: the L2 norm of the full training-loss gradient (growth papers, e.g. GradMax).
- hessian_trace: sharpness, tr(H) by Hutchinson's estimator E[v^T H v] with Rademacher v.
- zero-cost proxies (Abdelfattah et al. 2021), summed over the Linear/Conv weights:
  zc_grad_norm = sum_l ||dL/dW_l||,  snip = sum |W * dL/dW|,
  synflow = sum W * dR/dW with R = sum f_{|W|}(1) (absolute weights, an all-ones input, float64).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from papers.manifold_expansion.params import FlatModel


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    model.eval()  # BN running statistics: the metrics do not change the model
    return F.cross_entropy(model(x), y)


def grad_norm_at_expansion(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    grads = torch.autograd.grad(_loss(model, x, y), list(model.parameters()))
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))


def hutchinson_trace(model: nn.Module, x: torch.Tensor, y: torch.Tensor, probes: int, seed: int) -> float:
    """(1/probes) sum_i v_i^T H v_i, Rademacher v_i, H the Hessian of the mean training loss."""
    gen = torch.Generator().manual_seed(seed)
    params = list(model.parameters())
    grads = torch.autograd.grad(_loss(model, x, y), params, create_graph=True)
    total = 0.0
    for _ in range(probes):
        vs = [(torch.randint(0, 2, p.shape, generator=gen) * 2 - 1).to(p) for p in params]
        hv = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)
        total += float(sum((h * v).sum() for h, v in zip(hv, vs, strict=True)))
    return total / probes


def exact_hessian_trace(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """tr(H) from the full Hessian (tiny models only: it is P x P)."""
    fm = FlatModel.of(model)
    hess = torch.autograd.functional.hessian(lambda v: fm.loss(v, x, y), fm.theta.clone())
    return float(torch.diagonal(hess).sum())


def zc_grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    weights = _weights(model)
    grads = torch.autograd.grad(_loss(model, x, y), weights)
    return float(sum(g.norm() for g in grads))


def snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    weights = _weights(model)
    grads = torch.autograd.grad(_loss(model, x, y), weights)
    return float(sum((w.detach() * g).abs().sum() for w, g in zip(weights, grads, strict=True)))


def synflow(model: nn.Module, in_shape: tuple[int, ...]) -> float:
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    weights = _weights(net)
    out = net(torch.ones(1, *in_shape, dtype=torch.float64, device=next(net.parameters()).device))
    grads = torch.autograd.grad(out.sum(), weights)
    return float(sum((w.detach() * g).sum() for w, g in zip(weights, grads, strict=True)))
