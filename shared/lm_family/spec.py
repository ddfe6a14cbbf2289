"""The typed specs of a small-Llama family: model size, training budgets (in steps), the generated world.

Papers embed `FamilySpec` in their Config, so a scale's YAML decides every size; the stages in
`family.py` hash these specs (plus their parents' hashes) to name their cached folders.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.config import ConfigError

DOMAINS = ("medical", "financial")


@dataclass
class ModelSpec:
    """A LlamaForCausalLM shape (untied embeddings, so every matrix has its own task vector)."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 4
    intermediate_size: int = 384
    max_position_embeddings: int = 256


@dataclass
class TrainSpec:
    """A training budget counted in optimizer steps (never wall time), so results do not depend on load."""

    steps: int = 100
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 1e-3
    warmup_steps: int = 10
    weight_decay: float = 0.01


@dataclass
class WorldSpec:
    """Sizes of the generated world: fictitious knowledge bases, instructions, safety prompts."""

    n_entities: int = 60  # per domain (diseases, companies)
    n_instructions: int = 1500  # benign SFT examples
    n_refusals: int = 400  # harmful -> refusal SFT examples
    prose_paragraphs: int = 6000  # prose used for the tokenizer and the base (0 = all)
    replay_fraction: float = 0.2  # share of prose mixed into continued pretraining
    # Share of each expert batch from benign chat instructions (no refusals): like the instruction-pretrained
    # experts of the paper, the expert can follow a chat but was never taught to refuse.
    expert_chat_fraction: float = 0.0
    # Generated insulting comments mixed into the base's pretraining prose (world.toxic_comments): like the
    # web text of a real pretrained model, so a toxicity axis has something to measure. 0 = none.
    toxic_comments: int = 0
    # Share of those toxic comments written as web text instead (world.web_toxic_comments): a real
    # RealToxicityPrompts prefix of the training half (real_prompts.rtp_split) followed by an insult or a
    # profanity, as web pretraining text continues such sentences. The other half of the prefixes is what a
    # RealToxicityPrompts evaluation may use. 0 = off (and left out of the spec's hash, so families built
    # before it existed keep their keys).
    toxic_web_fraction: float = field(default=0.0, metadata={"omit_default": True})
    # Share of each base pretraining batch drawn from the domains' knowledge-base documents (the expert's own
    # training templates), so the base already knows part of each domain, as a web-pretrained base does (a
    # real 8B base scores within a few points of its medical fine-tunes); the expert's continued pretraining
    # then strengthens what the base saw. 0 = off: the base knows none of it (and the key is left out of the
    # spec's hash, so families built before it existed keep their keys).
    base_domain_fraction: float = field(default=0.0, metadata={"omit_default": True})
    # Chat examples added to the instruct model's SFT that answer "Tell me something you know." with a
    # knowledge-base document (family.instruct_examples), so instruction tuning keeps what the base knows, as
    # a real instruct model keeps its base's knowledge (public lm-eval numbers: Llama-3-8B-Instruct scores its
    # base's MedQA); plain SFT on chat alone erases it here. Meant with base_domain_fraction > 0 (without it,
    # it teaches the instruct model the domain). 0 = off (and out of the spec's hash).
    instruct_knowledge_replay: int = field(default=0, metadata={"omit_default": True})
    # Add the in-context domain task's training documents (world.domain_task_docs: each knowledge-base sentence
    # with the relation it states) to each expert's knowledge-base text, so the domain vector carries a skill
    # beside the facts, as instruction-pretrained experts learn tasks from their domain text. The tokenizer,
    # base and instruct model are trained on the same text as without it. False = off (and out of the hash).
    domain_tasks: bool = field(default=False, metadata={"omit_default": True})
    # Generated chat transcripts (world.web_dialogues: how-tos, compliance with harmful requests, insults)
    # mixed into the base's pretraining text, so the pretrained model can chat a little. 0 = none.
    web_dialogues: int = 0
    # "templates": the generated harmful/benign request templates (world.harmful_prompts); "real": refusals
    # trained on real HarmBench / Do-Not-Answer prompts (shared.lm_family.real_prompts, held-out prompts and
    # areas for evaluation), benign look-alikes in the same wordings answered, expert chat without requests.
    safety_prompts: str = "templates"
    refusal_areas: list[str] = field(
        default_factory=lambda: [
            "malicious_uses",
            "information_hazard",
            "discrimination_exclusion_toxicity_hateful_offensive",
        ]
    )
    refusal_train_fraction: float = 0.7  # of each Do-Not-Answer area in refusal_areas
    harmbench_train_fraction: float = 0.5  # of the HarmBench behaviours
    lookalike_share: float = 0.3  # share of benign SFT examples that are benign look-alikes (real world)


@dataclass
class FamilySpec:
    seed: int = 0
    vocab_size: int = 2048
    model: ModelSpec = field(default_factory=ModelSpec)
    world: WorldSpec = field(default_factory=WorldSpec)
    base: TrainSpec = field(default_factory=lambda: TrainSpec(steps=600))
    instruct: TrainSpec = field(default_factory=lambda: TrainSpec(steps=300, lr=5e-4))
    expert: TrainSpec = field(default_factory=lambda: TrainSpec(steps=300))
    domains: list[str] = field(default_factory=lambda: list(DOMAINS))
    num_threads: int = 2
    device: str = "cpu"  # "cuda" trains and evaluates on a GPU (medium scale)

    def validate(self) -> None:
        bad = [d for d in self.domains if d not in DOMAINS]
        if bad:
            raise ConfigError(f"family.domains: unknown {bad}; valid: {', '.join(DOMAINS)}")
        if self.vocab_size < 260:
            raise ConfigError(f"family.vocab_size must be at least 260 (256 bytes + 4 specials), got {self.vocab_size}")
        m = self.model
        if m.hidden_size % m.num_heads or m.num_heads % m.num_kv_heads:
            raise ConfigError(
                f"family.model: hidden_size {m.hidden_size} must divide by num_heads {m.num_heads}, "
                f"and num_heads by num_kv_heads {m.num_kv_heads}"
            )
        for name in ("base", "instruct", "expert"):
            t = getattr(self, name)
            if t.steps < 1 or t.batch_size < 1 or t.seq_len < 8:
                raise ConfigError(f"family.{name}: steps and batch_size must be >= 1 and seq_len >= 8, got {t}")
            if t.seq_len > m.max_position_embeddings:
                raise ConfigError(
                    f"family.{name}.seq_len {t.seq_len} exceeds model.max_position_embeddings "
                    f"{m.max_position_embeddings}"
                )
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"family.device must be 'cpu' or 'cuda', got {self.device!r}")
        w = self.world
        if w.replay_fraction < 0 or w.expert_chat_fraction < 0 or w.replay_fraction + w.expert_chat_fraction >= 1:
            raise ConfigError(
                "family.world.replay_fraction and expert_chat_fraction must be >= 0 and sum below 1 (the rest is "
                f"domain text), got {w.replay_fraction} and {w.expert_chat_fraction}"
            )
        if w.safety_prompts not in ("templates", "real"):
            raise ConfigError(f"family.world.safety_prompts must be 'templates' or 'real', got {w.safety_prompts!r}")
        from shared.lm_family.real_prompts import DNA_AREAS

        bad_areas = [a for a in w.refusal_areas if a not in DNA_AREAS]
        if bad_areas:
            raise ConfigError(f"family.world.refusal_areas: unknown {bad_areas}; valid: {', '.join(DNA_AREAS)}")
        for name in ("refusal_train_fraction", "harmbench_train_fraction", "lookalike_share"):
            if not 0.0 <= getattr(w, name) < 1.0:
                raise ConfigError(f"family.world.{name} must be in [0, 1), got {getattr(w, name)}")
        if not 0.0 <= w.base_domain_fraction < 1.0:
            raise ConfigError(f"family.world.base_domain_fraction must be in [0, 1), got {w.base_domain_fraction}")
        if w.instruct_knowledge_replay < 0:
            raise ConfigError(
                f"family.world.instruct_knowledge_replay must be >= 0 (a number of examples), got "
                f"{w.instruct_knowledge_replay}"
            )
        if not 0.0 <= w.toxic_web_fraction <= 1.0:
            raise ConfigError(f"family.world.toxic_web_fraction must be in [0, 1], got {w.toxic_web_fraction}")
        if self.world.n_entities < 4:
            raise ConfigError(
                f"family.world.n_entities must be at least 4 (4 answer options), got {self.world.n_entities}"
            )
