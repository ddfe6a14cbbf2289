"""The experiment's config, whole: one dataclass tree, loaded from configs/<scale>.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.config import ConfigError

DATASETS = ("digits", "fashion_mnist", "mnist", "cifar10")
METHODS = ("pca", "isomap", "dae", "vae")


@dataclass
class DataConfig:
    dataset: Literal["digits", "fashion_mnist", "mnist", "cifar10"]
    # Folder with the standard files; null = $DIM_REDUCTION_DATA_DIR, else the dataset's default
    # (Debian's /usr/share/datasets/fashion-mnist for Fashion-MNIST).
    data_dir: str | None = None
    # "files" reads the standard files; "hf" loads through HF datasets (needs a network or a cache).
    source: Literal["files", "hf"] = "files"
    hf_id: str | None = None
    # Stratified subsample sizes; null keeps the whole split.
    train_size: int | None = None
    test_size: int | None = None


@dataclass
class KnnConfig:
    folds: int = 5
    # Candidate k are drawn from 1 .. int(sqrt(n_train)) - 1, as the paper's RandomizedSearchCV.
    # n_iter: how many distinct k are sampled (paper: 60); null scores every k (a full grid).
    n_iter: int | None = 60
    # "sklearn" (exact, CPU) or "torch" (same neighbours computed on the GPU when there is one).
    backend: Literal["sklearn", "torch"] = "sklearn"
    n_jobs: int = -1


@dataclass
class IsomapConfig:
    n_neighbors: int = 10
    fit_size: int = 10000
    transform_chunk: int = 5000
    # true: one Isomap fit per d (the paper). false: one fit at the largest d, sliced to each d;
    # the same eigenvectors (leading ones of one kernel matrix), at 1/len(dims) of the cost.
    refit_per_dim: bool = True
    # scikit-learn's "auto" is arpack below 10 components and a dense eigh above; both solve the
    # same problem to solver tolerance.
    eigen_solver: Literal["auto", "arpack", "dense"] = "auto"


@dataclass
class AutoencoderConfig:
    dims: list[int] = field(default_factory=list)
    batch_size: int = 100
    lr: float = 1e-3
    max_epochs: int = 9999
    patience: int = 10
    val_fraction: float = 0.1
    accelerator: str = "cpu"
    num_threads: int = 0  # torch CPU threads; 0 keeps torch's default


@dataclass
class Config:
    scale: str  # the config's name in configs/
    data: DataConfig
    dims: list[int]
    methods: list[str]
    seeds: list[int]
    knn: KnnConfig = field(default_factory=KnnConfig)
    isomap: IsomapConfig = field(default_factory=IsomapConfig)
    ae: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    baseline: bool = True

    def validate(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ConfigError(f"methods: unknown {bad}; valid: {', '.join(METHODS)}")
        if not self.dims or any(d < 1 for d in self.dims):
            raise ConfigError(f"dims: need positive dimensions, got {self.dims}")
        if not self.seeds:
            raise ConfigError("seeds: need at least one seed")
        extra = sorted(set(self.ae.dims) - set(self.dims))
        if extra:
            raise ConfigError(f"ae.dims {extra} are not in dims {self.dims}")
        if self.knn.folds < 2:
            raise ConfigError(f"knn.folds must be at least 2, got {self.knn.folds}")
        if not 0 < self.ae.val_fraction < 1:
            raise ConfigError(f"ae.val_fraction must be in (0, 1), got {self.ae.val_fraction}")

    def dims_for(self, method: str) -> list[int]:
        """Dimensions a method runs at: every d for PCA/Isomap, ae.dims (or all) for the AEs."""
        if method in ("dae", "vae") and self.ae.dims:
            return sorted(self.ae.dims)
        return sorted(self.dims)
