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
from shared.engine import EngineConfig, LoopConfig, fit, make_fabric
from shared.environment import describe
from shared.io import atomic_write_json
from shared.progress import get_logger, setup_logging

PAPER_DIR = Path(__file__).resolve().parent
OVERHEAD = [
    "baseline", "w8_per_channel", "a8_per_token", "g8_per_token", "w8a8_per_token", "w8a8g8_per_token",
    "w4_per_channel", "m8_per_channel", "v8_per_channel", "adamw_bnb_8bit", "w8a8_int8_gemm", "w8a8_fp8_gemm",
]  # fmt: skip
log = get_logger("quant_pretraining.bench")


def _setup(cfg: Config, name: str, seed: int = 0):  # noqa: ANN202
    torch.manual_seed(seed)
    c = get_configuration(name)
    model = build_model(cfg, cfg.data.vocab_size, c)
    t = cfg.train
    opt = make_optimizer(model, c.optimizer, t.lr, t.betas, t.eps, t.weight_decay, c.m, c.v)
    stream = np.random.default_rng(0).integers(0, cfg.data.vocab_size, 200_000).astype(np.uint16)
    return model, opt, RandomWindows(stream, cfg.data.seq_len, t.batch_size, t.micro_batch, seed)


def step_times(cfg: Config, name: str, steps: int, warmup: int = 3) -> list[float]:
    """Seconds per optimizer step (forward, backward, clip, step) of configuration `name`."""
    model, opt, batches = _setup(cfg, name)
    times = []
    for step in range(warmup + steps):
        tic = time.perf_counter()
        x, y = batches(step, 0, 0, 1)
        lm_loss(model, (x, y)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= warmup:
            times.append(time.perf_counter() - tic)
    return times


def engine_vs_plain(cfg: Config, steps: int, rounds: int = 3) -> dict:
    """Tokens/s of the same baseline training through the engine and through a plain loop, alternated."""
    tokens = cfg.train.batch_size * cfg.data.seq_len
    fabric = make_fabric(EngineConfig(threads=cfg.engine.threads))
    engine, plain = [], []
    for _ in range(rounds):
        model, opt, batches = _setup(cfg, "baseline")
        model, opt = fabric.setup(model, opt)
        loop = LoopConfig(steps=steps, clip=cfg.train.clip, log_every=0)
        tic = time.perf_counter()
        fit(fabric, model, opt, lm_loss, batches, loop, lr_at=lambda s: cfg.train.lr)
        engine.append(steps * tokens / (time.perf_counter() - tic))
        model, opt, batches = _setup(cfg, "baseline")
        tic = time.perf_counter()
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = cfg.train.lr
            lm_loss(model, batches(step, 0, 0, 1)).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
        plain.append(steps * tokens / (time.perf_counter() - tic))
    ratio = statistics.median(engine) / statistics.median(plain)
    return {"engine_tok_s": engine, "plain_tok_s": plain, "engine_over_plain": ratio}


def _median_time(fn, repeats: int = 5, warmup: int = 1) -> float:  # noqa: ANN001
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def gemm_ratios(shapes: list[tuple[int, int, int]]) -> list[dict]:
    """fp32 matmul vs 8-bit GEMMs at (M tokens, K in, N out), with and without the quantization."""
    spec = QuantSpec(8, "row")
    rows, one = [], torch.ones(1)
    for m, k, n in shapes:
        x, w = torch.randn(m, k), torch.randn(n, k)
        xi = torch.randint(-127, 128, (m, k), dtype=torch.int8)
        wi = torch.randint(-127, 128, (n, k), dtype=torch.int8)
        x8, w8 = (x / 4).to(torch.float8_e4m3fn), (w / 4).to(torch.float8_e4m3fn)
        fp32 = _median_time(lambda x=x, w=w: x @ w.T)
        int_only = _median_time(lambda xi=xi, wi=wi: torch._int_mm(xi, wi.t()))
        int_full = _median_time(lambda x=x, w=w: int8_linear(x, w, spec, spec))
        fp8_only = _median_time(
            lambda a=x8, b=w8: torch._scaled_mm(a, b.t(), scale_a=one, scale_b=one, out_dtype=torch.float32)
        )
        rows.append({
            "shape": [m, k, n], "fp32_ms": fp32 * 1e3,
            "int8_gemm_speedup": fp32 / int_only, "int8_with_quantization_speedup": fp32 / int_full,
            "fp8_gemm_speedup": fp32 / fp8_only, "fp8_max": FP8_MAX,
        })  # fmt: skip
    return rows


def optimizer_state_bytes(cfg: Config) -> dict:
    """Bytes held in optimizer state after one step, per optimizer kind."""
    out = {}
    for name in ("baseline", "m8_per_channel", "adamw_bnb_8bit"):
        model, opt, batches = _setup(cfg, name)
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
    gemm = gemm_ratios([(2048, 128, 512), (2048, 768, 3072)])  # the mini and GPT-2 small fc1 shapes
    for row in gemm:
        log.info("GEMM %s: int8 %.2fx (with quantization %.2fx), fp8 %.2fx vs fp32", row["shape"],
                 row["int8_gemm_speedup"], row["int8_with_quantization_speedup"], row["fp8_gemm_speedup"])  # fmt: skip
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
