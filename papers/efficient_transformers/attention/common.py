"""Pieces every attention variant shares: the (batch, heads, length, head_dim) layout, padding to a
multiple of a block, and the dense reference that sparse variants are tested against."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

NEG_INF = -1e9  # finite, so a fully masked row gives a uniform (not NaN) softmax


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """One clear error for tensors that do not share the (B, H, N, D) layout."""
    if q.dim() != 4 or k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"attention expects q, k, v of shape (batch, heads, length, head_dim) with equal shapes; "
            f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )


def pad_length(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int]:
    """Zero-pad dim -2 up to a multiple of `multiple`; return the padded tensor and the pad count."""
    n = x.shape[-2]
    pad = (-n) % multiple
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
    return x, pad


def masked_softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """softmax(QK^T/sqrt(d)) V with the (N, N) boolean `allowed` pattern: the dense reference for
    every sparse pattern (quadratic: tests and small inputs only)."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~allowed, NEG_INF)
    return scores.softmax(-1) @ v
