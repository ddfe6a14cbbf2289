"""Interleaved timing rounds, the whole-model step sweep's memory, and the intervals the targets carry:
each checked against a count, an analytic byte total or a constructed answer, not against the code's own
output."""

from __future__ import annotations

import numpy as np
import pytest

from papers.efficient_transformers.config import Config
from papers.efficient_transformers.efficiency import interleaved_ms, run_in_child, spread
from papers.efficient_transformers.targets import INTERVALS, MEASURES, acc_gap, accuracy_interval, evaluate
from shared.config import from_dict
from shared.results import Target


def test_rounds_time_every_function_once_per_round_in_rotated_order():
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = interleaved_ms(fns, warmup=2, repeats=4, device="cpu")
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up: each function on its own
    assert calls[6:] == list("abc" + "bca" + "cab" + "abc")  # each round starts one later
    assert {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4, "c": 4}
    assert spread([1.0, 2.0, 3.0, 4.0, 100.0]) == {"median": 3.0, "q1": 2.0, "q3": 4.0, "min": 1.0, "max": 100.0}


def _items(n_right: int, n: int) -> list[int]:
    return [1] * n_right + [0] * (n - n_right)


def _quality_summary(listops: dict[str, list[int]], kjv: dict[str, list[int]] | None = None) -> dict:
    tasks = {"listops": listops, **({"kjv": kjv} if kjv else {})}
    return {
        "seeds": [0],
        "quality": {t: {v: {"0": float(np.mean(x))} for v, x in by.items()} for t, by in tasks.items()},
        "quality_items": {t: {v: {"0": x} for v, x in by.items()} for t, by in tasks.items()},
    }


def test_identical_answers_give_a_zero_width_interval():
    same = _items(30, 100)
    s = _quality_summary({"sdpa": same, "local": list(same)})
    assert INTERVALS["local_weak_on_listops"](s) == (0.0, 0.0)


def test_paired_interval_matches_the_binomial_width_of_the_disagreements():
    # sdpa right on every item, local on the first 1,400 of 2,000: the difference is 30 points and its
    # standard error sqrt(p (1 - p) / n) with p = 0.3 is 1.02 points, so the 95% interval is about +-2.0.
    s = _quality_summary({"sdpa": _items(2000, 2000), "local": _items(1400, 2000)})
    lo, hi = INTERVALS["local_weak_on_listops"](s)
    assert MEASURES["local_weak_on_listops"](s) == pytest.approx(30.0)
    half = 1.96 * 100 * np.sqrt(0.3 * 0.7 / 2000)
    assert lo == pytest.approx(30 - half, abs=0.5) and hi == pytest.approx(30 + half, abs=0.5)


def test_pairing_removes_the_items_both_models_share():
    # Two models that differ on 20 of 1,000 items: unpaired accuracies would each vary by ~3 points, the
    # paired difference only through those 20 items (at most 2 points either way).
    base = list(np.random.default_rng(0).integers(0, 2, 1000))
    other = list(base)
    for i in range(20):
        other[i] = 1 - base[i]
    lo, hi = accuracy_interval(_quality_summary({"sdpa": base, "local": other}), acc_gap("sdpa", "local", "listops"))
    assert -2.0 - 1e-9 <= lo <= hi <= 2.0 + 1e-9


def test_mean_over_tasks_resamples_each_task_and_keeps_its_point_value():
    s = _quality_summary(
        {"sdpa": _items(60, 100), "bigbird": _items(70, 100)}, {"sdpa": _items(300, 400), "bigbird": _items(100, 400)}
    )
    value = MEASURES["bigbird_beats_transformer"](s)
    assert value == pytest.approx(((70 - 60) + (25 - 75)) / 2)
    lo, hi = INTERVALS["bigbird_beats_transformer"](s)
    assert lo <= value <= hi and hi - lo < 20


def test_a_difference_inside_its_interval_is_not_resolvable_and_a_clear_one_is_judged():
    spec = {"name": "local_weak_on_listops", "description": "d", "source": "s", "comparison": "at_least",
            "threshold": 0.0, "paper": 20.55}  # fmt: skip
    close = _quality_summary({"sdpa": _items(51, 100), "local": _items(50, 100)[::-1]})  # disagree on 99 items
    far = _quality_summary({"sdpa": _items(90, 100), "local": _items(20, 100)})
    (t_close,) = evaluate([spec], close)
    (t_far,) = evaluate([spec], far)
    assert t_close.verdict == "not resolvable" and t_close.ci_low < 0 < t_close.ci_high
    assert t_far.verdict == "reproduced" and t_far.ci_low > 0
    assert isinstance(t_far, Target) and t_far.std is None and t_far.n == 1


def test_time_ratio_interval_over_rounds():
    def rec(v: str, ms: list[float]) -> dict:
        return {"variant": v, "family": "exact", "n": 512, "status": "ok", "fwdbwd_ms": float(np.median(ms)),
                "fwdbwd_all_ms": ms}  # fmt: skip

    steady = {"efficiency": {"records": [rec("naive", [4.0, 6.0, 8.0, 10.0]), rec("sdpa_flash", [2.0, 3.0, 4.0, 5.0])]}}
    assert INTERVALS["fused_beats_pytorch_attention"](steady) == pytest.approx((2.0, 2.0))  # every round 2x
    noisy = {"efficiency": {"records": [rec("naive", [4.0, 2.0, 9.0, 3.0]), rec("sdpa_flash", [2.0, 4.0, 3.0, 5.0])]}}
    lo, hi = INTERVALS["fused_beats_pytorch_attention"](noisy)
    assert lo < 1.0 < hi


@pytest.mark.slow
def test_step_memory_counts_linformers_projections(tmp_path):
    """Linformer's E and F (k x N each, per layer) are parameters: AdamW keeps a gradient and two moments of
    each, so going from k = 16 to k = 256 at N = 2048 adds (256 - 16) x 2048 x 2 x 4 copies x 4 bytes =
    15 MiB per layer to the training step's peak, plus the larger N x k attention maps of the step (scores,
    softmax and their gradients: at most about three live at once, 3.75 MiB each for 2 heads)."""
    from pathlib import Path

    import yaml

    raw = yaml.safe_load((Path(__file__).parents[1] / "configs" / "smoke.yaml").read_text())
    cfg = from_dict(Config, raw)
    cfg.quality.model.layers, cfg.quality.model.dim = 1, 32
    cfg.step.lengths, cfg.step.variants, cfg.step.linformer_k, cfg.step.linformer_ks = [2048], ["linformer"], 16, [256]
    cfg.step.repeats = 1
    out = run_in_child("step", cfg, tmp_path)
    peak = {r["k"]: r["peak_mb"] for r in out["records"]}
    params = (256 - 16) * 2048 * 2 * 4 * 4 / 2**20
    maps = (256 - 16) * 2048 * cfg.quality.model.heads * 4 / 2**20
    assert params - 0.5 <= peak[256] - peak[16] <= params + 3 * maps + 0.5
