"""One interface for every attention variant: `build_attention(name, params, max_len, head_dim)`
returns a module whose forward(q, k, v) maps (batch, heads, length, head_dim) tensors to the output
of the same shape. FAMILIES places each variant in the survey's taxonomy."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from papers.efficient_transformers.attention.exact import (
    SDPA_BACKENDS,
    NaiveAttention,
    SDPAttention,
    available_sdpa_backends,
)
from papers.efficient_transformers.attention.kernel import LinearAttention, PerformerAttention
from papers.efficient_transformers.attention.lowrank import LinformerAttention, NystromAttention
from papers.efficient_transformers.attention.lsh import LSHAttention
from papers.efficient_transformers.attention.sparse import BigBirdAttention, LocalAttention, LongformerAttention

FAMILIES = {
    "naive": "exact",
    "sdpa": "exact",
    **{f"sdpa_{b}": "exact" for b in SDPA_BACKENDS},
    "local": "sparse",
    "longformer": "sparse",
    "bigbird": "sparse",
    "linformer": "low-rank",
    "nystrom": "low-rank",
    "performer": "kernel",
    "linear": "kernel",
    "reformer": "lsh",
}
VARIANTS = tuple(FAMILIES)
LABELS = {
    "naive": "PyTorch attention (naive)",
    "sdpa": "SDPA (auto)",
    **{f"sdpa_{b}": f"SDPA {b}" for b in SDPA_BACKENDS},
    "local": "Local",
    "longformer": "Longformer",
    "bigbird": "BigBird",
    "linformer": "Linformer",
    "nystrom": "Nystromformer",
    "performer": "Performer",
    "linear": "Linear Trans.",
    "reformer": "Reformer",
}


@dataclass
class AttentionParams:
    """Sizes of the approximations (sparse window/blocks, low rank, features, buckets)."""

    window: int = 32  # local / Longformer: keys within this distance on each side
    num_global: int = 1  # Longformer global tokens; BigBird global blocks
    block: int = 16  # BigBird block size
    num_random: int = 2  # BigBird random blocks per query block
    linformer_k: int = 32
    features: int = 64  # Performer random features
    bucket_size: int = 32  # Reformer chunk length
    n_hashes: int = 2
    landmarks: int = 32
    pinv_iterations: int = 6
    seed: int = 0

    def budgeted(self, n: int, ratio: int, cap: int) -> AttentionParams:
        """FlashAttention's benchmark rule: every approximation gets m = min(n / ratio, cap) --
        Linformer rank, Performer features, Nystrom landmarks, local window 2 x (m/2), Reformer
        chunk, BigBird blocks of m/4."""
        m = max(2, min(n // ratio, cap))
        return AttentionParams(
            window=m // 2,
            num_global=self.num_global,
            block=max(1, m // 4),
            num_random=self.num_random,
            linformer_k=m,
            features=m,
            bucket_size=m,
            n_hashes=self.n_hashes,
            landmarks=m,
            pinv_iterations=self.pinv_iterations,
            seed=self.seed,
        )


def build_attention(name: str, p: AttentionParams, max_len: int, head_dim: int) -> nn.Module:
    """The attention module `name`; an unknown name lists the valid ones."""
    if name == "naive":
        return NaiveAttention()
    if name == "sdpa":
        return SDPAttention(None)
    if name.startswith("sdpa_") and name[5:] in SDPA_BACKENDS:
        return SDPAttention(name[5:])
    builders = {
        "local": lambda: LocalAttention(p.window),
        "longformer": lambda: LongformerAttention(p.window, p.num_global),
        "bigbird": lambda: BigBirdAttention(p.block, p.num_global, p.num_random, p.seed),
        "linformer": lambda: LinformerAttention(max_len, p.linformer_k, p.seed),
        "nystrom": lambda: NystromAttention(p.landmarks, p.pinv_iterations),
        "performer": lambda: PerformerAttention(head_dim, p.features, p.seed),
        "linear": lambda: LinearAttention(),
        "reformer": lambda: LSHAttention(p.bucket_size, p.n_hashes, p.seed),
    }
    if name not in builders:
        raise ValueError(f"unknown attention variant {name!r}; valid: {', '.join(VARIANTS)}")
    return builders[name]()


__all__ = [
    "FAMILIES",
    "LABELS",
    "VARIANTS",
    "AttentionParams",
    "available_sdpa_backends",
    "build_attention",
]
