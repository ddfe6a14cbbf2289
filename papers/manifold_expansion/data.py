"""Datasets as image tensors (N, C, H, W), standardised with the training split's mean and std."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from papers.manifold_expansion.config import DataConfig
from shared.data.bundled import load_digits_split
from shared.data.cifar import HOW_TO_GET as CIFAR_HOW_TO_GET
from shared.data.cifar import load_cifar10
from shared.data.errors import DatasetNotFoundError
from shared.data.hf import load_hf_image_splits
from shared.data.idx import load_idx_split

ENV_DATA_DIR = "MANIFOLD_EXPANSION_DATA_DIR"
DEFAULT_DIRS = {"fashion_mnist": "/usr/share/datasets/fashion-mnist"}
HOW_TO_GET = {
    "fashion_mnist": "Install it with `apt-get install dataset-fashion-mnist` (Debian), or pass the folder "
    "holding the four Zalando IDX files with --set data.data_dir=PATH.",
    "cifar10": CIFAR_HOW_TO_GET + " Pass it with --set data.data_dir=PATH, or use --set data.source=hf.",
}
SHAPES = {"digits": (1, 8, 8), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_probe: torch.Tensor  # the fixed training subset every metric sees
    y_probe: torch.Tensor

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def _load_raw(cfg: DataConfig) -> tuple[np.ndarray, ...]:
    if cfg.dataset == "digits":
        return load_digits_split()
    if cfg.source == "hf":
        return load_hf_image_splits(cfg.hf_id, cfg.dataset, HOW_TO_GET.get(cfg.dataset, ""))
    folder = Path(cfg.data_dir or os.environ.get(ENV_DATA_DIR) or DEFAULT_DIRS.get(cfg.dataset, ""))
    if not str(folder) or str(folder) == "." or not folder.is_dir():
        raise DatasetNotFoundError(f"{cfg.dataset}: folder {str(folder)!r} does not exist. {HOW_TO_GET[cfg.dataset]}")
    if cfg.dataset == "cifar10":
        return load_cifar10(folder)
    return load_idx_split(folder, HOW_TO_GET[cfg.dataset])


def _subset(x: np.ndarray, y: np.ndarray, size: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if size is None or size >= len(y):
        return x, y
    idx, _ = train_test_split(np.arange(len(y)), train_size=size, stratify=y, random_state=seed)
    idx = np.sort(idx)
    return x[idx], y[idx]


def _to_nchw(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    c, h, w = shape
    if x.ndim == 4 and x.shape[-1] == c:  # (n, h, w, c), as CIFAR batches and HF images come
        x = x.transpose(0, 3, 1, 2)
    return x.reshape(len(x), c, h, w).astype(np.float32)


def load(cfg: DataConfig, seed: int = 0) -> Dataset:
    """Load, subsample (stratified), standardise with the train split's statistics, and pick the probe set."""
    x_tr, y_tr, x_te, y_te = _load_raw(cfg)
    y_tr, y_te = np.asarray(y_tr, dtype=np.int64), np.asarray(y_te, dtype=np.int64)
    x_tr, y_tr = _subset(x_tr, y_tr, cfg.train_size, seed)
    x_te, y_te = _subset(x_te, y_te, cfg.test_size, seed)
    shape = SHAPES[cfg.dataset]
    x_tr, x_te = _to_nchw(x_tr, shape), _to_nchw(x_te, shape)
    mean = x_tr.mean(axis=(0, 2, 3), keepdims=True)
    std = x_tr.std(axis=(0, 2, 3), keepdims=True) + 1e-8
    x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    x_pr, y_pr = _subset(x_tr, y_tr, cfg.probe_size, seed + 1)
    t = torch.from_numpy
    return Dataset(cfg.dataset, t(x_tr), t(y_tr), t(x_te), t(y_te), t(np.ascontiguousarray(x_pr)), t(y_pr))
