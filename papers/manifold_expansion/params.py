"""A model's parameters as one flat vector, and the loss at any such vector (torch.func.functional_call)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


@dataclass
class FlatModel:
    """`model` evaluated at arbitrary flat parameter vectors; metrics run it in eval mode (BN running stats)."""

    model: nn.Module
    names: list[str]
    shapes: list[torch.Size]
    theta: torch.Tensor  # the model's own parameters, flattened (detached)

    @classmethod
    def of(cls, model: nn.Module) -> FlatModel:
        named = [(n, p) for n, p in model.named_parameters()]
        theta = torch.cat([p.detach().reshape(-1) for _, p in named])
        return cls(model, [n for n, _ in named], [p.shape for _, p in named], theta)

    def unflatten(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        out, i = {}, 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            n = shape.numel()
            out[name] = vec[i : i + n].view(shape)
            i += n
        return out

    def logits(self, vec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return functional_call(self.model, self.unflatten(vec), (x,))

    def loss(self, vec: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(vec, x), y)

    def batched_loss(self, vec: torch.Tensor, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> float:
        """The mean loss over all of (x, y), without gradients, in chunks."""
        with torch.no_grad():
            total = 0.0
            for i in range(0, len(y), batch_size):
                xb, yb = x[i : i + batch_size], y[i : i + batch_size]
                total += float(F.cross_entropy(self.logits(vec, xb), yb, reduction="sum"))
        return total / len(y)


def filter_normalized_direction(model: nn.Module, gen: torch.Generator) -> torch.Tensor:
    """A Gaussian direction with each filter (row of a weight) rescaled to the norm of that filter of the
    model (Li et al. 2018); biases and other 1-D parameters get no component. Flat, like FlatModel.theta."""
    parts = []
    for p in model.parameters():
        if p.dim() <= 1:
            parts.append(torch.zeros(p.numel(), device=p.device))
            continue
        d = torch.randn(p.shape, generator=gen).to(p.device)
        rows_d = d.reshape(p.shape[0], -1)
        rows_p = p.detach().reshape(p.shape[0], -1)
        scale = rows_p.norm(dim=1, keepdim=True) / (rows_d.norm(dim=1, keepdim=True) + 1e-12)
        parts.append((rows_d * scale).reshape(-1))
    return torch.cat(parts)
