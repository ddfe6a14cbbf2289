"""The experiment's config, whole: one dataclass tree, loaded from configs/<scale>.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from papers.efficient_transformers.attention import VARIANTS, AttentionParams
from shared.config import ConfigError

TASKS = ("listops", "kjv", "lra_listops", "lra_text")
APPROACHES = ("baseline", "checkpointing", "bf16", "reversible", "sharing")
DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class EfficiencyConfig:
    """FlashAttention's micro-benchmark (Appendix E): random q, k, v, no projections."""

    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch: int = 1
    heads: int = 4
    head_dim: int = 64
    lengths: list[int] = field(default_factory=lambda: [128, 256, 512, 1024, 2048, 4096])
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    warmup: int = 2  # untimed calls of every variant before the first timed round
    repeats: int = 5  # timed rounds; each round times every variant once (interleaved, see efficiency.py)
    compression_ratio: int = 8  # approximations get m = min(N / ratio, compressed_max)
    compressed_max: int = 256
    # Quadratic variants whose N x N scores (fp32 bytes x batch x heads) would pass this are recorded
    # as "OOM (predicted)" instead of being run; a real out-of-memory error is recorded as "OOM".
    max_score_bytes: float = 8.0e9
    fused_reference: str = "sdpa_flash"  # exact fused attention the approximations are set against
    threads: int = 0  # torch CPU threads; 0 keeps torch's default


@dataclass
class StepConfig:
    """LRA Table 2's measurement: one training step (forward, backward, AdamW update) of the whole quality
    model per variant and length; time (interleaved rounds) and peak memory (parameters, gradients,
    optimiser state and activations). Approximations get FlashAttention's budget m = min(N / ratio, cap)
    except Linformer, which gets `linformer_k` (LRA's) and, as extra rows, every k in `linformer_ks`."""

    lengths: list[int] = field(default_factory=lambda: [1024, 2048, 4096])
    batch: int = 1
    variants: list[str] = field(
        default_factory=lambda: [
            "naive",
            "local",
            "longformer",
            "bigbird",
            "linformer",
            "nystrom",
            "performer",
            "linear",
            "reformer",
        ]
    )
    # LRA's LinformerAttention has low_rank_features=16 and none of its configs override it.
    linformer_k: int = 16
    linformer_ks: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])
    warmup: int = 1
    repeats: int = 5


@dataclass
class TaskConfig:
    """One quality task: generated ListOps, byte-level KJV classification, or LRA's files (full)."""

    name: Literal["listops", "kjv", "lra_listops", "lra_text"]
    max_len: int
    n_train: int
    n_test: int
    min_len: int = 0  # ListOps: accepted trees are strictly longer than this
    max_depth: int = 10
    max_args: int = 10
    data_dir: str | None = None  # lra_*: folder with the task's files
    data_seed: int = 1234
    steps: int | None = None  # updates for this task; null: quality.train.steps


@dataclass
class ModelConfig:
    layers: int = 2
    dim: int = 64
    heads: int = 4
    mlp: int = 128
    # general approaches (survey section 4)
    checkpointing: bool = False
    reversible: bool = False
    share_parameters: bool = False
    precision: Literal["float32", "bfloat16"] = "float32"


@dataclass
class TrainConfig:
    steps: int = 300
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 30
    weight_decay: float = 0.01
    eval_batch: int = 128
    device: str = "cpu"
    threads: int = 1  # torch threads per worker
    workers: int = 1  # trainings run in parallel processes (results do not depend on it)


@dataclass
class QualityConfig:
    tasks: list[TaskConfig]
    variants: list[str]
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class GeneralConfig:
    """The survey's general approaches, each a training step (forward, backward, update) of the
    quality model at one length, timed and measured like the attention benchmark."""

    approaches: list[str] = field(default_factory=lambda: list(APPROACHES))
    length: int = 1024
    batch: int = 8
    layers: int = 4
    variant: str = "sdpa"
    warmup: int = 1
    repeats: int = 3


@dataclass
class Config:
    scale: str
    seeds: list[int]
    attention: AttentionParams
    efficiency: EfficiencyConfig
    quality: QualityConfig
    general: GeneralConfig = field(default_factory=GeneralConfig)
    step: StepConfig = field(default_factory=StepConfig)

    def validate(self) -> None:
        bad = [v for v in self.efficiency.variants + self.quality.variants if v not in VARIANTS]
        if bad or self.general.variant not in VARIANTS:
            raise ConfigError(
                f"unknown attention variant(s) {bad or [self.general.variant]}; valid: {', '.join(VARIANTS)}"
            )
        if self.efficiency.fused_reference not in self.efficiency.variants:
            raise ConfigError(
                f"efficiency.fused_reference {self.efficiency.fused_reference!r} must be one of efficiency.variants"
            )
        bad = [v for v in self.step.variants if v not in VARIANTS]
        if bad:
            raise ConfigError(f"step.variants: unknown {bad}; valid: {', '.join(VARIANTS)}")
        if any(n < 8 for n in self.step.lengths) or self.step.repeats < 1 or self.step.batch < 1:
            raise ConfigError("step: lengths must be >= 8, repeats >= 1 and batch >= 1")
        if any(k < 1 for k in [self.step.linformer_k, *self.step.linformer_ks]):
            raise ConfigError("step: linformer_k and linformer_ks must be >= 1")
        bad = [a for a in self.general.approaches if a not in APPROACHES]
        if bad:
            raise ConfigError(f"general.approaches: unknown {bad}; valid: {', '.join(APPROACHES)}")
        if not self.seeds:
            raise ConfigError("seeds: need at least one seed")
        if any(n < 2 for n in self.efficiency.lengths) or self.efficiency.repeats < 1:
            raise ConfigError("efficiency: lengths must be >= 2 and repeats >= 1")
        for t in self.quality.tasks:
            if t.name.startswith("lra_") and not t.data_dir:
                raise ConfigError(f"quality task {t.name}: data_dir is required (the LRA release folder)")
            if t.max_len < 8 or t.n_train < 1 or t.n_test < 1:
                raise ConfigError(f"quality task {t.name}: need max_len >= 8, n_train >= 1, n_test >= 1")
