"""The protocol check every collection reports: an n-gram model must not tell two normal splits apart.

A 3-gram model over syscall names (the paper's n-gram baseline: counts, unseen n-grams get 1/|V|) is
fit on train; each request gets its perplexity; AUROC between valid_id and test_id must be near 0.5.
With sequential captures it was 0.72 on a 2-core VM, with alternating blocks 0.48
(trace_collection.md section 9). The novelties' AUROC against test_id is reported beside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.io import atomic_write_json
from shared.metrics import auroc
from shared.traces.dataset import MANIFEST, TraceDataset

log = logging.getLogger(__name__)

TOLERANCE = 0.1  # |AUROC - 0.5| allowed between two normal splits


@dataclass
class NgramModel:
    """Counts of n-grams and their (n-1)-gram contexts over integer tokens, with [START] padding."""

    order: int
    vocab: dict[str, int]
    keys: np.ndarray
    counts: np.ndarray
    ctx_keys: np.ndarray
    ctx_counts: np.ndarray

    @classmethod
    def fit(cls, sequences: list[np.ndarray], order: int = 3) -> NgramModel:
        vocab = {"[START]": 0, "[UNKNOWN]": 1}
        for seq in sequences:
            for name in np.unique(seq):
                vocab.setdefault(str(name), len(vocab))
        grams = np.concatenate([_grams(_encode(s, vocab), order, len(vocab)) for s in sequences])
        keys, counts = np.unique(grams, return_counts=True)
        ctx_keys, ctx_counts = np.unique(grams // len(vocab), return_counts=True)
        return cls(order, vocab, keys, counts, ctx_keys, ctx_counts)

    def log_probs(self, seq: np.ndarray) -> np.ndarray:
        v = len(self.vocab)
        grams = _grams(_encode(seq, self.vocab), self.order, v)
        ctx = grams // v
        n = _lookup(self.keys, self.counts, grams)
        d = _lookup(self.ctx_keys, self.ctx_counts, ctx)
        p = np.where(n > 0, n / np.maximum(d, 1), 1.0 / v)
        return np.log(p)

    def perplexity(self, seq: np.ndarray) -> float:
        return float(np.exp(-self.log_probs(seq).mean()))


def _encode(seq: np.ndarray, vocab: dict[str, int]) -> np.ndarray:
    return np.array([vocab.get(str(s), 1) for s in seq], dtype=np.int64)


def _grams(tokens: np.ndarray, n: int, v: int) -> np.ndarray:
    """Integer keys of the n-gram ending at each token (padded with [START]=0); key // v is its context."""
    padded = np.concatenate([np.zeros(n - 1, dtype=np.int64), tokens])
    length = len(padded) - n + 1
    key = np.zeros(length, dtype=np.int64)
    for k in range(n):
        key = key * v + padded[k : k + length]
    return key


def _lookup(keys: np.ndarray, counts: np.ndarray, query: np.ndarray) -> np.ndarray:
    if not len(keys):
        return np.zeros(len(query), dtype=np.int64)
    idx = np.clip(np.searchsorted(keys, query), 0, len(keys) - 1)
    return np.where(keys[idx] == query, counts[idx], 0)


def perplexities(model: NgramModel, ds: TraceDataset, split: str) -> np.ndarray:
    return np.array([model.perplexity(s["name"]) for s in ds.sequences(split, "global", ("name",))])


def sanity_check(root: Path, order: int = 3) -> dict:
    """Fit on train, score every split, write the result into the manifest and return it."""
    ds = TraceDataset(root)
    if not {"train", "valid_id", "test_id"} <= set(ds.splits):
        raise ValueError(f"{root}: the sanity check needs train, valid_id and test_id; has {ds.splits}")
    train = [s["name"] for s in ds.sequences("train", "global", ("name",))]
    model = NgramModel.fit(train, order)
    ppl = {split: perplexities(model, ds, split) for split in ds.splits if split != "train"}
    id_auroc = auroc(ppl["valid_id"], ppl["test_id"])
    novelty = {
        s.removeprefix("test_ood_"): auroc(ppl["test_id"], p) for s, p in ppl.items() if s.startswith("test_ood_")
    }
    result = {
        "ngram_order": order,
        "id_vs_id_auroc": round(id_auroc, 4),
        "tolerance": TOLERANCE,
        "passed": abs(id_auroc - 0.5) <= TOLERANCE,
        "novelty_test_auroc": {k: round(v, 4) for k, v in novelty.items()},
    }
    verdict = "passed" if result["passed"] else "FAILED"
    result["summary"] = (
        f"{order}-gram valid_id vs test_id AUROC {id_auroc:.3f} ({verdict}: within 0.5 ± {TOLERANCE}); "
        + ", ".join(f"{k} {v:.3f}" for k, v in novelty.items())
    )
    (log.info if result["passed"] else log.warning)("sanity: %s", result["summary"])
    ds.manifest["sanity"] = result
    atomic_write_json(Path(root) / MANIFEST, ds.manifest)
    return result
