"""Rank correlations, bootstrap intervals and pair ordering against hand-computed cases."""

import numpy as np
import pytest

from papers.manifold_expansion.config import Config, DataConfig, Expansion, ModelConfig
from papers.manifold_expansion.correlate import (
    Record,
    best_fixed,
    best_per_run,
    bootstrap_ci,
    pair_accuracy,
    rank_correlations,
    summarise,
)


def test_rank_correlations_by_hand():
    assert rank_correlations([1, 2, 3, 4], [10, 20, 30, 40]) == (1.0, 1.0)
    assert rank_correlations([1, 2, 3, 4], [4, 3, 2, 1]) == (-1.0, -1.0)
    # one swapped pair among 4 points: Spearman 1 - 6*2/(4*15) = 0.8; Kendall (5 - 1)/6
    rho, tau = rank_correlations([1, 2, 3, 4], [1, 2, 4, 3])
    assert rho == pytest.approx(0.8) and tau == pytest.approx(4 / 6)
    assert rank_correlations([5, 5, 5], [1, 2, 3]) == (0.0, 0.0)  # constant metric: no information
    with pytest.raises(ValueError, match="need at least 3 points"):
        rank_correlations([1, 2], [1, 2])
    with pytest.raises(ValueError, match="lengths differ"):
        rank_correlations([1, 2, 3], [1, 2])


def test_bootstrap_interval_brackets_the_estimate_and_is_deterministic():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = x + 0.5 * rng.normal(size=40)
    ci = bootstrap_ci(x, y, 300, 0.95)
    rho, _ = rank_correlations(x, y)
    assert ci["spearman"][0] < rho < ci["spearman"][1] and ci["spearman"][0] > 0
    assert ci == bootstrap_ci(x, y, 300, 0.95)


def records(seed, gains, metric):
    names = ["d", "w", "x"]
    return [Record("mlp", seed, n, n, g, {"m": v}) for n, g, v in zip(names, gains, metric, strict=True)]


def test_pair_accuracy_and_baseline_sign():
    recs = records(0, [0.3, 0.1, 0.2], [3.0, 1.0, 2.0]) + records(1, [0.1, 0.3, 0.2], [3.0, 1.0, 2.0])
    assert pair_accuracy(recs, "m", [("d", "w")]) == [1.0, 0.0]
    assert pair_accuracy(recs, "m", [("d", "w")], sign=-1.0) == [0.0, 1.0]
    anti = records(0, [0.1, 0.3, 0.2], [3.0, 1.0, 2.0])
    s = summarise(anti, "m", [("d", "w")], oriented=False, n_boot=20, ci=0.9)
    assert s.sign == -1.0 and s.spearman == [1.0] and s.pairs == [1.0]  # a baseline is read with its best sign
    s = summarise(anti, "m", [("d", "w")], oriented=True, n_boot=20, ci=0.9)
    assert s.spearman == [-1.0] and s.pairs == [0.0]  # the manifold metric keeps its sign


def test_config_pairs_match_width_and_depth_with_the_same_init():
    cfg = Config(
        scale="t",
        data=DataConfig("digits"),
        models=[ModelConfig("m", "mlp", [4, 4], 1, 1)],
        expansions=[
            Expansion("deeper", "net2net", 0),
            Expansion("deeper", "random", 0),
            Expansion("wider", "net2net", 1, match=0),
            Expansion("wider", "zero", 1, match=0),
        ],
        seeds=[0],
    )
    cfg.validate()
    assert cfg.pairs() == [("deeper1@0-net2net", "wider=0@1-net2net")]


def test_best_baseline_chosen_once_versus_per_run_maximum():
    per_run = {"a": [0.5, -0.5, 0.4], "b": [-0.3, -0.3, -0.3]}
    # a's mean is +0.133; b's is -0.3: read with its sign fixed to minus, b is the better one in every run
    best = best_fixed(per_run)
    assert (best.metric, best.sign) == ("b", -1.0) and best.values == pytest.approx([0.3, 0.3, 0.3])
    # the old reading takes the largest |value| in each run, whichever baseline and sign: never below
    assert best_per_run(per_run) == pytest.approx([0.5, 0.5, 0.4])
    assert all(m >= v for m, v in zip(best_per_run(per_run), best.values, strict=True))
    # a tie goes to the first baseline; positive signs are kept
    tie = best_fixed({"x": [0.2, 0.4], "y": [0.4, 0.2]})
    assert (tie.metric, tie.sign, tie.values) == ("x", 1.0, [0.2, 0.4])
    with pytest.raises(ValueError, match="no baselines"):
        best_fixed({})
