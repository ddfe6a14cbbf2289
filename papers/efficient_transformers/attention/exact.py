"""Exact attention: the textbook softmax(QK^T/sqrt(d))V (Vaswani et al., 2017) written out, and
PyTorch's fused scaled_dot_product_attention pinned to one backend."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from papers.efficient_transformers.attention.common import check_qkv

# Our names for torch.nn.attention.SDPBackend members ("sdpa" lets PyTorch choose).
SDPA_BACKENDS = {
    "math": SDPBackend.MATH,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}


class NaiveAttention(nn.Module):
    """The quadratic reference: materialises the N x N score matrix, as "PyTorch attention" in
    FlashAttention's benchmark."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        check_qkv(q, k, v)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        return scores.softmax(-1) @ v


class SDPAttention(nn.Module):
    """torch.nn.functional.scaled_dot_product_attention, with one backend forced (or PyTorch's
    choice when backend is None)."""

    def __init__(self, backend: str | None = None) -> None:
        super().__init__()
        if backend is not None and backend not in SDPA_BACKENDS:
            raise ValueError(f"unknown SDPA backend {backend!r}; valid: {', '.join(SDPA_BACKENDS)}")
        self.backend = backend

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        check_qkv(q, k, v)
        if self.backend is None:
            return F.scaled_dot_product_attention(q, k, v)
        with sdpa_kernel([SDPA_BACKENDS[self.backend]]):
            return F.scaled_dot_product_attention(q, k, v)


def available_sdpa_backends(device: str = "cpu", dtype: torch.dtype = torch.float32) -> list[str]:
    """The SDPA backends that run forward and backward on this device and dtype (probed on a tiny input)."""
    found = []
    for name in SDPA_BACKENDS:
        q = torch.randn(1, 1, 16, 64, device=device, dtype=dtype, requires_grad=True)
        try:
            SDPAttention(name)(q, q, q).sum().backward()
        except RuntimeError:
            continue
        found.append(name)
    return found
