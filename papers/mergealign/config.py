"""The experiment's config, whole: one dataclass tree, loaded from configs/<scale>.yaml.

`source: local` builds the small-Llama family here (shared.lm_family) and evaluates on the generated
world; `source: hub` (full) names the paper's Hugging Face models, datasets and judges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.config import ConfigError
from shared.lm_family.spec import FamilySpec

BASELINES = ("slerp", "ties", "dare_ties", "dpo", "orpo")
JUDGES = ("refusal", "llama_guard", "md_judge")


@dataclass
class MergeConfig:
    """MergeAlign's weight and its sweep, and the merge baselines' parameters (mergekit)."""

    alpha: float = 0.5  # the paper's weighting (assumption: equal weights, the brief's fallback)
    alphas: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    slerp_t: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])  # 0 = instruct, 1 = expert
    ties_density: float = 0.5
    dare_density: float = 0.5
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    dtype: str = "float32"


@dataclass
class PreferenceConfig:
    """DPO and ORPO on the expert with LoRA, merged back after training (trl + peft)."""

    n_pairs: int = 400
    steps: int = 60
    batch_size: int = 8
    lr: float = 5e-4
    beta: float = 0.1
    lora_r: int = 16
    lora_alpha: int = 32
    max_length: int = 96
    hub_dataset: str = "Anthropic/hh-rlhf"  # full: the preference data the surveys report (7,000 samples)
    hub_samples: int = 7000
    epochs: int = 3  # full: epochs over hub_samples (local scales count steps)


@dataclass
class EvalConfig:
    max_new_tokens: int = 24
    batch_size: int = 32
    n_harmful: int = 0  # 0 = every held-out harmful prompt
    n_benign: int = 0  # 0 = every held-out benign (trigger-word) prompt
    n_questions: int = 0  # per domain; 0 = every fact
    judge: Literal["refusal", "llama_guard", "md_judge"] = "refusal"
    n_probe: int = 32  # prompts whose hidden states feed linear CKA


@dataclass
class HubConfig:
    """The full scale's models, datasets and judges (real ids; needs the network and GPUs)."""

    base: str = "meta-llama/Meta-Llama-3-8B"
    instruct: str = "meta-llama/Meta-Llama-3-8B-Instruct"
    experts: dict[str, str] = field(
        default_factory=lambda: {
            "medical": "instruction-pretrain/medicine-Llama3-8B",
            "financial": "instruction-pretrain/finance-Llama3-8B",
        }
    )
    domain_tasks: dict[str, str] = field(
        default_factory=lambda: {"medical": "AdaptLLM/medicine-tasks", "financial": "AdaptLLM/finance-tasks"}
    )
    domain_subsets: dict[str, list[str]] = field(
        default_factory=lambda: {
            "medical": ["PubMedQA", "ChemProt", "MQP", "RCT", "USMLE"],
            "financial": ["FPB", "FiQA_SA", "Headline", "ConvFinQA", "NER"],
        }
    )
    safety_sets: dict[str, str] = field(
        default_factory=lambda: {"beavertails": "PKU-Alignment/BeaverTails", "hh_redteam": "Anthropic/hh-rlhf"}
    )
    judges: dict[str, str] = field(
        default_factory=lambda: {
            "llama_guard": "meta-llama/Llama-Guard-3-8B",
            "md_judge": "OpenSafetyLab/MD-Judge-v0.1",
        }
    )
    judge_for: dict[str, str] = field(default_factory=lambda: {"beavertails": "llama_guard", "hh_redteam": "md_judge"})
    dtype: str = "bfloat16"


@dataclass
class Config:
    scale: str
    seeds: list[int]
    source: Literal["local", "hub"] = "local"
    family: FamilySpec = field(default_factory=FamilySpec)
    merge: MergeConfig = field(default_factory=MergeConfig)
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    hub: HubConfig = field(default_factory=HubConfig)

    def validate(self) -> None:
        """Combinations only: each number's own range is checked by shared.config (RANGES)."""
        if not self.seeds:
            raise ConfigError("seeds: need at least one seed")
        if self.merge.alpha not in self.merge.alphas:
            raise ConfigError(f"merge.alpha {self.merge.alpha} must be one of merge.alphas {self.merge.alphas}")
        unknown = [b for b in self.merge.baselines if b not in BASELINES]
        if unknown:
            raise ConfigError(f"merge.baselines: unknown {unknown}; valid: {', '.join(BASELINES)}")
        if self.source == "local" and self.eval.judge != "refusal":
            raise ConfigError(f"eval.judge {self.eval.judge!r} needs source: hub; the local scales use 'refusal'")
        if self.source == "hub":
            missing = [d for d in self.family.domains if d not in self.hub.experts]
            if missing:
                raise ConfigError(f"hub.experts lacks {missing}; it has {sorted(self.hub.experts)}")
            bad_j = [j for j in self.hub.judge_for.values() if j not in self.hub.judges]
            if bad_j:
                raise ConfigError(f"hub.judge_for names unknown judge(s) {bad_j}; valid: {sorted(self.hub.judges)}")
