"""Our value for each paper.yaml target, computed from one run's summary, with its 95% interval.

A summary is {"efficiency": attention sweep, "step": whole-model step sweep, "quality": {task: {variant:
{seed: accuracy}}}, "quality_items": the same with each test item's 0/1 correctness}. A measure returns a
number, or None when the run did not cover what the target needs ("not run"); INTERVALS gives the 95%
interval of the same number where the run holds its raw data:
- accuracy differences: percentile bootstrap over test items (shared.metrics.bootstrap_ci), paired (every
  model is scored on the same resampled items; the tasks' items are pooled and each resample is split by
  task again), each item's score averaged over the seeds;
- time ratios: the same bootstrap over the interleaved timing rounds (a round times every variant once,
  so resampling rounds keeps the pairing of variants measured under the same machine load).
An interval that holds the threshold makes the verdict "not resolvable" (shared.results).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from papers.efficient_transformers.attention import FAMILIES
from shared.metrics import bootstrap_ci
from shared.results import Target, judged_target

Summary = dict
Interval = tuple[float, float]
N_BOOT = 2000


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


def _all_at(summary: Summary, variant: str, n: int, key: str = "fwdbwd_all_ms") -> np.ndarray | None:
    for r in ok_records(summary):
        if r["variant"] == variant and r["n"] == n and r.get(key):
            return np.asarray(r[key], dtype=float)
    return None


def _rounds_interval(statistic: Callable[..., float], samples: list[np.ndarray | None]) -> Interval | None:
    """Bootstrap interval of statistic(*per-round times) over the timing rounds, or None without them."""
    if any(x is None for x in samples) or len({len(x) for x in samples}) != 1 or len(samples[0]) < 2:  # type: ignore[arg-type]
        return None
    return bootstrap_ci(statistic, *samples, n_boot=N_BOOT)  # type: ignore[arg-type]


def _median_ratio(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.median(a) / np.median(b))


def _pair_ratio_interval(a: str, b: str) -> Callable[[Summary], Interval | None]:
    def interval(summary: Summary) -> Interval | None:
        n = longest_common_length(summary, [a, b])
        return None if n is None else _rounds_interval(_median_ratio, [_all_at(summary, a, n), _all_at(summary, b, n)])

    return interval


def _kernel_fastest_interval(summary: Summary) -> Interval | None:
    variants = lra_models(summary)
    ours = [v for v in variants if FAMILIES[v] == "kernel"]
    others = [v for v in variants if FAMILIES[v] != "kernel"]
    n = longest_common_length(summary, variants)
    if not ours or not others or n is None:
        return None

    def statistic(*times: np.ndarray) -> float:
        med = [float(np.median(t)) for t in times]
        return min(med[: len(ours)]) / min(med[len(ours) :])

    return _rounds_interval(statistic, [_all_at(summary, v, n) for v in ours + others])


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


Accuracies = dict[tuple[str, str], float]  # (task, variant) -> accuracy in points


def accuracies(summary: Summary) -> Accuracies:
    """Each (task, variant)'s test accuracy in points, averaged over its seeds."""
    return {
        (t, v): 100 * float(np.mean(list(per_seed.values())))
        for t, by_variant in summary.get("quality", {}).items()
        for v, per_seed in by_variant.items()
        if per_seed
    }


def _sparse_margin(acc: Accuracies) -> float | None:
    """Best sparse variant's mean accuracy over its tasks minus the best kernel / low-rank / LSH one's."""
    tasks_of: dict[str, list[float]] = {}
    for (_, v), a in acc.items():
        tasks_of.setdefault(v, []).append(a)
    mean = {v: float(np.mean(a)) for v, a in tasks_of.items()}
    sparse = [m for v, m in mean.items() if FAMILIES[v] == "sparse"]
    other = [m for v, m in mean.items() if FAMILIES[v] not in ("sparse", "exact")]
    return max(sparse) - max(other) if sparse and other else None


def acc_gap(a: str, b: str, task: str | None = None) -> Callable[[Accuracies], float | None]:
    """a's accuracy minus b's on `task`, or their mean accuracies' difference over the tasks each ran."""

    def stat(acc: Accuracies) -> float | None:
        if task is not None:
            x, y = acc.get((task, a)), acc.get((task, b))
        else:
            xs = [v for (_, m), v in acc.items() if m == a]
            ys = [v for (_, m), v in acc.items() if m == b]
            x, y = (float(np.mean(xs)) if xs else None), (float(np.mean(ys)) if ys else None)
        return None if x is None or y is None else x - y

    return stat


def item_scores(summary: Summary) -> dict[tuple[str, str], np.ndarray]:
    """Each (task, variant)'s per-test-item correctness, averaged over its seeds (0, 1/S, ..., 1)."""
    out = {}
    for t, by_variant in summary.get("quality_items", {}).items():
        for v, per_seed in by_variant.items():
            if per_seed:
                out[(t, v)] = np.mean([np.asarray(x, dtype=float) for x in per_seed.values()], axis=0)
    return out


def accuracy_interval(
    summary: Summary, stat: Callable[[Accuracies], float | None], variants: list[str] | None = None
) -> Interval | None:
    """Paired bootstrap interval of stat over test items: every (task, variant) that has per-item records
    and an accuracy; the tasks' items are pooled (a label array rides along) and each resample is split by
    task again, so a resample keeps every model's answers to the same items together. `variants` limits
    the models resampled to those the statistic reads (faster; the same interval)."""
    acc = {k: a for k, a in accuracies(summary).items() if variants is None or k[1] in variants}
    scores = {key: x for key, x in item_scores(summary).items() if key in acc}
    if set(scores) != set(acc) or stat(acc) is None:
        return None  # an accuracy without its items (an older run) cannot be resampled
    tasks = sorted({t for t, _ in scores})
    variants = sorted({v for _, v in scores})
    sizes = {t: {len(x) for (tt, _), x in scores.items() if tt == t} for t in tasks}
    if any(len(found) != 1 for found in sizes.values()):
        return None  # models of one task scored on different test sets cannot be paired
    n = {t: found.pop() for t, found in sizes.items()}
    keys = [(t, v) for t in tasks for v in variants if (t, v) in scores]
    labels = np.concatenate([np.full(n[t], i) for i, t in enumerate(tasks)])
    columns = [np.concatenate([scores[key] if key[0] == t else np.full(n[t], np.nan) for t in tasks]) for key in keys]

    def statistic(lab: np.ndarray, *cols: np.ndarray) -> float:
        masks = {t: lab == i for i, t in enumerate(tasks)}
        resampled = {k: 100 * float(c[masks[k[0]]].mean()) for k, c in zip(keys, cols, strict=True)}
        value = stat(resampled)
        return float("nan") if value is None else value

    return bootstrap_ci(statistic, labels, *columns, n_boot=N_BOOT)


def _quality(stat: Callable[[Accuracies], float | None]) -> Callable[[Summary], float | None]:
    return lambda summary: stat(accuracies(summary))


def step_records(summary: Summary) -> list[dict]:
    return [r for r in summary.get("step", {}).get("records", []) if r.get("status") == "ok"]


def step_at(summary: Summary, case: str, n: int) -> dict | None:
    return next((r for r in step_records(summary) if r["case"] == case and r["n"] == n), None)


def _lowrank_lightest_step(summary: Summary) -> float | None:
    """Lightest low-rank model's peak training-step memory ÷ the lightest other LRA model's (naive and the
    approximations; Linformer at the run's LRA k, not the k sweep's extra cases), at the longest length
    they all ran."""
    recs = step_records(summary)
    cases = sorted({r["case"] for r in recs if r["case"] == r["variant"] and not r["variant"].startswith("sdpa")})
    lengths = None
    for c in cases:
        have = {r["n"] for r in recs if r["case"] == c and "peak_mb" in r}
        lengths = have if lengths is None else lengths & have
    if not lengths:
        return None
    n = max(lengths)
    mem = {c: step_at(summary, c, n)["peak_mb"] for c in cases}  # type: ignore[index]
    ours = [m for c, m in mem.items() if FAMILIES[c] == "low-rank"]
    others = [m for c, m in mem.items() if FAMILIES[c] != "low-rank"]
    return _ratio(min(ours), min(others)) if ours and others else None


def _step_ratio(a: str, b: str, n: int) -> Callable[[Summary], float | None]:
    """a's whole-model training-step time ÷ b's at length n (medians of the interleaved rounds)."""

    def measure(summary: Summary) -> float | None:
        ra, rb = step_at(summary, a, n), step_at(summary, b, n)
        return None if ra is None or rb is None else _ratio(ra.get("step_ms"), rb.get("step_ms"))

    return measure


def _step_ratio_interval(a: str, b: str, n: int) -> Callable[[Summary], Interval | None]:
    def interval(summary: Summary) -> Interval | None:
        ra, rb = step_at(summary, a, n), step_at(summary, b, n)
        if ra is None or rb is None or not ra.get("step_all_ms") or not rb.get("step_all_ms"):
            return None
        return _rounds_interval(_median_ratio, [np.asarray(ra["step_all_ms"]), np.asarray(rb["step_all_ms"])])

    return interval


MEASURES: dict[str, Callable[[Summary], float | None]] = {
    "sparse_best_quality": _quality(_sparse_margin),
    "bigbird_beats_transformer": _quality(acc_gap("bigbird", "sdpa")),
    "local_weak_on_listops": _quality(acc_gap("sdpa", "local", "listops")),
    "kernel_fastest": lambda s: _family_ratio(s, "kernel", "fwdbwd_ms"),
    "lowrank_lightest": _lowrank_lightest_step,
    "reformer_slower_1k": _step_ratio("reformer", "naive", 1024),
    "reformer_slower_2k": _step_ratio("reformer", "naive", 2048),
    "reformer_slower_4k": _step_ratio("reformer", "naive", 4096),
    "fused_beats_pytorch_attention": lambda s: _pair_ratio("naive", fused_reference(s), "fwdbwd_ms")(s),
    "fused_memory_linear": _fused_memory_growth,
    "gpu_crossover_length": _gpu_crossover,
}

# The 95% interval of each measure where the run keeps its raw data; the others have none (a memory
# reading is one deterministic measurement; the GPU crossover is a length, not a noisy estimate).
INTERVALS: dict[str, Callable[[Summary], Interval | None]] = {
    "sparse_best_quality": lambda s: accuracy_interval(s, _sparse_margin),
    "bigbird_beats_transformer": lambda s: accuracy_interval(s, acc_gap("bigbird", "sdpa"), ["bigbird", "sdpa"]),
    "local_weak_on_listops": lambda s: accuracy_interval(s, acc_gap("sdpa", "local", "listops"), ["sdpa", "local"]),
    "kernel_fastest": _kernel_fastest_interval,
    "reformer_slower_1k": _step_ratio_interval("reformer", "naive", 1024),
    "reformer_slower_2k": _step_ratio_interval("reformer", "naive", 2048),
    "reformer_slower_4k": _step_ratio_interval("reformer", "naive", 4096),
    "fused_beats_pytorch_attention": lambda s: _pair_ratio_interval("naive", fused_reference(s))(s),
}


def evaluate(specs: list[dict], summary: Summary) -> list[Target]:
    out = []
    for spec in specs:
        if spec["name"] not in MEASURES:
            raise KeyError(f"paper.yaml target {spec['name']!r} has no measure; known: {', '.join(MEASURES)}")
        value = MEASURES[spec["name"]](summary)
        if value is None:
            out.append(judged_target(spec, []))
            continue
        ci = INTERVALS[spec["name"]](summary) if spec["name"] in INTERVALS else None
        target = judged_target(spec, [value], ci)
        target.std, target.n = None, len(summary.get("seeds", [0]))  # one value per run, not a seed spread
        out.append(target.judge())
    return out
