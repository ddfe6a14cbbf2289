"""Every configuration the authors shipped (configs/*.jsonnet in chandar-lab/EfficientLLMs), by name.

Weights per "channel" are per row of W[out, in]; activations and gradients per "token" are per row of
X[tokens, in] and G[tokens, out]. Floors of the scale (min_range): 1e-5 for weights and activations,
1e-9 for gradients, 1e-8 for optimizer states, as in the authors' configs.
"""

from __future__ import annotations

from dataclasses import dataclass

from papers.quant_pretraining.quantize import QuantSpec

FP8_TRAINING = ("fp8_train", "fp8_train_fake", "torchao")  # gemm values that replace every GEMM of a layer


def _w(bits: int, granularity: str = "row", symmetric: bool = True) -> QuantSpec:
    return QuantSpec(bits, granularity, symmetric, 1e-5)  # type: ignore[arg-type]


def _g(bits: int, granularity: str = "row") -> QuantSpec:
    return QuantSpec(bits, granularity, True, 1e-9)  # type: ignore[arg-type]


def _s(bits: int, granularity: str = "row") -> QuantSpec:
    return QuantSpec(bits, granularity, True, 1e-8)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Configuration:
    """What one training run quantizes: linear-layer weights, activations, gradients, Adam's states."""

    name: str
    group: str
    w: QuantSpec | None = None
    a: QuantSpec | None = None
    g: QuantSpec | None = None
    m: QuantSpec | None = None
    v: QuantSpec | None = None
    optimizer: str = "adamw"
    gemm: str = "fake"  # "int8"/"fp8": the W8A8 forward GEMM in real 8-bit; FP8_TRAINING: every GEMM in FP8
    head: bool = True  # quantize the LM head too, as the authors' make_quant_layer swaps every nn.Linear
    source: str = ""

    @property
    def quantizes_layers(self) -> bool:
        return any(s is not None for s in (self.w, self.a, self.g)) or self.gemm in FP8_TRAINING


CONFIGURATIONS: dict[str, Configuration] = {
    c.name: c
    for c in [
        Configuration("baseline", "baseline", source="gpt2_baseline"),
        # 8-bit linear layers, the paper's main table
        Configuration("w8_per_channel", "8-bit layers", w=_w(8), source="gpt2_w8_per_channel"),
        Configuration("a8_per_token", "8-bit layers", a=_w(8), source="gpt2_a8_per_token"),
        Configuration("g8_per_token", "8-bit layers", g=_g(8), source="gpt2_g8_per_token"),
        Configuration("w8a8_per_token", "8-bit layers", w=_w(8), a=_w(8), source="gpt2_w8a8_per_token"),
        Configuration("w8a8g8_per_token", "8-bit layers", w=_w(8), a=_w(8), g=_g(8), source="gpt2_w8a8g8_per_token"),
        # granularity and 4-bit ablations (configs/quantization/*)
        Configuration("w8_per_tensor", "ablations", w=_w(8, "tensor"), source="8bit_sym_per_tensor"),
        Configuration("w8_per_column", "ablations", w=_w(8, "column"), source="8bit_sym_per_column"),
        Configuration("w8_asym_per_channel", "ablations", w=_w(8, "row", False), source="8bit_asym_per_row"),
        Configuration("w4_per_channel", "ablations", w=_w(4), source="4bit_sym_per_row"),
        Configuration("w4_per_tensor", "ablations", w=_w(4, "tensor"), source="4bit_sym_per_tensor"),
        Configuration("w4_per_column", "ablations", w=_w(4, "column"), source="4bit_sym_per_column"),
        Configuration("w4_asym_per_channel", "ablations", w=_w(4, "row", False), source="4bit_asym_per_row"),
        Configuration("a8_per_tensor", "ablations", a=_w(8, "tensor"), source="8bit_sym_per_tensor (activations)"),
        Configuration("a4_per_token", "ablations", a=_w(4), source="4bit_sym_per_row (activations)"),
        Configuration("g8_per_tensor", "ablations", g=_g(8, "tensor"), source="8bit_sym_per_tensor (gradients)"),
        Configuration("g4_per_token", "ablations", g=_g(4), source="4bit_sym_per_row (gradients)"),
        # ours: the gradient rows with the LM head kept in full precision (the control that isolates the
        # paper's mechanism, a max over the group flushing small gradients, from the head's softmax gradient)
        Configuration(
            "g8_per_token_no_head", "ablations", g=_g(8), head=False, source="ours: G8 with the LM head in fp"
        ),
        Configuration(
            "g8_per_tensor_no_head",
            "ablations",
            g=_g(8, "tensor"),
            head=False,
            source="ours: G8 per tensor, LM head in fp",
        ),
        Configuration("g4_per_token_no_head", "ablations", g=_g(4), head=False, source="ours: G4, LM head in fp"),
        Configuration(
            "w8a8g8_per_token_no_head",
            "8-bit layers",
            w=_w(8),
            a=_w(8),
            g=_g(8),
            head=False,
            source="ours: W8A8G8 with the LM head in fp",
        ),
        # ours: positive controls, quantizers coarse enough that the mini must see them degrade
        Configuration(
            "w4a4_per_tensor",
            "ablations",
            w=_w(4, "tensor"),
            a=_w(4, "tensor"),
            source="ours: positive control, 4-bit per-tensor weights and activations",
        ),
        Configuration("w2_per_channel", "ablations", w=_w(2), source="ours: positive control, ternary weights"),
        # optimizer states (configs/optimizer/*)
        Configuration("m8_per_channel", "optimizer states", m=_s(8), source="s_one_8_sym_per_channel"),
        Configuration("m8_per_tensor", "optimizer states", m=_s(8, "tensor"), source="s_one_8_sym_per_tensor"),
        Configuration("m4_per_channel", "optimizer states", m=_s(4), source="s_one_4_sym_per_channel"),
        Configuration("m4_per_tensor", "optimizer states", m=_s(4, "tensor"), source="s_one_4_sym_per_tensor"),
        Configuration("v8_per_channel", "optimizer states", v=_s(8), source="s_two_8_sym_per_channel"),
        Configuration(
            "adamw_bnb_8bit", "optimizer states", optimizer="adamw_bnb_8bit", source="bitsandbytes AdamW8bit"
        ),
        # beyond the paper: the W8A8 forward GEMM run in real 8-bit instead of simulated
        Configuration("w8a8_int8_gemm", "real low precision", w=_w(8), a=_w(8), gemm="int8", source="torch._int_mm"),
        Configuration("w8a8_fp8_gemm", "real low precision", w=_w(8), a=_w(8), gemm="fp8", source="torch._scaled_mm"),
        # beyond the paper: FP8 training, every GEMM of every linear layer (forward, input gradient, weight
        # gradient) in float8 with delayed (amax-history) per-tensor scaling and bf16 outputs under autocast;
        # "fp8_train_fake" simulates the same arithmetic in fp32 (the reference the real path is tested against)
        Configuration("fp8_train", "real low precision", gemm="fp8_train", source="ours: torch._scaled_mm, fwd+bwd"),
        Configuration("fp8_train_fake", "real low precision", gemm="fp8_train_fake", source="ours: FP8 simulated"),
        Configuration("fp8_torchao", "real low precision", gemm="torchao", source="torchao.float8 tensorwise"),
    ]
}


def get_configuration(name: str) -> Configuration:
    if name not in CONFIGURATIONS:
        raise KeyError(f"unknown configuration {name!r}; valid: {', '.join(CONFIGURATIONS)}")
    return CONFIGURATIONS[name]
