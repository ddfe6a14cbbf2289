"""The configs, the grid plan, the targets' arithmetic, the full config's SLURM array, and a whole smoke run
(deterministic, resumable)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from papers.peft_alignment import align, grid
from papers.peft_alignment.config import Config
from papers.peft_alignment.report import Scores, evaluate_targets, measures, target_intervals
from papers.peft_alignment.reproduce import PAPER_DIR, load_paper_meta, main
from shared.config import ConfigError, load_config, to_dict
from shared.text.prose import missing_sources


def cfg(scale: str = "mini", *overrides: str) -> Config:
    return load_config(Config, PAPER_DIR / "configs" / f"{scale}.yaml", overrides)


def test_configs_carry_the_papers_recipes():
    full, mini = cfg("full"), cfg("mini")
    for c in (full, mini):  # Table 6: ranks, alphas, dropouts, targets, schedules, clipping
        assert (c.sft.lora_r, c.sft.lora_alpha, c.sft.lora_dropout) == (64, 16, 0.1)
        assert (c.dpo.lora_r, c.dpo.lora_alpha, c.dpo.lora_dropout) == (16, 32, 0.05)
        assert c.sft.target_modules == ["q_proj", "v_proj"] and len(c.dpo.target_modules) == 7
        assert (c.sft.scheduler, c.dpo.scheduler, c.sft.max_grad_norm, c.dpo.max_grad_norm) == (
            "constant",
            "cosine",
            0.3,
            1.0,
        )
    assert (full.sft.steps, full.sft.lr, full.dpo.lr, full.sft.batch_size) == (700, 2e-4, 5e-5, 16)
    assert full.grid.adapter == "qlora" and full.hub.models["vicuna-7b"].id == "lmsys/vicuna-7b-v1.3"
    assert cfg("medium").family.device == "cuda"


@pytest.mark.parametrize("scale", ["smoke", "mini", "medium"])
def test_local_models_fit_the_packed_cpu_layout(scale):
    """Every 4-bit projection of a local scale's model can take bitsandbytes' packed CPU path (align.py), so
    on a CPU with AVX512-BF16 its QLoRA cells evaluate through that one kernel, never a mix of the two."""
    m = cfg(scale).family.model
    h, kv = m.hidden_size, m.num_kv_heads * m.hidden_size // m.num_heads
    shapes = {"q, o": (h, h), "k, v": (kv, h), "gate, up": (m.intermediate_size, h), "down": (h, m.intermediate_size)}
    assert {k: align.packed_cpu_misfit(*s) for k, s in shapes.items()} == dict.fromkeys(shapes, "")


def test_mini_plan_is_the_whole_grid_plus_the_adapter_comparison():
    jobs = grid.plan(cfg("mini"))
    main_jobs = [j for j in jobs if j.adapter == "lora"]
    assert len(main_jobs) == 2 * 2 * 2 * 3 * 2  # datasets x methods x models x preferences x seeds
    assert len(jobs) - len(main_jobs) == 1 * 2 * 2 * 2  # QLoRA: bt x methods x models x 2 preferences, 1 seed
    assert len({j.name for j in jobs}) == len(jobs)


def test_shards_partition_the_jobs():
    c = cfg("full")
    names = [j.name for j in grid.plan(c)]
    assert len(names) > c.grid.num_shards  # some shard holds more than one job
    sharded = []
    for i in range(c.grid.num_shards):
        sharded += [j.name for k, j in enumerate(grid.plan(c)) if k % c.grid.num_shards == i]
    assert sorted(sharded) == sorted(names)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("grid.preferences=[harmless, polite]", "grid.preferences: ['polite'] not allowed"),
        ("grid.models=[llama-7b]", "grid.models: ['llama-7b'] not allowed at source local"),
        ("grid.adapter=ia3", "grid.adapter 'ia3'"),
        ("dpo.target_modules=[lm_head]", "dpo.target_modules: ['lm_head'] not allowed"),
        ("grid.shard=3", "grid.shard must be in [0, num_shards=1)"),
        ("data.hh_noise=1.5", "data.hh_noise: 1.5 is out of range; valid: a finite number [0, 1]"),
        ("data.hh_evasive=1.5", "data: shares must lie in [0, 1], got {'hh_evasive': 1.5}"),
        ("sft.sft_weight=1", "sft.sft_weight: 1.0 not allowed; valid: 0 (only DPO takes an SFT term)"),
        ("data.bt_unsafe_opens_safe=1.5", "data: shares must lie in [0, 1], got {'bt_unsafe_opens_safe': 1.5}"),
        ("dpo.steps=0", "dpo.steps: 0 is out of range; valid: an integer >= 1"),
        ("merge.dare_density=0", "merge.dare_density: 0.0 is out of range; valid: a finite number (0, 1]"),
        ("qlora.quant_type=int3", "qlora.quant_type must be 'nf4' or 'fp4'"),
        ("grid.models=[base, smollm2]", "grid.models: ['smollm2'] not allowed at source local"),
        ("smollm2=maybe", "smollm2 must be one of ('off', 'eval', 'grid')"),
        ("data.train_areas=[cooking]", "data.train_areas: ['cooking'] not allowed"),
    ],
)
def test_bad_config_values_are_one_clear_error(override, message):
    with pytest.raises(ConfigError) as err:
        cfg("mini", override)
    assert message in str(err.value)


def test_ladder_rung_is_the_same_experiment_at_another_size():
    from papers.peft_alignment.reproduce import ladder_config

    c = cfg("mini")
    assert c.ladder and c.smollm2 == "eval"
    rung = c.ladder[0]
    lc = ladder_config(c, rung)
    assert lc.family.model == rung.model and lc.family.model.hidden_size < c.family.model.hidden_size
    assert lc.family.base == c.family.base and lc.sft == c.sft and lc.dpo == c.dpo and lc.data == c.data
    assert lc.seeds == c.seeds[: rung.seeds] and lc.grid.compare_adapter == "" and lc.smollm2 == "off"
    jobs = grid.plan(lc)
    assert len(jobs) == 2 * 2 * 2 * 3 * rung.seeds and {j.adapter for j in jobs} == {"lora"}
    medium = cfg("medium")
    assert medium.smollm2 == "grid" and "smollm2" in medium.grid.models  # the real LM as the instruct model
    assert medium.model_kind("smollm2") == "instruct"


def test_mini_long_is_mini_with_four_times_the_alignment_budget():
    """Our extension config changes the alignment's steps and pairs (epochs unchanged) and drops what no step
    count touches (the size ladder, the untuned SmolLM2); everything else is mini's."""
    mini, long = cfg("mini"), cfg("mini_long")
    assert (long.sft.steps, long.dpo.steps, long.data.n_pairs) == (
        4 * mini.sft.steps,
        4 * mini.dpo.steps,
        4 * mini.data.n_pairs,
    )
    assert (
        long.sft.steps * long.sft.batch_size / long.data.n_pairs
        == mini.sft.steps * mini.sft.batch_size / mini.data.n_pairs
    )
    same = dataclasses.replace(
        long,
        scale="mini",
        sft=dataclasses.replace(long.sft, steps=mini.sft.steps),
        dpo=dataclasses.replace(long.dpo, steps=mini.dpo.steps),
        data=dataclasses.replace(long.data, n_pairs=mini.data.n_pairs),
        ladder=mini.ladder,
        smollm2=mini.smollm2,
    )
    assert to_dict(same) == to_dict(mini)


def test_mini_smollm2_is_minis_bt_grid_with_smollm2_as_the_instruct_model():
    """Our extension swaps the instruct model and cuts what an hour allows (one seed, the BeaverTails cells, no
    QLoRA comparison or ladder, half of every evaluation set, for every model alike); the rest is mini's."""
    mini, smol = cfg("mini"), cfg("mini_smollm2")
    assert smol.smollm2 == "grid" and smol.grid.models == ["base", "smollm2"] and smol.grid.datasets == ["bt"]
    assert smol.model_kind("smollm2") == "instruct" and smol.smollm2_eval_fraction == 1.0
    assert len(grid.plan(smol)) == 2 * 2 * 3
    e = smol.eval
    assert (e.n_knowledge, e.n_reasoning, e.n_toxicity) == (
        mini.eval.n_knowledge // 2,
        mini.eval.n_reasoning // 2,
        mini.eval.n_toxicity // 2,
    )
    same = dataclasses.replace(
        smol,
        scale="mini",
        seeds=mini.seeds,
        smollm2=mini.smollm2,
        smollm2_eval_fraction=mini.smollm2_eval_fraction,
        ladder=mini.ladder,
        grid=dataclasses.replace(
            smol.grid, models=mini.grid.models, datasets=mini.grid.datasets, compare_adapter="qlora"
        ),
        eval=dataclasses.replace(
            e,
            n_knowledge=mini.eval.n_knowledge,
            n_reasoning=mini.eval.n_reasoning,
            n_helpful=mini.eval.n_helpful,
            n_toxicity=mini.eval.n_toxicity,
        ),
    )
    assert to_dict(same) == to_dict(mini)


def test_mini_smollm2_dpo_long_is_one_mini_smollm2_cell_at_four_times_the_dpo_budget():
    smol, long = cfg("mini_smollm2"), cfg("mini_smollm2_dpo_long")
    assert [j.name for j in grid.plan(long)] == ["bt-dpo-smollm2-harmless-lora-s0"]
    assert (long.dpo.steps, long.data.n_pairs) == (4 * smol.dpo.steps, 4 * smol.data.n_pairs)
    same = dataclasses.replace(
        long,
        scale="mini_smollm2",
        parallel_runs=smol.parallel_runs,
        family=dataclasses.replace(long.family, num_threads=smol.family.num_threads),
        data=smol.data,
        dpo=dataclasses.replace(long.dpo, steps=smol.dpo.steps),
        grid=dataclasses.replace(
            long.grid, models=smol.grid.models, methods=smol.grid.methods, preferences=smol.grid.preferences
        ),
    )
    assert to_dict(same) == to_dict(smol)


def test_mini_smollm2_dpo_hard_is_dpo_long_with_pairs_that_share_the_opening():
    long, hard = cfg("mini_smollm2_dpo_long"), cfg("mini_smollm2_dpo_hard")
    assert (long.data.bt_unsafe_opens_safe, hard.data.bt_unsafe_opens_safe) == (0.0, 0.5)
    same = dataclasses.replace(hard, scale=long.scale, data=dataclasses.replace(hard.data, bt_unsafe_opens_safe=0.0))
    assert to_dict(same) == to_dict(long)


def test_mini_smollm2_dpo_sft_is_mini_smollm2s_dpo_cell_with_an_sft_term():
    smol, long, plus = cfg("mini_smollm2"), cfg("mini_smollm2_dpo_long"), cfg("mini_smollm2_dpo_sft")
    assert [j.name for j in grid.plan(plus)] == ["bt-dpo-smollm2-harmless-lora-s0"]
    assert (plus.dpo.steps, plus.data.n_pairs, plus.dpo.sft_weight) == (smol.dpo.steps, smol.data.n_pairs, 1.0)
    same = dataclasses.replace(
        plus, scale=long.scale, data=long.data, dpo=dataclasses.replace(plus.dpo, steps=long.dpo.steps, sft_weight=0.0)
    )
    assert to_dict(same) == to_dict(long)


def test_shrink_keeps_every_group_and_attribute():
    from papers.peft_alignment.evaluation import EvalSets, shrink

    harmful = [{"prompt": f"{g}{i}", "group": g} for g in ("a", "b", "c") for i in range(8)]
    tox = [f"{attr}-{i}" for attr in range(7) for i in range(4)]
    sets = EvalSets(list(range(40)), list(range(20)), list(range(8)), tox, harmful, [f"b{i}" for i in range(12)])
    small = shrink(sets, 0.25)
    assert [sum(h["group"] == g for h in small.harmful) for g in "abc"] == [2, 2, 2]
    assert len(small.toxicity) == 7 and {t.split("-")[0] for t in small.toxicity} == {str(a) for a in range(7)}
    assert (len(small.knowledge), len(small.reasoning), len(small.benign)) == (10, 5, 3)
    assert shrink(sets, 1.0) == sets
    with pytest.raises(ValueError, match="fraction must be in"):
        shrink(sets, 0.0)


def test_smollm2_cells_and_merges_are_scored_on_the_same_cut_sets():
    """A SmolLM2 merge was scored on the whole sets while its parents saw a fraction: one set choice serves both."""
    from papers.peft_alignment.evaluation import EvalSets
    from papers.peft_alignment.reproduce import model_sets

    harmful = [{"prompt": f"h{i}", "group": "a"} for i in range(8)]
    sets = EvalSets(list(range(40)), list(range(20)), list(range(8)), [f"t{i}" for i in range(14)], harmful, ["b"])
    c = cfg("mini", "smollm2=grid", "grid.models=[base, smollm2]", "smollm2_eval_fraction=0.25")
    (smol, smol_key), (base, base_key) = model_sets(c, "smollm2", sets), model_sets(c, "base", sets)
    assert len(smol.knowledge) == 10 and base == sets
    assert smol_key["fraction"] == 0.25 and "fraction" not in base_key and smol_key != base_key
    whole = cfg("mini", "smollm2=grid", "grid.models=[base, smollm2]", "smollm2_eval_fraction=1.0")
    assert model_sets(whole, "smollm2", sets) == (sets, base_key)


def test_full_dry_run_renders_the_slurm_array(capsys):
    assert main(["--scale", "full", "--dry-run"]) == 0
    out = capsys.readouterr().out
    n = cfg("full").grid.num_shards
    assert f"#SBATCH --array=0-{n - 1}" in out
    assert f'--set grid.shard="$SLURM_ARRAY_TASK_ID" --set grid.num_shards={n}' in out
    assert "mistralai/Mistral-7B-Instruct-v0.1" in out


def _outcome(c: Config, tox: dict, helpful: dict) -> dict:
    """Synthetic scores: toxicity per (method, model, preference) on bt, everything else 0.5."""
    results = {}
    for j in grid.plan(c):
        s = {a: 0.5 for a in ("knowledge", "reasoning", "helpfulness", "toxicity", "harmlessness", "overall")}
        s["toxicity"] = tox.get((j.method, j.model, j.preference), 0.5) if j.dataset == "bt" else 0.5
        s["helpfulness"] = helpful.get((j.method, j.model, j.preference), 0.5) if j.dataset == "bt" else 0.5
        results[j.name] = {"job": {}, "scores": s}
    for m in c.grid.models:
        results[f"original-{m}"] = {"scores": {"toxicity": 0.6, "helpfulness": 0.4}}
    return {"results": results, "merges": {}}


def test_target_arithmetic_by_hand():
    c = cfg("mini", "seeds=[0]")
    tox = {("dpo", "instruct", "harmless"): 0.9, ("dpo", "instruct", "helpful"): 0.7, ("dpo", "instruct", "mix"): 0.4}
    tox.update({("dpo", "base", p): v for p, v in (("harmless", 0.3), ("helpful", 0.2), ("mix", 0.1))})
    tox[("sft", "base", "harmless")] = 0.8
    helpful = {("dpo", "instruct", "helpful"): 0.8, ("sft", "instruct", "helpful"): 0.6}
    s = Scores(_outcome(c, tox, helpful), c, 0)
    m = measures(c)
    assert m["mix_hurts_dpo_instruct_toxicity"](s) == pytest.approx(0.7 - 0.4)
    assert m["dpo_pretrained_degrades_toxicity"](s) == pytest.approx(0.6 - 0.3)
    assert m["dpo_instruct_harmless_best_toxicity"](s) == pytest.approx(0.9 - 0.8)
    assert m["harmless_sft_pretrained_improves_toxicity"](s) == pytest.approx(0.8 - 0.6)
    assert m["dpo_beats_sft_helpfulness_instruct"](s) == pytest.approx(0.2)
    assert m["bt_aligns_better_than_hh"](s) == pytest.approx(0.0)  # overall is 0.5 everywhere
    assert m["dare4_best_instruct_knowledge"](s) is None  # no merges: not run, never a pass
    targets = {t.name: t for t in evaluate_targets(load_paper_meta()["targets"], [s], c)}
    assert targets["mix_hurts_dpo_instruct_toxicity"].verdict == "reproduced"
    assert targets["bt_aligns_better_than_hh"].verdict == "not reproduced"  # 0 is not an improvement
    assert targets["dare4_best_instruct_knowledge"].verdict == "not run"


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_sources()), reason="needs python3.11-doc and bible-kjv (make setup)")
def test_smoke_run_is_deterministic_and_resumes(tmp_path):
    assert main(["--scale", "smoke", "--out", str(tmp_path / "a")]) == 0
    assert main(["--scale", "smoke", "--out", str(tmp_path / "b")]) == 0
    a = json.loads(next((tmp_path / "a").glob("peft_alignment/smoke/*/results.json")).read_text())
    b = json.loads(next((tmp_path / "b").glob("peft_alignment/smoke/*/results.json")).read_text())
    assert a["tables"]["grid"]["rows"] and a["tables"]["merges"]["rows"]  # equal below, and not empty
    assert a["tables"]["grid"] == b["tables"]["grid"] and a["tables"]["merges"] == b["tables"]["merges"]
    adapters = sorted((tmp_path / "a").glob("peft_alignment/smoke/*/adapters/*"))
    assert adapters and all((p / "adapter_model.safetensors").is_file() for p in adapters)
    stamp = (adapters[0] / "adapter_model.safetensors").stat().st_mtime_ns
    assert main(["--scale", "smoke", "--out", str(tmp_path / "a")]) == 0  # resumes: nothing retrained
    assert (adapters[0] / "adapter_model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_sources()), reason="needs python3.11-doc and bible-kjv (make setup)")
def test_sharded_grid_then_merges_and_report_equals_one_run(tmp_path):
    """The SLURM path: every array task trains its shard into the same run folder, then one
    `--stages merges,report` run merges and reports; the tables equal an unsharded run's."""
    out = str(tmp_path / "sharded")
    for shard in (0, 1):
        args = ["--scale", "smoke", "--out", out, "--set", f"grid.shard={shard}", "--set", "grid.num_shards=2"]
        assert main(args) == 0
    assert not list((tmp_path / "sharded").glob("peft_alignment/smoke/*/results.json"))  # no report yet
    assert main(["--scale", "smoke", "--out", out, "--set", "grid.num_shards=2", "--stages", "merges,report"]) == 0
    assert main(["--scale", "smoke", "--out", str(tmp_path / "one")]) == 0
    a, b = (
        json.loads(next((tmp_path / d).glob("peft_alignment/smoke/*/results.json")).read_text())
        for d in ("sharded", "one")
    )
    assert a["tables"]["grid"]["rows"] and a["tables"]["merges"]["rows"]
    assert a["tables"]["grid"] == b["tables"]["grid"] and a["tables"]["merges"] == b["tables"]["merges"]


def _item_outcome(c: Config, n: int = 40, seed: int = 0) -> dict:
    """Every grid job, original and merge of `c` with random 0/1 per-item scores on each axis (the same
    items for every model), their means as the axes."""
    from papers.peft_alignment.evaluation import AXES

    rng = np.random.default_rng(seed)

    def scores() -> dict:
        items = {a: rng.integers(0, 2, size=n).astype(float).tolist() for a in AXES}
        out = {a: float(np.mean(v)) for a, v in items.items()}
        return {**out, "overall": float(np.mean(list(out.values()))), "items": items}

    results = {j.name: {"scores": scores()} for j in grid.plan(c)}
    results.update({f"original-{m}": {"scores": scores()} for m in c.grid.models})
    merges = {f"{name}-{m}-s{s}": {"scores": scores()} for name in grid.MERGES for m in c.grid.models for s in c.seeds}
    return {"results": results, "merges": merges}


def test_paired_interval_is_shared_metrics_bootstrap_of_the_item_differences():
    """One target over one axis: the interval is exactly the paired percentile bootstrap of shared.metrics
    (same draws), and close to the normal-theory interval of the mean item difference (scipy)."""
    from scipy import stats

    from shared.metrics import bootstrap_ci

    c = cfg("mini", "seeds=[0]")
    rng = np.random.default_rng(3)
    a, o = rng.integers(0, 2, 400).astype(float), rng.integers(0, 2, 400).astype(float)
    outcome = _outcome(c, {}, {})
    outcome["results"]["bt-sft-base-harmless-lora-s0"]["scores"] = {"toxicity": a.mean(), "items": {"toxicity": a}}
    outcome["results"]["original-base"]["scores"] = {"toxicity": o.mean(), "items": {"toxicity": o}}
    spec = [t for t in load_paper_meta()["targets"] if t["name"] == "harmless_sft_pretrained_improves_toxicity"]
    ci = target_intervals(spec, outcome, c, n_boot=500, seed=7)["harmless_sft_pretrained_improves_toxicity"]
    ref = bootstrap_ci(lambda x, y: x.mean() - y.mean(), a, o, n_boot=500, seed=7)
    assert ci == pytest.approx(ref, abs=1e-12)
    d = a - o
    half = stats.norm.ppf(0.975) * d.std(ddof=1) / np.sqrt(d.size)
    assert ci[0] == pytest.approx(d.mean() - half, abs=0.25 * half)
    assert ci[1] == pytest.approx(d.mean() + half, abs=0.25 * half)


def test_every_target_gets_a_deterministic_interval_holding_its_mean():
    c = cfg("mini")
    outcome = _item_outcome(c)
    specs = load_paper_meta()["targets"]
    per_seed = [Scores(outcome, c, s) for s in c.seeds]
    a = evaluate_targets(specs, per_seed, c, outcome, n_boot=200)
    b = evaluate_targets(specs, per_seed, c, outcome, n_boot=200)
    assert [(t.ci_low, t.ci_high) for t in a] == [(t.ci_low, t.ci_high) for t in b]  # same seed, same interval
    for t in a:  # the Spearman target (LoRA vs QLoRA) and the merge targets too
        assert t.ci_low is not None and t.ci_low <= t.mean <= t.ci_high and t.ci_low < t.ci_high, t.name
        if t.ci_low < t.threshold < t.ci_high:
            assert t.verdict == "not resolvable"
    other = target_intervals(specs, outcome, c, n_boot=200, seed=1)
    assert [other[t.name] for t in a] != [(t.ci_low, t.ci_high) for t in a]


def test_identical_models_give_a_zero_width_interval():
    c = cfg("mini", "seeds=[0]")
    items = np.r_[np.ones(10), np.zeros(10)]
    sc = {"toxicity": 0.5, "items": {"toxicity": items}}
    outcome = _outcome(c, {}, {})
    outcome["results"]["bt-sft-base-harmless-lora-s0"]["scores"] = dict(sc)
    outcome["results"]["original-base"]["scores"] = dict(sc)
    spec = [t for t in load_paper_meta()["targets"] if t["name"] == "harmless_sft_pretrained_improves_toxicity"]
    assert target_intervals(spec, outcome, c, n_boot=100)["harmless_sft_pretrained_improves_toxicity"] == (0.0, 0.0)
