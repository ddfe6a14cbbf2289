"""Linear fake quantization as the authors implemented it (chandar-lab/EfficientLLMs, quantizer.py).

x_q = round(clamp(x / step - zp, Qn, Qp)), x_hat = (x_q + zp) * step, with Qn = -2^(b-1), Qp = 2^(b-1) - 1.
Symmetric: step = max|x| / Qp over the group, zp = 0 (values land in [-Qp, Qp]; max-abs never clips).
Asymmetric: step = (max - min) / (2 Qp), zp = round(min / step - Qn).
Scales are recomputed at every call (no calibration, no EMA), rounding is to nearest (half to even),
and the scale is floored at `min_range` (1e-5 for weights and activations, 1e-9 for gradients and
1e-8 for optimizer states in the authors' configs).

Granularity is over a 2-D tensor: "tensor" (one scale), "row" (one per row: per output channel of a
weight W[out, in], per token of an activation X[tokens, in] or gradient G[tokens, out]) and "column"
(one per column). The authors' per-column path reduces over dims (0, 2) of a 3-D input and looks
broken for the 2-D inputs their layer passes it; ours is the per-column max the name describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Granularity = Literal["tensor", "row", "column"]
GRANULARITIES = ("tensor", "row", "column")
Gemm = Literal["fake", "int8", "fp8", "fp8_train", "fp8_train_fake"]
GEMMS = ("fake", "int8", "fp8", "fp8_train", "fp8_train_fake")
FP8_MAX = 448.0  # largest finite float8_e4m3fn
E5M2_MAX = 57344.0  # largest finite float8_e5m2 (gradients: more range, less precision)
AMAX_HISTORY = 16  # delayed scaling: the scale comes from the max of the last 16 amaxes (torchao's old default)


@dataclass(frozen=True)
class QuantSpec:
    """One quantizer: bits, granularity, symmetric or not, and the floor of the scale."""

    bits: int = 8
    granularity: Granularity = "row"
    symmetric: bool = True
    min_range: float = 1e-5

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 16:
            raise ValueError(f"bits={self.bits}: valid 2..16")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity={self.granularity!r}; valid: {', '.join(GRANULARITIES)}")

    @property
    def qn(self) -> int:
        return -(2 ** (self.bits - 1))

    @property
    def qp(self) -> int:
        return 2 ** (self.bits - 1) - 1


def _reduce(x: torch.Tensor, granularity: Granularity, op: str) -> torch.Tensor:
    fn = {"amax": torch.amax, "amin": torch.amin}[op]
    if granularity == "tensor":
        return fn(x).reshape(1, 1)
    return fn(x, dim=-1 if granularity == "row" else 0, keepdim=True)


def fake_quantize(x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Quantize then dequantize `x` (any shape; rows are its last dimension), in x's dtype."""
    shape = x.shape
    x2 = x.reshape(-1, shape[-1]) if x.dim() != 2 else x
    xf = x2.float()
    if spec.symmetric:
        step = _reduce(xf.abs(), spec.granularity, "amax").clamp_min(spec.min_range) / spec.qp
        q = torch.round(torch.clamp(xf / step, spec.qn, spec.qp))
        out = q * step
    else:
        lo, hi = _reduce(xf, spec.granularity, "amin"), _reduce(xf, spec.granularity, "amax")
        step = (hi - lo).clamp_min(spec.min_range) / (2 * spec.qp)
        zp = torch.round(lo / step - spec.qn)
        out = (torch.round(torch.clamp(xf / step - zp, spec.qn, spec.qp)) + zp) * step
    return out.to(x.dtype).reshape(shape)


def _row_scale(x: torch.Tensor, qmax: float, min_range: float) -> torch.Tensor:
    return x.abs().amax(dim=-1, keepdim=True).float().clamp_min(min_range) / qmax


def int8_linear(x2: torch.Tensor, weight: torch.Tensor, w: QuantSpec, a: QuantSpec) -> torch.Tensor:
    """Xq Wq^T with integer operands: int8 x int8 -> int32 (torch._int_mm), rescaled per token and
    per output channel. The same numbers as the fake-quant product up to fp32 rounding."""
    sx, sw = _row_scale(x2, a.qp, a.min_range), _row_scale(weight, w.qp, w.min_range)
    xq = torch.round(torch.clamp(x2.float() / sx, a.qn, a.qp)).to(torch.int8)
    wq = torch.round(torch.clamp(weight.float() / sw, w.qn, w.qp)).to(torch.int8)
    return torch._int_mm(xq, wq.t()).float() * sx * sw.t()


def scaled_mm(a8: torch.Tensor, b8: torch.Tensor, **kwargs) -> torch.Tensor:
    """torch._scaled_mm, with one CPU kernel on every CPU. On a CPU, torch may hand an FP8 product to oneDNN
    (on CPUs with AMX) or dequantize to fp32 and multiply. Measured on an Intel Xeon with AMX: oneDNN's product
    differs from the fp32 one by 2e-7, and a 6-step FP8 training curve moved by 1.3e-4 when one other FP8
    product had been computed earlier in the process. So on a CPU oneDNN is off for this call, and an FP8
    product is the fp32 one on every CPU; GPUs run their FP8 kernels."""
    if a8.device.type != "cpu":
        return torch._scaled_mm(a8, b8, **kwargs)
    with torch.backends.mkldnn.flags(enabled=False):
        return torch._scaled_mm(a8, b8, **kwargs)


def fp8_linear(x2: torch.Tensor, weight: torch.Tensor, w: QuantSpec, a: QuantSpec) -> torch.Tensor:
    """Xq Wq^T in float8 e4m3 (torch._scaled_mm), per-token and per-channel scales mapping each row's
    max to 448. FP8 is a floating grid, not the authors' integer one: a different 8-bit quantizer."""
    sx, sw = _row_scale(x2, FP8_MAX, a.min_range), _row_scale(weight, FP8_MAX, w.min_range)
    xq = (x2.float() / sx).to(torch.float8_e4m3fn)
    wq = (weight.float() / sw).to(torch.float8_e4m3fn)
    return scaled_mm(xq, wq.t(), scale_a=sx, scale_b=sw.t(), out_dtype=torch.float32)


def _real_gemm_ok(gemm: str, w: QuantSpec | None, a: QuantSpec | None) -> bool:
    if gemm == "fake":
        return False
    for spec in (w, a):
        if spec is None or spec.bits != 8 or spec.granularity != "row" or not spec.symmetric:
            raise ValueError(f"gemm={gemm!r} needs 8-bit symmetric per-row weights and activations, got w={w}, a={a}")
    return True


# ---- FP8 training (beyond the paper): every GEMM of the layer in float8, delayed per-tensor scaling ----------
# Roles of the amax history: 0 = input X (e4m3), 1 = weight W (e4m3), 2 = output gradient G (e5m2).
_FP8_ROLES = ((torch.float8_e4m3fn, FP8_MAX), (torch.float8_e4m3fn, FP8_MAX), (torch.float8_e5m2, E5M2_MAX))


def _fp8_cast(x: torch.Tensor, history: torch.Tensor, role: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cast `x` to its role's FP8 type with a delayed scale: the max of the amax history (the previous calls'
    amaxes), or this call's amax on the first call. Records this call's amax. Values beyond the delayed
    range saturate, as in Transformer Engine. Returns (x8, dequantization scale, a 0-dim fp32 tensor)."""
    dtype, fmax = _FP8_ROLES[role]
    amax = x.detach().abs().amax().float()
    past = history[role].amax()
    scale = torch.where(past > 0, past, amax).clamp_min(1e-12) / fmax
    x8 = (x.float() / scale).clamp(-fmax, fmax).to(dtype)
    history[role] = torch.roll(history[role], 1)
    history[role, 0] = amax
    return x8, scale


def _fp8_mm(a8: torch.Tensor, sa: torch.Tensor, b8: torch.Tensor, sb: torch.Tensor, out_dtype: torch.dtype,
            simulate: bool) -> torch.Tensor:  # fmt: skip
    """(a8 · sa) @ (b8 · sb)ᵀ: torch._scaled_mm (row-major first operand, column-major second, as the GPU
    kernels need), or the same arithmetic in fp32 when `simulate` (the fake-quant reference)."""
    if simulate:
        return ((a8.float() * sa) @ (b8.float() * sb).t()).to(out_dtype)
    return scaled_mm(a8.contiguous(), b8.contiguous().t(), scale_a=sa, scale_b=sb, out_dtype=out_dtype)


def _autocast_dtype(x: torch.Tensor) -> torch.dtype:
    """The output dtype a matmul has here: the autocast dtype inside autocast (bf16), else x's."""
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


class _Fp8TrainFn(torch.autograd.Function):
    """FP8 training of one linear layer: Y = X8 W8ᵀ (e4m3 x e4m3), grad_X = G8 W8 (e5m2 x e4m3) and
    grad_W = G8ᵀ X8 (e5m2 x e4m3), each operand per-tensor with a delayed scale; the FP8 copies of X and W
    are what backward keeps (half of bf16's activation memory). Outputs in the autocast dtype (bf16 under
    bf16 autocast). A deviation from the paper, whose recipe is integer fake quantization of the forward GEMM
    and the weight gradient only: this is the recipe FP8 hardware runs (Transformer Engine, torchao)."""

    @staticmethod
    def forward(ctx, x, weight, bias, history, simulate):  # noqa: ANN001 - autograd signature
        out_dtype = _autocast_dtype(x)
        x2 = x.reshape(-1, x.shape[-1])
        with torch.no_grad():
            x8, sx = _fp8_cast(x2, history, 0)
            w8, sw = _fp8_cast(weight, history, 1)
        out = _fp8_mm(x8, sx, w8, sw, out_dtype, simulate)
        if bias is not None:
            out = out + bias.to(out_dtype)
        ctx.save_for_backward(x8, sx, w8, sw)
        ctx.history = history  # not saved: the next forward updates it in place before this backward runs
        ctx.meta = (x.shape, x.dtype, weight.dtype, bias is not None, simulate)
        return out.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001
        x8, sx, w8, sw = ctx.saved_tensors
        history = ctx.history
        x_shape, x_dtype, w_dtype, has_bias, simulate = ctx.meta
        g2 = grad_out.reshape(-1, grad_out.shape[-1])
        with torch.no_grad():
            g8, sg = _fp8_cast(g2, history, 2)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:  # G8 [M, N] @ W8 [N, K]: the second operand is W8ᵀ's transpose
            grad_x = _fp8_mm(g8, sg, w8.t(), sw, grad_out.dtype, simulate).reshape(x_shape).to(x_dtype)
        if ctx.needs_input_grad[1]:  # G8ᵀ [N, M] @ X8 [M, K]
            grad_w = _fp8_mm(g8.t(), sg, x8.t(), sx, torch.float32, simulate).to(w_dtype)
        if has_bias and ctx.needs_input_grad[2]:
            grad_b = g2.float().sum(0).to(w_dtype)
        return grad_x, grad_w, grad_b, None, None


def fp8_train_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, history: torch.Tensor, simulate: bool = False
) -> torch.Tensor:
    """The FP8 training linear layer; `history` is the layer's [3, AMAX_HISTORY] amax buffer (updated in place)."""
    return _Fp8TrainFn.apply(x, weight, bias, history, simulate)


class _QuantLinearFn(torch.autograd.Function):
    """out = Q_a(X) Q_w(W)^T + b; grad_X = G W (full precision); grad_W = Q_g(G)^T X.

    The straight-through estimator is the identity: backward uses the unquantized X and W with no
    clipping mask, exactly as the authors' _quantize_global (adapted from bitsandbytes).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, w_spec, a_spec, g_spec, gemm="fake"):  # noqa: ANN001 - autograd signature
        ctx.save_for_backward(x, weight)
        ctx.g_spec, ctx.has_bias = g_spec, bias is not None
        if _real_gemm_ok(gemm, w_spec, a_spec):
            x2 = x.reshape(-1, x.shape[-1])
            out = (int8_linear if gemm == "int8" else fp8_linear)(x2, weight, w_spec, a_spec).to(x.dtype)
            out = out.reshape(*x.shape[:-1], weight.shape[0])
            return out + bias if bias is not None else out
        xq = fake_quantize(x, a_spec) if a_spec is not None else x
        wq = fake_quantize(weight, w_spec) if w_spec is not None else weight
        return torch.nn.functional.linear(xq, wq, bias)

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001
        x, weight = ctx.saved_tensors
        g2 = grad_out.reshape(-1, grad_out.shape[-1])
        x2 = x.reshape(-1, x.shape[-1])
        grad_x = (g2 @ weight.to(g2.dtype)).reshape(x.shape) if ctx.needs_input_grad[0] else None
        gq = fake_quantize(g2, ctx.g_spec) if ctx.g_spec is not None else g2
        grad_w = (gq.t() @ x2.to(gq.dtype)).to(weight.dtype) if ctx.needs_input_grad[1] else None
        grad_b = g2.sum(0).to(weight.dtype) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None, None, None, None


def quant_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    w: QuantSpec | None = None,
    a: QuantSpec | None = None,
    g: QuantSpec | None = None,
    gemm: Gemm = "fake",
) -> torch.Tensor:
    """The quantized linear layer; gemm="int8"/"fp8" runs the W8A8 forward GEMM in real 8-bit."""
    return _QuantLinearFn.apply(x, weight, bias, w, a, g, gemm)


class QuantLinear(torch.nn.Linear):
    """nn.Linear whose matmuls go through the quantizers named in (w, a, g); None = full precision."""

    def __init__(self, *args, w=None, a=None, g=None, gemm: Gemm = "fake", **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.w_spec, self.a_spec, self.g_spec, self.gemm = w, a, g, gemm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gemm in ("fp8_train", "fp8_train_fake"):
            return fp8_train_linear(x, self.weight, self.bias, self.fp8_amax, self.gemm == "fp8_train_fake")
        if self.w_spec is None and self.a_spec is None and self.g_spec is None:
            return super().forward(x)
        return quant_linear(x, self.weight, self.bias, self.w_spec, self.a_spec, self.g_spec, self.gemm)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, w={self.w_spec}, a={self.a_spec}, g={self.g_spec}, gemm={self.gemm}"


def quantize_linears(  # noqa: ANN001
    model: torch.nn.Module, w=None, a=None, g=None, gemm: Gemm = "fake", skip: tuple[str, ...] = ()
) -> int:
    """Swap every nn.Linear in `model` (the LM head included) for a QuantLinear sharing its parameters.

    Returns how many layers were swapped. Parameters are the same objects, so tied weights stay tied
    and an optimizer built before or after sees the same tensors. Children named in `skip` stay as they are.
    """
    count = 0
    for name, child in list(model.named_children()):
        if name in skip:
            continue
        if type(child) is torch.nn.Linear:
            q = QuantLinear.__new__(QuantLinear)
            torch.nn.Module.__init__(q)
            q.in_features, q.out_features = child.in_features, child.out_features
            q.weight, q.bias = child.weight, child.bias
            q.w_spec, q.a_spec, q.g_spec, q.gemm = w, a, g, gemm
            if gemm in ("fp8_train", "fp8_train_fake"):  # checkpointed with the model, so a resume is exact
                q.register_buffer("fp8_amax", torch.zeros(3, AMAX_HISTORY, device=child.weight.device))
            setattr(model, name, q)
            count += 1
        else:
            count += quantize_linears(child, w, a, g, gemm, skip)
    return count
