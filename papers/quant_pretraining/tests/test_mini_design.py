"""The mini's design (issue 20): seeds where the targets need them, t intervals on every difference target,
"not resolvable" when the seeds cannot settle a margin, the gap at every evaluation, and the GPU script's
CPU dry run."""

from __future__ import annotations

import json

import pytest
import yaml

from papers.quant_pretraining.config import PAPER_DIR, Config
from papers.quant_pretraining.report import evaluate_targets, gap_table, target_values
from shared.config import ConfigError, load_config
from shared.metrics import t_interval


def _targets() -> list[dict]:
    return yaml.safe_load((PAPER_DIR / "paper.yaml").read_text())["targets"]


def _configs_of(measure: dict) -> list[str]:
    return [measure[k] for k in ("configuration", "a", "b") if k in measure]


def test_every_target_of_the_mini_rests_on_three_seeds_and_says_whose_claim_it_is():
    cfg = load_config(Config, PAPER_DIR / "configs" / "mini.yaml")
    runs = cfg.runs()
    for spec in _targets():
        assert spec["description"].startswith(("Paper's claim, tested:", "Our margin:")), spec["name"]
        for name in _configs_of(spec["measure"]) + ["baseline"]:
            assert sum(1 for c, _ in runs if c == name) >= 3, (spec["name"], name)
    assert "w4a4_per_tensor" in cfg.configurations  # the positive control
    assert {"g8_per_token", "g8_per_token_no_head", "g8_per_tensor", "g8_per_tensor_no_head"} <= set(cfg.configurations)
    assert len(runs) == len(set(runs))


def test_one_seed_rows_run_at_the_first_seed_only_and_must_be_configurations(tmp_path):
    cfg = load_config(Config, PAPER_DIR / "configs" / "smoke.yaml", ["seeds=[3, 4]", "one_seed=[v8_per_channel]"])
    assert cfg.runs() == [
        ("baseline", 3), ("w8a8g8_per_token", 3), ("v8_per_channel", 3), ("baseline", 4), ("w8a8g8_per_token", 4),
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="one_seed"):
        load_config(Config, PAPER_DIR / "configs" / "smoke.yaml", ["one_seed=[w4_per_channel]"])
    with pytest.raises(ConfigError, match="one_seed"):
        load_config(Config, PAPER_DIR / "configs" / "smoke.yaml", ["one_seed=[baseline]"])


def _out(val: float, evals: list[float]) -> dict:
    steps = [10 * (i + 1) for i in range(len(evals))]
    return {
        "final": {"val_loss": val},
        "diverged": False,
        "evals": [{"step": s, "val_loss": v} for s, v in zip(steps, evals, strict=True)],
    }


def _outputs(deltas_a: list[float], deltas_b: list[float]) -> dict:
    outputs = {}
    for seed, (da, db) in enumerate(zip(deltas_a, deltas_b, strict=True)):
        base = 5.0 + 0.01 * seed
        outputs[("baseline", seed)] = _out(base, [6.0, base])
        outputs[("w4a4_per_tensor", seed)] = _out(base + da, [6.0 + da / 2, base + da])
        outputs[("w8a8_per_token", seed)] = _out(base + db, [6.0, base + db])
    return outputs


def test_difference_targets_carry_the_t_interval_over_seeds_and_straddling_is_not_resolvable():
    specs = [s for s in _targets() if s["name"] in ("positive_control_degrades", "w8a8_matches_baseline")]
    clear = {t.name: t for t in evaluate_targets(specs, _outputs([0.09, 0.10, 0.11], [0.001, -0.001, 0.0]), 2048)}
    lo, hi = t_interval([0.09, 0.10, 0.11])
    pc = clear["positive_control_degrades"]
    assert (pc.ci_low, pc.ci_high) == pytest.approx((lo, hi)) and pc.n == 3 and pc.verdict == "reproduced"
    assert clear["w8a8_matches_baseline"].verdict == "reproduced"
    # a positive control whose interval holds 0.05: the seeds cannot tell, whatever side the mean is on
    wide = {t.name: t for t in evaluate_targets(specs, _outputs([0.03, 0.06, 0.09], [0.0, 0.0, 0.0]), 2048)}
    assert wide["positive_control_degrades"].mean == pytest.approx(0.06)
    assert wide["positive_control_degrades"].verdict == "not resolvable"


def test_delta_diff_pairs_seeds_and_noise_has_no_interval():
    outputs = _outputs([0.2, 0.3, 0.4], [0.1, 0.1, 0.1])
    values, paired = target_values({"kind": "delta_diff", "a": "w4a4_per_tensor", "b": "w8a8_per_token"}, outputs, 9)
    assert paired and values == pytest.approx([0.1, 0.2, 0.3])
    values, paired = target_values({"kind": "noise"}, outputs, 9)
    assert not paired and values == pytest.approx([0.02])


def test_gap_table_reads_every_evaluation_step():
    table = gap_table(_outputs([0.1, 0.1, 0.1], [0.0, 0.0, 0.0]), ["baseline", "w4a4_per_tensor", "w8a8_per_token"])
    assert table.columns == ["configuration", "seeds", "step 10", "step 20"]
    assert table.rows[0] == ["w4a4_per_tensor", 3, "+0.050 ± 0.000", "+0.100 ± 0.000"]


def test_gpu_script_dry_run_on_the_cpu(tmp_path):
    """The prepared GPU check runs end to end on tiny shapes (no GPU is needed to check its code paths)."""
    import torch

    from papers.quant_pretraining import gpu_fp8_step

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path / "g.json"
        rc = gpu_fp8_step.main(["--dry-run", "--sizes", "gpt2-s", "--variants", "bf16,fp8_ours", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    result = json.loads(out.read_text())
    assert rc == 0 and [r["variant"] for r in result["rows"]] == ["bf16", "fp8_ours"]
    assert all(r["step_s"] > 0 and r["tok_s"] > 0 for r in result["rows"])
    assert result["tokens_per_step"] == 16 * 64 and "speedup_vs_bf16" in result["rows"][1]
    with pytest.raises(SystemExit):
        gpu_fp8_step.main(["--dry-run", "--sizes", "gpt2-xxl"])
