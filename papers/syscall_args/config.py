"""The experiment's config, whole: one dataclass tree, loaded from configs/<scale>.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.config import ConfigError

# The paper's ablation: which argument groups enter the embedding, and the name embedding's size.
SETTINGS = {
    "name": {"groups": (), "name_dim": 32},
    "name_64": {"groups": (), "name_dim": 64},  # the "compensated" baseline: as many dims, no arguments
    "time": {"groups": ("time",), "name_dim": 32},
    "call": {"groups": ("call",), "name_dim": 32},
    "proc": {"groups": ("proc",), "name_dim": 32},
    "all": {"groups": ("call", "proc", "time"), "name_dim": 32},
}
# (model, task) pairs the paper ran.
EXPERIMENTS = ("lstm_lm", "transformer_lm", "transformer_mlm")


@dataclass
class DataConfig:
    path: str | None = None  # a shared.traces dataset; null = shared/traces/sample
    window: int = 256  # consecutive syscall events per sequence (the logged runs: 256)
    behaviours: list[str] = field(default_factory=lambda: ["normal"])
    max_train: int | None = None  # windows per split (null = all)
    max_eval: int | None = None


@dataclass
class EmbeddingConfig:
    """Sizes from source/LSTM.py and source/Transformer.py: entry/exit and return are added to the
    name embedding; process name (16), pid and tid (4 each, base 1000), time (8, base 1e4) and the
    Transformer's ordering (8) are concatenated."""

    proc: int = 16
    pid: int = 4
    tid: int = 4
    time: int = 8
    ordering: int = 8


@dataclass
class ModelConfig:
    lstm_hidden: int = 96
    lstm_layers: int = 2
    lstm_dropout: float = 0.5
    layers: int = 6
    heads: int = 8
    ffn: int = 128
    dropout: float = 0.1


@dataclass
class TrainConfig:
    batch_size: dict[str, int] = field(default_factory=lambda: {"lm": 64, "mlm": 128})
    lr: float = 1e-3
    eval_every: dict[str, int] = field(default_factory=lambda: {"lm": 1000, "mlm": 500})
    patience: int = 5  # evaluations without a validation-accuracy gain above min_delta (0: no early stopping)
    min_delta: float = 0.001
    max_epochs: int = 100
    # update budget per model/task pair (-1: until early stopping / max_epochs); a fixed budget keeps
    # the settings comparable whatever else the machine is doing
    max_updates: dict[str, int] = field(
        default_factory=lambda: {"lstm_lm": -1, "transformer_lm": -1, "transformer_mlm": -1}
    )
    max_seconds: float | None = None  # wall-clock safety cap per run
    mask_rate: float = 0.25
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    precision: str = "32-true"
    num_threads: int = 0  # torch threads per training process (0: torch's default)
    # trainings run side by side, each in its own process (CPU only, one torch thread each: two threads
    # per process on two loaded cores ran 25x slower)
    workers: int = 1

    def validate(self) -> None:
        tasks = ("lm", "mlm")
        for name in ("batch_size", "eval_every"):
            table = getattr(self, name)
            if bad := sorted(set(table) - set(tasks)):
                raise ConfigError(f"train.{name}: unknown task(s) {bad}; valid: {', '.join(tasks)}")
            if missing := [t for t in tasks if t not in table]:
                raise ConfigError(f"train.{name}: missing task(s) {missing}; give both of {', '.join(tasks)}")
        if bad := sorted(set(self.max_updates) - set(EXPERIMENTS)):
            raise ConfigError(f"train.max_updates: unknown experiment(s) {bad}; valid: {', '.join(EXPERIMENTS)}")
        for experiment, budget in self.max_updates.items():
            task = experiment.split("_")[1]
            every = self.eval_every[task]
            if budget != -1 and budget % every:
                raise ConfigError(
                    f"train.max_updates.{experiment}={budget} is not a multiple of its validation interval "
                    f"(train.eval_every.{task}={every}), so its last {budget % every} updates would never be "
                    f"validated; valid: -1 (no budget) or a multiple of {every}"
                )
        if self.workers > 1:
            if self.num_threads != 1:
                raise ConfigError(
                    f"train.workers={self.workers} runs trainings side by side: set train.num_threads=1 "
                    f"(got {self.num_threads}; two threads per process on two loaded cores ran 25x slower)"
                )
            if self.accelerator != "cpu" or self.devices != 1:
                raise ConfigError(
                    f"train.workers={self.workers} is for CPU training: needs train.accelerator=cpu and "
                    f"train.devices=1 (got {self.accelerator!r}, {self.devices!r})"
                )


@dataclass
class Config:
    scale: str
    data: DataConfig
    experiments: list[str]
    settings: list[str]
    seeds: list[int]
    ngram_orders: list[int] = field(default_factory=lambda: [2, 3, 4])
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        bad = [e for e in self.experiments if e not in EXPERIMENTS]
        if bad:
            raise ConfigError(f"experiments: unknown {bad}; valid: {', '.join(EXPERIMENTS)}")
        bad = [s for s in self.settings if s not in SETTINGS]
        if bad:
            raise ConfigError(f"settings: unknown {bad}; valid: {', '.join(SETTINGS)}")
        if self.data.window < 4:
            raise ConfigError(f"data.window must be >= 4 (got {self.data.window})")
        if not 0 < self.train.mask_rate < 1:
            raise ConfigError(f"train.mask_rate must be in (0, 1) (got {self.train.mask_rate})")
