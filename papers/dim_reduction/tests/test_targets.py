"""Intervals on the targets (issue 22): each checked against an independent formula or an invariant."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from papers.dim_reduction.config import Config
from papers.dim_reduction.reducers import fit_pca
from papers.dim_reduction.reproduce import method_section
from papers.dim_reduction.targets import evaluate
from shared.config import ConfigError, load_config

PAPER_DIR = Path(__file__).resolve().parents[1]
META = yaml.safe_load((PAPER_DIR / "paper.yaml").read_text())
REF = META["reference"]["fashion_mnist"]
N_TEST = 10000


def items(acc: float, rng: np.random.Generator) -> np.ndarray:
    """N_TEST right/wrong answers with exactly `acc` of them right, in random order."""
    out = np.zeros(N_TEST, bool)
    out[: round(acc * N_TEST)] = True
    return rng.permutation(out)


def unit(acc: float, rng: np.random.Generator, fit_s: float = 0.5, **extra) -> dict:
    correct = items(acc, rng)
    return {"accuracy": float(correct.mean()), "k": 5, "fit_s": fit_s, "correct": correct, **extra}


def judged(curves: list[dict]) -> dict:
    return {t.name: t for t in evaluate(META["targets"], curves, REF)}


def test_one_seed_margin_interval_is_the_paired_bootstrap():
    """AE - PCA at one d: the bootstrap interval is about the paired normal one, ± 1.96 * sd(a - b) / sqrt(n)."""
    rng = np.random.default_rng(0)
    pca = unit(0.75, rng)
    dae = {"accuracy": 0.0, "k": 5, "fit_s": 100.0}
    # the DAE gets 60% of PCA's errors right and 2% of its right answers wrong: correlated, as real pairs are
    flip = np.where(pca["correct"], rng.random(N_TEST) < 0.02, rng.random(N_TEST) < 0.6)
    dae["correct"] = pca["correct"] ^ flip
    dae["accuracy"] = float(dae["correct"].mean())
    got = judged([{"pca": {5: pca}, "dae": {5: dae}}])["dae_minus_pca_low_d"]
    diff = dae["correct"].astype(float) - pca["correct"]
    half = 1.96 * diff.std(ddof=1) / np.sqrt(N_TEST)
    assert got.mean == pytest.approx(diff.mean())
    assert got.ci_low == pytest.approx(diff.mean() - half, abs=0.15 * half)
    assert got.ci_high == pytest.approx(diff.mean() + half, abs=0.15 * half)
    assert got.verdict == "reproduced"  # a 0.13 margin is far outside its ~0.01 interval


def test_a_margin_inside_its_interval_is_not_resolvable():
    rng = np.random.default_rng(1)
    pca, vae = unit(0.750, rng), unit(0.752, rng)  # independent answers: the interval is about ±0.012
    got = judged([{"pca": {5: pca}, "vae": {5: vae}}])["vae_minus_pca_low_d"]
    assert got.ci_low < 0 < got.ci_high and got.verdict == "not resolvable"


def test_one_seed_accuracy_against_the_paper_uses_the_papers_spread():
    """ours ± t(0.975, 4) * the paper's std at that point; the test items are the paper's, so no bootstrap."""
    rng = np.random.default_rng(2)
    got = judged([{"dae": {5: unit(0.8240, rng)}, "isomap": {39: unit(0.8133, rng)}}])
    std = REF["dae"]["accuracy_std"][REF["dims"].index(5)]
    half = stats.t.ppf(0.975, 4) * std
    assert (got["dae_acc_d5"].ci_low, got["dae_acc_d5"].ci_high) == pytest.approx((0.824 - half, 0.824 + half))
    # 0.8297 - 0.01 = 0.8197 lies inside [0.8157, 0.8323]: one seed cannot tell
    assert got["dae_acc_d5"].verdict == "not resolvable"
    assert got["isomap_acc_d39"].verdict == "reproduced"
    assert got["raw_knn_baseline"].ci_low is None  # the paper gives no std for it


@pytest.mark.parametrize(
    "times, verdict",
    [([0.50, 0.51, 0.52, 0.53, 0.54], "reproduced"), ([0.50, 0.52, 0.55, 0.60, 0.90], "not resolvable")],
    ids=["steady", "one-slow-fit"],
)
def test_fit_time_ratio_interval_spans_the_pca_repeats(times, verdict):
    rng = np.random.default_rng(3)
    times = np.array(times)
    pca = {d: unit(0.7, rng, fit_s=float(np.median(times)), fit_s_repeats=times) for d in (1, 5)}
    dae = {1: unit(0.6, rng, fit_s=80.0), 5: unit(0.8, rng, fit_s=200.0)}  # the min is at d=1
    got = judged([{"pca": pca, "dae": dae}])["ae_over_pca_fit_time"]
    assert got.mean == pytest.approx(80.0 / np.median(times))
    # a resampled median lies between the fastest and the slowest fit
    assert 80.0 / times.max() <= got.ci_low <= got.mean <= got.ci_high <= 80.0 / times.min()
    assert got.verdict == verdict  # 80 / 0.9 = 89 < 100: one slow PCA fit in five leaves the claim open


def test_fit_time_ratio_is_taken_at_the_longest_epoch_cap():
    """d=1 capped at 3 epochs is a fraction of a fit: the ratio compares the d=5 fits (cap 12) with PCA."""
    rng = np.random.default_rng(6)
    pca = {d: unit(0.7, rng, fit_s=0.5) for d in (1, 5)}
    dae = {1: unit(0.6, rng, fit_s=30.0, epoch_cap=3), 5: unit(0.8, rng, fit_s=120.0, epoch_cap=12)}
    vae = {1: unit(0.6, rng, fit_s=31.0, epoch_cap=3), 5: unit(0.8, rng, fit_s=110.0, epoch_cap=12)}
    assert judged([{"pca": pca, "dae": dae, "vae": vae}])["ae_over_pca_fit_time"].mean == pytest.approx(220.0)
    for u in (*dae.values(), *vae.values()):  # equal caps (full scale: 9,999 everywhere): the min over every d
        u["epoch_cap"] = 9999
    assert judged([{"pca": pca, "dae": dae, "vae": vae}])["ae_over_pca_fit_time"].mean == pytest.approx(60.0)


def test_two_seeds_use_the_t_interval():
    rng = np.random.default_rng(4)
    curves = [{"pca": {39: unit(a, rng)}} for a in (0.8540, 0.8550)]
    got = judged(curves)["pca_acc_d39"]
    half = stats.t.ppf(0.975, 1) * np.std([0.854, 0.855], ddof=1) / np.sqrt(2)
    assert (got.ci_low, got.ci_high) == pytest.approx((0.8545 - half, 0.8545 + half))


def test_pca_timing_repeats_report_the_median():
    x = np.random.default_rng(5).random((300, 20))
    z_train, z_test, median, times = fit_pca(x, x[:10], 3, seed=0, repeats=5)
    assert len(times) == 5 and median == float(np.median(times)) and z_train.shape == (300, 3)
    with pytest.raises(ValueError, match="repeats=0"):
        fit_pca(x, x, 3, 0, repeats=0)


def mini(*overrides: str) -> Config:
    return load_config(Config, PAPER_DIR / "configs" / "mini.yaml", overrides)


def test_epochs_by_dim_sets_each_cap_and_keys_only_its_own_unit():
    cfg = mini("ae.max_epochs=3", "ae.epochs_by_dim={5: 12}")
    assert [cfg.ae.epochs_for(d) for d in (1, 3, 5)] == [3, 3, 12]
    longer = mini("ae.max_epochs=3", "ae.epochs_by_dim={5: 14}")
    assert method_section(cfg, "dae", 1) == method_section(longer, "dae", 1)  # d=1 stays cached
    assert method_section(cfg, "dae", 5) != method_section(longer, "dae", 5)
    with pytest.raises(ConfigError, match=r"ae.epochs_by_dim: \[7\] are not dimensions the autoencoders run at"):
        mini("ae.epochs_by_dim={7: 12}")
    with pytest.raises(ConfigError, match=r"ae.epochs_by_dim.5: 0 is out of range"):
        mini("ae.epochs_by_dim={5: 0}")
    with pytest.raises(ConfigError, match=r"isomap.dims \[2\] are not in dims"):
        mini("isomap.dims=[1, 2]")
