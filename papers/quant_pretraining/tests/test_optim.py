"""Quantized Adam states against torch's AdamW and a hand-written update; the parameter groups."""

from __future__ import annotations

import torch

from papers.quant_pretraining.model import GPT, GPTConfig
from papers.quant_pretraining.optim import QuantStateAdamW, make_optimizer, param_groups
from papers.quant_pretraining.quantize import QuantSpec, fake_quantize


def _model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=64, n_positions=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0))


def _train(opt_factory, steps: int = 3) -> list[torch.Tensor]:  # noqa: ANN001
    model = _model()
    opt = opt_factory(model)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randint(0, 64, (2, 8), generator=g)
        model(x).logsumexp(-1).mean().backward()
        opt.step()
        opt.zero_grad()
    return [p.detach().clone() for p in model.parameters()]


def test_without_state_quantizers_it_is_torch_adamw():
    ours = _train(lambda m: make_optimizer(m, "adamw", 1e-2, (0.9, 0.999), 1e-8, 0.1))
    ref = _train(lambda m: torch.optim.AdamW(param_groups(m, 0.1), lr=1e-2, betas=(0.9, 0.999), eps=1e-8))
    assert ours and len(ours) == len(ref)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def test_first_moment_is_quantized_before_the_update():
    spec = QuantSpec(4, "row", min_range=1e-8)
    p = torch.nn.Parameter(torch.tensor([[1.0, -2.0, 0.5]]))
    opt = QuantStateAdamW([{"params": [p], "quantize": True, "weight_decay": 0.0}], m=spec, lr=0.1)
    grads = [torch.tensor([[0.3, -0.1, 0.05]]), torch.tensor([[-0.2, 0.4, 0.01]])]
    p.grad = grads[0]
    opt.step()
    m1 = 0.1 * grads[0]
    torch.testing.assert_close(opt.state[p]["exp_avg"], m1)  # nothing to quantize before step 1
    p.grad = grads[1]
    opt.step()
    torch.testing.assert_close(opt.state[p]["exp_avg"], 0.9 * fake_quantize(m1, spec) + 0.1 * grads[1])


def test_unquantized_group_keeps_fp32_states():
    p, q = torch.nn.Parameter(torch.ones(1, 3)), torch.nn.Parameter(torch.ones(1, 3))
    groups = [{"params": [p], "quantize": True}, {"params": [q], "quantize": False}]
    opt = QuantStateAdamW(groups, v=QuantSpec(2, "tensor", min_range=1e-8), lr=0.1)
    for g in ([[1.0, 1e-3, 1e-4]], [[1.0, 1e-3, 1e-4]]):
        p.grad, q.grad = torch.tensor(g), torch.tensor(g)
        opt.step()
    assert opt.state[p]["exp_avg_sq"][0, 2] != opt.state[q]["exp_avg_sq"][0, 2]
    torch.testing.assert_close(opt.state[q]["exp_avg_sq"], (1 - 0.999**2) * torch.tensor([[1.0, 1e-6, 1e-8]]))


def test_param_groups_decay_linear_weights_only_and_count_the_tie_once():
    model = _model()
    decay, rest = param_groups(model, 0.1)
    assert decay["quantize"] and not rest["quantize"] and rest["weight_decay"] == 0.0
    assert decay["params"] and all(p.dim() == 2 for p in decay["params"])
    assert not any(p is model.wte.weight for p in decay["params"])
    n = sum(p.numel() for p in decay["params"]) + sum(p.numel() for p in rest["params"])
    assert n == sum(p.numel() for p in model.parameters())


def test_bitsandbytes_8bit_adamw_steps_on_cpu():
    model = _model()
    opt = make_optimizer(model, "adamw_bnb_8bit", 1e-2, (0.9, 0.999), 1e-8, 0.1)
    assert type(opt).__name__ == "AdamW8bit"
    before = model.blocks[0].mlp.fc1.weight.detach().clone()
    model(torch.randint(0, 64, (2, 8))).logsumexp(-1).mean().backward()
    opt.step()
    assert not torch.equal(before, model.blocks[0].mlp.fc1.weight)
