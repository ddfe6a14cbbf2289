"""AdamW with quantized states, as the authors' src/optimizer/adamw.py, and the optimizer factory.

Before each update the previous first and/or second moments of the quantized group (the weights of
linear layers, the ones with weight decay) are quantized and dequantized in place, then torch's
AdamW updates them in fp32. Embeddings, LayerNorm and biases keep fp32 states. betas (0.9, 0.999) and
eps 1e-8 are the HF TrainingArguments defaults the authors ran with. bitsandbytes' block-wise
dynamic 8-bit AdamW is the library reference next to this simple linear quantizer.
"""

from __future__ import annotations

import torch
from torch import nn

from papers.quant_pretraining.quantize import QuantSpec, fake_quantize


class QuantStateAdamW(torch.optim.AdamW):
    """torch AdamW whose `exp_avg` / `exp_avg_sq` pass through a fake quantizer before each step,
    in param groups marked quantize=True."""

    def __init__(self, params, m: QuantSpec | None = None, v: QuantSpec | None = None, **kwargs) -> None:  # noqa: ANN001
        super().__init__(params, foreach=False, **kwargs)
        self.m_spec, self.v_spec = m, v

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201
        for group in self.param_groups:
            if not group.get("quantize"):
                continue
            for p in group["params"]:
                state = self.state.get(p, {})
                if self.m_spec is not None and "exp_avg" in state:
                    state["exp_avg"].copy_(fake_quantize(state["exp_avg"], self.m_spec))
                if self.v_spec is not None and "exp_avg_sq" in state:
                    state["exp_avg_sq"].copy_(fake_quantize(state["exp_avg_sq"], self.v_spec))
        return super().step(closure)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Linear weights (decayed, quantized states) vs everything else (no decay, fp32 states).

    Tied LM-head/embedding weights count once, as an embedding, as in the authors' split.
    """
    linear_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, rest = [], []
    for p in model.parameters():
        (decay if id(p) in linear_weights and id(p) not in embeddings else rest).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, "quantize": True},
        {"params": rest, "weight_decay": 0.0, "quantize": False},
    ]


def make_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    m: QuantSpec | None = None,
    v: QuantSpec | None = None,
) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay)
    if name == "adamw_bnb_8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(groups, lr=lr, betas=betas, eps=eps)
    if name != "adamw":
        raise ValueError(f"optimizer {name!r}; valid: adamw, adamw_bnb_8bit")
    return QuantStateAdamW(groups, m=m, v=v, lr=lr, betas=betas, eps=eps)
