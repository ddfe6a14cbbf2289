"""make bench PAPER=efficient_transformers: our block-wise sparse and linear-order kernels vs the
dense computation of the same function, in one run on the same inputs.

Each pair must give the same output (max |difference| below 1e-4) and ours must be faster and lighter
at N = 4096 (forward+backward, batch 1, 4 heads x 64, fp32): that is what the blocked layout and the
right-to-left product are for. Peak memory as in efficiency.py (VmHWM in a child process with a fixed
mmap threshold; the bench re-executes itself with it). Writes results/bench.json and prints a table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from papers.efficient_transformers.attention.common import masked_softmax_attention
from papers.efficient_transformers.attention.kernel import LinearAttention
from papers.efficient_transformers.attention.sparse import BigBirdAttention, LocalAttention, LongformerAttention
from papers.efficient_transformers.efficiency import MMAP_ENV, peak_memory_bytes, time_ms
from shared.environment import machine_summary
from shared.io import atomic_write_json
from shared.report import markdown_table

PAPER_DIR = Path(__file__).resolve().parent
Attn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def linear_quadratic(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Linear attention computed left to right: the N x N matrix phi(Q) phi(K)^T, normalised."""
    a = (torch.nn.functional.elu(q) + 1) @ (torch.nn.functional.elu(k) + 1).transpose(-1, -2)
    return (a / a.sum(-1, keepdim=True)) @ v


def pairs(n: int) -> dict[str, tuple[Attn, Attn]]:
    local, longf, bigb = LocalAttention(128), LongformerAttention(128, 1), BigBirdAttention(64, 1, 2)
    return {
        "local (window 128)": (local, lambda q, k, v: masked_softmax_attention(q, k, v, local.pattern(n))),
        "longformer (window 128, 1 global)": (
            longf,
            lambda q, k, v: masked_softmax_attention(q, k, v, longf.pattern(n)),
        ),
        "bigbird (block 64, 1 global, 2 random)": (
            bigb,
            lambda q, k, v: masked_softmax_attention(q, k, v, bigb.pattern(n)),
        ),
        "linear (elu+1)": (LinearAttention(), linear_quadratic),
    }


def measure(fn: Attn, q, k, v, grad, repeats: int) -> tuple[float, float, torch.Tensor]:
    def step() -> None:
        fn(q, k, v).backward(grad)
        for t in (q, k, v):
            t.grad = None

    ms = statistics.median(time_ms(step, 1, repeats, "cpu"))
    peak, _ = peak_memory_bytes(step, "cpu")
    with torch.no_grad():
        out = fn(q, k, v)
    return ms, peak / 2**20, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m papers.efficient_transformers.bench", description=__doc__)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(PAPER_DIR / "results" / "bench.json"))
    args = parser.parse_args(argv)
    if not os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        cmd = [sys.executable, "-m", "papers.efficient_transformers.bench", *(argv or sys.argv[1:])]
        return subprocess.run(cmd, env={**os.environ, **MMAP_ENV}).returncode
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    q, k, v, grad = (torch.randn(1, 4, args.n, 64, generator=gen) for _ in range(4))
    q, k, v = (t.requires_grad_(True) for t in (q, k, v))
    cases, rows = [], []
    for name, (ours, ref) in pairs(args.n).items():
        t_ours, m_ours, o_ours = measure(ours, q, k, v, grad, args.repeats)
        t_ref, m_ref, o_ref = measure(ref, q, k, v, grad, args.repeats)
        diff = float((o_ours - o_ref).abs().max())
        case = {
            "name": name,
            "n": args.n,
            "ms_ours": t_ours,
            "ms_dense": t_ref,
            "mb_ours": m_ours,
            "mb_dense": m_ref,
            "speedup": t_ref / t_ours,
            "memory_saving": m_ref / max(m_ours, 1e-9),
            "max_abs_diff": diff,
        }
        case["meets_target"] = diff < 1e-4 and case["speedup"] > 1 and case["memory_saving"] > 1
        cases.append(case)
        rows.append(
            [
                name,
                f"{diff:.1e}",
                f"{t_ours:.1f}",
                f"{t_ref:.1f}",
                f"{case['speedup']:.2f}x",
                f"{m_ours:.0f}",
                f"{m_ref:.0f}",
                f"{case['memory_saving']:.2f}x",
            ]
        )
    atomic_write_json(args.out, {"machine": machine_summary(), "threads": args.threads, "n": args.n, "cases": cases})
    print(f"N = {args.n}, batch 1, 4 heads x 64, fp32, fwd+bwd, {args.threads} thread(s); {machine_summary()}")
    cols = ["kernel", "max |Δ|", "ms ours", "ms dense", "speed-up", "MB ours", "MB dense", "memory saving"]
    print(markdown_table(cols, rows))
    print(f"wrote {args.out}")
    return 0 if all(c["meets_target"] for c in cases) else 1


if __name__ == "__main__":
    raise SystemExit(main())
