"""Sinusoidal encodings of integer or real event attributes (pid, tid, time, position), shared by the
trace papers' embeddings. Needs torch, which those papers install."""

from __future__ import annotations

import math

import torch


def sinusoid(x: torch.Tensor, dim: int, base: float = 1e6) -> torch.Tensor:
    """(..., ) -> (..., dim): [sin(x w_i), cos(x w_i)] with w_i = exp(-ln(base) 2i / dim)."""
    i = torch.arange(dim // 2, device=x.device, dtype=torch.float32)
    w = torch.exp(-math.log(base) * 2 * i / dim)
    angles = x.float().unsqueeze(-1) * w
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
