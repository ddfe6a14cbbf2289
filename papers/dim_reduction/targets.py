"""Our value for each paper.yaml target, and its 95% interval, computed from a run's per-seed curves.

A curve is {method: {d: unit}} plus "baseline", a unit holding "accuracy", "k", "fit_s" and, from runs
since issue 22, "correct" (each test item classified right or wrong) and, for PCA, "fit_s_repeats".
A measure returns one number per seed, or None when the run did not cover what the target needs
(verdict "not run").

Intervals (shared.results turns an interval that holds both passing and failing values into
"not resolvable"):
- two or more seeds: Student t over the seeds (shared.metrics.t_interval), for every target;
- one seed, a difference between two methods (AE - PCA): a paired bootstrap over the test items, the
  same resampled items for both methods and every d (shared.metrics.bootstrap_ci). The k chosen by
  cross-validation is kept; the seed-to-seed spread of the AEs is not in it (one seed);
- one seed, our accuracy against the paper's: both are measured on the same 10,000 test images, so
  resampling them does not apply. What separates one run from the paper's mean of 5 is the run-to-run
  spread, which one seed cannot measure: the paper's own std over its 5 runs at that point stands in
  for it, ours ± t(4 df) * std. Labelled as such in the README;
- one seed, the fit-time ratio: the spread of the repeated PCA fits (bootstrap of their median); the AE
  fit is one long measurement and enters as it is;
- the raw-pixel baseline has no std in the paper (one number) and gets no interval from one seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats

from shared.metrics import bootstrap_ci, t_interval
from shared.results import Target, judged_target

Curve = dict[str, Any]
Interval = tuple[float, float]
LOW_D = 5
AES = ("dae", "vae")
PAPER_RUNS = 5  # the paper's repetitions behind each mean and std
N_BOOT = 2000


def _acc(curve: Curve, method: str, d: int) -> float | None:
    point = curve.get(method, {}).get(d)
    return None if point is None else point["accuracy"]


def _at(method: str, d: int) -> Callable[[Curve, dict], float | None]:
    return lambda curve, ref: _acc(curve, method, d)


def _pca_max_abs_deviation(curve: Curve, ref: dict) -> float | None:
    paper = dict(zip(ref["dims"], ref["pca"]["accuracy"], strict=True))
    devs = [abs(p["accuracy"] - paper[d]) for d, p in curve.get("pca", {}).items() if d in paper]
    return max(devs) if devs else None


def _low_dims(curve: Curve, method: str) -> list[int]:
    return sorted(d for d in curve.get(method, {}) if d <= LOW_D and d in curve.get("pca", {}))


def _ae_minus_pca_low_d(method: str) -> Callable[[Curve, dict], float | None]:
    def measure(curve: Curve, ref: dict) -> float | None:
        dims = _low_dims(curve, method)
        if not dims:
            return None
        return min(curve[method][d]["accuracy"] - curve["pca"][d]["accuracy"] for d in dims)

    return measure


def _gap_d39(curve: Curve, ref: dict) -> float | None:
    dae, pca = _acc(curve, "dae", 39), _acc(curve, "pca", 39)
    return None if dae is None or pca is None else dae - pca


def fit_time_pairs(curve: Curve) -> list[tuple[str, int]]:
    """The (AE, d) whose fit time the ratio compares with PCA's at the same d: each AE's fits at its
    largest epoch cap. The paper trains every fit to early stopping; a fit capped at a few epochs is a
    fraction of one, so the ratio is taken where training comes closest to the paper's. At full scale
    every d has the same cap (9,999) and this is every d, the paper's min over d."""
    pairs = []
    for m in AES:
        units = {d: u for d, u in curve.get(m, {}).items() if d in curve.get("pca", {})}
        if not units:
            continue
        top = max(u.get("epoch_cap", 0) for u in units.values())  # units from before caps were recorded: all
        pairs += [(m, d) for d, u in sorted(units.items()) if u.get("epoch_cap", 0) == top]
    return pairs


def _fit_time_ratio(curve: Curve, ref: dict) -> float | None:
    pairs = fit_time_pairs(curve)
    if not pairs:
        return None
    return min(curve[m][d]["fit_s"] / curve["pca"][d]["fit_s"] for m, d in pairs)


MEASURES: dict[str, Callable[[Curve, dict], float | None]] = {
    "raw_knn_baseline": lambda curve, ref: curve.get("baseline"),
    "pca_max_abs_deviation": _pca_max_abs_deviation,
    "pca_acc_d39": _at("pca", 39),
    "isomap_acc_d39": _at("isomap", 39),
    "dae_minus_pca_low_d": _ae_minus_pca_low_d("dae"),
    "vae_minus_pca_low_d": _ae_minus_pca_low_d("vae"),
    "dae_acc_d5": _at("dae", 5),
    "vae_acc_d5": _at("vae", 5),
    "dae_minus_pca_d39": _gap_d39,
    "ae_over_pca_fit_time": _fit_time_ratio,
}


# --- one-seed intervals -------------------------------------------------------------------------------


def _items(curve: Curve, method: str, dims: list[int]) -> np.ndarray | None:
    """(n_test, len(dims)) right/wrong per test item, or None when a unit predates per-item records."""
    cols = [curve[method][d].get("correct") for d in dims]
    if any(c is None for c in cols):
        return None
    return np.column_stack([np.asarray(c, dtype=float) for c in cols])


def _paired_bootstrap(curve: Curve, method: str, dims: list[int]) -> Interval | None:
    """Interval of min over dims of (method - PCA) accuracy, resampling test items for both at once."""
    ours, pca = _items(curve, method, dims), _items(curve, "pca", dims)
    if ours is None or pca is None:
        return None
    return bootstrap_ci(lambda a, b: float((a.mean(0) - b.mean(0)).min()), ours, pca, n_boot=N_BOOT)


def _low_d_interval(method: str) -> Callable[[Curve, dict], Interval | None]:
    return lambda curve, ref: _paired_bootstrap(curve, method, _low_dims(curve, method))


def _gap_d39_interval(curve: Curve, ref: dict) -> Interval | None:
    return _paired_bootstrap(curve, "dae", [39])


def paper_spread(ref: dict, method: str, d: int) -> float | None:
    """Half-width standing in for one run's spread: t(0.975, 4 df) times the paper's std over its 5 runs."""
    std = ref.get(method, {}).get("accuracy_std")
    if std is None or d not in ref["dims"]:
        return None
    return float(stats.t.ppf(0.975, PAPER_RUNS - 1) * std[ref["dims"].index(d)])


def _point_interval(method: str, d: int) -> Callable[[Curve, dict], Interval | None]:
    def interval(curve: Curve, ref: dict) -> Interval | None:
        value, half = _acc(curve, method, d), paper_spread(ref, method, d)
        return None if value is None or half is None else (value - half, value + half)

    return interval


def _pca_deviation_interval(curve: Curve, ref: dict) -> Interval | None:
    """Each |ours - paper| at d moved by the paper's spread at d (never below 0); the max over d of the
    lower and of the upper ends."""
    paper = dict(zip(ref["dims"], ref["pca"]["accuracy"], strict=True))
    lows, highs = [], []
    for d, p in curve.get("pca", {}).items():
        half = paper_spread(ref, "pca", d)
        if d not in paper or half is None:
            return None
        dev = abs(p["accuracy"] - paper[d])
        lows.append(max(0.0, dev - half))
        highs.append(dev + half)
    return (max(lows), max(highs)) if lows else None


def _fit_time_interval(curve: Curve, ref: dict) -> Interval | None:
    """The ratio with PCA's fit time at each end of the bootstrap interval of the median of its repeats."""
    lows, highs = [], []
    for m, d in fit_time_pairs(curve):
        times = curve["pca"][d].get("fit_s_repeats")
        if times is None or np.size(times) < 2:
            return None
        lo, hi = bootstrap_ci(lambda t: float(np.median(t)), np.asarray(times), n_boot=N_BOOT)
        ae = curve[m][d]["fit_s"]
        lows.append(ae / hi)
        highs.append(ae / lo)
    return (min(lows), min(highs)) if lows else None


ONE_SEED_INTERVALS: dict[str, Callable[[Curve, dict], Interval | None]] = {
    "pca_max_abs_deviation": _pca_deviation_interval,
    "pca_acc_d39": _point_interval("pca", 39),
    "isomap_acc_d39": _point_interval("isomap", 39),
    "dae_minus_pca_low_d": _low_d_interval("dae"),
    "vae_minus_pca_low_d": _low_d_interval("vae"),
    "dae_acc_d5": _point_interval("dae", 5),
    "vae_acc_d5": _point_interval("vae", 5),
    "dae_minus_pca_d39": _gap_d39_interval,
    "ae_over_pca_fit_time": _fit_time_interval,
}


def evaluate(specs: list[dict], curves: list[Curve], reference: dict) -> list[Target]:
    """One judged Target per spec: mean and population std over the seeds that measured it, and the
    95% interval of that mean as the module docstring says."""
    out = []
    for spec in specs:
        name = spec["name"]
        if name not in MEASURES:
            raise KeyError(f"paper.yaml target {name!r} has no measure; known: {', '.join(MEASURES)}")
        measured = [(c, v) for c in curves if (v := MEASURES[name](c, reference)) is not None]
        values = [v for _, v in measured]
        ci: Interval | None = None
        if len(values) >= 2:
            ci = t_interval(values)
        elif len(values) == 1 and name in ONE_SEED_INTERVALS:
            ci = ONE_SEED_INTERVALS[name](measured[0][0], reference)
        out.append(judged_target(spec, values, ci))
    return out
