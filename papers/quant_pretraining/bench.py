"""Speed and memory of quantized pre-training, as ratios measured in one run on this machine.

1. Fake-quant overhead: tokens/s of each configuration's training step against the baseline's.
2. The engine (shared/engine.py on Lightning Fabric) against a plain PyTorch loop of the same model,
   optimizer and batches (target: the engine costs at most 5%).
3. The W8A8 forward GEMM: fp32 matmul vs int8 (torch._int_mm) and FP8 (torch._scaled_mm), with and
   without quantizing the operands first.
4. Optimizer-state memory: fp32 AdamW, the authors' quantized states (stored dequantized in fp32, so
   no saving) and bitsandbytes' 8-bit AdamW.

python -m papers.quant_pretraining.bench [--steps 12] [--out papers/quant_pretraining/results/bench.json]
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
from shared.environment import describe
from shared.io import atomic_write_json
from shared.progress import get_logger, setup_logging

PAPER_DIR = Path(__file__).resolve().parent
OVERHEAD = [
    "baseline", "w8_per_channel", "a8_per_token", "g8_per_token", "w8a8_per_token", "w8a8g8_per_token",
    "w4_per_channel", "m8_per_channel", "v8_per_channel", "adamw_bnb_8bit", "w8a8_int8_gemm", "w8a8_fp8_gemm",
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


def step_times(cfg: Config, name: str, steps: int, warmup: int = 3) -> list[float]:
    """Seconds per optimizer step (forward, backward, clip, step) of configuration `name`."""
    device = device_of(cfg)
    model, opt, batches = _setup(cfg, name, device)
    times = []
    for step in range(warmup + steps):
        _sync(device)
        tic = time.perf_counter()
        plain_step(cfg, model, opt, batches(step, 0, 0, 1), device)
        _sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - tic)
    return times


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


def _median_time(fn, repeats: int = 5, warmup: int = 1) -> float:  # noqa: ANN001
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def gemm_ratios(shapes: list[tuple[int, int, int]], device: str = "cpu") -> list[dict]:
    """The reference matmul (fp32 on CPU, bf16 on GPU) vs 8-bit GEMMs at (M tokens, K in, N out), with
    and without quantizing the operands first."""
    spec = QuantSpec(8, "row")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    rows, one = [], torch.ones(1, device=device)

    def timed(fn) -> float:  # noqa: ANN001
        def synced() -> None:
            fn()
            _sync(device)

        return _median_time(synced)

    for m, k, n in shapes:
        x, w = torch.randn(m, k, device=device, dtype=dtype), torch.randn(n, k, device=device, dtype=dtype)
        xi = torch.randint(-127, 128, (m, k), dtype=torch.int8, device=device)
        wi = torch.randint(-127, 128, (n, k), dtype=torch.int8, device=device)
        x8, w8 = (x.float() / 4).to(torch.float8_e4m3fn), (w.float() / 4).to(torch.float8_e4m3fn)
        ref = timed(lambda x=x, w=w: x @ w.T)
        int_only = timed(lambda xi=xi, wi=wi: torch._int_mm(xi, wi.t()))
        int_full = timed(lambda x=x, w=w: int8_linear(x, w, spec, spec))
        fp8_only = timed(
            lambda a=x8, b=w8: torch._scaled_mm(a, b.t(), scale_a=one, scale_b=one, out_dtype=torch.float32)
        )
        rows.append({
            "shape": [m, k, n], "reference": str(dtype).removeprefix("torch."), "reference_ms": ref * 1e3,
            "int8_gemm_speedup": ref / int_only, "int8_with_quantization_speedup": ref / int_full,
            "fp8_gemm_speedup": ref / fp8_only, "fp8_max": FP8_MAX,
        })  # fmt: skip
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
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", type=Path, default=PAPER_DIR / "results" / "bench.json")
    args = parser.parse_args(argv)
    setup_logging()
    cfg = load_config(Config, PAPER_DIR / "configs" / f"{args.scale}.yaml")
    if cfg.engine.threads:
        torch.set_num_threads(cfg.engine.threads)
    tokens = cfg.train.batch_size * cfg.data.seq_len
    overhead = {}
    for name in OVERHEAD:
        t = statistics.median(step_times(cfg, name, args.steps))
        overhead[name] = {"step_s": t, "tok_s": tokens / t}
        log.info("%-20s %8.0f tok/s", name, tokens / t)
    base = overhead["baseline"]["tok_s"]
    for v in overhead.values():
        v["slowdown_vs_baseline"] = base / v["tok_s"]
    engine = engine_vs_plain(cfg, args.steps)
    log.info("engine / plain loop tokens/s: %.3f", engine["engine_over_plain"])
    shapes = [(2048, 128, 512), (2048, 768, 3072)]  # the mini and GPT-2 small fc1 shapes
    if device_of(cfg) == "cuda":  # and GPT-2 large / XL fc1 at 32k tokens, where FP8 can pay off
        shapes += [(32768, 1280, 5120), (32768, 1600, 6400)]
    gemm = gemm_ratios(shapes, device_of(cfg))
    for row in gemm:
        log.info("GEMM %s: int8 %.2fx (with quantization %.2fx), fp8 %.2fx vs %s", row["shape"],
                 row["int8_gemm_speedup"], row["int8_with_quantization_speedup"], row["fp8_gemm_speedup"],
                 row["reference"])  # fmt: skip
    states = optimizer_state_bytes(cfg)
    result = {
        "machine": describe()["machine"],
        "scale": args.scale,
        "threads": torch.get_num_threads(),
        "tokens_per_step": tokens,
        "overhead": overhead,
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
