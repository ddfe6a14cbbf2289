"""Metrics shared by several papers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of equal labels; the arrays must have the same length."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"accuracy: shapes differ, {y_true.shape} vs {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("accuracy: no samples")
    return float(np.mean(y_true == y_pred))


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, population std (numpy's default, as the papers report) and count."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError("mean_std: no values")
    return float(arr.mean()), float(arr.std()), int(arr.size)


def auroc(negatives: Sequence[float], positives: Sequence[float]) -> float:
    """Area under the ROC curve for 'positives score higher': the Mann-Whitney U statistic over
    n_neg * n_pos, ties counted as one half (average ranks)."""
    neg, pos = np.asarray(negatives, dtype=float), np.asarray(positives, dtype=float)
    if neg.size == 0 or pos.size == 0:
        raise ValueError(f"auroc: needs both classes (got {neg.size} negatives, {pos.size} positives)")
    scores = np.concatenate([neg, pos])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, dtype=float)
    sorted_scores = scores[order]
    # average rank of each run of ties
    starts = np.r_[0, np.nonzero(np.diff(sorted_scores))[0] + 1]
    ends = np.r_[starts[1:], scores.size]
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[neg.size :].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (neg.size * pos.size))
