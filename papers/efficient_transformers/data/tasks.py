"""Quality tasks as tensors: (x_train, y_train, x_test, y_test), CLS first, padded to max_len."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from papers.efficient_transformers.config import TaskConfig
from papers.efficient_transformers.data import kjv, listops
from shared.data.errors import CorruptDataError, DatasetNotFoundError


@dataclass
class TaskData:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    vocab_size: int
    n_classes: int

    def majority_accuracy(self) -> float:
        """Test accuracy of always predicting the most frequent training class."""
        top = int(torch.bincount(self.y_train).argmax())
        return float((self.y_test == top).float().mean())


def _tensors(rows: list[list[int]], labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(rows, dtype=torch.long), torch.tensor(labels, dtype=torch.long)


def generated_listops(cfg: TaskConfig) -> TaskData:
    pairs = listops.generate(
        cfg.n_train + cfg.n_test, cfg.min_len, cfg.max_len - 1, cfg.max_depth, cfg.max_args, cfg.data_seed
    )
    rows = [listops.encode(src, cfg.max_len) for src, _ in pairs]
    labels = [t for _, t in pairs]
    x, y = _tensors(rows, labels)
    n = cfg.n_train
    return TaskData("listops", x[:n], y[:n], x[n:], y[n:], len(listops.VOCAB), 10)


def kjv_task(cfg: TaskConfig) -> TaskData:
    chunks, labels, is_test = kjv.windows(kjv.read_books(), cfg.max_len - 1)
    labels_a, test_a = np.asarray(labels), np.asarray(is_test)
    rng = np.random.default_rng(cfg.data_seed)
    out = []
    for split, n in ((~test_a, cfg.n_train), (test_a, cfg.n_test)):
        pool = np.flatnonzero(split)
        idx = pool[kjv.balanced_sample(labels_a[pool], n, rng)]
        out += list(_tensors([kjv.encode(chunks[i], cfg.max_len) for i in idx], labels_a[idx].tolist()))
    return TaskData("kjv", *out, kjv.VOCAB_SIZE, len(kjv.CLASSES))


def read_lra_listops_tsv(path: Path, max_len: int, limit: int) -> tuple[list[list[int]], list[int]]:
    """LRA's released ListOps split (TSV with header Source, Target)."""
    if not path.is_file():
        raise DatasetNotFoundError(f"LRA ListOps file not found: {path} (expected the lra_release listops-1000 folder)")
    rows, labels = [], []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        if reader.fieldnames is None or not {"Source", "Target"} <= set(reader.fieldnames):
            raise CorruptDataError(f"{path}: expected TSV columns Source, Target; got {reader.fieldnames}")
        for rec in reader:
            if len(rows) >= limit:
                break
            ids = listops.encode(rec["Source"], max_len) if _fits(rec["Source"], max_len) else None
            if ids is not None:
                rows.append(ids)
                labels.append(int(rec["Target"]))
    return rows, labels


def _fits(source: str, max_len: int) -> bool:
    return 1 + sum(t not in ("(", ")") for t in source.split()) <= max_len


def lra_listops(cfg: TaskConfig) -> TaskData:
    base = Path(cfg.data_dir or "")
    tr = read_lra_listops_tsv(base / "basic_train.tsv", cfg.max_len, cfg.n_train)
    te = read_lra_listops_tsv(base / "basic_test.tsv", cfg.max_len, cfg.n_test)
    return TaskData("lra_listops", *_tensors(*tr), *_tensors(*te), len(listops.VOCAB), 10)


def read_imdb_split(folder: Path, max_len: int, limit: int, seed: int) -> tuple[list[list[int]], list[int]]:
    """IMDb reviews as bytes (LRA's Text task): aclImdb/<split>/{neg,pos}/*.txt, truncated."""
    files = [(p, label) for label, sub in enumerate(("neg", "pos")) for p in sorted((folder / sub).glob("*.txt"))]
    if not files:
        raise DatasetNotFoundError(f"no IMDb reviews under {folder}/neg and {folder}/pos (the aclImdb folder)")
    order = np.random.default_rng(seed).permutation(len(files))[:limit]
    rows, labels = [], []
    for i in order:
        path, label = files[i]
        rows.append(kjv.encode(path.read_bytes()[: max_len - 1], max_len))
        labels.append(label)
    return rows, labels


def lra_text(cfg: TaskConfig) -> TaskData:
    base = Path(cfg.data_dir or "")
    tr = read_imdb_split(base / "train", cfg.max_len, cfg.n_train, cfg.data_seed)
    te = read_imdb_split(base / "test", cfg.max_len, cfg.n_test, cfg.data_seed)
    return TaskData("lra_text", *_tensors(*tr), *_tensors(*te), kjv.VOCAB_SIZE, 2)


LOADERS = {"listops": generated_listops, "kjv": kjv_task, "lra_listops": lra_listops, "lra_text": lra_text}


def load_task(cfg: TaskConfig) -> TaskData:
    return LOADERS[cfg.name](cfg)
