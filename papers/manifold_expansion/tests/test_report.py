"""The targets' values and intervals recomputed independently (scipy, by hand) from synthetic records."""

import numpy as np
import pytest
from scipy import stats

from papers.manifold_expansion.config import Config, DataConfig, Expansion, ModelConfig
from papers.manifold_expansion.correlate import Record
from papers.manifold_expansion.report import ALL, BASELINES, evaluate_targets, summaries, target_values

EXPANSIONS = [
    Expansion("deeper", "net2net", 0),
    Expansion("deeper", "random", 0),
    Expansion("wider", "net2net", 1, match=0),
    Expansion("wider", "random", 1, match=0),
    Expansion("wider", "zero", 1, units=4),
]


def config() -> Config:
    cfg = Config(
        scale="t",
        data=DataConfig("digits"),
        models=[ModelConfig("a", "mlp", [4, 4], 1, 1), ModelConfig("b", "mlp", [4, 4], 1, 1)],
        expansions=EXPANSIONS,
        seeds=[0, 1, 2],
    )
    cfg.analysis.bootstrap = 100  # the pooled per-family intervals: not what these tests check
    cfg.validate()
    return cfg


def synthetic(seed: int = 0) -> list[Record]:
    """Gains loosely tied to the manifold metric, a baseline that anti-correlates, the rest noise."""
    rng = np.random.default_rng(seed)
    out = []
    for family in ("a", "b"):
        for s in range(3):
            gains = rng.normal(size=len(EXPANSIONS))
            for e, g in zip(EXPANSIONS, gains, strict=True):
                metrics = {m: float(rng.normal()) for m in ALL}
                metrics["manifold"] = float(g + rng.normal())
                metrics["snip"] = float(-g + 0.3 * rng.normal())
                out.append(Record(family, s, e.name, e.kind, float(g), metrics))
    return out


def per_run_spearman(records: list[Record], metric: str) -> list[float]:
    runs = sorted({(r.family, r.seed) for r in records})
    out = []
    for run in runs:
        rs = [r for r in records if (r.family, r.seed) == run]
        out.append(float(stats.spearmanr([r.metrics[metric] for r in rs], [r.gain for r in rs]).statistic))
    return out


def t_by_hand(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values)
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return v.mean() - half, v.mean() + half


def test_target_values_and_intervals_match_an_independent_computation():
    records, cfg = synthetic(), config()
    values = target_values(summaries(records, cfg), n_boot=200)
    man = per_run_spearman(records, "manifold")
    got, ci = values["manifold_spearman"]
    assert got == pytest.approx(man) and ci == pytest.approx(t_by_hand(man))
    # the best baseline, chosen once: the largest |mean rho| over runs, read with that mean's sign in every run
    rhos = {b: per_run_spearman(records, b) for b in BASELINES}
    best = max(rhos, key=lambda b: abs(np.mean(rhos[b])))
    assert best == "snip"
    margin = np.subtract(man, np.sign(np.mean(rhos[best])) * np.asarray(rhos[best]))
    got, ci = values["manifold_minus_best_baseline_spearman"]
    assert got == pytest.approx(list(margin)) and ci == pytest.approx(t_by_hand(list(margin)))
    # the pooled pairs: one value, its paired bootstrap interval holds it
    (pair_margin,), (lo, hi) = values["manifold_minus_best_baseline_pairs"]
    assert lo <= pair_margin <= hi


def test_an_interval_across_the_threshold_is_not_resolvable():
    spec = {"name": "manifold_spearman", "description": "d", "source": "s", "comparison": "at_least", "threshold": 0}
    (t,) = evaluate_targets([spec], {"manifold_spearman": ([0.3, -0.2, 0.4], t_by_hand([0.3, -0.2, 0.4]))})
    assert t.verdict == "not resolvable" and t.ci_low < 0 < t.ci_high
    (t,) = evaluate_targets([spec], {"manifold_spearman": ([0.3, 0.35, 0.4], t_by_hand([0.3, 0.35, 0.4]))})
    assert t.verdict == "reproduced" and t.ci_low > 0
    (t,) = evaluate_targets([spec], {"manifold_spearman": ([0.3], None)})  # one run: no interval, judged by sign
    assert t.verdict == "reproduced" and t.ci_low is None
