"""MergeAlign and the merge baselines as mergekit configurations, plus a hand-computed reference.

MergeAlign(a) = base + a * (expert - base) + (1 - a) * (instruct - base): mergekit `task_arithmetic`
with `base_model` = base, the expert at weight a and the instruct model at weight 1 - a, normalize
false, lambda 1. SLERP interpolates instruct (t = 0) and expert (t = 1) along the sphere, tensor by
tensor. TIES and DARE-TIES merge the two task vectors over the base with trimming/dropping at
`density`, sign election and normalisation (mergekit's defaults), both vectors at weight 0.5.
"""

from __future__ import annotations

from shared.lm_family.merging import load_state, run_mergekit, slerp, task_arithmetic
from shared.lm_family.merging import ties as ties_merge

__all__ = ["hand_task_arithmetic", "load_state", "mergealign", "run_mergekit", "slerp", "task_arithmetic", "ties"]


def mergealign(base: str, expert: str, instruct: str, alpha: float, dtype: str = "float32") -> dict:
    return task_arithmetic(base, {expert: alpha, instruct: 1.0 - alpha}, dtype)


def ties(base: str, expert: str, instruct: str, density: float, method: str = "ties", dtype: str = "float32") -> dict:
    """TIES / DARE-TIES of the two task vectors over the base, both at weight 0.5."""
    return ties_merge(base, {expert: 0.5, instruct: 0.5}, density, method, dtype)


def hand_task_arithmetic(base: dict, models: list[tuple[dict, float]]) -> dict:
    """The reference: base + sum_i w_i (model_i - base), tensor by tensor, in float64 then float32."""
    out = {}
    for name, b in base.items():
        acc = b.double().clone()
        for state, w in models:
            acc += w * (state[name].double() - b.double())
        out[name] = acc.float()
    return out
