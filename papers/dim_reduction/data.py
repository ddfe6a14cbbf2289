"""The paper's datasets as flat float32 arrays in [0, 1], with the standard train/test splits."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from papers.dim_reduction.config import FACTS, DataConfig
from shared.data.bundled import load_digits_split
from shared.data.cifar import HOW_TO_GET as CIFAR_HOW_TO_GET
from shared.data.cifar import load_cifar10
from shared.data.errors import DatasetNotFoundError
from shared.data.hf import load_hf_image_splits
from shared.data.idx import load_idx_split

ENV_DATA_DIR = "DIM_REDUCTION_DATA_DIR"
DEFAULT_DIRS = {"fashion_mnist": "/usr/share/datasets/fashion-mnist"}
HOW_TO_GET = {
    "fashion_mnist": "Install it with `apt-get install dataset-fashion-mnist` (Debian), or pass the folder "
    "holding the four Zalando IDX files with --set data.data_dir=PATH.",
    "mnist": "Get the four MNIST IDX files (train-images-idx3-ubyte.gz, ...) and pass their folder with "
    "--set data.data_dir=PATH, or use --set data.source=hf with a network.",
    "cifar10": CIFAR_HOW_TO_GET + " Pass it with --set data.data_dir=PATH, or use --set data.source=hf.",
}
# Class count of each dataset: labels outside 0..n-1 are a CorruptDataError at load time.
N_CLASSES = {name: facts.n_classes for name, facts in FACTS.items()}
# Pixel scale of each dataset: the paper divides by 255; digits are 0-16.
PIXEL_MAX = {"digits": 16.0, "fashion_mnist": 255.0, "mnist": 255.0, "cifar10": 255.0}


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def _data_dir(cfg: DataConfig) -> Path:
    folder = cfg.data_dir or os.environ.get(ENV_DATA_DIR) or DEFAULT_DIRS.get(cfg.dataset)
    if folder is None:
        raise DatasetNotFoundError(f"{cfg.dataset}: no data folder given. {HOW_TO_GET[cfg.dataset]}")
    return Path(folder)


def _load_raw(cfg: DataConfig) -> tuple[np.ndarray, ...]:
    if cfg.dataset == "digits":
        return load_digits_split()
    if cfg.source == "hf":
        return load_hf_image_splits(cfg.hf_id, cfg.dataset, HOW_TO_GET[cfg.dataset], N_CLASSES[cfg.dataset])
    folder = _data_dir(cfg)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"{cfg.dataset}: folder {folder} does not exist. {HOW_TO_GET[cfg.dataset]}")
    if cfg.dataset == "cifar10":
        try:
            return load_cifar10(folder)
        except DatasetNotFoundError as exc:
            raise DatasetNotFoundError(f"{exc} {HOW_TO_GET['cifar10']}") from None
    return load_idx_split(folder, HOW_TO_GET[cfg.dataset], N_CLASSES[cfg.dataset])


def stratified_subset(x: np.ndarray, y: np.ndarray, size: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified random subset of `size` rows (all rows when size is None or too large)."""
    if size is None or size >= len(y):
        return x, y
    idx, _ = train_test_split(np.arange(len(y)), train_size=size, stratify=y, random_state=seed)
    idx = np.sort(idx)
    return x[idx], y[idx]


def load(cfg: DataConfig, seed: int = 0) -> Dataset:
    """Load, flatten and scale to [0, 1] (pixels / max, as the paper); subsample when asked."""
    x_tr, y_tr, x_te, y_te = _load_raw(cfg)
    scale = np.float32(PIXEL_MAX[cfg.dataset])
    x_tr = x_tr.reshape(len(x_tr), -1).astype(np.float32) / scale
    x_te = x_te.reshape(len(x_te), -1).astype(np.float32) / scale
    x_tr, y_tr = stratified_subset(x_tr, np.asarray(y_tr, dtype=np.int64), cfg.train_size, seed)
    x_te, y_te = stratified_subset(x_te, np.asarray(y_te, dtype=np.int64), cfg.test_size, seed)
    return Dataset(cfg.dataset, x_tr, y_tr, x_te, y_te)
