"""The manifold estimates and the baselines against independent references on tiny models."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from papers.manifold_expansion import baselines
from papers.manifold_expansion.config import DirectionalConfig, SimplexConfig
from papers.manifold_expansion.manifold import directional_size, log_volume, sample_simplex, simplex_size
from papers.manifold_expansion.models import mlp
from papers.manifold_expansion.params import FlatModel


def tiny_data(n=64, d=4, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 1, d, generator=g), torch.randint(0, k, (n,), generator=g)


def test_simplex_samples_are_inside_the_simplex():
    w = sample_simplex(5000, 4, torch.Generator().manual_seed(0))
    assert (w >= 0).all() and torch.allclose(w.sum(1), torch.ones(5000))
    # uniform on the simplex = Dirichlet(1,1,1,1): each coordinate has mean 1/4 and variance 3/80
    assert torch.allclose(w.mean(0), torch.full((4,), 0.25), atol=0.01)
    assert torch.allclose(w.var(0), torch.full((4,), 3 / 80), atol=0.003)
    # the points are convex combinations: inside the triangle (0,0), (1,0), (0,1)
    verts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    pts = sample_simplex(1000, 3, torch.Generator().manual_seed(1)) @ verts
    assert (pts >= 0).all() and (pts.sum(1) <= 1 + 1e-6).all()


def test_log_volume_matches_cayley_menger_and_heron():
    edges = torch.tensor([[3.0, 0.0, 0.0], [0.0, 4.0, 0.0]])  # right triangle, legs 3 and 4: area 6
    assert math.isclose(float(log_volume(edges)), math.log(6.0), rel_tol=1e-9)
    g = torch.Generator().manual_seed(0)
    for k in (2, 3):
        e = torch.randn(k, 6, generator=g, dtype=torch.float64)
        pts = np.vstack([np.zeros(6), e.numpy()])
        d2 = ((pts[:, None] - pts[None]) ** 2).sum(-1)
        cm = np.ones((k + 2, k + 2))
        cm[0, 0] = 0
        cm[1:, 1:] = d2
        vol2 = (-1) ** (k + 1) / (2**k * math.factorial(k) ** 2) * np.linalg.det(cm)
        assert math.isclose(float(log_volume(e)), 0.5 * math.log(vol2), rel_tol=1e-7)


def test_simplex_size_is_deterministic_and_within_the_loss_level():
    torch.manual_seed(0)
    model = mlp((1, 1, 4), [8], 3)
    x, y = tiny_data()
    cfg = SimplexConfig(vertices=2, steps=8, batch_size=32, eval_samples=4, bisect_steps=8)
    a, b = simplex_size(model, x, y, cfg, 0), simplex_size(model, x, y, cfg, 0)
    assert a.log_volume == b.log_volume and 0 < a.scale <= 1
    assert math.isclose(a.log_volume, a.raw_log_volume + 2 * math.log(a.scale), rel_tol=1e-9)
    # a reference level below the model's own loss: the model is off the manifold, the scale is the floor
    off = simplex_size(model, x, y, cfg, 0, reference_loss=a.base_loss - 1.0)
    assert off.scale == 2.0**-8


def test_directional_size_on_a_quadratic_bowl():
    """With epsilon huge every direction reaches t_max; with the level below the model's loss the estimate
    is 0; with a small epsilon it lies strictly between."""
    torch.manual_seed(0)
    model = mlp((1, 1, 4), [8], 3)
    x, y = tiny_data()
    big = DirectionalConfig(directions=3, epsilon=1e9, t_max=2.0)
    assert directional_size(model, x, y, big, 0) == 2.0
    own = FlatModel.of(model).batched_loss(FlatModel.of(model).theta, x, y)
    assert directional_size(model, x, y, DirectionalConfig(directions=3), 0, reference_loss=own - 1) == 0.0
    small = DirectionalConfig(directions=3, epsilon=0.01, t_max=2.0)
    assert 0 < directional_size(model, x, y, small, 0) < 2.0


def test_hutchinson_matches_the_exact_hessian_trace():
    torch.manual_seed(0)
    model = mlp((1, 1, 4), [3], 3)  # 27 parameters: the exact Hessian is 27 x 27
    x, y = tiny_data()
    fm = FlatModel.of(model)
    hess = torch.autograd.functional.hessian(lambda v: fm.loss(v, x, y), fm.theta.clone())
    exact = float(torch.diagonal(hess).sum())
    assert math.isclose(baselines.exact_hessian_trace(model, x, y), exact, rel_tol=1e-6)
    probes = 400
    est = baselines.hutchinson_trace(model, x, y, probes, seed=0)
    assert est == baselines.hutchinson_trace(model, x, y, probes, seed=0)
    off_diag = float((hess**2).sum() - (torch.diagonal(hess) ** 2).sum())
    stderr = math.sqrt(2 * off_diag / probes)  # Rademacher variance: 2 * sum_{i != j} H_ij^2
    assert abs(est - exact) <= 4 * stderr


def test_zero_cost_proxies_by_hand_on_softmax_regression():
    """One Linear layer with cross-entropy: dL/dW = (softmax(Wx + b) - onehot)^T x / n, by numpy."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 4))
    x = torch.randn(10, 1, 1, 3)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    w, b = model[1].weight.detach().numpy().astype(np.float64), model[1].bias.detach().numpy().astype(np.float64)
    xs = x.reshape(10, 3).numpy().astype(np.float64)
    z = xs @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(10), y.numpy()] -= 1
    gw, gb = p.T @ xs / 10, p.mean(0)
    assert math.isclose(baselines.zc_grad_norm(model, x, y), np.linalg.norm(gw), rel_tol=1e-5)
    assert math.isclose(baselines.snip(model, x, y), np.abs(w * gw).sum(), rel_tol=1e-5)
    full = math.sqrt((gw**2).sum() + (gb**2).sum())
    assert math.isclose(baselines.grad_norm_at_expansion(model, x, y), full, rel_tol=1e-5)


def test_synflow_by_hand():
    """Two bias-free linear layers: R = 1^T |W2| |W1| 1, and each layer contributes sum W * dR/dW = R (R is
    linear in each layer's weights), so synflow = 2R."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]))
        model[3].weight.copy_(torch.tensor([[2.0, -1.0], [0.5, 4.0]]))
    r = np.abs(model[3].weight.detach().numpy()) @ np.abs(model[1].weight.detach().numpy()) @ np.ones(3)
    assert math.isclose(baselines.synflow(model, (1, 1, 3)), 2 * r.sum(), rel_tol=1e-12)
    assert model[1].weight[0, 1] == -2.0  # the model is not changed


@pytest.mark.parametrize("metric", ["grad_norm_at_expansion", "zc_grad_norm", "snip"])
def test_baselines_are_deterministic(metric):
    torch.manual_seed(0)
    model = mlp((1, 1, 4), [8], 3)
    x, y = tiny_data()
    fn = getattr(baselines, metric)
    assert fn(model, x, y) == fn(model, x, y)
