"""The family's stages, each cached in a folder named by a content hash of its spec and its parents.

    tokenizer  BPE trained on the prose plus the generated world's text (shared.text.tokenizer)
    base       LlamaForCausalLM pretrained from scratch on local prose
    instruct   base after SFT (trl) on generated instructions, harmful requests answered with a refusal
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
VERSION = 2  # bump when a stage's code changes what it produces


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
        sample = sample + world.toxic_comments(spec.world.toxic_comments, spec.seed)
        sample += world.web_dialogues(spec.world.web_dialogues, spec.seed)
        random.Random(spec.seed + 1).shuffle(sample)
    return sample


def heldout_prose(spec: FamilySpec) -> list[str]:
    """Prose paragraphs the family never trained on: those after the sample in the same seeded order, less
    any that also occur in the sample (the KJV repeats some verses word for word)."""
    from shared.text.prose import load_prose

    paragraphs = load_prose()
    random.Random(spec.seed).shuffle(paragraphs)
    n = spec.world.prose_paragraphs
    seen = set(paragraphs[:n])
    return list(dict.fromkeys(p for p in paragraphs[n:] if p not in seen)) if n else []


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
        texts += [
            world.chat_text(e["prompt"] + e["completion"])
            for e in world.instructions(spec.world.n_instructions, spec.world.n_refusals, prose, spec.seed)
        ]
        tok = train_bpe(texts, spec.vocab_size, max_length=spec.model.max_position_embeddings)
        with atomic_dir(folder) as tmp:
            tok.save_pretrained(str(tmp))

    key = {"vocab": spec.vocab_size, "world": to_dict(spec.world), "seed": spec.seed, "domains": spec.domains}
    return cached_folder(root, "tokenizer", key, build)


def build_family(spec: FamilySpec, root: str | Path, stages: tuple[str, ...] = ("instruct", "experts")) -> Family:
    """Build (or find cached) every member of the family; `stages` picks what beyond the base is built."""
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
        losses = pretrain(model, [(prose_tokens(), 1.0)], spec.base, spec.seed, "base pretraining", spec.device)
        save_model(model, tok, folder)
        atomic_write_json(folder / "train_log.json", {"loss": losses})

    base_key = {"tok": tok_key, "model": to_dict(spec.model), "train": to_dict(spec.base), "seed": spec.seed}
    family.base, family.keys["base"] = cached_folder(root, "base", base_key, build_base)

    if "instruct" in stages:

        def build_instruct(folder: Path) -> None:
            examples = world.instructions(spec.world.n_instructions, spec.world.n_refusals, prose, spec.seed)
            model, losses = sft(
                load_model(family.base), tok, examples, spec.instruct, spec.seed, spec.num_threads, spec.device
            )
            save_model(model, tok, folder)
            atomic_write_json(folder / "train_log.json", {"loss": losses})

        key = {"parent": family.keys["base"], "train": to_dict(spec.instruct), "world": to_dict(spec.world)}
        family.instruct, family.keys["instruct"] = cached_folder(root, "instruct", key, build_instruct)

    if "experts" in stages:
        for domain in spec.domains:

            def build_expert(folder: Path, domain: str = domain) -> None:
                docs = world.domain_corpus(world.knowledge_base(domain, spec.world.n_entities, spec.seed))
                random.Random(spec.seed).shuffle(docs)
                model = load_model(family.base)
                r, c = spec.world.replay_fraction, spec.world.expert_chat_fraction
                streams = [(encode_documents(tok, docs), 1.0 - r - c), (prose_tokens(), r)]
                if c > 0:
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
