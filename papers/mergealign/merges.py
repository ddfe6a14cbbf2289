"""MergeAlign and the merge baselines as mergekit configurations, plus a hand-computed reference.

MergeAlign(a) = base + a * (expert - base) + (1 - a) * (instruct - base): mergekit `task_arithmetic`
with `base_model` = base, the expert at weight a and the instruct model at weight 1 - a, normalize
false, lambda 1. SLERP interpolates instruct (t = 0) and expert (t = 1) along the sphere, tensor by
tensor. TIES and DARE-TIES merge the two task vectors over the base with trimming/dropping at
`density`, sign election and normalisation (mergekit's defaults), both vectors at weight 0.5.
"""

from __future__ import annotations

from pathlib import Path

from shared.progress import get_logger

log = get_logger(__name__)


def task_arithmetic(base: str, models: dict[str, float], dtype: str = "float32") -> dict:
    """base + sum_i w_i (model_i - base), as a mergekit config dict."""
    return {
        "merge_method": "task_arithmetic",
        "base_model": base,
        "models": [{"model": m, "parameters": {"weight": w}} for m, w in models.items()],
        "parameters": {"normalize": False, "lambda": 1.0},
        "dtype": dtype,
    }


def mergealign(base: str, expert: str, instruct: str, alpha: float, dtype: str = "float32") -> dict:
    return task_arithmetic(base, {expert: alpha, instruct: 1.0 - alpha}, dtype)


def slerp(instruct: str, expert: str, t: float, dtype: str = "float32") -> dict:
    return {
        "merge_method": "slerp",
        "base_model": instruct,
        "models": [{"model": instruct}, {"model": expert}],
        "parameters": {"t": t},
        "dtype": dtype,
    }


def ties(base: str, expert: str, instruct: str, density: float, method: str = "ties", dtype: str = "float32") -> dict:
    if method not in ("ties", "dare_ties"):
        raise ValueError(f"method must be 'ties' or 'dare_ties', got {method!r}")
    return {
        "merge_method": method,
        "base_model": base,
        "models": [{"model": m, "parameters": {"weight": 0.5, "density": density}} for m in (expert, instruct)],
        "parameters": {"normalize": True},
        "dtype": dtype,
    }


def run_mergekit(config: dict, out_dir: str | Path, seed: int = 0, device: str = "cpu") -> Path:
    """Run one merge with mergekit's Python API; the output folder has the tokenizer copied in."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    out_dir = Path(out_dir)
    options = MergeOptions(
        device=device, copy_tokenizer=True, random_seed=seed, quiet=True, lazy_unpickle=False, write_model_card=False
    )
    run_merge(MergeConfiguration.model_validate(config), str(out_dir), options=options)
    return out_dir


def load_state(model_dir: str | Path) -> dict:
    """All tensors of a saved model (every *.safetensors shard), by name."""
    from safetensors.torch import load_file

    state: dict = {}
    for shard in sorted(Path(model_dir).glob("*.safetensors")):
        state.update(load_file(str(shard)))
    if not state:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}")
    return state


def hand_task_arithmetic(base: dict, models: list[tuple[dict, float]]) -> dict:
    """The reference: base + sum_i w_i (model_i - base), tensor by tensor, in float64 then float32."""
    out = {}
    for name, b in base.items():
        acc = b.double().clone()
        for state, w in models:
            acc += w * (state[name].double() - b.double())
        out[name] = acc.float()
    return out
