"""The experiment's config, whole: one dataclass tree, loaded from configs/<scale>.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.config import ConfigError

MODELS = ("lstm", "transformer", "longformer")


@dataclass
class DataConfig:
    # A shared.traces dataset folder; null = the sample that ships in shared/traces/sample.
    path: str | None = None
    # "parquet": a shared.traces dataset; "ctf": the paper's LTTng folders (train, valid_id, ...),
    # converted once into `path` + ".dataset" by shared.traces.ctf.
    format: str = "parquet"
    # Cap per split (null keeps all), drawn with a fixed seed: train, and every evaluation split.
    max_train: int | None = None
    max_eval: int | None = None
    # Requests longer than this many tokens (with [START] and [END]) are truncated, as the paper
    # (the last kept token becomes [TRUNCATE]); the paper's Transformer used 2048, the LSTM no limit.
    max_tokens: int = 2048
    skip: int = 0  # requests skipped at the start of each CTF trace (the paper: 1000)
    # Collect a fresh dataset into `path` (default runs/traces/syscall_novelty) before the run, with
    # shared.traces (root and tracefs): `--set data.collect=true`. A finished collection is reused.
    collect: bool = False
    collect_requests: int = 150  # per block; 48 blocks


@dataclass
class EmbeddingConfig:
    """The paper's input embedding: the parts are concatenated (d_model = their sum, 168)."""

    name: int = 48
    entry: int = 12
    ret: int = 12
    proc: int = 48
    pid: int = 12
    tid: int = 12
    position: int = 12
    elapsed: int = 12

    @property
    def d_model(self) -> int:
        return self.name + self.entry + self.ret + self.proc + self.pid + self.tid + self.position + self.elapsed


@dataclass
class ModelConfig:
    layers: int = 2
    hidden: int = 256  # LSTM hidden size
    heads: int = 4
    ffn_hidden: int = 672  # SwiGLU: Linear(d -> 4/3 * ffn_hidden), Linear(2/3 * ffn_hidden -> d)
    window: int = 32  # Longformer: each token attends to the previous `window` tokens and token 0
    dropout: float = 0.01


@dataclass
class TrainConfig:
    batch_size: int = 16
    lr: float = 1e-3
    label_smoothing: float = 0.1
    max_updates: int = 1_000_000
    eval_every: int = 1000  # updates between validations
    lr_patience: int = 5  # validations without improvement before lr x 0.1
    stop_patience: int = 20  # validations without improvement before stopping
    warmup: dict[str, int] = field(default_factory=lambda: {"lstm": 0, "transformer": 5000, "longformer": 1000})
    grad_clip: dict[str, float] = field(default_factory=lambda: {"lstm": 10.0})
    max_minutes: float | None = None  # wall-clock cap per model (mini scale on CPU)
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"  # "ddp" at full scale
    precision: str = "32-true"  # "16-mixed" on GPUs, as the paper's AMP
    num_threads: int = 0  # torch CPU threads; 0 keeps torch's default
    eval_batch_size: int = 64


@dataclass
class Config:
    scale: str
    data: DataConfig
    models: list[str]
    seeds: list[int]
    ngram_orders: list[int] = field(default_factory=lambda: [3, 4])
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    thresholds: int = 100  # candidate thresholds between min and max validation perplexity

    def validate(self) -> None:
        bad = [m for m in self.models if m not in MODELS]
        if bad:
            raise ConfigError(f"models: unknown {bad}; valid: {', '.join(MODELS)}")
        if self.data.format not in ("parquet", "ctf"):
            raise ConfigError(f"data.format: {self.data.format!r}; valid: parquet, ctf")
        if self.data.max_tokens < 8:
            raise ConfigError(f"data.max_tokens must be >= 8 (got {self.data.max_tokens})")
        if self.embedding.d_model % self.model.heads:
            raise ConfigError(f"d_model {self.embedding.d_model} is not divisible by heads {self.model.heads}")
