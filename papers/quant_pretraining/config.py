"""The experiment's config, whole: one dataclass tree loaded from configs/<scale>.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from papers.quant_pretraining.configurations import CONFIGURATIONS
from shared.config import ConfigError
from shared.engine import EngineConfig

# The paper folder (configs/, paper.yaml, results/): here, where both reproduce and report can import it.
PAPER_DIR = Path(__file__).resolve().parent
HF_EVAL_SETS = ("wikitext2", "wikitext103", "ptb", "lm1b")


@dataclass
class ModelConfig:
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.1


@dataclass
class DataConfig:
    # "prose": English prose from Debian packages with a BPE tokenizer trained here (smoke, mini);
    # "hf": an HF datasets corpus with a Hub tokenizer (medium, full; needs a network or a cache).
    source: Literal["prose", "hf"] = "prose"
    prose_sources: list[str] = field(default_factory=lambda: ["python-doc", "kjv"])
    max_documents: int | None = None  # per source, for the smoke scale
    vocab_size: int = 4096  # BPE trained here; for "hf" the tokenizer's own size (padded to 64)
    val_fraction: float = 0.0005  # the authors' train_test_split(test_size=0.0005, seed=2345)
    split_seed: int = 2345
    seq_len: int = 1024
    hf_dataset: str = "Skylion007/openwebtext"
    hf_tokenizer: str = "openai-community/gpt2"
    hf_max_documents: int | None = None  # a shard of the corpus (medium); null = all of it
    zero_shot: list[str] = field(default_factory=list)  # of HF_EVAL_SETS, evaluated after training


@dataclass
class TrainConfig:
    steps: int = 300_000
    batch_size: int = 512  # sequences per optimizer step, over all devices
    micro_batch: int = 32  # sequences per device per forward
    lr: float = 6e-4
    min_lr: float = 0.0
    warmup: int = 1000
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    clip: float = 1.0
    eval_every: int = 1000
    eval_batches: int = 50  # validation windows of micro_batch sequences
    checkpoint_every: int = 1000
    log_every: int = 50


@dataclass
class Config:
    scale: str
    configurations: list[str]
    seeds: list[int] = field(default_factory=lambda: [0])
    baseline_seeds: list[int] = field(default_factory=list)  # extra baseline seeds, to measure noise
    parallel_runs: int = 1  # runs trained at once in worker processes (CPU: one per core, 1 thread each)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    # --- issue 20: rows run at the first seed only (no target rests on them), so the seeds go where the
    # targets need a noise band; every other configuration runs at each of `seeds`.
    one_seed: list[str] = field(default_factory=list)
    # SLURM array over the runs (python -m shared.launch slurm --shards N): this task trains runs i with
    # i % num_shards == shard; the merge job after the array (num_shards 1) finds them cached and reports.
    shard: int = 0
    num_shards: int = 1

    def validate(self) -> None:
        unknown = [c for c in self.configurations if c not in CONFIGURATIONS]
        if unknown:
            raise ConfigError(f"configurations: unknown {unknown}; valid: {', '.join(CONFIGURATIONS)}")
        if "baseline" not in self.configurations:
            raise ConfigError("configurations: every comparison is against 'baseline'; add it")
        if not 0 <= self.shard < self.num_shards:
            raise ConfigError(f"shard={self.shard}: must be in [0, num_shards={self.num_shards})")
        stray = [c for c in self.one_seed if c not in self.configurations or c == "baseline"]
        if stray:
            raise ConfigError(f"one_seed: {stray} are not among the non-baseline configurations")
        t = self.train
        world = self.engine.devices * self.engine.num_nodes
        if t.batch_size % (t.micro_batch * world):
            raise ConfigError(
                f"train.batch_size={t.batch_size} is not a multiple of micro_batch={t.micro_batch} x {world} device(s)"
            )
        bad = [s for s in self.data.zero_shot if s not in HF_EVAL_SETS]
        if bad:
            raise ConfigError(f"data.zero_shot: unknown {bad}; valid: {', '.join(HF_EVAL_SETS)}")
        if self.model.n_embd % self.model.n_head:
            raise ConfigError(f"model.n_embd={self.model.n_embd} is not divisible by n_head={self.model.n_head}")

    def grad_accum(self) -> int:
        return self.train.batch_size // (self.train.micro_batch * self.engine.devices * self.engine.num_nodes)

    def runs(self) -> list[tuple[str, int]]:
        """(configuration, seed) pairs in run order: every configuration at each seed (those in `one_seed` at
        the first only), then the extra baseline seeds."""
        first = self.seeds[0] if self.seeds else None
        pairs = [(c, s) for s in self.seeds for c in self.configurations if s == first or c not in self.one_seed]
        return pairs + [("baseline", s) for s in self.baseline_seeds if s not in self.seeds]
