"""Request scores from per-token surprisal: the paper's and the ones a practitioner would try next.

A language model (or n-gram) gives each predicted token a surprisal s_t = -log p(token_t | prefix), in
nats. The paper scores a request by its perplexity, exp(mean s_t): a handful of odd events among hundreds
of ordinary ones barely moves a mean. The extension scores look at the odd events directly:

  mean     the paper's: mean surprisal (its exp is the perplexity)
  max      the largest surprisal of the request
  topk     the mean of the k largest surprisals (all of them when the request has fewer than k)
  unseen   the summed surprisal of the request's unseen events: those whose name n-gram (ending at the
           event) never occurs in the training requests; 0 when every n-gram was seen
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.traces.tokens import START, Vocab

# The paper's score first; the other three are our extensions.
SCORES = ("mean", "max", "topk", "unseen")
SCORE_LABELS = {
    "mean": "mean loss (paper)",
    "max": "max surprisal",
    "topk": "top-k mean surprisal",
    "unseen": "unseen-n-gram surprisal",
}


def request_scores(surprisal: np.ndarray, unseen: np.ndarray, top_k: int) -> dict[str, float]:
    """The four scores of one request from its per-token surprisal and unseen flags (same length)."""
    s = np.asarray(surprisal, dtype=float)
    flags = np.asarray(unseen, dtype=bool)
    if s.ndim != 1 or s.shape != flags.shape or not len(s):
        raise ValueError(f"request_scores: surprisal {s.shape} and unseen {flags.shape} must be equal, non-empty 1-d")
    k = min(top_k, len(s))
    return {
        "mean": float(s.mean()),
        "max": float(s.max()),
        "topk": float(np.sort(s)[-k:].mean()),
        "unseen": float(s[flags].sum()),
    }


@dataclass
class UnseenNgrams:
    """The name n-grams of the training requests, to flag events whose n-gram training never showed."""

    order: int
    names: dict[str, int]
    keys: np.ndarray  # sorted unique integer keys of the training n-grams

    @classmethod
    def fit(cls, train_names: list[np.ndarray], vocab: Vocab, order: int) -> UnseenNgrams:
        if order < 1:
            raise ValueError(f"UnseenNgrams: order must be >= 1 (got {order})")
        model = cls(order, vocab.names, np.zeros(0, dtype=np.int64))
        grams = [model._keys(s) for s in train_names]
        model.keys = np.unique(np.concatenate(grams)) if grams else np.zeros(0, dtype=np.int64)
        return model

    def _keys(self, names: np.ndarray) -> np.ndarray:
        """The key of the n-gram ending at each event; the request's start is padded with [START]. Names
        not in the training vocabulary map to [UNKNOWN], which training never shows."""
        base = len(self.names) + 1
        ids = np.array([self.names.get(str(n), 1) for n in names], dtype=np.int64)
        padded = np.concatenate([np.full(self.order - 1, START, dtype=np.int64), ids])
        key = np.zeros(len(ids), dtype=np.int64)
        for k in range(self.order):
            key = key * base + padded[k : k + len(ids)]
        return key

    def flags(self, names: np.ndarray) -> np.ndarray:
        """True for each event whose n-gram never occurs in training."""
        return ~np.isin(self._keys(names), self.keys)
