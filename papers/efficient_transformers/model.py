"""The small Transformer classifier every variant is trained in, and the survey's general
approaches that apply to it: gradient checkpointing, reversible layers (RevNet coupling, as
Reformer), parameter sharing (one layer applied `layers` times, as ALBERT/Universal Transformer)
and mixed precision (bf16 autocast, see train.py)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from papers.efficient_transformers.attention import AttentionParams, build_attention
from papers.efficient_transformers.config import ModelConfig


class MultiHeadAttention(nn.Module):
    """Projections around one attention variant; a shared-QK variant (Reformer) gets k = q."""

    def __init__(self, dim: int, heads: int, variant: str, params: AttentionParams, max_len: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"model dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.attn = build_attention(variant, params, max_len, dim // heads)
        self.shared_qk = getattr(self.attn, "shared_qk", False)
        self.qkv = nn.Linear(dim, dim * (2 if self.shared_qk else 3))
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        parts = self.qkv(x).view(b, n, -1, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, v = parts[0], parts[-1]
        k = q if self.shared_qk else parts[1]
        return self.out(self.attn(q, k, v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-LN Transformer layer split into its two residual branches, F (attention) and G (MLP)."""

    def __init__(self, cfg: ModelConfig, variant: str, params: AttentionParams, max_len: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.attn = MultiHeadAttention(cfg.dim, cfg.heads, variant, params, max_len)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.mlp), nn.GELU(), nn.Linear(cfg.mlp, cfg.dim))

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.ln1(x))

    def g(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.ln2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.f(x)
        return x + self.g(x)


class ReversibleStack(torch.autograd.Function):
    """y1 = x1 + F(x2), y2 = x2 + G(y1) through every block, keeping only the last activations; the
    backward pass reconstructs each block's inputs from its outputs and recomputes F and G
    (Gomez et al., 2017; Kitaev et al., 2020). Parameter gradients accumulate in the inner backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, blocks: list[Block]) -> torch.Tensor:  # type: ignore[override]
        ctx.blocks = blocks
        x1, x2 = x.chunk(2, dim=-1)
        with torch.no_grad():
            for blk in blocks:
                x1 = x1 + blk.f(x2)
                x2 = x2 + blk.g(x1)
        y = torch.cat([x1, x2], dim=-1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):  # type: ignore[override]
        (y,) = ctx.saved_tensors
        y1, y2 = (t.detach() for t in y.chunk(2, dim=-1))
        dy1, dy2 = dy.chunk(2, dim=-1)
        for blk in reversed(ctx.blocks):
            with torch.enable_grad():
                y1.requires_grad_(True)
                gy1 = blk.g(y1)
                torch.autograd.backward(gy1, dy2)
            with torch.no_grad():
                x2 = y2 - gy1
                dy1 = dy1 + y1.grad
            with torch.enable_grad():
                x2.requires_grad_(True)
                fx2 = blk.f(x2)
                torch.autograd.backward(fx2, dy1)
            with torch.no_grad():
                x1 = y1 - fx2
                dy2 = dy2 + x2.grad
            y1, y2 = x1.detach(), x2.detach()
        return torch.cat([dy1, dy2], dim=-1), None


class Classifier(nn.Module):
    """Token + learned position embeddings, `layers` blocks, final LayerNorm, linear head on CLS."""

    def __init__(
        self, cfg: ModelConfig, vocab: int, n_classes: int, max_len: int, variant: str, params: AttentionParams
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(vocab, cfg.dim)
        self.pos = nn.Embedding(max_len, cfg.dim)
        n_distinct = 1 if cfg.share_parameters else cfg.layers
        distinct = [Block(cfg, variant, params, max_len) for _ in range(n_distinct)]
        self.blocks = nn.ModuleList([distinct[i % n_distinct] for i in range(cfg.layers)])
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        if self.cfg.reversible:
            y = ReversibleStack.apply(torch.cat([x, x], dim=-1), list(self.blocks))
            x = sum(y.chunk(2, dim=-1)) / 2
        else:
            for blk in self.blocks:
                x = checkpoint(blk, x, use_reentrant=False) if self.cfg.checkpointing and self.training else blk(x)
        return self.head(self.norm(x[:, 0]))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
