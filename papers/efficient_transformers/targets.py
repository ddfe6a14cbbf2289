"""Our value for each paper.yaml target, computed from one run's summary.

A summary is {"efficiency": attention sweep, "quality": {task: {variant: {seed: accuracy}}}}; a
measure returns a number, or None when the run did not cover what the target needs ("not run").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from papers.efficient_transformers.attention import FAMILIES
from shared.results import Target

Summary = dict


def ok_records(summary: Summary) -> list[dict]:
    return [r for r in summary.get("efficiency", {}).get("records", []) if r.get("status") == "ok"]


def longest_common_length(summary: Summary, variants: list[str]) -> int | None:
    """The longest length at which every given variant has a measurement."""
    recs = ok_records(summary)
    common = None
    for v in variants:
        lengths = {r["n"] for r in recs if r["variant"] == v}
        common = lengths if common is None else common & lengths
    return max(common) if common else None


def value_at(summary: Summary, variant: str, n: int, key: str) -> float | None:
    for r in ok_records(summary):
        if r["variant"] == variant and r["n"] == n:
            return r[key]
    return None


def measured_variants(summary: Summary) -> list[str]:
    return sorted({r["variant"] for r in ok_records(summary)})


def _ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is 0 (a memory below the measurement's resolution)."""
    return None if a is None or not b else a / b


def lra_models(summary: Summary) -> list[str]:
    """The variants LRA compared: vanilla (naive) attention and the approximations; the fused SDPA
    kernels came later and are set against the approximations by the crossover instead."""
    return [v for v in measured_variants(summary) if not v.startswith("sdpa")]


def _family_ratio(summary: Summary, family: str, key: str) -> float | None:
    """min over `family` of key / min over LRA's other models, at the longest length they all share."""
    variants = lra_models(summary)
    ours = [v for v in variants if FAMILIES[v] == family]
    others = [v for v in variants if FAMILIES[v] != family]
    if not ours or not others:
        return None
    n = longest_common_length(summary, variants)
    if n is None:
        return None
    return _ratio(min(value_at(summary, v, n, key) for v in ours), min(value_at(summary, v, n, key) for v in others))


def _pair_ratio(a: str, b: str, key: str) -> Callable[[Summary], float | None]:
    def measure(summary: Summary) -> float | None:
        n = longest_common_length(summary, [a, b])
        return None if n is None else _ratio(value_at(summary, a, n, key), value_at(summary, b, n, key))

    return measure


def fused_reference(summary: Summary) -> str:
    return summary.get("fused_reference", "sdpa_flash")


def _fused_memory_growth(summary: Summary) -> float | None:
    ref = fused_reference(summary)
    lengths = sorted(r["n"] for r in ok_records(summary) if r["variant"] == ref)
    if len(lengths) < 2 or lengths[-1] != 2 * lengths[-2]:
        return None
    return _ratio(value_at(summary, ref, lengths[-1], "peak_mb"), value_at(summary, ref, lengths[-2], "peak_mb"))


def crossover(summary: Summary, variant: str) -> int | None:
    """The shortest length from which `variant` is faster (forward+backward) than exact fused
    attention at that and every longer measured length; None when it never is."""
    ref = fused_reference(summary)
    lengths = sorted({r["n"] for r in ok_records(summary) if r["variant"] in (variant, ref)})
    best = None
    for n in reversed(lengths):
        mine, theirs = value_at(summary, variant, n, "fwdbwd_ms"), value_at(summary, ref, n, "fwdbwd_ms")
        if theirs is None:  # the fused path failed (OOM) here: any approximation that ran wins
            if mine is None:
                break
            best = n
            continue
        if mine is None or mine >= theirs:
            break
        best = n
    return best


def _gpu_crossover(summary: Summary) -> float | None:
    """Shortest crossover of any approximation, on a GPU only (the claim is about GPUs)."""
    if not str(summary.get("efficiency", {}).get("device", "cpu")).startswith("cuda"):
        return None
    found = [crossover(summary, v) for v in measured_variants(summary) if FAMILIES[v] != "exact"]
    found = [c for c in found if c is not None]
    return float(min(found)) if found else None


def mean_accuracy(summary: Summary, variant: str) -> float | None:
    """Mean test accuracy in points over the tasks (and seeds) `variant` was trained on."""
    per_task = []
    for task in summary.get("quality", {}).values():
        if variant in task and task[variant]:
            per_task.append(100 * float(np.mean(list(task[variant].values()))))
    return float(np.mean(per_task)) if per_task else None


def trained_variants(summary: Summary) -> list[str]:
    return sorted({v for task in summary.get("quality", {}).values() for v in task})


def _sparse_margin(summary: Summary) -> float | None:
    acc = {v: mean_accuracy(summary, v) for v in trained_variants(summary)}
    sparse = [a for v, a in acc.items() if FAMILIES[v] == "sparse" and a is not None]
    other = [a for v, a in acc.items() if FAMILIES[v] not in ("sparse", "exact") and a is not None]
    return max(sparse) - max(other) if sparse and other else None


def _acc_gap(a: str, b: str, task: str | None = None) -> Callable[[Summary], float | None]:
    def measure(summary: Summary) -> float | None:
        if task is None:
            x, y = mean_accuracy(summary, a), mean_accuracy(summary, b)
        else:
            t = summary.get("quality", {}).get(task, {})
            if a not in t or b not in t:
                return None
            x, y = (100 * float(np.mean(list(t[v].values()))) for v in (a, b))
        return None if x is None or y is None else x - y

    return measure


MEASURES: dict[str, Callable[[Summary], float | None]] = {
    "sparse_best_quality": _sparse_margin,
    "bigbird_beats_transformer": _acc_gap("bigbird", "sdpa"),
    "local_weak_on_listops": _acc_gap("sdpa", "local", "listops"),
    "kernel_fastest": lambda s: _family_ratio(s, "kernel", "fwdbwd_ms"),
    "lowrank_lightest": lambda s: _family_ratio(s, "low-rank", "peak_mb"),
    "reformer_slower_than_transformer": _pair_ratio("reformer", "naive", "fwdbwd_ms"),
    "fused_beats_pytorch_attention": lambda s: _pair_ratio("naive", fused_reference(s), "fwdbwd_ms")(s),
    "fused_memory_linear": _fused_memory_growth,
    "gpu_crossover_length": _gpu_crossover,
}


def evaluate(specs: list[dict], summary: Summary) -> list[Target]:
    out = []
    for spec in specs:
        if spec["name"] not in MEASURES:
            raise KeyError(f"paper.yaml target {spec['name']!r} has no measure; known: {', '.join(MEASURES)}")
        value = MEASURES[spec["name"]](summary)
        target = Target(**spec)
        if value is not None:
            target.mean, target.n = float(value), len(summary.get("seeds", [0]))
        out.append(target.judge())
    return out
