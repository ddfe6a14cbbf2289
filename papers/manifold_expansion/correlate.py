"""The test of the claim: rank correlation between each metric and the gain, with confidence intervals.

A record is one (model family, seed, expansion): its gain and its metric values. Correlations are taken
across the expansions of one (family, seed) run (mean and std over runs: the seed interval), and pooled over
all points of a family with a percentile bootstrap interval. The manifold metrics keep the sign of the claim.
"The best baseline" has two readings (`best_fixed`, `best_per_run`): one baseline and sign chosen once for all
runs (what a user could pick in advance; the targets compare this one), and the largest |rho| of any baseline
in each run separately (a different baseline and sign per run: biased upward, the targets' old definition).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass
class Record:
    family: str
    seed: int
    expansion: str
    kind: str
    gain: float
    metrics: dict[str, float]


def rank_correlations(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(Spearman rho, Kendall tau-b); 0.0 where one side is constant (no ranking information)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) != len(y):
        raise ValueError(f"rank_correlations: lengths differ ({len(x)} vs {len(y)})")
    if len(x) < 3:
        raise ValueError(f"rank_correlations: need at least 3 points, got {len(x)}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = stats.spearmanr(x, y).statistic
        tau = stats.kendalltau(x, y).statistic
    return float(np.nan_to_num(rho)), float(np.nan_to_num(tau))


def bootstrap_ci(x: np.ndarray, y: np.ndarray, n: int, ci: float, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile intervals of Spearman and Kendall over `n` resamples of the points."""
    rng = np.random.default_rng(seed)
    x, y = np.asarray(x, float), np.asarray(y, float)
    draws = {"spearman": [], "kendall": []}
    for _ in range(n):
        idx = rng.integers(0, len(x), len(x))
        rho, tau = rank_correlations(x[idx], y[idx])
        draws["spearman"].append(rho)
        draws["kendall"].append(tau)
    lo, hi = (1 - ci) / 2 * 100, (1 + ci) / 2 * 100
    return {k: (float(np.percentile(v, lo)), float(np.percentile(v, hi))) for k, v in draws.items()}


def group_runs(records: list[Record]) -> dict[tuple[str, int], list[Record]]:
    runs: dict[tuple[str, int], list[Record]] = defaultdict(list)
    for r in records:
        runs[(r.family, r.seed)].append(r)
    return dict(runs)


def per_run(records: list[Record], metric: str) -> list[tuple[float, float]]:
    """(Spearman, Kendall) of `metric` vs gain within each (family, seed) run."""
    out = []
    for _, rs in sorted(group_runs(records).items()):
        out.append(rank_correlations([r.metrics[metric] for r in rs], [r.gain for r in rs]))
    return out


def pair_accuracy(records: list[Record], metric: str, pairs: list[tuple[str, str]], sign: float = 1.0) -> list[float]:
    """For each equal-parameter (deeper, wider) pair in each run: 1 when sign * metric orders the two as the
    gain does, 0 when it does not, 0.5 on a tie of the metric."""
    out = []
    for _, rs in sorted(group_runs(records).items()):
        by_name = {r.expansion: r for r in rs}
        for a, b in pairs:
            if a in by_name and b in by_name:
                dm = sign * (by_name[a].metrics[metric] - by_name[b].metrics[metric])
                dg = by_name[a].gain - by_name[b].gain
                out.append(0.5 if dm == 0 else float(np.sign(dm) == np.sign(dg)))
    return out


@dataclass
class MetricSummary:
    metric: str
    sign: float
    spearman: list[float]  # per run, as read: signed (oriented) or |rho| (baselines)
    kendall: list[float]
    rho: list[float]  # per run, signed
    tau: list[float]
    pooled: dict[str, dict[str, float | tuple[float, float]]]  # family -> spearman, kendall, their CIs
    pairs: list[float]


def summarise(
    records: list[Record], metric: str, pairs: list[tuple[str, str]], oriented: bool, n_boot: int, ci: float
) -> MetricSummary:
    """All the numbers of one metric. oriented=True keeps the sign (the manifold metrics' claimed direction);
    False takes the baseline's better sign (|rho| per run, and its mean sign for the pairs)."""
    runs = per_run(records, metric)
    rho = [r for r, _ in runs]
    sign = 1.0 if oriented or np.mean(rho) >= 0 else -1.0
    spearman = rho if oriented else [abs(v) for v in rho]
    kendall = [t for _, t in runs] if oriented else [abs(t) for _, t in runs]
    pooled = {}
    for family in sorted({r.family for r in records}):
        rs = [r for r in records if r.family == family]
        x = np.array([sign * r.metrics[metric] for r in rs])
        y = np.array([r.gain for r in rs])
        s, k = rank_correlations(x, y)
        boot = bootstrap_ci(x, y, n_boot, ci)
        pooled[family] = {"spearman": s, "kendall": k, "spearman_ci": boot["spearman"], "kendall_ci": boot["kendall"]}
    signed_tau = [t for _, t in runs]
    return MetricSummary(
        metric, sign, spearman, kendall, rho, signed_tau, pooled, pair_accuracy(records, metric, pairs, sign)
    )


@dataclass
class Best:
    """One baseline read with one sign in every run: its per-run values (sign applied)."""

    metric: str
    sign: float
    values: list[float]


def best_fixed(per_run: dict[str, list[float]]) -> Best:
    """The baseline and sign with the largest mean over runs of sign * value, chosen once for all runs
    (per_run: baseline -> signed per-run correlations). Ties go to the first baseline."""
    if not per_run:
        raise ValueError("best_fixed: no baselines")
    best: Best | None = None
    for metric, values in per_run.items():
        sign = 1.0 if np.mean(values) >= 0 else -1.0
        if best is None or sign * np.mean(values) > np.mean(best.values):
            best = Best(metric, sign, [sign * v for v in values])
    assert best is not None
    return best


def best_per_run(per_run: dict[str, list[float]]) -> list[float]:
    """The largest |value| of any baseline in each run (its baseline and sign may differ from run to run)."""
    return [float(v) for v in np.max(np.abs(np.array(list(per_run.values()), dtype=float)), axis=0)]
