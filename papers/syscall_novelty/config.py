"""The experiment's config, whole: one dataclass tree, loaded from configs/<scale>.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.config import ConfigError
from shared.traces.cutting import MODES

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
    # Cutting modes (shared.traces): every model is trained and scored once per mode. "global" is the
    # paper's rule (the numbers compared with the paper's); any other mode is our extension (causal: the
    # worker thread, the php-fpm window serving the request and MariaDB activity on its connection).
    modes: list[str] = field(default_factory=lambda: ["global"])
    # Before the models: shared.traces' signal report (a count classifier per behaviour and mode on
    # disjoint blocks, beside the normal-vs-normal floor): can the behaviour appear in these requests?
    signal_report: bool = True


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
class ScoreConfig:
    """Extension scores beside the paper's mean per-token loss (all from per-token surprisal, in nats)."""

    top_k: int = 10  # the mean of a request's k largest per-token surprisals
    # "Unseen" events: an event whose name n-gram (this order, ending at the event) never occurs in the
    # training requests; the score is the summed surprisal of a request's unseen events.
    unseen_order: int = 3


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
    num_threads: int = 0  # torch CPU threads (per worker); 0 keeps torch's default
    # Models trained at once, each in its own process (CPU only; one thread each is the sane setting:
    # two 2-thread trainings on 2 loaded cores ran 25x slower). 1 trains in this process, one by one.
    workers: int = 1
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
    score: ScoreConfig = field(default_factory=ScoreConfig)

    def validate(self) -> None:
        bad = [m for m in self.models if m not in MODELS]
        if bad:
            raise ConfigError(f"models: unknown {bad}; valid: {', '.join(MODELS)}")
        if self.data.format not in ("parquet", "ctf"):
            raise ConfigError(f"data.format: {self.data.format!r}; valid: parquet, ctf")
        if self.data.max_tokens < 8:
            raise ConfigError(f"data.max_tokens must be >= 8 (got {self.data.max_tokens})")
        modes = self.data.modes
        if not modes or modes[0] != "global" or len(set(modes)) != len(modes):
            raise ConfigError(
                f"data.modes: {modes}; it must start with 'global' (the paper's mode, the one compared with the "
                f"paper), then any other modes once each; valid modes: {', '.join(MODES)}"
            )
        if bad := [m for m in modes if m not in MODES]:
            raise ConfigError(f"data.modes: unknown {bad}; valid: {', '.join(MODES)}")
        if self.train.workers > 1 and (self.train.accelerator not in ("cpu",) or self.train.strategy != "auto"):
            raise ConfigError(
                f"train.workers {self.train.workers} trains models in parallel CPU processes; it needs "
                f"train.accelerator cpu and train.strategy auto (got {self.train.accelerator}, {self.train.strategy})"
            )
        if self.score.unseen_order > 6:
            raise ConfigError(f"score.unseen_order must be in 1..6 (got {self.score.unseen_order})")
        if self.embedding.d_model % self.model.heads:
            raise ConfigError(f"d_model {self.embedding.d_model} is not divisible by heads {self.model.heads}")
