"""Speed and memory of quantized pre-training, as ratios measured in one run on this machine.

1. Fake-quant overhead: tokens/s of each configuration's training step against the baseline's, in
   interleaved rounds (every configuration once per round, the order rotated) so that a load change on a
   shared machine hits all of them alike; each figure is the median over rounds with its min-max spread.
2. The engine (shared/engine.py on Lightning Fabric) against a plain PyTorch loop of the same model,
   optimizer and batches (target: the engine costs at most 5%).
3. The 8-bit GEMMs: the reference matmul vs int8 (torch._int_mm) and FP8 (torch._scaled_mm, e4m3 x e4m3 as
   in the forward, e5m2 x e4m3 as in the backward), with and without quantizing the operands first; also
   interleaved with their spread. Every CPU figure carries the CPU it was measured on: CPU int8/FP8 speed
   depends on the CPU (AVX512-VNNI, AMX) and on torch's kernels for it, not on the method.
4. Optimizer-state memory: fp32 AdamW, the authors' quantized states (stored dequantized in fp32, so
   no saving) and bitsandbytes' 8-bit AdamW.

python -m papers.quant_pretraining.bench [--steps 4] [--rounds 3] [--out papers/quant_pretraining/results/bench.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from papers.quant_pretraining.config import Config
from papers.quant_pretraining.configurations import get_configuration
from papers.quant_pretraining.data import RandomWindows
from papers.quant_pretraining.model import lm_loss
from papers.quant_pretraining.optim import make_optimizer
from papers.quant_pretraining.quantize import FP8_MAX, QuantSpec, int8_linear
from papers.quant_pretraining.train import build_model
from shared.config import load_config
from shared.engine import LoopConfig, fit, make_fabric
from shared.environment import cpu_flags, cpu_model, describe, torch_cpu_capability
from shared.io import atomic_write_json
from shared.progress import get_logger, setup_logging

PAPER_DIR = Path(__file__).resolve().parent
OVERHEAD = [
    "baseline", "w8_per_channel", "a8_per_token", "g8_per_token", "w8a8_per_token", "w8a8g8_per_token",
    "w4_per_channel", "m8_per_channel", "v8_per_channel", "adamw_bnb_8bit", "w8a8_int8_gemm", "w8a8_fp8_gemm",
    "fp8_train", "fp8_train_fake", "fp8_torchao",
]  # fmt: skip
log = get_logger("quant_pretraining.bench")


def device_of(cfg: Config) -> str:
    """cuda for a GPU config on a machine that has one; the CPU otherwise."""
    return "cuda" if cfg.engine.accelerator in ("gpu", "cuda") and torch.cuda.is_available() else "cpu"


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _setup(cfg: Config, name: str, device: str = "cpu", seed: int = 0):  # noqa: ANN202
    """Model (compiled when the config says so), optimizer and a batch function on `device`."""
    torch.manual_seed(seed)
    c = get_configuration(name)
    model = build_model(cfg, cfg.data.vocab_size, c).to(device)
    t = cfg.train
    opt = make_optimizer(model, c.optimizer, t.lr, t.betas, t.eps, t.weight_decay, c.m, c.v)
    stream = np.random.default_rng(0).integers(0, cfg.data.vocab_size, 2_000_000).astype(np.uint16)
    windows = RandomWindows(stream, cfg.data.seq_len, t.batch_size, t.micro_batch, seed)
    if cfg.engine.compile:
        model = torch.compile(model)
    return model, opt, lambda *a: tuple(x.to(device, non_blocking=True) for x in windows(*a))


def plain_step(cfg: Config, model, opt, batch, device: str) -> None:  # noqa: ANN001
    """One training step the way a plain PyTorch script writes it (bf16 autocast when configured)."""
    bf16 = cfg.engine.precision.startswith("bf16")
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        loss = lm_loss(model, batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip)
    opt.step()
    opt.zero_grad(set_to_none=True)


def cpu_label() -> str:
    """The CPU a figure was measured on, with the features that decide CPU int8/FP8/bf16 GEMM speed."""
    flags = set(cpu_flags())
    feats = [f for f in ("avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "avx2") if f in flags]
    return f"{cpu_model()} (torch kernels {torch_cpu_capability()}; {', '.join(feats) or 'no AVX2'})"


def spread(values: list[float]) -> dict:
    """Median and min-max of repeated measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def available(name: str) -> str | None:
    """None when configuration `name` can run here, else why not (torchao is an optional extra)."""
    if get_configuration(name).gemm == "torchao":
        try:
            import torchao.float8  # noqa: F401
        except ImportError:
            return "torchao not installed (optional: pip install --no-deps torchao==0.18.0)"
    return None


def interleaved_steps(cfg: Config, names: list[str], steps: int, rounds: int, warmup: int = 2) -> dict:
    """Seconds per optimizer step of each configuration, measured in `rounds` interleaved rounds of `steps`
    steps each (the order rotated every round); per configuration the median step time of each round."""
    device = device_of(cfg)
    setups = {name: _setup(cfg, name, device) for name in names}
    for model, opt, batches in setups.values():
        for step in range(warmup):
            plain_step(cfg, model, opt, batches(step, 0, 0, 1), device)
    per_round: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            model, opt, batches = setups[name]
            times = []
            for step in range(steps):
                _sync(device)
                tic = time.perf_counter()
                plain_step(cfg, model, opt, batches(warmup + r * steps + step, 0, 0, 1), device)
                _sync(device)
                times.append(time.perf_counter() - tic)
            per_round[name].append(statistics.median(times))
    return per_round


def engine_vs_plain(cfg: Config, steps: int, rounds: int = 3) -> dict:
    """Tokens/s of the same baseline training through the engine and through a plain loop, alternated."""
    tokens = cfg.train.batch_size * cfg.data.seq_len
    device = device_of(cfg)
    fabric = make_fabric(replace(cfg.engine, accelerator="cuda" if device == "cuda" else "cpu", devices=1))
    engine, plain = [], []
    loop = LoopConfig(steps=steps, clip=cfg.train.clip, log_every=0)
    for _ in range(rounds):
        model, opt, batches = _setup(cfg, "baseline", "cpu")
        model, opt = fabric.setup(model, opt)
        fit(fabric, model, opt, lm_loss, batches, LoopConfig(steps=2, log_every=0))  # warm-up, compile
        _sync(device)
        tic = time.perf_counter()
        shifted = lambda s, *a, b=batches: b(s + 2, *a)  # noqa: E731 - the steps after the warm-up
        fit(fabric, model, opt, lm_loss, shifted, loop, lr_at=lambda s: cfg.train.lr)
        _sync(device)
        engine.append(steps * tokens / (time.perf_counter() - tic))
        model, opt, batches = _setup(cfg, "baseline", device)
        for step in range(2):
            plain_step(cfg, model, opt, batches(step, 0, 0, 1), device)
        _sync(device)
        tic = time.perf_counter()
        for step in range(2, steps + 2):
            for group in opt.param_groups:
                group["lr"] = cfg.train.lr
            plain_step(cfg, model, opt, batches(step, 0, 0, 1), device)
        _sync(device)
        plain.append(steps * tokens / (time.perf_counter() - tic))
    ratio = statistics.median(engine) / statistics.median(plain)
    out = {"engine_tok_s": engine, "plain_tok_s": plain, "engine_over_plain": ratio, "device": device}
    if device == "cuda":
        flops = build_model(cfg, cfg.data.vocab_size, get_configuration("baseline")).flops_per_token(cfg.data.seq_len)
        out["mfu_engine"] = statistics.median(engine) * flops / (peak_tflops() * 1e12)
        out["mfu_plain"] = statistics.median(plain) * flops / (peak_tflops() * 1e12)
    return out


def peak_tflops() -> float:
    """Dense bf16 datasheet peak of the GPU (H100/H200 SXM 989, A100 312); the MFU denominator."""
    name = torch.cuda.get_device_name()
    return 312.0 if "A100" in name else 989.0


def gemm_ratios(shapes: list[tuple[int, int, int]], device: str = "cpu", rounds: int = 5) -> list[dict]:
    """The reference matmul (fp32 on CPU, bf16 on GPU) vs 8-bit GEMMs at (M tokens, K in, N out), with and
    without quantizing the operands first: interleaved rounds, each variant timed once per round; speed-ups
    are per-round ratios to the reference of the same round (median and min-max)."""
    spec = QuantSpec(8, "row")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    rows, one = [], torch.ones((), device=device)
    where = torch.cuda.get_device_name() if device == "cuda" else cpu_label()
    for m, k, n in shapes:
        x, w = torch.randn(m, k, device=device, dtype=dtype), torch.randn(n, k, device=device, dtype=dtype)
        g = torch.randn(m, n, device=device, dtype=dtype)
        xi = torch.randint(-127, 128, (m, k), dtype=torch.int8, device=device)
        wi = torch.randint(-127, 128, (n, k), dtype=torch.int8, device=device)
        x8, w8 = (x.float() / 4).to(torch.float8_e4m3fn), (w.float() / 4).to(torch.float8_e4m3fn)
        g8, wt8 = (g.float() / 4).to(torch.float8_e5m2), w8.t().contiguous()
        variants = {
            "reference": lambda x=x, w=w: x @ w.T,
            "int8_gemm": lambda xi=xi, wi=wi: torch._int_mm(xi, wi.t()),
            "int8_with_quantization": lambda x=x, w=w: int8_linear(x, w, spec, spec),
            "fp8_gemm": lambda a=x8, b=w8: torch._scaled_mm(a, b.t(), scale_a=one, scale_b=one, out_dtype=dtype),
            "fp8_e5m2_grad_input_gemm": lambda a=g8, b=wt8: torch._scaled_mm(
                a, b.t(), scale_a=one, scale_b=one, out_dtype=dtype
            ),
        }
        times: dict[str, list[float]] = {v: [] for v in variants}
        for fn in variants.values():  # warm-up
            fn()
        for _ in range(rounds):
            for name, fn in variants.items():
                _sync(device)
                tic = time.perf_counter()
                fn()
                _sync(device)
                times[name].append(time.perf_counter() - tic)
        row = {"shape": [m, k, n], "measured_on": where, "reference": str(dtype).removeprefix("torch."),
               "reference_ms": spread([t * 1e3 for t in times["reference"]]), "fp8_max": FP8_MAX}  # fmt: skip
        for name in variants:
            if name != "reference":
                row[f"{name}_speedup"] = spread([r / t for r, t in zip(times["reference"], times[name], strict=True)])
        rows.append(row)
    return rows


def optimizer_state_bytes(cfg: Config) -> dict:
    """Bytes held in optimizer state after one step, per optimizer kind."""
    out = {}
    for name in ("baseline", "m8_per_channel", "adamw_bnb_8bit"):
        model, opt, batches = _setup(cfg, name, device_of(cfg))
        lm_loss(model, batches(0, 0, 0, 1)).backward()
        opt.step()
        out[name] = sum(
            v.numel() * v.element_size() for st in opt.state.values() for v in st.values() if torch.is_tensor(v)
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m papers.quant_pretraining.bench", description=__doc__)
    parser.add_argument("--scale", default="mini", help="config whose model and batch shapes are measured")
    parser.add_argument("--steps", type=int, default=4, help="steps per configuration per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the spread is over rounds)")
    parser.add_argument("--out", type=Path, default=PAPER_DIR / "results" / "bench.json")
    args = parser.parse_args(argv)
    setup_logging()
    cfg = load_config(Config, PAPER_DIR / "configs" / f"{args.scale}.yaml")
    if cfg.engine.threads:
        torch.set_num_threads(cfg.engine.threads)
    tokens = cfg.train.batch_size * cfg.data.seq_len
    names = [n for n in OVERHEAD if available(n) is None]
    skipped = {n: why for n in OVERHEAD if (why := available(n)) is not None}
    per_round = interleaved_steps(cfg, names, args.steps, args.rounds)
    overhead = {}
    for name in names:
        ratios = [t / b for t, b in zip(per_round[name], per_round["baseline"], strict=True)]
        overhead[name] = {
            "tok_s": spread([tokens / t for t in per_round[name]]),
            "slowdown_vs_baseline": spread(ratios),  # per round: step time / the baseline's of the same round
        }
        log.info("%-20s %8.0f tok/s, %.2fx the baseline's step time (%.2f-%.2f)", name,
                 overhead[name]["tok_s"]["median"], *(spread(ratios)[k] for k in ("median", "min", "max")))  # fmt: skip
    engine = engine_vs_plain(cfg, max(args.steps, 8))
    log.info("engine / plain loop tokens/s: %.3f", engine["engine_over_plain"])
    shapes = [(2048, 128, 512), (2048, 768, 3072)]  # the mini and GPT-2 small fc1 shapes
    if device_of(cfg) == "cuda":  # and GPT-2 large / XL fc1 at 32k tokens, where FP8 can pay off
        shapes += [(32768, 1280, 5120), (32768, 1600, 6400)]
    gemm = gemm_ratios(shapes, device_of(cfg))
    for row in gemm:
        log.info("GEMM %s on %s: int8 %.2fx (with quantization %.2fx), fp8 %.2fx, fp8 e5m2 grad %.2fx vs %s",
                 row["shape"], row["measured_on"], row["int8_gemm_speedup"]["median"],
                 row["int8_with_quantization_speedup"]["median"], row["fp8_gemm_speedup"]["median"],
                 row["fp8_e5m2_grad_input_gemm_speedup"]["median"], row["reference"])  # fmt: skip
    states = optimizer_state_bytes(cfg)
    env = describe()
    result = {
        "machine": env["machine"],
        "cpu": cpu_label(),
        "cpu_flags": env.get("cpu_flags", []),
        "torch": torch.__version__,
        "scale": args.scale,
        "threads": torch.get_num_threads(),
        "tokens_per_step": tokens,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "overhead": overhead,
        "overhead_skipped": skipped,
        "engine_vs_plain": engine,
        "gemm": gemm,
        "optimizer_state_bytes": states,
        "command": "python -m papers.quant_pretraining.bench " + " ".join(argv or sys.argv[1:]),
    }
    atomic_write_json(args.out, result)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
