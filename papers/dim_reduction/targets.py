"""Our value for each paper.yaml target, computed from a run's per-seed curves.

A curve is {method: {d: {"accuracy", "k", "fit_s"}}} plus "baseline"; a measure returns one
number per seed, or None when the run did not cover what the target needs (verdict "not run").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.results import Target, judge_by_measures

Curve = dict[str, Any]
LOW_D = 5


def _acc(curve: Curve, method: str, d: int) -> float | None:
    point = curve.get(method, {}).get(d)
    return None if point is None else point["accuracy"]


def _at(method: str, d: int) -> Callable[[Curve, dict], float | None]:
    return lambda curve, ref: _acc(curve, method, d)


def _pca_max_abs_deviation(curve: Curve, ref: dict) -> float | None:
    paper = dict(zip(ref["dims"], ref["pca"]["accuracy"], strict=True))
    devs = [abs(p["accuracy"] - paper[d]) for d, p in curve.get("pca", {}).items() if d in paper]
    return max(devs) if devs else None


def _ae_minus_pca_low_d(method: str) -> Callable[[Curve, dict], float | None]:
    def measure(curve: Curve, ref: dict) -> float | None:
        dims = [d for d in curve.get(method, {}) if d <= LOW_D and d in curve.get("pca", {})]
        if not dims:
            return None
        return min(curve[method][d]["accuracy"] - curve["pca"][d]["accuracy"] for d in dims)

    return measure


def _gap_d39(curve: Curve, ref: dict) -> float | None:
    dae, pca = _acc(curve, "dae", 39), _acc(curve, "pca", 39)
    return None if dae is None or pca is None else dae - pca


def _fit_time_ratio(curve: Curve, ref: dict) -> float | None:
    ratios = []
    for method in ("dae", "vae"):
        for d, point in curve.get(method, {}).items():
            pca = curve.get("pca", {}).get(d)
            if pca is not None:
                ratios.append(point["fit_s"] / pca["fit_s"])
    return min(ratios) if ratios else None


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


def evaluate(specs: list[dict], curves: list[Curve], reference: dict) -> list[Target]:
    """One judged Target per spec: mean and population std over the seeds that measured it."""
    measures = {name: (lambda c, f=f: f(c, reference)) for name, f in MEASURES.items()}
    return judge_by_measures(specs, measures, curves)
