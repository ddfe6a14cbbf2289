"""Kernel attention: softmax(QK^T) replaced by phi(Q) phi(K)^T, computed right to left in O(N).

- PerformerAttention (Choromanski et al., 2021), FAVOR+: positive orthogonal random features
  phi(x) = exp(w.x - |x|^2/2) / sqrt(m) with x scaled by d^(-1/4), an unbiased estimate of
  exp(q.k/sqrt(d)).
- LinearAttention (Katharopoulos et al., 2020): phi(x) = elu(x) + 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from papers.efficient_transformers.attention.common import check_qkv


def kernel_attention(qf: torch.Tensor, kf: torch.Tensor, v: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """phi(Q) (phi(K)^T V) / (phi(Q) phi(K)^T 1): linear in the length."""
    kv = kf.transpose(-1, -2) @ v
    norm = qf @ kf.sum(-2, keepdim=True).transpose(-1, -2)
    return (qf @ kv) / (norm + eps).clamp_min(1e-30)


def orthogonal_gaussian(m: int, d: int, gen: torch.Generator) -> torch.Tensor:
    """(m, d) random features: stacked orthogonal blocks (QR of Gaussian d x d), each row rescaled
    to the norm of a Gaussian vector so that rows are marginally N(0, I_d)."""
    blocks = []
    for _ in range((m + d - 1) // d):
        qmat, r = torch.linalg.qr(torch.randn(d, d, generator=gen))
        blocks.append((qmat * torch.sign(torch.diagonal(r))).T)  # sign fix: Haar-distributed directions
    w = torch.cat(blocks)[:m]
    return w * torch.randn(m, d, generator=gen).norm(dim=1, keepdim=True)


class PerformerAttention(nn.Module):
    def __init__(self, head_dim: int, num_features: int, seed: int = 0) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"Performer needs num_features >= 1, got {num_features}")
        self.head_dim, self.num_features, self.seed = head_dim, num_features, seed
        self.register_buffer(
            "features", orthogonal_gaussian(num_features, head_dim, torch.Generator().manual_seed(seed))
        )

    def feature_map(self, x: torch.Tensor, is_query: bool) -> torch.Tensor:
        x = x * self.head_dim**-0.25
        proj = x @ self.features.to(x.dtype).T
        sq = (x * x).sum(-1, keepdim=True) / 2
        # A constant subtracted in the exponent cancels in the normalisation: per row for queries,
        # one per (batch, head) for keys.
        stab = proj.amax(-1, keepdim=True) if is_query else proj.amax((-1, -2), keepdim=True)
        return torch.exp(proj - sq - stab.detach()) / self.num_features**0.5

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        check_qkv(q, k, v)
        if q.shape[-1] != self.head_dim:
            raise ValueError(f"Performer built for head_dim {self.head_dim}, got {q.shape[-1]}")
        return kernel_attention(self.feature_map(q, True), self.feature_map(k, False), v, eps=0.0)


class LinearAttention(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        check_qkv(q, k, v)
        return kernel_attention(F.elu(q) + 1, F.elu(k) + 1, v)
