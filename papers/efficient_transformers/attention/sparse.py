"""Sparse attention with fixed patterns, computed block by block so memory grows as N x window.

- LocalAttention: every query sees the keys within `window` positions on either side.
- LongformerAttention (Beltagy et al., 2020): that sliding window plus `num_global` global tokens
  (the first ones) that attend to, and are attended by, every position.
- BigBirdAttention (Zaheer et al., 2020): blocks of `block` tokens; each query block sees its
  3 neighbouring blocks, `num_global` global blocks and `num_random` random blocks (ITC layout).

Each module's `pattern(n)` is the (n, n) boolean mask it implements, for tests against the dense
reference `masked_softmax_attention`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from papers.efficient_transformers.attention.common import NEG_INF, check_qkv, pad_length


def _neighbour_blocks(x: torch.Tensor, nb: int, b: int) -> torch.Tensor:
    """(B, H, nb*b, D) -> (B, H, nb, 3b, D): for block i, blocks i-1, i, i+1 (zeros off the ends)."""
    xb = x.view(*x.shape[:2], nb, b, x.shape[-1])
    zero = torch.zeros_like(xb[:, :, :1])
    prev = torch.cat([zero, xb[:, :, :-1]], dim=2)
    nxt = torch.cat([xb[:, :, 1:], zero], dim=2)
    return torch.cat([prev, xb, nxt], dim=3)


def _band_mask(n: int, nb: int, b: int, window: int, first_key: int, device: torch.device) -> torch.Tensor:
    """(nb, b, 3b) keys a query may see in the blocked band: |i - j| <= window, 0 <= j < n, j >= first_key."""
    qpos = torch.arange(nb, device=device)[:, None, None] * b + torch.arange(b, device=device)[None, :, None]
    kpos = (torch.arange(nb, device=device)[:, None, None] - 1) * b + torch.arange(3 * b, device=device)[None, None]
    return ((qpos - kpos).abs() <= window) & (kpos >= first_key) & (kpos < n)


class LocalAttention(nn.Module):
    """Sliding-window attention: query i attends to keys j with |i - j| <= window."""

    def __init__(self, window: int) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"local attention window must be >= 1, got {window}")
        self.window = window

    def pattern(self, n: int) -> torch.Tensor:
        i = torch.arange(n)
        return (i[:, None] - i[None, :]).abs() <= self.window

    def band_scores(self, q: torch.Tensor, k: torch.Tensor, first_key: int = 0) -> tuple[torch.Tensor, int, int]:
        """Masked scores (B, H, nb, b, 3b) of each query block against its 3 neighbouring key blocks."""
        n = q.shape[-2]
        b = min(self.window, n)
        qp, _ = pad_length(q, b)
        kp, _ = pad_length(k, b)
        nb = qp.shape[-2] // b
        keys = _neighbour_blocks(kp, nb, b)
        scores = qp.view(*qp.shape[:2], nb, b, qp.shape[-1]) @ keys.transpose(-1, -2) / math.sqrt(q.shape[-1])
        mask = _band_mask(n, nb, b, self.window, first_key, q.device)
        return scores.masked_fill(~mask, NEG_INF), nb, b

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        check_qkv(q, k, v)
        n = q.shape[-2]
        scores, nb, b = self.band_scores(q, k)
        vp, _ = pad_length(v, b)
        out = scores.softmax(-1) @ _neighbour_blocks(vp, nb, b)
        return out.reshape(*q.shape[:2], nb * b, v.shape[-1])[:, :, :n]


class LongformerAttention(LocalAttention):
    """Sliding window plus global tokens (the first `num_global` positions), one softmax over both.

    The paper gives global attention its own projections; through this interface both use the
    same q, k, v (the pattern is the paper's)."""

    def __init__(self, window: int, num_global: int) -> None:
        super().__init__(window)
        if num_global < 0:
            raise ValueError(f"num_global must be >= 0, got {num_global}")
        self.num_global = num_global

    def pattern(self, n: int) -> torch.Tensor:
        allowed = super().pattern(n)
        allowed[: self.num_global, :] = True
        allowed[:, : self.num_global] = True
        return allowed

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        check_qkv(q, k, v)
        n, g = q.shape[-2], min(self.num_global, q.shape[-2])
        band, nb, b = self.band_scores(q, k, first_key=g)  # global keys are counted once, below
        qp, _ = pad_length(q, b)
        glob = (qp @ k[:, :, :g].transpose(-1, -2) / math.sqrt(q.shape[-1])).view(*q.shape[:2], nb, b, g)
        probs = torch.cat([band, glob], dim=-1).softmax(-1)
        vp, _ = pad_length(v, b)
        out = probs[..., : 3 * b] @ _neighbour_blocks(vp, nb, b) + probs[..., 3 * b :] @ v[:, :, None, :g]
        out = out.reshape(*q.shape[:2], nb * b, v.shape[-1])[:, :, :n]
        if g:
            full = (q[:, :, :g] @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1) @ v
            out = torch.cat([full, out[:, :, g:]], dim=2)
        return out


class BigBirdAttention(nn.Module):
    """Block-sparse attention: window of 3 blocks, global blocks, random blocks (BigBird-ITC).

    Random blocks are drawn once per (seed, number of blocks), so a module is deterministic and a
    recomputation (checkpointing, reversible layers) sees the same pattern."""

    def __init__(self, block: int, num_global: int = 1, num_random: int = 2, seed: int = 0) -> None:
        super().__init__()
        if block < 1 or num_global < 0 or num_random < 0:
            raise ValueError(
                f"BigBird needs block >= 1, num_global >= 0, num_random >= 0; got {block}, {num_global}, {num_random}"
            )
        self.block, self.num_global, self.num_random, self.seed = block, num_global, num_random, seed
        self._layouts: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def layout(self, nb: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(nb, m) key-block indices per query block and (nb, m) validity (no duplicates, in range)."""
        if nb in self._layouts:
            return self._layouts[nb]
        gen = torch.Generator().manual_seed(self.seed * 100003 + nb)
        g = min(self.num_global, nb)
        rows, valid = [], []
        for i in range(nb):
            chosen = [i - 1, i, i + 1] + list(range(g))
            seen = {j for j in chosen if 0 <= j < nb}
            pool = [j for j in range(nb) if j not in seen]
            pick = [pool[j] for j in torch.randperm(len(pool), generator=gen)[: self.num_random].tolist()]
            idx = chosen + pick + [0] * (self.num_random - len(pick))
            ok, used = [], set()
            for pos, j in enumerate(idx):
                good = 0 <= j < nb and j not in used and pos < len(chosen) + len(pick)
                ok.append(good)
                used |= {j} if good else set()
            rows.append([min(max(j, 0), nb - 1) for j in idx])
            valid.append(ok)
        self._layouts[nb] = (torch.tensor(rows), torch.tensor(valid))
        return self._layouts[nb]

    def pattern(self, n: int) -> torch.Tensor:
        b = self.block
        nb = math.ceil(n / b)
        idx, valid = self.layout(nb)
        blocks = torch.zeros(nb, nb, dtype=torch.bool)
        for i in range(nb):
            blocks[i, idx[i][valid[i]]] = True
        blocks[: self.num_global, :] = True
        return blocks.repeat_interleave(b, 0).repeat_interleave(b, 1)[:n, :n]

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        check_qkv(q, k, v)
        n, b, d = q.shape[-2], self.block, q.shape[-1]
        qp, _ = pad_length(q, b)
        kp, _ = pad_length(k, b)
        vp, _ = pad_length(v, b)
        nb = qp.shape[-2] // b
        idx, valid = (t.to(q.device) for t in self.layout(nb))
        m = idx.shape[1]
        kb = kp.view(*kp.shape[:2], nb, b, d)[:, :, idx].reshape(*kp.shape[:2], nb, m * b, d)
        vb = vp.view(*vp.shape[:2], nb, b, v.shape[-1])[:, :, idx].reshape(*vp.shape[:2], nb, m * b, v.shape[-1])
        scores = qp.view(*qp.shape[:2], nb, b, d) @ kb.transpose(-1, -2) / math.sqrt(d)
        kpos = (idx[:, :, None] * b + torch.arange(b, device=q.device)).reshape(nb, 1, m * b)
        mask = valid.repeat_interleave(b, 1)[:, None, :] & (kpos < n)
        out = scores.masked_fill(~mask, NEG_INF).softmax(-1) @ vb
        out = out.reshape(*q.shape[:2], nb * b, v.shape[-1])[:, :, :n]
        g = min(self.num_global * b, n)
        if g:
            full = (q[:, :, :g] @ k.transpose(-1, -2) / math.sqrt(d)).softmax(-1) @ v
            out = torch.cat([full, out[:, :, g:]], dim=2)
        return out
