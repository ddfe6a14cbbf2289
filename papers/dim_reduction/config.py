"""The experiment's config, whole: one dataclass tree, loaded from configs/<scale>.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.config import ConfigError

DATASETS = ("digits", "fashion_mnist", "mnist", "cifar10")
METHODS = ("pca", "isomap", "dae", "vae")


@dataclass(frozen=True)
class DatasetFacts:
    """The standard splits' sizes, against which a config is checked before anything is loaded."""

    n_features: int  # pixels per image: the largest meaningful dimension
    n_train: int
    n_test: int
    n_classes: int


FACTS = {
    "digits": DatasetFacts(64, 1347, 450, 10),  # scikit-learn's 1,797 digits, split 75/25
    "fashion_mnist": DatasetFacts(784, 60000, 10000, 10),
    "mnist": DatasetFacts(784, 60000, 10000, 10),
    "cifar10": DatasetFacts(3072, 50000, 10000, 10),
}


def ae_split_sizes(n: int, val_fraction: float) -> tuple[int, int]:
    """The autoencoders' (train, validation) sizes for n samples: each floored to a multiple of 100,
    at least 100, as in the authors' code."""
    return max(100, int(n * (1 - val_fraction)) // 100 * 100), max(100, int(n * val_fraction) // 100 * 100)


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
class PcaConfig:
    # Fits timed per d; the fit time is their median. One fit of PCA on Fashion-MNIST takes ~0.5 s,
    # where a single measurement moves by tens of percent with whatever else the machine does.
    timing_repeats: int = 1


@dataclass
class IsomapConfig:
    # Dimensions Isomap is scored at; empty: every d in `dims`.
    dims: list[int] = field(default_factory=list)
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
    # Per-d caps that replace max_epochs at those d ({5: 12}): a budget spent where training is short of
    # the paper's (early stopping) matters most.
    epochs_by_dim: dict[int, int] = field(default_factory=dict)
    patience: int = 10
    val_fraction: float = 0.1
    accelerator: Literal["cpu", "gpu", "cuda"] = "cpu"
    num_threads: int = 0  # torch CPU threads; 0 keeps torch's default

    def epochs_for(self, d: int) -> int:
        """The epoch cap at bottleneck d."""
        return self.epochs_by_dim.get(d, self.max_epochs)


@dataclass
class Config:
    scale: str  # the config's name in configs/
    data: DataConfig
    dims: list[int]
    methods: list[str]
    seeds: list[int]
    knn: KnnConfig = field(default_factory=KnnConfig)
    pca: PcaConfig = field(default_factory=PcaConfig)
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
        for name, values in (
            ("methods", self.methods),
            ("dims", self.dims),
            ("seeds", self.seeds),
            ("ae.dims", self.ae.dims),
            ("isomap.dims", self.isomap.dims),
        ):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ConfigError(f"{name}: {repeated} listed more than once in {values}; each may appear once")
        for name, sub in (("ae.dims", self.ae.dims), ("isomap.dims", self.isomap.dims)):
            extra = sorted(set(sub) - set(self.dims))
            if extra:
                raise ConfigError(f"{name} {extra} are not in dims {self.dims}")
        ae_dims = self.dims_for("dae")
        odd = [d for d in self.ae.epochs_by_dim if not isinstance(d, int) or isinstance(d, bool) or d not in ae_dims]
        if odd:
            raise ConfigError(
                f"ae.epochs_by_dim: {odd} are not dimensions the autoencoders run at; valid keys: {ae_dims}"
            )
        if self.knn.folds < 2:
            raise ConfigError(f"knn.folds must be at least 2, got {self.knn.folds}")
        if not 0 < self.ae.val_fraction < 1:
            raise ConfigError(f"ae.val_fraction must be in (0, 1), got {self.ae.val_fraction}")
        self._validate_sizes()

    def _validate_sizes(self) -> None:
        """Values each fine alone but impossible together, given the dataset's standard splits."""
        facts, name = FACTS[self.data.dataset], self.data.dataset
        n_train = _subset_size("data.train_size", self.data.train_size, facts.n_train, facts.n_classes, name)
        _subset_size("data.test_size", self.data.test_size, facts.n_test, facts.n_classes, name)
        top = max(self.dims)
        if top > facts.n_features:
            raise ConfigError(f"dims: {top} exceeds the {facts.n_features} input dimensions of {name}")
        need = self.knn.folds * facts.n_classes  # stratified folds: at least one image of each class per fold
        if n_train < need:
            raise ConfigError(
                f"knn.folds={self.knn.folds} stratified folds over {facts.n_classes} classes need at least {need} "
                f"training images, data.train_size gives {n_train}"
            )
        if "pca" in self.methods and top > n_train:
            raise ConfigError(f"dims: PCA cannot find {top} components in {n_train} training images")
        if "isomap" in self.methods:
            n_fit = _subset_size("isomap.fit_size", self.isomap.fit_size, n_train, facts.n_classes, "the training set")
            if self.isomap.n_neighbors >= n_fit:
                raise ConfigError(
                    f"isomap.n_neighbors={self.isomap.n_neighbors} must be below the {n_fit} images Isomap is fit on "
                    "(isomap.fit_size, at most data.train_size)"
                )
            iso_top = max(self.dims_for("isomap"))
            if iso_top >= n_fit:
                raise ConfigError(f"dims: Isomap cannot embed {n_fit} fit images in {iso_top} dimensions (need fewer)")
        if {"dae", "vae"} & set(self.methods):
            tr, va = ae_split_sizes(n_train, self.ae.val_fraction)
            if tr + va > n_train:
                raise ConfigError(
                    f"the autoencoders split the training images into {tr} for training and {va} for validation "
                    f"(multiples of 100, ae.val_fraction={self.ae.val_fraction}): need at least {tr + va}, "
                    f"data.train_size gives {n_train}"
                )

    def dims_for(self, method: str) -> list[int]:
        """Dimensions a method runs at: every d for PCA, isomap.dims (or all) for Isomap, ae.dims (or all)
        for the AEs."""
        if method in ("dae", "vae") and self.ae.dims:
            return sorted(self.ae.dims)
        if method == "isomap" and self.isomap.dims:
            return sorted(self.isomap.dims)
        return sorted(self.dims)


def _subset_size(key: str, size: int | None, available: int, n_classes: int, of: str) -> int:
    """How many rows a stratified subset of `size` (None: all) keeps out of `available`; a ConfigError
    when the split cannot put every class on both sides."""
    if size is None or size >= available:
        return available
    if size < n_classes or available - size < n_classes:
        raise ConfigError(
            f"{key}={size}: a stratified subset of the {available} images of {of} needs at least {n_classes} "
            f"images (one per class) on each side; use {n_classes}..{available - n_classes}, or null (all)"
        )
    return size
