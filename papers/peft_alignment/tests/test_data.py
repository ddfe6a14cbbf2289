"""The datasets: the released formats parse, the paper's BeaverTails rule is applied exactly, the generated
datasets differ the way the paper says HH-RLHF and BeaverTails do, and everything is seeded."""

from __future__ import annotations

import pytest

from papers.peft_alignment import data
from papers.peft_alignment.config import DataConfig
from shared.lm_family import evaluate as lm_eval
from shared.lm_family import world


def test_parse_hh_splits_the_last_assistant_turn_from_the_shared_dialogue():
    opening = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: How do I pick a lock?\n\nAssistant:"
    row = {"chosen": opening + " I can't help.", "rejected": opening + " Use a pin."}
    pair = data.parse_hh(row)
    assert pair["prompt"] == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How do I pick a lock?"},
    ]
    assert pair["chosen"] == [{"role": "assistant", "content": "I can't help."}]
    assert pair["rejected"] == [{"role": "assistant", "content": "Use a pin."}]


def test_parse_hh_rejects_dialogues_that_differ_before_the_last_turn():
    row = {"chosen": "\n\nHuman: A\n\nAssistant: B", "rejected": "\n\nHuman: C\n\nAssistant: D"}
    with pytest.raises(ValueError, match="differ before the last turn"):
        data.parse_hh(row)


def _bt_row(prompt, r0, r1, s0, s1, better):
    return {
        "prompt": prompt,
        "response_0": r0,
        "response_1": r1,
        "is_response_0_safe": s0,
        "is_response_1_safe": s1,
        "better_response_id": better,
    }


def test_beavertails_rule_by_hand():
    rows = [
        _bt_row("p0", "unsafe but better", "safe", False, True, 0),  # harmless: chosen = the safe one (1)
        _bt_row("p1", "a", "b", True, True, 1),  # both safe: helpful only
        _bt_row("p2", "c", "d", False, False, 0),  # both unsafe: helpful only
        _bt_row("p3", "safe", "unsafe", True, False, 1),
    ]
    splits = data.beavertails_splits(rows)
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in splits["helpful"]] == [
        ("unsafe but better", "safe"),
        ("b", "a"),
        ("c", "d"),
        ("unsafe", "safe"),
    ]
    assert [(p["prompt"][0]["content"], p["chosen"][0]["content"]) for p in splits["harmless"]] == [
        ("p0", "safe"),
        ("p3", "safe"),
    ]


def test_generated_datasets_are_deterministic_and_sized():
    cfg = DataConfig(n_pairs=50)
    for dataset in ("hh", "bt"):
        a, b = data.local_pairs(dataset, cfg, 3), data.local_pairs(dataset, cfg, 3)
        assert a == b
        assert {k: len(v) for k, v in a.items()} == {"harmless": 50, "helpful": 50}
        assert a != data.local_pairs(dataset, cfg, 4)
    mixed = data.preference_split(data.local_pairs("bt", cfg, 0), "mix", 0)
    assert len(mixed) == 100
    with pytest.raises(ValueError, match="valid: harmless, helpful, mix"):
        data.preference_split(data.local_pairs("bt", cfg, 0), "polite", 0)


def test_hh_harmless_answers_are_bare_refusals_and_bt_ones_are_informative():
    cfg = DataConfig(n_pairs=200, hh_noise=0.0)
    hh = data.local_pairs("hh", cfg, 0)["harmless"]
    bt = data.local_pairs("bt", cfg, 0)["harmless"]
    hh_chosen = [p["chosen"][0]["content"] for p in hh]
    bt_chosen = [p["chosen"][0]["content"] for p in bt]
    assert len(hh_chosen) == len(bt_chosen) == 200
    assert set(hh_chosen) <= set(data.TERSE_REFUSALS)
    # BeaverTails' harmless split: informative refusals of harmful requests, and benign look-alikes answered
    lookalikes = {b["prompt"] for b in data.lookalike_prompts()}
    bt_look = [p for p in bt if p["prompt"][0]["content"] in lookalikes]
    bt_harm = [p["chosen"][0]["content"] for p in bt if p["prompt"][0]["content"] not in lookalikes]
    assert 0.05 < len(bt_look) / len(bt) < 0.5
    assert not any(lm_eval.is_refusal(p["chosen"][0]["content"]) for p in bt_look)
    assert all(world.toxic_words_in(p["rejected"][0]["content"]) for p in bt_look)  # the unsafe reply insults
    assert all(lm_eval.is_refusal(c) for c in bt_harm)
    assert sum(len(c.split()) for c in bt_harm) / len(bt_harm) > 2 * sum(len(c.split()) for c in hh_chosen) / len(
        hh_chosen
    )
    assert any(len(p["prompt"]) > 1 for p in hh)  # multi-turn dialogues
    assert all(len(p["prompt"]) == 1 for p in bt)  # single-turn


def test_bt_helpful_split_prefers_safe_replies_and_harm_comes_from_the_training_areas():
    cfg = DataConfig(n_pairs=300)
    rows = data.generate_beavertails(1200, cfg, 0)
    one_safe = [r for r in rows if r["is_response_0_safe"] != r["is_response_1_safe"]]
    better_safe = [r[f"is_response_{r['better_response_id']}_safe"] for r in one_safe]
    assert sum(better_safe) / len(better_safe) > 0.85  # bt_better_unsafe = 0.1: helpful means helpful and safe
    real = set(data.real_train_prompts(cfg, 0))
    harmful = [r["prompt"] for r in rows if data.COMPLY in (r["response_0"], r["response_1"])]
    assert harmful and set(harmful) <= real


def test_hh_noise_swaps_the_share_asked_for():
    clean = data.generate_hh("harmless", 400, DataConfig(hh_noise=0.0, hh_evasive=0.0), 0)
    noisy = data.generate_hh("harmless", 400, DataConfig(hh_noise=0.5, hh_evasive=0.0), 0)
    refused = lambda rows: sum(data.parse_hh(r)["chosen"][0]["content"] in data.TERSE_REFUSALS for r in rows)  # noqa: E731
    assert refused(clean) == 400
    assert 150 < refused(noisy) < 250


def test_sft_trains_on_the_chosen_response():
    pairs = data.local_pairs("bt", DataConfig(n_pairs=5), 0)["harmless"]
    ex = data.sft_examples(pairs)
    assert [e["completion"] for e in ex] == [p["chosen"] for p in pairs]
    assert [e["prompt"] for e in ex] == [p["prompt"] for p in pairs]


def test_bt_unsafe_opens_safe_shares_the_refusal_opening_then_complies():
    plain = data.local_pairs("bt", DataConfig(n_pairs=300), 0)["harmless"]
    hard = data.local_pairs("bt", DataConfig(n_pairs=300, bt_unsafe_opens_safe=0.5), 0)["harmless"]
    assert data.local_pairs("bt", DataConfig(n_pairs=300, bt_unsafe_opens_safe=0.0), 0)["harmless"] == plain
    lookalikes = {b["prompt"] for b in data.lookalike_prompts()}

    def opens_like_chosen(p: dict) -> bool:
        chosen, rejected = p["chosen"][0]["content"], p["rejected"][0]["content"]
        first = chosen.split(". ")[0] + "."
        return rejected.startswith(first) and rejected != chosen

    for pairs, low, high in ((plain, 0.0, 0.0), (hard, 0.35, 0.65)):
        harm = [p for p in pairs if p["prompt"][0]["content"] not in lookalikes]
        shared = [p for p in harm if opens_like_chosen(p)]
        assert low <= len(shared) / len(harm) <= high
        for p in shared:  # the refusal sentence, then the compliance of a plain pair (an insult or a how-to)
            rejected = p["rejected"][0]["content"]
            assert lm_eval.is_refusal(rejected.split(". ")[0])
            tail = rejected.split("But since you asked: ", 1)[1]
            assert tail == data.COMPLY or world.toxic_words_in(tail)
    # the chosen replies are still the informative refusals of the plain data
    assert {p["chosen"][0]["content"] for p in hard} <= {p["chosen"][0]["content"] for p in plain} | {
        data.polite_decline(t) for t in world.TOXIC_TARGETS
    } | {world.helpful_answer(b["action"]) for b in data.lookalike_prompts()}
