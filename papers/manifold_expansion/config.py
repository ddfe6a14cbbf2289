"""The experiment's config, whole: one dataclass tree, loaded from configs/<scale>.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.config import ConfigError

DATASETS = ("digits", "fashion_mnist", "cifar10")
KINDS = ("mlp", "cnn", "resnet")
OPS = ("wider", "deeper")
INITS = ("net2net", "random", "zero")
# Measured at expansion, before any further training (what a prediction can use).
METRICS = ("manifold", "manifold_dir", "grad_norm_at_expansion", "hessian_trace", "zc_grad_norm", "snip", "synflow")
# The manifold estimates again at the trained expanded solution (the brief's proxy protocol, step 4).
TRAINED = ("manifold_trained", "manifold_dir_trained")


@dataclass
class DataConfig:
    dataset: Literal["digits", "fashion_mnist", "cifar10"]
    # Folder with the standard files; null = $MANIFOLD_EXPANSION_DATA_DIR, else the dataset's default
    # (Debian's /usr/share/datasets/fashion-mnist for Fashion-MNIST).
    data_dir: str | None = None
    # "files" reads the standard files; "hf" loads through HF datasets (needs a network or a cache).
    source: Literal["files", "hf"] = "files"
    hf_id: str | None = None
    # Stratified subsample sizes; null keeps the whole split.
    train_size: int | None = None
    test_size: int | None = None
    # Training examples the metrics see (a fixed stratified subset of the training split).
    probe_size: int = 2048


@dataclass
class ModelConfig:
    """One base architecture; `widths` are hidden units (mlp), conv channels (cnn) or block widths (resnet)."""

    name: str
    kind: Literal["mlp", "cnn", "resnet"]
    widths: list[int]
    base_epochs: int
    continue_epochs: int
    lr: float = 1e-3
    batch_size: int = 128


@dataclass
class Expansion:
    """One expansion of a base model.

    op wider: `units` new units (channels) in weight layer `layer` (0-based, hidden layers only; for a
    resnet, the inner width of block `layer`); units null = as many as keep the parameter count equal
    to `deeper` at layer `match` (a width-vs-depth pair). op deeper: `blocks` new layers after layer `layer`.
    """

    op: Literal["wider", "deeper"]
    init: Literal["net2net", "random", "zero"]
    layer: int
    units: int | None = None
    match: int | None = None
    blocks: int = 1

    @property
    def name(self) -> str:
        if self.op == "deeper":
            return f"deeper{self.blocks}@{self.layer}-{self.init}"
        size = f"={self.match}" if self.units is None else f"+{self.units}"
        return f"wider{size}@{self.layer}-{self.init}"

    @property
    def kind(self) -> str:
        """The expansion type the scatter plot colours by."""
        return f"{self.op}-{self.init}"

    def validate(self) -> None:
        if self.op == "deeper":
            if self.init == "zero":
                raise ConfigError(
                    "expansion deeper/zero: a zero layer cuts a plain network; valid inits for deeper: net2net, random"
                )
            if self.units is not None or self.match is not None:
                raise ConfigError(f"expansion {self.name}: units/match apply to op wider only")
        else:
            if (self.units is None) == (self.match is None):
                raise ConfigError(
                    f"expansion wider@{self.layer}: give exactly one of units (new units) or match (the layer "
                    "of the deeper expansion whose parameter count to match)"
                )


@dataclass
class SimplexConfig:
    """The low-loss simplex (Benton et al. 2021 style) grown from the expanded model."""

    vertices: int = 2  # k extra vertices beyond the expanded model
    steps: int = 200
    lr: float = 1e-2
    samples: int = 4  # points drawn uniformly in the simplex per step
    batch_size: int = 256
    volume_weight: float = 0.01  # lambda of -lambda * log-volume
    init_radius: float = 0.05  # initial edge length, relative (filter-normalised)
    epsilon: float = 0.05  # loss rise allowed over the expanded model's loss (nats)
    eval_samples: int = 16
    bisect_steps: int = 12


@dataclass
class DirectionalConfig:
    """The cheaper estimate: largest step along random filter-normalised directions within epsilon."""

    directions: int = 8
    epsilon: float = 0.05
    t_max: float = 4.0
    bisect_steps: int = 12


@dataclass
class BaselineConfig:
    hutchinson_probes: int = 16
    batch_size: int = 1024  # examples for gradient norms, Hessian trace and the zero-cost proxies


@dataclass
class AnalysisConfig:
    bootstrap: int = 1000  # resamples of every bootstrap interval (at least 100)
    ci: float = 0.95  # level of the pooled per-family intervals; target intervals are always 95%


@dataclass
class Config:
    scale: str  # the config's name in configs/
    data: DataConfig
    models: list[ModelConfig]
    expansions: list[Expansion]
    seeds: list[int]
    simplex: SimplexConfig = field(default_factory=SimplexConfig)
    directional: DirectionalConfig = field(default_factory=DirectionalConfig)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    wider_noise: float = 0.01  # Net2WiderNet symmetry-breaking noise, relative to the layer's weight std
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    num_threads: int = 0  # torch CPU threads; 0 keeps torch's default

    def validate(self) -> None:
        if not self.models:
            raise ConfigError("models: need at least one base model")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ConfigError(f"models: names must be unique, got {names}")
        for m in self.models:
            if not m.widths:
                raise ConfigError(f"models.{m.name}.widths: need at least one hidden layer")
        if len(self.expansions) < 3:
            raise ConfigError(f"expansions: need at least 3 for a rank correlation, got {len(self.expansions)}")
        for e in self.expansions:
            e.validate()
            for m in self.models:
                for what, idx in (("layer", e.layer), ("match", e.match)):
                    if idx is not None and idx >= len(m.widths):
                        raise ConfigError(
                            f"expansion {e.name}: {what} {idx} does not exist in model {m.name} "
                            f"({len(m.widths)} hidden layers/blocks); valid: 0..{len(m.widths) - 1}"
                        )
        exp_names = [e.name for e in self.expansions]
        if len(set(exp_names)) != len(exp_names):
            raise ConfigError(f"expansions: duplicates in {exp_names}")
        if not self.seeds:
            raise ConfigError("seeds: need at least one seed")
        if self.analysis.bootstrap < 100:
            raise ConfigError(f"analysis.bootstrap: {self.analysis.bootstrap} resamples; valid: at least 100")

    def pairs(self) -> list[tuple[str, str]]:
        """(deeper, wider) expansion names with equal parameter counts: a wider with match=m and a deeper
        at layer m with one block and the same init."""
        out = []
        for w in self.expansions:
            if w.op != "wider" or w.match is None:
                continue
            for d in self.expansions:
                if d.op == "deeper" and d.layer == w.match and d.blocks == 1 and d.init == w.init:
                    out.append((d.name, w.name))
        return out
