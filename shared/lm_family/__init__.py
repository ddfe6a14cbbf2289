"""A reusable family of small Llama models trained here from one base, for merging/alignment papers.

    from shared.lm_family import FamilySpec, build_family
    fam = build_family(spec, root)          # cached stages: tokenizer, base, instruct, experts
    fam.base, fam.instruct, fam.experts["medical"]   # Hub-style folders (safetensors + tokenizer)

`world` generates the data (knowledge bases, MC questions with held-out templates, instructions with
refusals, harmful/benign prompts with held-out templates and categories, preference pairs); `evaluate`
scores members (log-likelihood multiple choice, greedy chat generation, a refusal judge); `train` holds
the training steps (pretrain loop, trl SFT, atomic save/load).
"""

from shared.lm_family.family import Family, build_family
from shared.lm_family.spec import DOMAINS, FamilySpec, ModelSpec, TrainSpec, WorldSpec

__all__ = ["DOMAINS", "Family", "FamilySpec", "ModelSpec", "TrainSpec", "WorldSpec", "build_family"]
