"""Fixed windows of consecutive syscall events, as the paper's logged runs (`requests: False`): the
normal blocks' syscall stream cut into windows of `window` events. Train windows come from the train
blocks, validation and test windows from the valid_id and test_id blocks (the paper split its test
set at random 75/25 into validation and test).

Each window is an int64 array (window, 7): call, entry (1/2), ret (0 entry, 1 success, 2 failure),
time in microseconds since the window's first event, proc, pid, tid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from papers.syscall_args.config import DataConfig
from shared.traces import SAMPLE_DIR, TraceDataset, load_dataset
from shared.traces.events import equals
from shared.traces.tokens import Vocab, token_fields

SPLITS = ("train", "valid_id", "test_id")
COLUMNS = ("call", "entry", "ret", "time", "proc", "pid", "tid")


class DataError(ValueError):
    """The dataset cannot supply the windows this experiment needs."""


@dataclass
class Windows:
    name: str
    x: np.ndarray  # (n, window, 7) int64
    names: list[np.ndarray]  # raw syscall names per window, for the n-grams


def _block_streams(ds: TraceDataset, split: str, behaviours: list[str]) -> list[dict]:
    blocks = [b for b in ds.manifest["blocks"] if b["split"] == split and b["behaviour"] in behaviours]
    streams = []
    for b in blocks:
        ev = ds.events(b["id"])
        ev = ev.filter(equals(ev.column("kind"), "syscall"))
        streams.append(
            {
                "name": np.asarray(pc.cast(ev.column("name"), "string").to_numpy(zero_copy_only=False)),
                "comm": np.asarray(pc.cast(ev.column("comm"), "string").to_numpy(zero_copy_only=False)),
                "entry": ev.column("entry").to_numpy(),
                "ts": ev.column("ts").to_numpy(),
                "pid": ev.column("pid").to_numpy(),
                "tid": ev.column("tid").to_numpy(),
                "ret": ev.column("ret").to_numpy(zero_copy_only=False),
            }
        )
    return streams


def _cut(stream: dict, vocab: Vocab, window: int) -> tuple[np.ndarray, list[np.ndarray]]:
    n = len(stream["name"]) // window
    if n == 0:
        return np.zeros((0, window, len(COLUMNS)), dtype=np.int64), []
    f = token_fields({k: v[: n * window] for k, v in stream.items()}, vocab)
    ts = stream["ts"][: n * window].astype(np.int64).reshape(n, window)
    time_us = (ts - ts[:, :1]) // 1000
    cols = [f["call"], f["entry"], f["ret"], time_us.ravel(), f["proc"], f["pid"], f["tid"]]
    x = np.stack([c.reshape(n, window) for c in cols], axis=-1)
    names = list(stream["name"][: n * window].reshape(n, window))
    return x, names


def open_dataset(cfg: DataConfig) -> TraceDataset:
    """data.path, or the shipped sample when it is null (the mini and smoke configs' choice)."""
    return load_dataset(cfg.path or SAMPLE_DIR)


def load_windows(
    cfg: DataConfig, seed: int = 0, ds: TraceDataset | None = None
) -> tuple[Vocab, dict[str, Windows], TraceDataset]:
    ds = ds if ds is not None else open_dataset(cfg)
    missing = [s for s in SPLITS if s not in ds.splits]
    if missing:
        raise DataError(f"{ds.root}: missing split(s) {missing}; the dataset has {ds.splits}")
    streams = {s: _block_streams(ds, s, cfg.behaviours) for s in SPLITS}
    if not streams["train"]:
        raise DataError(f"{ds.root}: no train blocks of behaviours {cfg.behaviours}")
    vocab = Vocab.build([s["name"] for s in streams["train"]], [s["comm"] for s in streams["train"]])
    out = {}
    for split, parts in streams.items():
        cut = [_cut(p, vocab, cfg.window) for p in parts]
        x = np.concatenate([c[0] for c in cut])
        names = [n for c in cut for n in c[1]]
        cap = cfg.max_train if split == "train" else cfg.max_eval
        if cap is not None and len(x) > cap:
            keep = np.sort(np.random.default_rng(seed).choice(len(x), cap, replace=False))
            x, names = x[keep], [names[i] for i in keep]
        if len(x) == 0:
            raise DataError(f"{ds.root}: split {split} has fewer than {cfg.window} syscall events")
        out[split] = Windows(split, x, names)
    return vocab, out, ds
