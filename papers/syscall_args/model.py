"""The paper's argument-aware embedding and its two models (source/LSTM.py, source/Transformer.py).

Groups: call (entry/exit and return flag, each an embedding of the name's size, *added* to the name);
proc (process-name embedding 16, pid and tid sinusoids 4 each, base 1000, concatenated); time (the
time since the window's first event in microseconds, sinusoid 8, base 1e4). The Transformer always gets
an 8-dim sinusoidal ordering (position) encoding; in the paper's tables "name only" includes it.
"""

from __future__ import annotations

import torch
from torch import nn

from papers.syscall_args.config import EmbeddingConfig, ModelConfig
from shared.encodings import sinusoid

# columns of a window (data.COLUMNS)
CALL, ENTRY, RET, TIME, PROC, PID, TID = range(7)


class ArgEmbedding(nn.Module):
    def __init__(
        self, cfg: EmbeddingConfig, groups: tuple[str, ...], name_dim: int, n_names: int, n_procs: int, ordering: bool
    ):  # noqa: E501
        super().__init__()
        self.cfg, self.groups, self.ordering = cfg, groups, ordering
        self.name = nn.Embedding(n_names, name_dim)
        if "call" in groups:
            self.entry = nn.Embedding(3, name_dim)
            self.ret = nn.Embedding(3, name_dim)
        if "proc" in groups:
            self.proc = nn.Embedding(n_procs, cfg.proc)
        self.dim = name_dim
        self.dim += cfg.proc + cfg.pid + cfg.tid if "proc" in groups else 0
        self.dim += cfg.time if "time" in groups else 0
        self.dim += cfg.ordering if ordering else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.name(x[..., CALL])
        if "call" in self.groups:
            h = h + self.entry(x[..., ENTRY].clamp(0, 2)) + self.ret(x[..., RET].clamp(0, 2))
        parts = [h]
        if "proc" in self.groups:
            parts += [
                self.proc(x[..., PROC]),
                sinusoid(x[..., PID], self.cfg.pid, base=1000.0),
                sinusoid(x[..., TID], self.cfg.tid, base=1000.0),
            ]
        if "time" in self.groups:
            parts.append(sinusoid(x[..., TIME], self.cfg.time, base=1e4))
        if self.ordering:
            position = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
            parts.append(sinusoid(position, self.cfg.ordering, base=1e4))
        return torch.cat(parts, dim=-1)


class LSTMModel(nn.Module):
    def __init__(self, emb: ArgEmbedding, cfg: ModelConfig, n_names: int):
        super().__init__()
        self.emb = emb
        self.lstm = nn.LSTM(emb.dim, cfg.lstm_hidden, cfg.lstm_layers, batch_first=True, dropout=cfg.lstm_dropout)
        self.head = nn.Linear(cfg.lstm_hidden, n_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.emb(x))[0])


class TransformerModel(nn.Module):
    def __init__(self, emb: ArgEmbedding, cfg: ModelConfig, n_names: int, causal: bool):
        super().__init__()
        self.emb, self.causal = emb, causal
        layer = nn.TransformerEncoderLayer(emb.dim, cfg.heads, cfg.ffn, cfg.dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.head = nn.Linear(emb.dim, n_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=x.device) if self.causal else None
        return self.head(self.encoder(self.emb(x), mask=mask, is_causal=self.causal))


def build_model(
    experiment: str, setting: dict, emb_cfg: EmbeddingConfig, cfg: ModelConfig, n_names: int, n_procs: int
) -> nn.Module:  # noqa: E501
    kind, task = experiment.split("_")
    emb = ArgEmbedding(
        emb_cfg, tuple(setting["groups"]), setting["name_dim"], n_names, n_procs, ordering=kind == "transformer"
    )
    if kind == "lstm":
        return LSTMModel(emb, cfg, n_names)
    return TransformerModel(emb, cfg, n_names, causal=task == "lm")
