"""Metrics shared by several papers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

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


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of independent runs (seeds): mean ± t_{n-1} · s / √n, s with ddof=1.
    Needs two values; all-equal values give a zero-width interval."""
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    if arr.size < 2:
        raise ValueError(f"t_interval: needs at least 2 values, got {arr.size}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"t_interval: level={level}; valid: 0 < level < 1")
    half = float(stats.t.ppf(0.5 + level / 2.0, arr.size - 1) * arr.std(ddof=1) / np.sqrt(arr.size))
    mean = float(arr.mean())
    return mean - half, mean + half


def bootstrap_ci(
    statistic: Callable[..., float],
    *samples: Sequence[float] | np.ndarray,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(*samples)`, resampling items with replacement. The same
    indices are drawn for every sample, so paired data (two models scored on the same test items) keep their
    pairing: pass the per-item scores and a statistic such as `lambda a, b: a.mean() - b.mean()`.
    Widened, if needed, to contain the statistic of the original samples (a percentile interval can miss
    it for skewed statistics)."""
    arrays = [np.asarray(s) for s in samples]
    if not arrays:
        raise ValueError("bootstrap_ci: no samples")
    n = len(arrays[0])
    if n < 2 or any(len(a) != n for a in arrays):
        raise ValueError(f"bootstrap_ci: samples need equal lengths >= 2, got {[len(a) for a in arrays]}")
    key = ("items", n)
    found = item_bootstrap_intervals(
        [key],
        lambda draw: {"statistic": statistic(*(a[draw[key]] for a in arrays))},
        {"statistic": float(statistic(*arrays))},
        n_boot,
        level,
        seed,
    )
    if "statistic" not in found:
        raise ValueError("bootstrap_ci: the statistic is not finite on most resamples")
    return found["statistic"]


def finite_means(measures: Mapping[str, Callable[[Any], float | None]], runs: Sequence[Any]) -> dict[str, float | None]:
    """Each measure's mean over the runs (seeds) where it is finite; None where it is nowhere (the statistic
    an interval over seeds is drawn for)."""
    out: dict[str, float | None] = {}
    for name, fn in measures.items():
        values = [v for v in (fn(r) for r in runs) if v is not None and np.isfinite(v)]
        out[name] = float(np.mean(values)) if values else None
    return out


ItemDraw = dict[tuple[str, int], np.ndarray]  # (item set, its size) -> the indices drawn with replacement


def item_bootstrap_intervals(
    item_sets: Sequence[tuple[str, int]],
    statistics: Callable[[ItemDraw], Mapping[str, float | None]],
    points: Mapping[str, float],
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of several statistics computed from several evaluation sets at once.

    Every replicate draws, for each (set, size) in `item_sets` (in that order), `size` indices with
    replacement and calls `statistics(draw)`, which recomputes each named statistic on those items: models
    scored on the same set read the same drawn items, so every difference between them stays paired, and a
    statistic that combines sets (a ratio of a domain accuracy to a safety, a curve read at another model's
    accuracy) is recomputed whole. Each interval is widened, if needed, to hold its point value in `points`.
    A statistic that is None or not finite on most replicates, or has no point value, gets no interval."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"item_bootstrap_intervals: level={level}; valid: 0 < level < 1")
    if n_boot < 100:
        raise ValueError(f"item_bootstrap_intervals: n_boot={n_boot}; valid: >= 100")
    bad = [(name, n) for name, n in item_sets if n < 1]
    if bad:
        raise ValueError(f"item_bootstrap_intervals: empty item sets {bad}; valid: sizes >= 1")
    rng = np.random.default_rng(seed)
    columns: dict[str, list[float]] = {name: [] for name in points}
    for _ in range(n_boot):
        draw = {key: rng.integers(0, key[1], size=key[1]) for key in item_sets}
        for name, value in statistics(draw).items():
            if name in columns and value is not None and np.isfinite(value):
                columns[name].append(float(value))
    out = {}
    for name, values in columns.items():
        if len(values) < n_boot // 2:
            continue
        lo, hi = np.quantile(values, [0.5 - level / 2.0, 0.5 + level / 2.0])
        point = float(points[name])
        out[name] = (float(min(lo, point)), float(max(hi, point)))
    return out
