"""The general approaches change cost, not the function: checkpointing and reversible layers give
the gradients of the plain model; sharing cuts parameters; bf16 autocast still trains."""

from __future__ import annotations

import copy

import pytest
import torch

from papers.efficient_transformers.attention import AttentionParams
from papers.efficient_transformers.config import ModelConfig
from papers.efficient_transformers.model import Classifier, count_parameters
from papers.efficient_transformers.train import autocast, lr_factor

P = AttentionParams(window=4, block=4, linformer_k=8, features=16, bucket_size=8, landmarks=4)


def grads(model: Classifier, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def data(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(17, (3, n), generator=gen), torch.randint(10, (3,), generator=gen)


@pytest.mark.parametrize("variant", ["sdpa", "bigbird", "reformer"])
def test_checkpointing_gives_identical_gradients(variant):
    torch.manual_seed(0)
    plain = Classifier(ModelConfig(layers=2, dim=16, heads=2, mlp=32), 17, 10, 16, variant, P).double()
    ckpt = copy.deepcopy(plain)
    ckpt.cfg = ModelConfig(layers=2, dim=16, heads=2, mlp=32, checkpointing=True)
    x, y = data()
    a, b = grads(plain, x, y), grads(ckpt, x, y)
    assert a.keys() == b.keys() and len(a) > 10  # every parameter has a gradient in both
    assert all(torch.allclose(a[n], b[n], atol=1e-12) for n in a)


def _reference_reversible(model: Classifier, x: torch.Tensor) -> torch.Tensor:
    """The same coupling with ordinary autograd: y1 = x1 + F(x2), y2 = x2 + G(y1)."""
    h = model.embed(x) + model.pos(torch.arange(x.shape[1]))
    x1 = x2 = h
    for blk in model.blocks:
        x1 = x1 + blk.f(x2)
        x2 = x2 + blk.g(x1)
    return model.head(model.norm((x1 + x2)[:, 0] / 2))


@pytest.mark.parametrize("variant", ["sdpa", "linformer", "performer"])
def test_reversible_backward_reconstructs_and_matches_autograd(variant):
    torch.manual_seed(0)
    model = Classifier(ModelConfig(layers=3, dim=16, heads=2, mlp=32, reversible=True), 17, 10, 16, variant, P).double()
    x, y = data()
    ours = grads(model, x, y)
    model.zero_grad()
    torch.nn.functional.cross_entropy(_reference_reversible(model, x), y).backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert ours.keys() == ref.keys() and len(ours) > 10
    assert all(torch.allclose(ours[n], ref[n], atol=1e-9) for n in ours)


def test_parameter_sharing_uses_one_layer():
    cfg = ModelConfig(layers=4, dim=16, heads=2, mlp=32)
    full = Classifier(cfg, 17, 10, 16, "sdpa", P)
    shared = Classifier(ModelConfig(layers=4, dim=16, heads=2, mlp=32, share_parameters=True), 17, 10, 16, "sdpa", P)
    per_layer = count_parameters(full.blocks[0])
    assert count_parameters(full) - count_parameters(shared) == 3 * per_layer
    assert shared.blocks[0] is shared.blocks[3]


def test_bf16_autocast_runs_in_bfloat16():
    cfg = ModelConfig(layers=1, dim=16, heads=2, mlp=32, precision="bfloat16")
    model = Classifier(cfg, 17, 10, 16, "sdpa", P)
    x, _ = data()
    with autocast(cfg, "cpu"):
        assert model(x).dtype == torch.bfloat16


def test_reformer_layers_share_query_and_key_projection():
    model = Classifier(ModelConfig(layers=1, dim=16, heads=2, mlp=32), 17, 10, 16, "reformer", P)
    assert model.blocks[0].attn.qkv.out_features == 2 * 16


def test_lr_schedule_warms_up_then_decays():
    assert lr_factor(1, 10) == pytest.approx(0.1) and lr_factor(10, 10) == 1.0
    assert lr_factor(40, 10) == pytest.approx(0.5)
