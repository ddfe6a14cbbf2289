"""FP8 training (beyond the paper): the real torch._scaled_mm path against its fp32 simulation, against a
float64 reference of the same arithmetic, delayed scaling, bf16 outputs, and torchao's float8 layer."""

from __future__ import annotations

import copy

import pytest
import torch

from papers.quant_pretraining.quantize import (
    AMAX_HISTORY,
    E5M2_MAX,
    FP8_MAX,
    _fp8_mm,
    fp8_train_linear,
    quantize_linears,
)


def _scaled_mm_works() -> str | None:
    """None when torch._scaled_mm runs here with FP8 operands (CPU builds since torch 2.5), else why not."""
    try:
        one = torch.ones(())
        a = torch.ones(16, 16).to(torch.float8_e5m2)
        torch._scaled_mm(a, torch.ones(16, 16).to(torch.float8_e4m3fn).t(), scale_a=one, scale_b=one)
    except (RuntimeError, AttributeError, TypeError) as exc:
        return f"torch._scaled_mm with FP8 operands does not run on this build/device: {exc}"[:200]
    return None


needs_scaled_mm = pytest.mark.skipif(_scaled_mm_works() is not None, reason=str(_scaled_mm_works()))


def _q64(x: torch.Tensor, amax: float, dtype: torch.dtype, fmax: float) -> torch.Tensor:
    """FP8 quantize-dequantize in float64 with scale amax/fmax: the arithmetic the layer must perform."""
    scale = torch.tensor(amax, dtype=torch.float32).clamp_min(1e-12) / fmax  # fp32 scale, as the layer
    return (x.float() / scale).clamp(-fmax, fmax).to(dtype).double() * scale.double()


def _layer_inputs(seed: int = 0):  # noqa: ANN202
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 24, 64, generator=g) * torch.logspace(-2, 0.5, 64)  # uneven columns, like activations
    w = (torch.randn(48, 64, generator=g) * 0.05).requires_grad_()
    b = torch.randn(48, generator=g).requires_grad_()
    return x.requires_grad_(), w, b, torch.randn(2, 24, 48, generator=g)


@needs_scaled_mm
def test_real_fp8_step_equals_its_fake_quant_simulation():
    """Forward output and all three gradients of the _scaled_mm path equal the fp32 simulation (same FP8
    operands, fp32 GEMM) up to accumulation order, and the two histories record the same amaxes."""
    outs = {}
    for simulate in (False, True):
        x, w, b, gy = _layer_inputs()
        hist = torch.zeros(3, AMAX_HISTORY)
        y = fp8_train_linear(x, w, b, hist, simulate)
        y.backward(gy)
        outs[simulate] = (y.detach(), x.grad, w.grad, b.grad, hist)
    for real, fake in zip(outs[False], outs[True], strict=True):
        torch.testing.assert_close(real, fake, rtol=1e-5, atol=1e-6)


@needs_scaled_mm
def test_a_cpu_fp8_product_is_the_fp32_one_whichever_kernel_torch_would_pick():
    """With oneDNN on (torch's default, which hands FP8 products to oneDNN on CPUs with AMX) and after a product
    of other shapes and types, the layer's product equals its fp32 dequantized simulation bit for bit. On an
    Intel Xeon with AMX raw torch._scaled_mm did not (2e-7 off): there this fails without quantize.scaled_mm."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(48, 64, generator=g), torch.randn(32, 64, generator=g) * 0.05
    sa, sb = a.abs().amax() / FP8_MAX, b.abs().amax() / FP8_MAX
    a8, b8 = (a / sa).to(torch.float8_e4m3fn), (b / sb).to(torch.float8_e4m3fn)
    one = torch.ones(())
    with torch.backends.mkldnn.flags(enabled=True):
        for earlier in (False, True):
            if earlier:
                e5 = torch.ones(16, 16).to(torch.float8_e5m2)
                torch._scaled_mm(e5, torch.ones(16, 16).to(torch.float8_e4m3fn).t(), scale_a=one, scale_b=one)
            real = _fp8_mm(a8, sa, b8, sb, torch.float32, simulate=False)
            assert torch.equal(real, _fp8_mm(a8, sa, b8, sb, torch.float32, simulate=True))


def test_fp8_layer_is_the_fp8_arithmetic_of_a_float64_reference():
    """The simulated path against an independent float64 computation: Y = Q(X)Q(W)ᵀ + b, grad_X = Q(G)Q(W),
    grad_W = Q(G)ᵀQ(X) with e4m3 X and W, e5m2 G, per-tensor scales amax/fmax on the first call."""
    x, w, b, gy = _layer_inputs(1)
    hist = torch.zeros(3, AMAX_HISTORY)
    y = fp8_train_linear(x, w, b, hist, simulate=True)
    y.backward(gy)
    x2, g2 = x.detach().reshape(-1, 64), gy.reshape(-1, 48)
    xq = _q64(x2, float(x2.abs().max()), torch.float8_e4m3fn, FP8_MAX)
    wq = _q64(w.detach(), float(w.detach().abs().max()), torch.float8_e4m3fn, FP8_MAX)
    gq = _q64(g2, float(g2.abs().max()), torch.float8_e5m2, E5M2_MAX)
    torch.testing.assert_close(
        y.detach().double().reshape(-1, 48), xq @ wq.T + b.detach().double(), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(x.grad.double().reshape(-1, 64), gq @ wq, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w.grad.double(), gq.T @ xq, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.grad.double(), g2.double().sum(0), rtol=1e-6, atol=1e-6)
    # the quantization is real: FP8 is not fp32 (e4m3 keeps 3 mantissa bits)
    assert not torch.allclose(xq, x2.double(), rtol=1e-3)


def test_delayed_scaling_uses_the_history_not_the_current_amax():
    """Second call: the scale is the max of the recorded amaxes, so a tensor 4x larger than before saturates at
    the old range (448 x old scale), and its own amax enters the history for the next call."""
    hist = torch.zeros(3, AMAX_HISTORY)
    w = torch.ones(16, 16)
    fp8_train_linear(torch.full((4, 16), 2.0), w, None, hist, simulate=True)
    assert hist[0, 0] == 2.0 and hist[1, 0] == 1.0
    x = torch.full((4, 16), 8.0)
    x[0, 0] = 1.0
    y = fp8_train_linear(x, w, None, hist, simulate=True)
    # old scale 2/448: 8 -> 1792 > 448 saturates to 448 -> 2.0; row 0 keeps its 1.0 (exactly representable)
    assert y[1, 0].item() == pytest.approx(16 * 2.0)
    assert y[0, 0].item() == pytest.approx(1.0 + 15 * 2.0)
    assert hist[0, 0] == 8.0 and hist[0, 1] == 2.0  # newest first
    assert hist[0, 2:].eq(0).all()


@needs_scaled_mm
def test_outputs_are_bf16_under_bf16_autocast_and_fp32_without():
    lin = torch.nn.Linear(64, 48)
    quantize_linears(lin_holder := torch.nn.Sequential(lin), gemm="fp8_train")
    x = torch.randn(8, 64, requires_grad=True)
    assert lin_holder(x).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = lin_holder(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert x.grad.dtype == torch.float32 and lin_holder[0].weight.grad.dtype == torch.float32


def test_fp8_amax_history_is_a_buffer_so_checkpoints_carry_it():
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Linear(16, 16))
    assert quantize_linears(model, gemm="fp8_train_fake") == 2
    model(torch.randn(4, 16)).sum().backward()
    state = model.state_dict()
    assert {"0.fp8_amax", "1.fp8_amax"} <= state.keys() and state["0.fp8_amax"][:, 0].gt(0).all()
    clone = copy.deepcopy(model)
    clone.load_state_dict(state)
    torch.testing.assert_close(clone[1].fp8_amax, model[1].fp8_amax)


@needs_scaled_mm
def test_torchao_float8_layer_agrees_with_ours_on_the_first_step():
    """torchao's Float8Linear (tensorwise dynamic scaling) and our layer on its first call (no history yet: the
    scale is the current amax) quantize the same operands the same way; outputs and gradients agree closely."""
    torchao_float8 = pytest.importorskip("torchao.float8", reason="torchao is an optional extra (see README)")
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 32))
    ours, theirs = copy.deepcopy(ref), copy.deepcopy(ref)
    quantize_linears(ours, gemm="fp8_train")
    torchao_float8.convert_to_float8_training(theirs)
    x = torch.randn(64, 64)
    ya, yb = ours(x), theirs(x)
    (ya.square().sum()).backward()
    (yb.square().sum()).backward()
    assert (ya - yb).abs().max() <= 1e-3 * yb.abs().max()
    for pa, pb in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert (pa.grad - pb.grad).norm() <= 1e-2 * pb.grad.norm()
