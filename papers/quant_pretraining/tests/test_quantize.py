"""The quantizer and the quantized linear layer against hand computations and torch's own ops."""

from __future__ import annotations

import pytest
import torch

from papers.quant_pretraining.model import GPT, GPTConfig
from papers.quant_pretraining.quantize import QuantLinear, QuantSpec, fake_quantize, quant_linear, quantize_linears


def test_symmetric_per_row_matches_a_hand_computation():
    x = torch.tensor([[0.45, -1.0, 0.26], [3.0, 0.1, -0.2]])
    out = fake_quantize(x, QuantSpec(bits=4, granularity="row"))
    # row 0: step = 1.0 / 7 -> 0.45*7 = 3.15 -> 3; 0.26*7 = 1.82 -> 2
    # row 1: step = 3.0 / 7 -> 0.1*7/3 = 0.233 -> 0; -0.2*7/3 = -0.467 -> -0
    expected = torch.tensor([[3 / 7, -1.0, 2 / 7], [3.0, 0.0, 0.0]])
    torch.testing.assert_close(out, expected)


def test_per_tensor_and_per_column_use_one_scale_per_group():
    x = torch.tensor([[1.0, 0.01], [0.5, 0.02]])
    per_tensor = fake_quantize(x, QuantSpec(8, "tensor"))
    assert per_tensor[0, 1] == pytest.approx(1 / 127)  # 0.01 * 127 = 1.27 -> 1 step of 1/127
    per_column = fake_quantize(x, QuantSpec(8, "column"))
    torch.testing.assert_close(per_column[:, 1], torch.tensor([0.01, 0.02]), atol=0.02 / 254, rtol=0)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("granularity", ["tensor", "row", "column"])
def test_levels_error_and_idempotence(bits, granularity):
    torch.manual_seed(0)
    x = torch.randn(16, 64) * torch.logspace(-2, 1, 64)
    spec = QuantSpec(bits, granularity)
    q = fake_quantize(x, spec)
    dim = {"tensor": None, "row": 1, "column": 0}[granularity]
    amax = x.abs().amax() if dim is None else x.abs().amax(dim=dim, keepdim=True)
    step = amax / spec.qp
    assert ((q - x).abs() <= step / 2 + 1e-6).all()  # round to nearest, no clipping
    levels = torch.round(q / step)
    assert levels.abs().max() <= spec.qp and torch.allclose(levels * step, q, atol=1e-6)
    torch.testing.assert_close(fake_quantize(q, spec), q)


def test_asymmetric_uses_the_full_range_of_a_one_sided_tensor():
    x = torch.linspace(0.0, 1.0, 256).reshape(1, -1)
    asym = fake_quantize(x, QuantSpec(8, "row", symmetric=False))
    sym = fake_quantize(x, QuantSpec(8, "row"))
    assert (asym - x).abs().max() < (sym - x).abs().max()
    assert len(torch.unique(asym)) > len(torch.unique(sym))


def test_min_range_floors_the_scale_of_an_all_zero_group():
    x = torch.zeros(2, 3)
    assert torch.equal(fake_quantize(x, QuantSpec(8, "row", min_range=1e-9)), x)


def test_dtype_and_shape_are_kept():
    x = torch.randn(2, 3, 8, dtype=torch.bfloat16)
    q = fake_quantize(x, QuantSpec(8, "row"))
    assert q.dtype == torch.bfloat16 and q.shape == x.shape


def test_bad_specs_are_refused():
    with pytest.raises(ValueError, match="bits=1: valid 2..16"):
        QuantSpec(bits=1)
    with pytest.raises(ValueError, match="granularity='group'; valid: tensor, row, column"):
        QuantSpec(granularity="group")  # type: ignore[arg-type]


def test_quant_linear_forward_and_backward_follow_the_authors_function():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8, requires_grad=True)
    w = torch.randn(4, 8, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    ws, as_, gs = QuantSpec(4, "row"), QuantSpec(4, "row"), QuantSpec(4, "row", min_range=1e-9)
    out = quant_linear(x, w, b, ws, as_, gs)
    ref = fake_quantize(x.detach(), as_) @ fake_quantize(w.detach(), ws).T + b.detach()
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    out.backward(g)
    g2, x2 = g.reshape(-1, 4), x.detach().reshape(-1, 8)
    torch.testing.assert_close(x.grad, (g2 @ w.detach()).reshape(x.shape))  # full-precision G and W
    torch.testing.assert_close(w.grad, fake_quantize(g2, gs).T @ x2)  # quantized G, fp X
    torch.testing.assert_close(b.grad, g2.sum(0))


def test_without_quantizers_the_layer_is_nn_linear():
    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 4)
    q = QuantLinear(8, 4)
    q.load_state_dict(lin.state_dict())
    x = torch.randn(3, 8)
    assert torch.equal(q(x), lin(x))


def test_quantize_linears_swaps_every_linear_and_keeps_the_tie():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, n_positions=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0))
    x = torch.randint(0, 64, (2, 16))
    before = model(x)
    n = quantize_linears(model, w=QuantSpec(8, "row"))
    assert n == 2 * 4 + 1  # qkv, out_proj, fc1, fc2 per block + the LM head
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    assert model.lm_head.weight is model.wte.weight
    after = model(x)
    assert not torch.equal(before, after) and torch.allclose(before, after, atol=0.05)


def test_int8_gemm_equals_the_fake_quant_product():
    torch.manual_seed(0)
    x, w = torch.randn(32, 64), torch.randn(48, 64)
    spec = QuantSpec(8, "row")
    real = quant_linear(x, w, None, spec, spec, None, gemm="int8")
    fake = quant_linear(x, w, None, spec, spec, None)
    torch.testing.assert_close(real, fake, rtol=1e-5, atol=1e-5)


def test_fp8_gemm_is_the_e4m3_product_of_row_scaled_operands():
    torch.manual_seed(0)
    x, w = torch.randn(32, 64), torch.randn(48, 64)
    spec = QuantSpec(8, "row")
    sx, sw = x.abs().amax(1, keepdim=True) / 448, w.abs().amax(1, keepdim=True) / 448
    ref = ((x / sx).to(torch.float8_e4m3fn).float() * sx) @ ((w / sw).to(torch.float8_e4m3fn).float() * sw).T
    real = quant_linear(x, w, None, spec, spec, None, gemm="fp8")
    torch.testing.assert_close(real, ref, rtol=1e-4, atol=1e-4)
    assert (real - x @ w.T).abs().max() < 0.1 * (x @ w.T).abs().max()


def test_real_gemm_gradients_match_the_fake_quant_layer():
    torch.manual_seed(0)
    spec = QuantSpec(8, "row")
    x0, w0 = torch.randn(2, 8, 16), torch.randn(8, 16)
    grads = []
    for gemm in ("fake", "int8"):
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        quant_linear(x * 1.0, w, None, spec, spec, None, gemm=gemm).square().sum().backward()
        grads.append((x.grad, w.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-4)


def test_real_gemm_refuses_other_quantizers():
    with pytest.raises(ValueError, match="gemm='int8' needs 8-bit symmetric per-row"):
        quant_linear(torch.randn(4, 8), torch.randn(4, 8), None, QuantSpec(4, "row"), QuantSpec(8, "row"), gemm="int8")


def test_skip_leaves_the_lm_head_in_full_precision():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, n_positions=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0))
    assert quantize_linears(model, g=QuantSpec(8, "row"), skip=("lm_head",)) == 4
    assert type(model.lm_head) is torch.nn.Linear and type(model.blocks[0].mlp.fc1) is QuantLinear
