"""Low-rank attention.

- LinformerAttention (Wang et al., 2020): keys and values are projected along the sequence to
  `k` rows by learned E, F (k x max_len, shared by the heads); softmax(Q (EK)^T/sqrt(d)) FV.
- NystromAttention (Xiong et al., 2021): the softmax matrix is approximated from `landmarks`
  segment means of Q and K as softmax(Q K~^T) pinv(softmax(Q~ K~^T)) softmax(Q~ K^T) V, the
  pseudo-inverse by the paper's iterative (Newton-Schulz-type) scheme.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from papers.efficient_transformers.attention.common import check_qkv


class LinformerAttention(nn.Module):
    def __init__(self, max_len: int, k: int, seed: int = 0) -> None:
        super().__init__()
        if k < 1 or max_len < 1:
            raise ValueError(f"Linformer needs k >= 1 and max_len >= 1; got k={k}, max_len={max_len}")
        gen = torch.Generator().manual_seed(seed)
        self.max_len, self.k = max_len, k
        self.E = nn.Parameter(torch.randn(k, max_len, generator=gen) / math.sqrt(k))
        self.F = nn.Parameter(torch.randn(k, max_len, generator=gen) / math.sqrt(k))

    @torch.no_grad()
    def set_identity(self) -> None:
        """E = F = I (needs k == max_len): then Linformer is exact attention (a test)."""
        if self.k != self.max_len:
            raise ValueError(f"identity projections need k == max_len, got k={self.k}, max_len={self.max_len}")
        self.E.copy_(torch.eye(self.k))
        self.F.copy_(torch.eye(self.k))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        check_qkv(q, k, v)
        n = q.shape[-2]
        if n > self.max_len:
            raise ValueError(f"Linformer was built for at most {self.max_len} tokens, got {n}")
        e, f = self.E[:, :n].to(q.dtype), self.F[:, :n].to(q.dtype)  # shorter inputs: zero-padded keys
        kp, vp = e @ k, f @ v
        return (q @ kp.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1) @ vp


def iterative_pinv(a: torch.Tensor, iterations: int) -> torch.Tensor:
    """Nystromformer's pseudo-inverse: Z0 = A^T / (||A||_1 ||A||_inf), then
    Z <- 1/4 Z (13I - AZ (15I - AZ (7I - AZ))). Norms are taken per matrix."""
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    norm = a.abs().sum(-2).amax(-1) * a.abs().sum(-1).amax(-1)
    z = a.transpose(-1, -2) / norm[..., None, None]
    for _ in range(iterations):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


class NystromAttention(nn.Module):
    """pinv_iterations=0 uses torch.linalg.pinv (exact; for tests)."""

    def __init__(self, landmarks: int, pinv_iterations: int = 6) -> None:
        super().__init__()
        if landmarks < 1 or pinv_iterations < 0:
            raise ValueError(f"Nystrom needs landmarks >= 1, pinv_iterations >= 0; got {landmarks}, {pinv_iterations}")
        self.landmarks, self.pinv_iterations = landmarks, pinv_iterations

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        check_qkv(q, k, v)
        n, d = q.shape[-2], q.shape[-1]
        m = min(self.landmarks, n)
        if n % m:
            raise ValueError(f"Nystrom landmarks ({m}) must divide the sequence length ({n})")
        scale = 1 / math.sqrt(d)
        ql = q.reshape(*q.shape[:2], m, n // m, d).mean(-2)
        kl = k.reshape(*k.shape[:2], m, n // m, d).mean(-2)
        f = (q @ kl.transpose(-1, -2) * scale).softmax(-1)
        a = (ql @ kl.transpose(-1, -2) * scale).softmax(-1)
        b = (ql @ k.transpose(-1, -2) * scale).softmax(-1)
        if self.pinv_iterations:
            a_inv = iterative_pinv(a, self.pinv_iterations)
        else:
            a_inv = torch.linalg.pinv(a if a.dtype == torch.float64 else a.float()).to(a.dtype)
        return f @ (a_inv @ (b @ v))
