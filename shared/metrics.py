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
