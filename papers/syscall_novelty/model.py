"""The paper's input embedding and its three language models over syscall sequences.

Embedding (models/Embedding.py): name, entry/exit, return flag and process name are learned
embeddings; pid, tid, position and the elapsed time since the previous event are sinusoidal
encodings, sin/cos(x * exp(-ln(1e6) * 2i / d)); all are concatenated (d_model 168).
LSTM: 2 layers, hidden 256. Transformer: 2 post-LN layers, 4 heads, SwiGLU FFN, causal mask, final
LN. Longformer: the Transformer with sliding-window attention (the previous `window` tokens) and
global attention on token 0 ([START]). Each predicts the next syscall name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from papers.syscall_novelty.config import EmbeddingConfig, ModelConfig
from shared.encodings import sinusoid


class TraceEmbedding(nn.Module):
    def __init__(self, cfg: EmbeddingConfig, n_names: int, n_procs: int):
        super().__init__()
        self.cfg = cfg
        self.name = nn.Embedding(n_names, cfg.name, padding_idx=0)
        self.entry = nn.Embedding(3, cfg.entry)
        self.ret = nn.Embedding(3, cfg.ret)
        self.proc = nn.Embedding(n_procs, cfg.proc, padding_idx=0)
        for emb in (self.name, self.entry, self.ret, self.proc):
            nn.init.normal_(emb.weight, 0.0, emb.embedding_dim**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, tokens, 7) int64 [call, entry, elapsed, proc, pid, tid, ret] -> (batch, tokens, d)."""
        c = self.cfg
        position = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
        parts = [
            self.name(x[..., 0]),
            self.entry(x[..., 1].clamp(0, 2)),
            self.ret(x[..., 6].clamp(0, 2)),
            self.proc(x[..., 3]),
            sinusoid(x[..., 4], c.pid),
            sinusoid(x[..., 5], c.tid),
            sinusoid(position, c.position),
            sinusoid(x[..., 2], c.elapsed),
        ]
        return torch.cat(parts, dim=-1)


class LSTMLM(nn.Module):
    def __init__(self, emb: TraceEmbedding, d_model: int, cfg: ModelConfig, n_names: int):
        super().__init__()
        self.emb = emb
        self.lstm = nn.LSTM(d_model, cfg.hidden, cfg.layers, batch_first=True, dropout=cfg.dropout)
        self.head = nn.Linear(cfg.hidden, n_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.emb(x))
        return self.head(h)


class SwiGLU(nn.Module):
    def __init__(self, d: int, hidden: int):
        super().__init__()
        inner = 2 * hidden // 3  # 672 -> 448, as Linear(168 -> 896) then Linear(448 -> 168)
        self.up = nn.Linear(d, 2 * inner)
        self.down = nn.Linear(inner, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.up(x).chunk(2, dim=-1)
        return self.down(F.silu(a) * b)


class Block(nn.Module):
    """Post-LN: x = LN(x + attn(x)); x = LN(x + ffn(x))."""

    def __init__(self, d: int, cfg: ModelConfig):
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ffn = SwiGLU(d, cfg.ffn_hidden)
        self.drop = nn.Dropout(cfg.dropout)
        self.p = cfg.dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.p if self.training else 0.0)
        x = self.ln1(x + self.drop(self.out(a.transpose(1, 2).reshape(b, t, d))))
        return self.ln2(x + self.drop(self.ffn(x)))


def attention_mask(t: int, window: int | None, device: torch.device) -> torch.Tensor:
    """Boolean (t, t), True = may attend: causal; with a window, only the previous `window` tokens and
    token 0 (global)."""
    i = torch.arange(t, device=device)
    mask = i[None, :] <= i[:, None]
    if window is not None:
        mask &= (i[:, None] - i[None, :] <= window) | (i[None, :] == 0)
    return mask


class TransformerLM(nn.Module):
    def __init__(self, emb: TraceEmbedding, d_model: int, cfg: ModelConfig, n_names: int, window: int | None):
        super().__init__()
        self.emb = emb
        self.window = window
        self.blocks = nn.ModuleList(Block(d_model, cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x)
        mask = attention_mask(x.shape[1], self.window, x.device)
        for block in self.blocks:
            h = block(h, mask)
        return self.head(self.norm(h))


def build_model(kind: str, emb_cfg: EmbeddingConfig, cfg: ModelConfig, n_names: int, n_procs: int) -> nn.Module:
    emb = TraceEmbedding(emb_cfg, n_names, n_procs)
    d = emb_cfg.d_model
    if kind == "lstm":
        return LSTMLM(emb, d, cfg, n_names)
    if kind == "transformer":
        return TransformerLM(emb, d, cfg, n_names, window=None)
    if kind == "longformer":
        return TransformerLM(emb, d, cfg, n_names, window=cfg.window)
    raise ValueError(f"unknown model {kind!r}; valid: lstm, transformer, longformer")
