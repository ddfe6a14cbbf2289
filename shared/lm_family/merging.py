"""Model merging with mergekit's Python API: configurations for the methods papers use, and the runner.

Every function returns a mergekit configuration dict (what a `mergekit-yaml` file holds), so a merge is
data that can be hashed, logged and saved beside its output; `run_mergekit` executes one on CPU or GPU.
"""

from __future__ import annotations

from pathlib import Path

METHODS = ("task_arithmetic", "slerp", "ties", "dare_ties")


def task_arithmetic(base: str, models: dict[str, float], dtype: str = "float32") -> dict:
    """base + sum_i w_i (model_i - base) (normalize false, lambda 1)."""
    return {
        "merge_method": "task_arithmetic",
        "base_model": base,
        "models": [{"model": m, "parameters": {"weight": w}} for m, w in models.items()],
        "parameters": {"normalize": False, "lambda": 1.0},
        "dtype": dtype,
    }


def slerp(first: str, second: str, t: float, dtype: str = "float32") -> dict:
    """Spherical interpolation, tensor by tensor: t = 0 gives `first`, t = 1 gives `second`."""
    return {
        "merge_method": "slerp",
        "base_model": first,
        "models": [{"model": first}, {"model": second}],
        "parameters": {"t": t},
        "dtype": dtype,
    }


def ties(base: str, models: dict[str, float], density: float, method: str = "ties", dtype: str = "float32") -> dict:
    """TIES or DARE-TIES over `base`: task vectors trimmed (TIES) or randomly dropped and rescaled (DARE)
    to `density`, sign election, weighted sum normalised by the weights (mergekit's defaults)."""
    if method not in ("ties", "dare_ties"):
        raise ValueError(f"method must be 'ties' or 'dare_ties', got {method!r}")
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    return {
        "merge_method": method,
        "base_model": base,
        "models": [{"model": m, "parameters": {"weight": w, "density": density}} for m, w in models.items()],
        "parameters": {"normalize": True},
        "dtype": dtype,
    }


def run_mergekit(config: dict, out_dir: str | Path, seed: int = 0, device: str = "cpu") -> Path:
    """Run one merge into `out_dir` (written atomically: a folder there is a finished merge); the tokenizer
    is copied in, and DARE's random drops are seeded."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    from shared.io import atomic_dir

    options = MergeOptions(
        device=device, copy_tokenizer=True, random_seed=seed, quiet=True, lazy_unpickle=False, write_model_card=False
    )
    with atomic_dir(out_dir) as tmp:
        run_merge(MergeConfiguration.model_validate(config), str(tmp), options=options)
    return Path(out_dir)


def load_state(model_dir: str | Path) -> dict:
    """All tensors of a saved model (every *.safetensors shard), by name."""
    from safetensors.torch import load_file

    state: dict = {}
    for shard in sorted(Path(model_dir).glob("*.safetensors")):
        state.update(load_file(str(shard)))
    if not state:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}")
    return state


def weights_key(path: str) -> str:
    """A content key for a model: the hash of its weights (a local folder) or its id (a Hub model)."""
    import hashlib

    p = Path(path)
    if not p.is_dir():
        return path
    h = hashlib.sha256()
    for shard in sorted(p.glob("*.safetensors")):
        h.update(shard.read_bytes())
    return h.hexdigest()[:16]
