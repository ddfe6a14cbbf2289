"""Our similarity analysis (the paper's metrics are unknown): vectors, distances, CKA of hidden states.

- per-layer cosine of the flattened domain and alignment vectors, their norms, and the share of
  coordinates where their signs agree (the TIES sign-election view);
- per-layer L2 distance of a merged model to each parent;
- linear CKA (Kornblith et al. 2019) between two models' hidden states on the same probe texts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

_LAYER = re.compile(r"\.layers\.(\d+)\.")


def group_of(name: str) -> str:
    """'layer3' for decoder-layer tensors, 'embed' for the input embedding, 'head' for norm + lm_head."""
    m = _LAYER.search(name)
    if m:
        return f"layer{int(m.group(1))}"
    return "embed" if "embed_tokens" in name else "head"


def group_order(groups: set[str]) -> list[str]:
    layers = sorted((g for g in groups if g.startswith("layer")), key=lambda g: int(g[5:]))
    return [g for g in ("embed",) if g in groups] + layers + [g for g in ("head",) if g in groups]


def _flat_by_group(state: dict, ref: dict | None = None) -> dict[str, torch.Tensor]:
    parts: dict[str, list[torch.Tensor]] = {}
    for name in sorted(state):
        t = state[name].double().flatten()
        if ref is not None:
            t = t - ref[name].double().flatten()
        parts.setdefault(group_of(name), []).append(t)
    return {g: torch.cat(v) for g, v in parts.items()}


def vector_similarity(base: dict, expert: dict, instruct: dict) -> dict[str, dict[str, float]]:
    """Per group (and 'all'): cos(τ_dom, τ_align), both norms, and the sign-agreement share."""
    dom, ali = _flat_by_group(expert, base), _flat_by_group(instruct, base)
    dom["all"], ali["all"] = torch.cat(list(dom.values())), torch.cat(list(ali.values()))
    out = {}
    for g in [*group_order(set(dom) - {"all"}), "all"]:
        a, b = dom[g], ali[g]
        both = (a != 0) & (b != 0)
        out[g] = {
            "cosine": float(a @ b / (a.norm() * b.norm()).clamp_min(1e-30)),
            "norm_domain": float(a.norm()),
            "norm_alignment": float(b.norm()),
            "sign_agreement": float(((a > 0) == (b > 0))[both].double().mean()) if both.any() else float("nan"),
        }
    return out


def l2_distances(model: dict, parents: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per group (and 'all'): ||θ_model − θ_parent||_2 for each named parent."""
    out: dict[str, dict[str, float]] = {}
    for pname, pstate in parents.items():
        diff = _flat_by_group(model, pstate)
        total = 0.0
        for g, v in diff.items():
            sq = float(v @ v)
            total += sq
            out.setdefault(g, {})[pname] = sq**0.5
        out.setdefault("all", {})[pname] = total**0.5
    return {g: out[g] for g in [*group_order(set(out) - {"all"}), "all"]}


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations of the same n examples (rows): ||YᵀX||²_F / (||XᵀX||_F ||YᵀY||_F)
    after centring the columns."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka needs two 2-D arrays with the same rows, got {x.shape} and {y.shape}")
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    num = np.linalg.norm(y.T @ x, "fro") ** 2
    den = np.linalg.norm(x.T @ x, "fro") * np.linalg.norm(y.T @ y, "fro")
    return float(num / den) if den > 0 else float("nan")


def hidden_states(model_dir: str | Path, texts: Sequence[str], device: str = "cpu") -> list[np.ndarray]:
    """Per layer (embeddings first), the hidden states of every real token of `texts`, stacked [tokens, d]."""
    from transformers import AutoTokenizer

    from shared.lm_family.train import load_model

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = load_model(model_dir).to(device)
    per_layer: list[list[np.ndarray]] = []
    with torch.inference_mode():
        for text in texts:
            enc = tok(text, return_tensors="pt").to(device)
            hs = model(**enc, output_hidden_states=True).hidden_states
            if not per_layer:
                per_layer = [[] for _ in hs]
            for i, h in enumerate(hs):
                per_layer[i].append(h[0].float().cpu().numpy())
    return [np.concatenate(v) for v in per_layer]


def cka_by_layer(a: list[np.ndarray], b: list[np.ndarray]) -> list[float]:
    if len(a) != len(b):
        raise ValueError(f"models have {len(a)} and {len(b)} hidden-state layers")
    return [linear_cka(x, y) for x, y in zip(a, b, strict=True)]
