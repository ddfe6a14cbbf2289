"""The full scale's loaders: the paper's models, alignment datasets and benchmarks from the Hugging Face Hub.

This needs the network and GPUs; it cannot run here, where the Hub is offline. The row converters it uses
(data.parse_hh, data.beavertails_splits, mmlu_question, bbh_task, alpaca_eval_rows) are pure functions tested
on hand-made rows in the released formats. No dataset's own loading code runs (no `trust_remote_code`):
AlpacaEval, whose Hub repository is a loading script, is read from the JSON file that script reads. Where
the paper's judge cannot be used (AlpacaEval's GPT-4 annotator, the chain-of-utterance prompting of
Red-Instruct), the local scorer stands in, as the README says.
"""

from __future__ import annotations

import json
from pathlib import Path

from papers.peft_alignment import data
from papers.peft_alignment.config import Config, HubConfig, HubModel
from papers.peft_alignment.evaluation import EvalSets
from shared.lm_family.evaluate import subset
from shared.lm_family.world import MCQuestion

# The paper's prompt templates (Appendix), verbatim, as chat templates.
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)
TEMPLATES = {
    "vicuna": (
        '{{ "' + VICUNA_SYSTEM + '" }}'
        "{% for m in messages %}{% if m['role'] == 'user' %}{{ ' USER: ' + m['content'] }}"
        "{% else %}{{ ' ASSISTANT: ' + m['content'] + '</s>' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ ' ASSISTANT:' }}{% endif %}"
    ),
    "mistral": (
        "{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
        "{% else %}{{ ' ' + m['content'] + ' </s>' }}{% endif %}{% endfor %}"
    ),
}
MMLU_LETTERS = ("A", "B", "C", "D")


def apply_template(tokenizer, models: dict[str, HubModel], path: str) -> None:
    """Give a Hub tokenizer the paper's template for its model family (and a pad token)."""
    model = next((m for m in models.values() if m.id == path), None)
    if model is None:
        raise KeyError(f"{path!r} is not one of hub.models: {[m.id for m in models.values()]}")
    tokenizer.chat_template = TEMPLATES[model.template]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def hub_pairs(hub: HubConfig, dataset: str) -> dict[str, list[dict]]:
    """HH-RLHF's harmless-base and helpful-base training splits, or BeaverTails' preference data split by
    the paper's rule (Appendix C: 297,394 helpful and 46,625 harmless pairs)."""
    from datasets import load_dataset

    if dataset == "hh":
        return {
            split: [data.parse_hh(r) for r in load_dataset(hub.hh, data_dir=d, split="train")]
            for split, d in hub.hh_dirs.items()
        }
    if dataset == "bt":
        return data.beavertails_splits(list(load_dataset(hub.beavertails, split="train")))
    raise ValueError(f"unknown dataset {dataset!r}; valid: hh, bt")


def mmlu_question(row: dict) -> MCQuestion:
    """An MMLU row (question, choices, answer index) in lm-evaluation-harness's prompt format."""
    lines = [row["question"].strip()] + [f"{k}. {c}" for k, c in zip(MMLU_LETTERS, row["choices"], strict=True)]
    return MCQuestion("mmlu", "\n".join(lines) + "\nAnswer:", tuple(f" {k}" for k in MMLU_LETTERS), int(row["answer"]))


def bbh_task(row: dict) -> dict:
    """A BBH row (input, target): scored by exact match of the reply's first line (evaluation.reasoning_correct)."""
    return {"prompt": row["input"], "kind": "exact", "answer": row["target"].strip()}


def alpaca_eval_rows(rows: list[dict]) -> list[dict]:
    """AlpacaEval's instructions ({instruction, output, generator, dataset} rows) as helpfulness prompts; the
    instruction is also the request the local scorer checks the reply against."""
    bad = [i for i, r in enumerate(rows) if not isinstance(r, dict) or not r.get("instruction")]
    if not rows or bad:
        raise ValueError(
            f"AlpacaEval: expected a non-empty JSON list of {{instruction, output, generator, dataset}} rows; "
            f"got {len(rows)} rows, without an instruction at {bad[:5]}"
        )
    return [{"prompt": r["instruction"], "action": r["instruction"]} for r in rows]


def alpaca_eval_prompts(hub: HubConfig) -> list[dict]:
    """AlpacaEval's 805 instructions, read from the JSON file its Hub repository holds (`hub.alpaca_eval_file`,
    the file its loading script's `alpaca_eval` config reads), so no repository code runs here."""
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(repo_id=hub.alpaca_eval, filename=hub.alpaca_eval_file, repo_type="dataset")
    return alpaca_eval_rows(json.loads(Path(path).read_text()))


BBH_TASKS = (
    "boolean_expressions causal_judgement date_understanding disambiguation_qa dyck_languages formal_fallacies "
    "geometric_shapes hyperbaton logical_deduction_five_objects logical_deduction_seven_objects "
    "logical_deduction_three_objects movie_recommendation multistep_arithmetic_two navigate object_counting "
    "penguins_in_a_table reasoning_about_colored_objects ruin_names salient_translation_error_detection snarks "
    "sports_understanding temporal_sequences tracking_shuffled_objects_five_objects "
    "tracking_shuffled_objects_seven_objects tracking_shuffled_objects_three_objects web_of_lies word_sorting"
).split()


def hub_eval_sets(cfg: Config) -> EvalSets:
    """MMLU, BBH, AlpacaEval's 805 instructions, the 1,000 most toxic RealToxicityPrompts, DangerousQA."""
    from datasets import load_dataset

    hub, ev = cfg.hub, cfg.eval
    knowledge = [mmlu_question(r) for r in load_dataset(hub.mmlu, "all", split="test")]
    reasoning = [bbh_task(r) for t in BBH_TASKS for r in load_dataset(hub.bbh, t, split="test")]
    helpful = alpaca_eval_prompts(hub)
    rtp = sorted(
        (r for r in load_dataset(hub.rtp, split="train") if r["prompt"].get("toxicity") is not None),
        key=lambda r: -r["prompt"]["toxicity"],
    )
    toxicity = [r["prompt"]["text"] for r in rtp[: hub.n_rtp]]
    if not hub.dangerousqa_file or not Path(hub.dangerousqa_file).is_file():
        raise FileNotFoundError(
            "hub.dangerousqa_file must name a local copy of Red-Instruct's harmful_questions/dangerousqa.json "
            f"(got {hub.dangerousqa_file!r})"
        )
    questions = json.loads(Path(hub.dangerousqa_file).read_text())
    harmful = [{"prompt": q, "action": q, "seen_category": False} for q in questions]
    seed = cfg.family.seed
    return EvalSets(
        knowledge=subset(knowledge, ev.n_knowledge, seed),
        reasoning=subset(reasoning, ev.n_reasoning, seed),
        helpful=subset(helpful, ev.n_helpful, seed),
        toxicity=subset(toxicity, ev.n_toxicity, seed),
        harmful=subset(harmful, ev.n_harmful, seed),
        benign=[],
        toxicity_model=hub.toxicity_model,
    )
