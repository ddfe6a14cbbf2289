"""Confidence intervals (shared.metrics) and the verdict they imply (shared.results)."""

import numpy as np
import pytest

from shared.metrics import bootstrap_ci, item_bootstrap_intervals, t_interval
from shared.report import targets_table
from shared.results import Results, ResultsError, Target, judged_target, validate, verdict_for


def test_t_interval_matches_the_table_values():
    # t_{0.975} with 1 and 2 degrees of freedom from printed tables: 12.706, 4.303
    lo, hi = t_interval([1.0, 3.0])
    assert (lo + hi) / 2 == pytest.approx(2.0)
    assert (hi - lo) / 2 == pytest.approx(12.706 * np.sqrt(2.0) / np.sqrt(2), rel=1e-4)
    lo, hi = t_interval([1.0, 2.0, 6.0])
    s = np.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + (6 - 3) ** 2) / 2)
    assert (hi - lo) / 2 == pytest.approx(4.303 * s / np.sqrt(3), rel=1e-3)
    assert t_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)
    with pytest.raises(ValueError, match="at least 2"):
        t_interval([1.0])
    with pytest.raises(ValueError, match="level"):
        t_interval([1.0, 2.0], level=1.5)


def test_bootstrap_of_a_mean_agrees_with_the_normal_interval():
    x = np.random.default_rng(1).normal(3.0, 2.0, size=4000)
    lo, hi = bootstrap_ci(lambda a: a.mean(), x, n_boot=1000)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert lo == pytest.approx(x.mean() - half, abs=0.25 * half)
    assert hi == pytest.approx(x.mean() + half, abs=0.25 * half)


def test_bootstrap_keeps_pairs_together():
    rng = np.random.default_rng(2)
    item_difficulty = rng.normal(size=500)
    a = item_difficulty + rng.normal(0, 0.1, 500) + 0.05
    b = item_difficulty + rng.normal(0, 0.1, 500)
    lo, hi = bootstrap_ci(lambda u, v: u.mean() - v.mean(), a, b, n_boot=500)
    # paired: the shared difficulty cancels, so the interval is about ±1.96·0.14/√500 ≈ ±0.012
    assert hi - lo < 0.04 and lo > 0.0
    # unpaired resampling (independent indices) would be ~10x wider: check that pairing matters here
    lo_u, hi_u = bootstrap_ci(lambda u: u.mean(), a - rng.permutation(b), n_boot=500)
    assert hi_u - lo_u > 5 * (hi - lo)


def test_bootstrap_is_deterministic_and_checks_input():
    x = np.arange(10.0)
    assert bootstrap_ci(np.mean, x, seed=3) == bootstrap_ci(np.mean, x, seed=3)
    with pytest.raises(ValueError, match="equal lengths"):
        bootstrap_ci(lambda a, b: 0.0, x, x[:5])
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(np.mean, x, n_boot=10)


def test_item_sets_resample_independently_and_pair_within_a_set():
    """Two evaluation sets: a statistic across sets has the interval of two independent means (normal theory:
    sqrt(var1/n1 + var2/n2)); two models read from one set stay paired (identical models: zero width)."""
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 2, 600).astype(float), rng.normal(0.0, 1.0, 900)
    sets = [("acc", x.size), ("safety", y.size)]

    def stats(draw):
        xs, ys = x[draw[("acc", x.size)]], y[draw[("safety", y.size)]]
        return {"across": xs.mean() - ys.mean(), "same": xs.mean() - xs.mean(), "never": None}

    points = {"across": x.mean() - y.mean(), "same": 0.0, "never": 1.0}
    ci = item_bootstrap_intervals(sets, stats, points, n_boot=1000, seed=2)
    half = 1.96 * np.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)
    assert ci["across"][0] == pytest.approx(points["across"] - half, abs=0.25 * half)
    assert ci["across"][1] == pytest.approx(points["across"] + half, abs=0.25 * half)
    assert ci["same"] == (0.0, 0.0)
    assert "never" not in ci  # None on every replicate: no interval rather than a made-up one
    assert ci == item_bootstrap_intervals(sets, stats, points, n_boot=1000, seed=2)
    assert ci != item_bootstrap_intervals(sets, stats, points, n_boot=1000, seed=3)


def test_item_bootstrap_widens_to_hold_the_point_and_checks_input():
    sets = [("s", 20)]
    ci = item_bootstrap_intervals(sets, lambda d: {"v": 1.0}, {"v": 5.0}, n_boot=100)
    assert ci["v"] == (1.0, 5.0)
    with pytest.raises(ValueError, match="n_boot"):
        item_bootstrap_intervals(sets, lambda d: {}, {}, n_boot=10)
    with pytest.raises(ValueError, match="level"):
        item_bootstrap_intervals(sets, lambda d: {}, {}, level=0.0)
    with pytest.raises(ValueError, match="empty item sets"):
        item_bootstrap_intervals([("s", 0)], lambda d: {}, {})


def target(**kw) -> Target:
    return Target(name="t", description="d", source="s", n=3, **kw)


@pytest.mark.parametrize(
    "kw, verdict",
    [
        (dict(comparison="at_least", threshold=0.0, mean=0.02, ci_low=0.01, ci_high=0.03), "reproduced"),
        (dict(comparison="at_least", threshold=0.0, mean=0.02, ci_low=-0.01, ci_high=0.05), "not resolvable"),
        (dict(comparison="at_least", threshold=0.0, mean=-0.02, ci_low=-0.05, ci_high=0.01), "not resolvable"),
        (dict(comparison="at_least", threshold=0.0, mean=-0.02, ci_low=-0.03, ci_high=-0.01), "not reproduced"),
        (dict(comparison="at_most", threshold=1.0, mean=0.9, ci_low=0.8, ci_high=1.1), "not resolvable"),
        (dict(paper=0.8, tolerance=0.01, mean=0.805, ci_low=0.801, ci_high=0.809), "reproduced"),
        (dict(paper=0.8, tolerance=0.01, mean=0.805, ci_low=0.795, ci_high=0.815), "not resolvable"),
        # interval wider than the whole tolerance band on both sides
        (dict(paper=0.8, tolerance=0.01, mean=0.79, ci_low=0.70, ci_high=0.90), "not resolvable"),
        (
            dict(paper=0.8, tolerance=0.01, mean=0.85, ci_low=0.83, ci_high=0.87, higher_is_better=True),
            "better than paper",
        ),
        (dict(paper=0.8, tolerance=0.01, mean=0.85, ci_low=0.83, ci_high=0.87), "not reproduced"),
    ],
)
def test_an_interval_across_the_boundary_is_not_resolvable(kw, verdict):
    assert verdict_for(target(**kw)) == verdict


def test_judged_target_sets_and_checks_the_interval():
    spec = dict(name="t", description="d", source="s", comparison="at_least", threshold=0.0)
    t = judged_target(spec, [0.01, 0.03, 0.02], ci=t_interval([0.01, 0.03, 0.02]))
    assert t.ci_low < 0.0 < t.ci_high and t.verdict == "not resolvable"
    with pytest.raises(ResultsError, match="outside its interval"):
        judged_target(spec, [0.5, 0.6], ci=(0.0, 0.1))
    with pytest.raises(ResultsError, match="finite and ordered"):
        judged_target(spec, [0.5, 0.6], ci=(0.7, 0.4))


def test_results_with_intervals_validate_render_and_reject_half_intervals():
    t = judged_target(
        dict(name="gap", description="gap", source="s", comparison="at_least", threshold=0.0),
        [0.02, 0.04],
        ci=(0.01, 0.05),
    )
    r = Results("p", "mini", "cmd", [0, 1], "m", "now", "abc", [t])
    data = r.to_json()
    validate(data)
    assert "0.0300 ± 0.0100 [0.0100, 0.0500]" in targets_table(r)
    same = judged_target(
        dict(name="gap", description="gap", source="s", comparison="at_least", threshold=0.0),
        [0.0381, 0.0381],
        ci=(0.01, 0.05),
    )
    same.std = 5.551e-17  # what two seeds equal up to summation order gave (peft_alignment mini_long): no spread
    assert "| 0.0381 [0.0100, 0.0500] |" in targets_table(
        Results("p", "mini", "cmd", [0, 1], "m", "now", "abc", [same])
    )
    data["targets"][0]["ci_high"] = None
    with pytest.raises(ResultsError, match="together"):
        validate(data)
    data["targets"][0]["ci_high"] = 0.05
    data["targets"][0]["verdict"] = "not resolvable"
    with pytest.raises(ResultsError, match="does not follow"):
        validate(data)
