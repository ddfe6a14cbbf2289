"""Requests from a shared.traces dataset -> tokens (shared.traces.tokens), splits and padded batches."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from papers.syscall_novelty.config import DataConfig
from shared.traces import SAMPLE_DIR, TraceDataset, TraceError, load_dataset
from shared.traces.tokens import FIELDS, Vocab, encode

log = logging.getLogger(__name__)


class DataError(ValueError):
    """The dataset cannot support the experiment (missing splits, no training data)."""


@dataclass
class Split:
    """Encoded requests of one split: one int64 array (tokens, 7 fields) per request."""

    name: str
    tokens: list[np.ndarray]
    durations_ms: np.ndarray
    names: list[np.ndarray]  # the raw syscall names, for the n-gram baseline
    truncated: int
    # Per request, per event: the event's name n-gram never occurs in training (scores.UnseenNgrams).
    unseen: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.tokens)


def open_dataset(cfg: DataConfig) -> TraceDataset:
    if cfg.collect:
        from shared.traces.collect import CollectOptions, collect

        out = Path(cfg.path or "runs/traces/syscall_novelty")
        if not (out / "manifest.json").is_file():
            log.info("collecting a fresh dataset into %s (root and tracefs)", out)
            collect(CollectOptions(out=out, requests=cfg.collect_requests))
        return load_dataset(out)
    if cfg.format == "ctf":
        from shared.traces.ctf import convert_ctf

        if not cfg.path:
            raise DataError("data.format=ctf needs data.path (the folder of train, valid_id, ... CTF folders)")
        out = Path(cfg.path).with_suffix(".dataset")
        if not (out / "manifest.json").is_file():
            log.info("converting the CTF traces in %s to %s (once)", cfg.path, out)
            convert_ctf(cfg.path, out, skip=cfg.skip)
        return load_dataset(out)
    return load_dataset(cfg.path or SAMPLE_DIR)


def check_splits(ds: TraceDataset, novelties: list[str]) -> None:
    """Normal train / valid / test data and, per novelty, a valid and a test split, or one clear error."""
    need = ["train", "valid_id", "test_id"] + [f"{s}_ood_{n}" for n in novelties for s in ("valid", "test")]
    missing = [s for s in need if s not in ds.splits]
    if missing:
        raise DataError(f"{ds.root}: missing split(s) {missing}; the dataset has {ds.splits}")
    if ds.split("train").num_rows == 0:
        raise DataError(f"{ds.root}: the train split (normal requests) is empty")


def novelties_of(ds: TraceDataset) -> list[str]:
    return sorted({s.split("_ood_", 1)[1] for s in ds.splits if "_ood_" in s})


def _subsample(n: int, cap: int | None, seed: int) -> np.ndarray:
    if cap is None or n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def read_split(ds: TraceDataset, name: str, cap: int | None, mode: str = "global") -> tuple[list[dict], np.ndarray]:
    """The requests of one split cut in `mode`; the cap draws the same requests in every mode."""
    fields = ("name", "entry", "ts", "comm", "pid", "tid", "ret")
    seqs = list(ds.sequences(name, mode, fields))
    keep = _subsample(len(seqs), cap, seed=len(name))
    return [seqs[i] for i in keep], np.array([seqs[i]["duration_ns"] / 1e6 for i in keep])


def load_splits(cfg: DataConfig, ds: TraceDataset, mode: str = "global") -> tuple[Vocab, dict[str, Split], list[str]]:
    novelties = novelties_of(ds)
    check_splits(ds, novelties)
    raw = {"train": read_split(ds, "train", cfg.max_train, mode)}
    for name in ds.splits:
        if name != "train":
            raw[name] = read_split(ds, name, cfg.max_eval, mode)
    train = raw["train"][0]
    vocab = Vocab.build([s["name"] for s in train], [s["comm"] for s in train])
    splits = {}
    for name, (seqs, durations) in raw.items():
        encoded = [encode(s, vocab, cfg.max_tokens) for s in seqs]
        truncated = sum(t for _, t in encoded)
        splits[name] = Split(name, [e for e, _ in encoded], durations, [s["name"] for s in seqs], truncated)
        if truncated:
            log.info("%s (%s): %d of %d truncated to %d tokens", name, mode, truncated, len(seqs), cfg.max_tokens)
    return vocab, splits, novelties


def batches(split: Split, batch_size: int, shuffle: bool, seed: int = 0) -> list[np.ndarray]:
    """Index batches of similar length (less padding on CPU); batch order shuffled when training."""
    order = np.argsort([len(t) for t in split.tokens], kind="stable")
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle:
        rng = np.random.default_rng(seed)
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    return chunks


def collate(split: Split, idx: np.ndarray) -> dict[str, torch.Tensor]:
    """Pad to the longest request of the batch; x = tokens[:-1], y = call[1:] (0 = padding)."""
    seqs = [split.tokens[i] for i in idx]
    longest = max(len(s) for s in seqs)
    out = np.zeros((len(seqs), longest, len(FIELDS)), dtype=np.int64)
    for row, s in enumerate(seqs):
        out[row, : len(s)] = s
    t = torch.from_numpy(out)
    return {"x": t[:, :-1], "y": t[:, 1:, 0].clone()}


class BatchDataset(torch.utils.data.Dataset):
    """One item per batch of indices, so a DataLoader (and DDP's sampler) shards whole batches."""

    def __init__(self, split: Split, batch_size: int, shuffle: bool, seed: int = 0):
        self.split, self.batch_size, self.shuffle, self.seed = split, batch_size, shuffle, seed
        self.epoch = 0
        self.chunks = batches(split, batch_size, shuffle, seed)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.chunks = batches(self.split, self.batch_size, self.shuffle, self.seed + epoch)

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return collate(self.split, self.chunks[i])


__all__ = ["DataError", "Split", "TraceError", "Vocab", "encode", "load_splits", "open_dataset"]
