"""make bench PAPER=mergealign: mergekit's MergeAlign merge against a plain tensor-by-tensor reference
(same inputs, same output file; also a correctness check), and evaluation throughput in prompts/s.

Models have the mini scale's shape (a 4-layer, 128-wide Llama), built from a seeded random init so the
bench needs no trained family. Each timing is the median of REPEATS runs in this one process.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from papers.mergealign import merges as mk
from papers.mergealign.config import Config
from shared.config import load_config
from shared.environment import machine_summary
from shared.io import atomic_write_json
from shared.lm_family import evaluate as ev
from shared.lm_family import world
from shared.lm_family.train import cpu_settings, new_model, save_model
from shared.text.tokenizer import train_bpe

OUT = Path(__file__).parent / "results" / "bench.json"
REPEATS = 3
ALPHA = 0.5


def _median_time(fn) -> tuple[float, object]:
    times, out = [], None
    for _ in range(REPEATS):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def hand_merge(base: str, expert: str, instruct: str, out_dir: Path) -> Path:
    """The reference path: read three safetensors, base + a Δexpert + (1 − a) Δinstruct per tensor, write."""
    from safetensors.torch import save_file

    b, e, i = (mk.load_state(p) for p in (base, expert, instruct))
    merged = mk.hand_task_arithmetic(b, [(e, ALPHA), (i, 1 - ALPHA)])
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in merged.items()}, str(out_dir / "model.safetensors"))
    return out_dir


def main() -> int:
    cfg = load_config(Config, Path(__file__).parent / "configs" / "mini.yaml")
    cpu_settings(cfg.family.num_threads)
    spec = cfg.family.model
    tok = train_bpe(world.domain_corpus(world.knowledge_base("medical", 40, 0)) * 3, 2048)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = {"base": str(save_model(new_model(spec, tok, 0), tok, root / "base"))}
        for k, name in enumerate(("expert", "instruct")):
            m = new_model(spec, tok, 0)
            g = torch.Generator().manual_seed(k + 1)
            with torch.no_grad():
                for p in m.parameters():
                    p.add_(0.02 * torch.randn(p.shape, generator=g))
            paths[name] = str(save_model(m, tok, root / name))
        config = mk.mergealign(paths["base"], paths["expert"], paths["instruct"], ALPHA)
        t_mk, out_mk = _median_time(lambda: mk.run_mergekit(config, root / f"mk-{time.perf_counter_ns()}"))
        t_hand, out_hand = _median_time(
            lambda: hand_merge(
                paths["base"], paths["expert"], paths["instruct"], root / f"hand-{time.perf_counter_ns()}"
            )
        )
        a, b = mk.load_state(out_mk), mk.load_state(out_hand)
        max_diff = max(float((a[k] - b[k]).abs().max()) for k in b)
        n_params = sum(v.numel() for v in b.values())

        from shared.lm_family.train import load_model

        model = load_model(out_mk)
        prompts = [p["prompt"] for p in world.harmful_prompts("eval")][:64]
        ev.generate(model, tok, prompts[:4], max_new_tokens=4)  # warm-up
        t_b32, _ = _median_time(lambda: ev.generate(model, tok, prompts, cfg.eval.max_new_tokens, 32))
        t_b1, _ = _median_time(lambda: ev.generate(model, tok, prompts[:16], cfg.eval.max_new_tokens, 1))
        qs = world.domain_questions(world.knowledge_base("medical", 40, 0), 0)
        t_mc, _ = _median_time(lambda: ev.multiple_choice(model, tok, qs, 32))
    result = {
        "machine": machine_summary(),
        "threads": cfg.family.num_threads,
        "model": {"parameters": n_params, "layers": spec.num_layers, "hidden": spec.hidden_size, "vocab": len(tok)},
        "merge": {
            "mergekit_s": round(t_mk, 3),
            "hand_reference_s": round(t_hand, 3),
            "mergekit_over_reference": round(t_mk / t_hand, 2),
            "max_abs_diff": max_diff,
        },
        "evaluation": {
            "generation_prompts_per_s_batch32": round(len(prompts) / t_b32, 1),
            "generation_prompts_per_s_batch1": round(16 / t_b1, 1),
            "batch32_speedup": round((len(prompts) / t_b32) / (16 / t_b1), 2),
            "max_new_tokens": cfg.eval.max_new_tokens,
            "mc_questions_per_s": round(len(qs) / t_mc, 1),
        },
        "repeats": REPEATS,
    }
    atomic_write_json(OUT, result)
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
