"""bf16 vs FP8 training steps at GPT-2 S/M/L/XL shapes on one GPU, with MFU: the prepared device check.

For each size, largest first (T = 1024, 16,384 tokens per optimizer step, micro-batches of 16 or 8), one full
training step (forward, backward, AdamW fused) is timed for:
  bf16          bf16 autocast, every GEMM in bf16 (the reference);
  fp8_torchao   torchao.float8 tensorwise dynamic scaling on every nn.Linear (the library fast path), when
                torchao is importable (pass --torchao-path to an unpacked wheel carried to the device);
  fp8_ours      this paper's FP8 training layer (quantize.py: forward and both backward GEMMs in FP8, delayed
                amax-history scaling, bf16 outputs), the reference implementation.
Blocks are compiled one by one (regional compilation: one compile serves every block), the same for every
variant. MFU = tokens/s x 6N+12LTd FLOPs per token over the H200's dense bf16 peak (989 TFLOP/s, datasheet),
and against the card's measured bf16 matmul ceiling from ../shared/bench/h200-anchors.json (782 TFLOP/s).
A time budget (default: start nothing after 220 s) skips what does not fit and says so, so the whole
script ends within 5 minutes; a variant whose compilation fails is measured eager and says why.

python -m papers.quant_pretraining.gpu_fp8_step --out $OUT/gpu_fp8_step.json [--torchao-path DIR]
python -m papers.quant_pretraining.gpu_fp8_step --dry-run   # tiny shapes on the CPU: checks every path runs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from papers.quant_pretraining.configurations import get_configuration
from papers.quant_pretraining.model import GPT, GPTConfig, lm_loss
from papers.quant_pretraining.quantize import quantize_linears

SIZES = {  # name: (n_layer, n_embd, n_head, micro_batch); 16 x 1024 = 16,384 tokens per step. Largest first:
    "gpt2-xl": (48, 1600, 25, 8),  # where FP8 can pay off, so a spent time budget skips the small ones
    "gpt2-l": (36, 1280, 20, 8),
    "gpt2-m": (24, 1024, 16, 16),
    "gpt2-s": (12, 768, 12, 16),
}
VARIANTS = ("bf16", "fp8_torchao", "fp8_ours")
H200_BF16_PEAK = 989.0  # TFLOP/s dense bf16, datasheet (H100/H200 SXM)
# ../shared/bench/h200-anchors.json beside the repo root: the lent H200's measured bf16 matmul ceiling
ANCHORS = Path(__file__).resolve().parents[2].parent / "shared" / "bench" / "h200-anchors.json"
H200_MEASURED_BF16 = 782.3  # that file's bf16_matmul_tflops (torch 2.11, 8192^3), when the file is not there


def build(variant: str, n_layer: int, n_embd: int, n_head: int, seq: int, vocab: int, device: str) -> GPT:
    """GPT-2 of this size in the variant's precision path (dropout 0: a speed measurement)."""
    model = GPT(GPTConfig(vocab, seq, n_layer, n_head, n_embd, 0.0)).to(device)
    if variant == "fp8_ours":
        quantize_linears(model, gemm="fp8_train")
    elif variant == "fp8_torchao":
        from papers.quant_pretraining.train import to_torchao_float8

        to_torchao_float8(model, head=get_configuration("fp8_torchao").head)
    return model


def time_steps(model: GPT, tokens: torch.Tensor, micro: int, accum: int, steps: int, warmup: int, device: str) -> dict:
    """Median seconds per optimizer step (with its min-max) after `warmup` steps (compilation happens there)."""
    fused = device == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)
    times = []
    for step in range(warmup + steps):
        if device == "cuda":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        for i in range(accum):
            batch = tokens[i * micro : (i + 1) * micro]
            with torch.autocast(device, dtype=torch.bfloat16):
                loss = lm_loss(model, (batch[:, :-1], batch[:, 1:])) / accum
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - tic)
    if not torch.isfinite(loss):
        raise RuntimeError(f"non-finite loss {float(loss)}")
    return {"step_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "loss": float(loss.detach())}


def measure(variant: str, shape: tuple, tokens: torch.Tensor, micro: int, accum: int, steps: int, warmup: int,
            compiled: bool) -> tuple[GPT, dict]:  # fmt: skip
    """Build the variant's model (blocks compiled one by one when `compiled`) and time its steps."""
    n_layer, n_embd, n_head, seq, vocab, device = shape
    torch.manual_seed(0)
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = build(variant, n_layer, n_embd, n_head, seq, vocab, device)
    if compiled:
        for block in model.blocks:
            block.compile()
    return model, time_steps(model, tokens, micro, accum, steps, warmup, device)


def peaks() -> dict:
    """The MFU denominators: the datasheet peak and the card's measured bf16 matmul ceiling."""
    measured = json.loads(ANCHORS.read_text())["bf16_matmul_tflops"] if ANCHORS.is_file() else H200_MEASURED_BF16
    return {"datasheet_bf16_tflops": H200_BF16_PEAK, "measured_bf16_matmul_tflops": measured}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m papers.quant_pretraining.gpu_fp8_step", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("gpu_fp8_step.json"))
    parser.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated of {', '.join(SIZES)}")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=220.0, help="start nothing after this many seconds")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--torchao-path", default=None, help="folder holding an unpacked torchao wheel")
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU, eager: checks the paths")
    args = parser.parse_args(argv)
    if args.torchao_path:
        sys.path.insert(0, args.torchao_path)
    sizes = args.sizes.split(",")
    variants = args.variants.split(",")
    bad = [s for s in sizes if s not in SIZES] + [v for v in variants if v not in VARIANTS]
    if bad:
        parser.error(f"unknown {bad}; sizes: {', '.join(SIZES)}; variants: {', '.join(VARIANTS)}")
    device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    if device == "cpu" and not args.dry_run:
        parser.error("no GPU here: this script measures GPU steps (use --dry-run to check it on the CPU)")
    seq, vocab = (64, 512) if args.dry_run else (1024, 50304)
    start = time.perf_counter()
    torch.backends.cuda.matmul.allow_tf32 = True
    result: dict = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)",
        "torch": torch.__version__,
        "peaks": peaks(),
        "tokens_per_step": 16 * seq,
        "rows": [],
    }
    try:
        import torchao

        result["torchao"] = torchao.__version__
    except ImportError:
        result["torchao"] = None
    for size in sizes:
        n_layer, n_embd, n_head, micro = SIZES[size]
        if args.dry_run:
            n_layer, n_embd, n_head, micro = 2, 64, 2, 8
        accum = 16 // micro
        tokens = torch.randint(0, vocab, (16, seq + 1), device=device)
        for variant in variants:
            row = {"size": size, "variant": variant, "micro_batch": micro, "accum": accum}
            result["rows"].append(row)
            if time.perf_counter() - start > args.budget_s:
                row["skipped"] = f"time budget of {args.budget_s:.0f} s spent"
                continue
            if variant == "fp8_torchao" and result["torchao"] is None:
                row["skipped"] = "torchao not importable (carry an unpacked torchao==0.18.0 wheel, --torchao-path)"
                continue
            try:
                steps, warmup = (1, 1) if args.dry_run else (args.steps, args.warmup)
                compiled = not args.no_compile and not args.dry_run
                shape = (n_layer, n_embd, n_head, seq, vocab, device)
                try:
                    model, timing = measure(variant, shape, tokens, micro, accum, steps, warmup, compiled)
                except Exception as exc:  # noqa: BLE001 - a compile failure: measure eager, and say so
                    if not compiled:
                        raise
                    row["compile_error"] = f"{type(exc).__name__}: {exc}"[:300]
                    compiled = False
                    model, timing = measure(variant, shape, tokens, micro, accum, steps, warmup, compiled)
                row["compiled"] = compiled
                row.update(timing)
                flops = model.flops_per_token(seq)
                row["tok_s"] = 16 * seq / row["step_s"]
                row["model_tflops"] = row["tok_s"] * flops / 1e12
                for key, peak in result["peaks"].items():
                    row[f"mfu_vs_{key.removesuffix('_tflops')}"] = row["model_tflops"] / peak
                if device == "cuda":
                    row["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 1e9
                del model
            except Exception as exc:  # noqa: BLE001 - one failed variant must not lose the others' numbers
                row["error"] = f"{type(exc).__name__}: {exc}"[:400]
            if device == "cuda":
                torch.cuda.empty_cache()
            print(json.dumps(row), flush=True)
    base = {r["size"]: r.get("step_s") for r in result["rows"] if r["variant"] == "bf16"}
    for r in result["rows"]:
        if r.get("step_s") and base.get(r["size"]):
            r["speedup_vs_bf16"] = base[r["size"]] / r["step_s"]
    result["wall_s"] = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out} in {result['wall_s']:.0f} s")
    return 0 if all("error" not in r for r in result["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
