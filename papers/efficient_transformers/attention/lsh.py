"""Reformer's LSH attention (Kitaev et al., 2020).

Queries and keys are shared (keys are the unit-normalised queries). Angular LSH hashes each
position to one of n_buckets = max(2, N / bucket_size) buckets, h(x) = argmax([xR; -xR]) with a
random rotation R; positions are sorted by (bucket, position) and cut into chunks of bucket_size;
each chunk attends to itself and the chunk before it (cyclically). A position attends to itself
only when nothing else is available (score -1e5). With several hash rounds the per-round outputs
are combined with weights softmax over rounds of each round's log-sum-exp.

Rotations are drawn once per (seed, head_dim, n_buckets, round): deterministic, so recomputation in
checkpointed or reversible layers sees the same hashes (the paper redraws them every call).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from papers.efficient_transformers.attention.common import check_qkv

SELF_SCORE = -1e5


class LSHAttention(nn.Module):
    shared_qk = True  # the model feeds k = q (one projection), as the paper

    def __init__(self, bucket_size: int, n_hashes: int = 1, seed: int = 0) -> None:
        super().__init__()
        if bucket_size < 1 or n_hashes < 1:
            raise ValueError(f"LSH needs bucket_size >= 1 and n_hashes >= 1; got {bucket_size}, {n_hashes}")
        self.bucket_size, self.n_hashes, self.seed = bucket_size, n_hashes, seed

    def n_buckets(self, n: int) -> int:
        nb = max(2, n // self.bucket_size)
        return nb + nb % 2

    def rotations(self, d: int, n_buckets: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 7919 + n_buckets * 31 + d)
        return torch.randn(self.n_hashes, d, n_buckets // 2, generator=gen).to(device, dtype)

    def hash(self, x: torch.Tensor, n_buckets: int) -> torch.Tensor:
        """(B, H, N, D) -> (rounds, B, H, N) bucket ids."""
        rot = self.rotations(x.shape[-1], n_buckets, x.device, x.dtype)
        proj = torch.einsum("bhnd,rdk->rbhnk", x, rot)
        return torch.cat([proj, -proj], dim=-1).argmax(-1)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """`k` is ignored: LSH attention shares queries and keys."""
        check_qkv(q, k, v)
        n = q.shape[-2]
        c = min(self.bucket_size, n)
        if n % c:
            raise ValueError(f"LSH bucket_size ({c}) must divide the sequence length ({n})")
        buckets = self.hash(q, self.n_buckets(n))
        pos = torch.arange(n, device=q.device)
        outs, lses = [], []
        for r in range(self.n_hashes):
            order = (buckets[r] * n + pos).argsort(-1)  # by bucket, then position
            out, lse = self._attend_sorted(q, v, order, c)
            undo = order.argsort(-1)
            outs.append(out.gather(2, undo[..., None].expand_as(out)))
            lses.append(lse.gather(2, undo))
        if self.n_hashes == 1:
            return outs[0]
        weights = torch.stack(lses).softmax(0)[..., None]
        return (torch.stack(outs) * weights).sum(0)

    def _attend_sorted(self, q: torch.Tensor, v: torch.Tensor, order: torch.Tensor, c: int):
        bsz, h, n, d = q.shape
        nc = n // c
        sq = q.gather(2, order[..., None].expand(-1, -1, -1, d))
        sv = v.gather(2, order[..., None].expand(-1, -1, -1, v.shape[-1]))
        spos = order
        sk = sq / sq.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        qc = sq.view(bsz, h, nc, c, d)
        kc, vc, pc = (t.view(bsz, h, nc, c, *t.shape[3:]) for t in (sk, sv, spos))
        if nc > 1:  # this chunk and the one before (cyclic)
            kc, vc, pc = (torch.cat([t.roll(1, dims=2), t], dim=3) for t in (kc, vc, pc))
        scores = qc @ kc.transpose(-1, -2) / math.sqrt(d)
        qpos = spos.view(bsz, h, nc, c)
        scores = scores.masked_fill(qpos[..., :, None] == pc[..., None, :], SELF_SCORE)
        lse = scores.logsumexp(-1, keepdim=True)
        out = (scores - lse).exp() @ vc
        return out.reshape(bsz, h, n, v.shape[-1]), lse.reshape(bsz, h, n)
