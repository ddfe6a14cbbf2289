"""The paper's n-gram baseline: counts of n-grams over syscall names (NLTK NgramCounter in the
paper's code), unseen n-grams get probability 1/|V|; a request's score is its perplexity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
        if not sequences:
            raise ValueError("NgramModel.fit: no training sequences")
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

    def accuracy(self, seq: np.ndarray) -> tuple[int, int]:
        """(correct, total) next-name predictions: the most frequent continuation of each context."""
        v = len(self.vocab)
        grams = _grams(_encode(seq, self.vocab), self.order, v)
        best = self._best_next()
        ctx = grams // v
        idx = np.clip(np.searchsorted(best[0], ctx), 0, max(len(best[0]) - 1, 0))
        predicted = np.where((len(best[0]) > 0) & (best[0][idx] == ctx), best[1][idx], -1)
        return int((predicted == grams % v).sum()), len(grams)

    def _best_next(self) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "_best"):
            v = len(self.vocab)
            ctx, tok = self.keys // v, self.keys % v
            order = np.lexsort((-self.counts, ctx))  # per context, the most frequent first
            first = np.r_[True, ctx[order][1:] != ctx[order][:-1]]
            self._best = (ctx[order][first], tok[order][first])
        return self._best


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
