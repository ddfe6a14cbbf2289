"""The efficiency harness, after FlashAttention's micro-benchmark (Dao et al., 2022, Appendix E):
random q, k, v of (batch, heads, N, head_dim), no projections; forward and forward+backward; warm-up
calls, then the median of `repeats` timed calls; peak memory of one forward+backward.

Peak memory. On a GPU: torch.cuda.max_memory_allocated above what was allocated before the call.
On a CPU, torch has no allocator statistics, so we read the process's peak resident set size:
/proc/self/clear_refs ("5") resets VmHWM before the call and VmHWM - VmRSS(before) is the peak.
glibc keeps freed heap memory and raises its mmap threshold as it goes, which would hide
allocations, so the measurement runs in a child process started with MALLOC_MMAP_THRESHOLD_ fixed
(every tensor above 64 KiB is mmapped and returned to the system when freed).

`python -m papers.efficient_transformers.efficiency JOB CONFIG_JSON OUT_JSON` is that child; the
parent calls `run_in_child`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from papers.efficient_transformers.attention import FAMILIES, AttentionParams, build_attention
from papers.efficient_transformers.config import Config, EfficiencyConfig, GeneralConfig, ModelConfig
from shared.config import from_dict, to_dict
from shared.io import atomic_write_json
from shared.progress import get_logger, progress, setup_logging

log = get_logger("efficient_transformers.efficiency")
MMAP_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}
QUADRATIC = ("naive", "sdpa_math")  # variants that materialise the N x N scores
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_bytes(fn: Callable[[], None], device: str) -> tuple[int, str]:
    """Peak bytes that one call of fn adds, and how it was measured."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base, "cuda.max_memory_allocated"
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    before = _status_kb("VmRSS")
    fn()
    method = "VmHWM" if os.environ.get("MALLOC_MMAP_THRESHOLD_") else "VmHWM (mmap threshold unset: a lower bound)"
    return max(0, _status_kb("VmHWM") - before), method


def time_ms(fn: Callable[[], None], warmup: int, repeats: int, device: str) -> list[float]:
    """Wall time of each of `repeats` calls after `warmup` untimed ones (synchronised on a GPU)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def exact_flops(b: int, h: int, n: int, d: int, backward: bool) -> float:
    """FlashAttention's count: 4 B H N^2 d for the forward; the backward is 2.5x the forward."""
    fwd = 4.0 * b * h * n * n * d
    return fwd * 3.5 if backward else fwd


def measure_attention(variant: str, n: int, cfg: EfficiencyConfig, params: AttentionParams) -> dict:
    """One (variant, length) point: forward and forward+backward ms (median), peak MB, or a status."""
    dtype, dev = DTYPES[cfg.dtype], cfg.device
    rec: dict = {"variant": variant, "family": FAMILIES[variant], "n": n, "status": "ok"}
    score_bytes = cfg.batch * cfg.heads * n * n * 4
    rec["score_matrix_mb"] = score_bytes / 2**20
    if variant in QUADRATIC and score_bytes > cfg.max_score_bytes:
        rec["status"] = "OOM (predicted)"
        return rec
    try:
        module = build_attention(
            variant, params.budgeted(n, cfg.compression_ratio, cfg.compressed_max), n, cfg.head_dim
        ).to(dev)
        gen = torch.Generator(device=dev).manual_seed(n)
        q, k, v = (
            torch.randn(cfg.batch, cfg.heads, n, cfg.head_dim, device=dev, dtype=dtype, generator=gen).requires_grad_(
                True
            )
            for _ in range(3)
        )
        grad = torch.randn(cfg.batch, cfg.heads, n, cfg.head_dim, device=dev, dtype=dtype, generator=gen)

        def forward() -> None:
            module(q, k, v)

        def forward_backward() -> None:
            module(q, k, v).backward(grad)
            for t in (q, k, v):
                t.grad = None

        fwd = time_ms(forward, cfg.warmup, cfg.repeats, dev)
        both = time_ms(forward_backward, cfg.warmup, cfg.repeats, dev)
        peak, method = peak_memory_bytes(forward_backward, dev)
    except (RuntimeError, torch.OutOfMemoryError) as exc:
        if not is_oom(exc):
            raise
        rec["status"] = "OOM"
        return rec
    finally:
        if dev.startswith("cuda"):
            torch.cuda.empty_cache()
    rec.update(
        fwd_ms=statistics.median(fwd),
        fwdbwd_ms=statistics.median(both),
        peak_mb=peak / 2**20,
        memory_method=method,
        fwdbwd_all_ms=both,
    )
    if FAMILIES[variant] == "exact":
        rec["fwdbwd_tflops"] = exact_flops(cfg.batch, cfg.heads, n, cfg.head_dim, True) / (rec["fwdbwd_ms"] * 1e9)
    return rec


def matmul_peak_tflops(device: str, dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """The machine's measured dense matmul rate: the 'peak' the exact fused path is a fraction of."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    ms = statistics.median(time_ms(lambda: a @ b, 2, repeats, device))
    return 2 * size**3 / (ms * 1e9)


def attention_sweep(cfg: EfficiencyConfig, params: AttentionParams) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    from papers.efficient_transformers.attention import available_sdpa_backends

    available = available_sdpa_backends(cfg.device, DTYPES[cfg.dtype])
    records = []
    points = [(v, n) for v in cfg.variants for n in cfg.lengths]
    for variant, n in progress(points, desc="attention sweep"):
        if variant.startswith("sdpa_") and variant[5:] not in available:
            records.append({"variant": variant, "family": "exact", "n": n, "status": "unavailable"})
            continue
        rec = measure_attention(variant, n, cfg, params)
        log.info(
            "%-12s N=%-6d %s fwd %s ms, fwd+bwd %s ms, peak %s MB",
            variant,
            n,
            rec["status"],
            _f(rec.get("fwd_ms")),
            _f(rec.get("fwdbwd_ms")),
            _f(rec.get("peak_mb")),
        )
        records.append(rec)
    peak = matmul_peak_tflops(cfg.device, DTYPES[cfg.dtype], 4096 if cfg.device.startswith("cuda") else 2048)
    return {
        "records": records,
        "sdpa_backends": available,
        "matmul_tflops": peak,
        "threads": torch.get_num_threads(),
        "device": cfg.device,
        "dtype": cfg.dtype,
    }


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def general_sweep(gcfg: GeneralConfig, model_cfg: ModelConfig, params: AttentionParams, device: str) -> dict:
    """Training-step time, peak memory and parameters of the quality model with each general approach."""
    from papers.efficient_transformers.model import Classifier, count_parameters
    from papers.efficient_transformers.train import autocast

    records = []
    for approach in progress(gcfg.approaches, desc="general approaches"):
        mcfg = ModelConfig(
            **{
                **to_dict(model_cfg),
                "layers": gcfg.layers,
                "checkpointing": approach == "checkpointing",
                "reversible": approach == "reversible",
                "share_parameters": approach == "sharing",
                "precision": "bfloat16" if approach == "bf16" else "float32",
            }
        )
        torch.manual_seed(0)
        model = Classifier(mcfg, 17, 10, gcfg.length, gcfg.variant, params).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        gen = torch.Generator().manual_seed(0)
        tokens = torch.randint(17, (gcfg.batch, gcfg.length), generator=gen).to(device)
        labels = torch.randint(10, (gcfg.batch,), generator=gen).to(device)

        def step(model=model, opt=opt, mcfg=mcfg, tokens=tokens, labels=labels) -> None:
            with autocast(mcfg, device):
                logits = model(tokens)
            torch.nn.functional.cross_entropy(logits.float(), labels).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        try:
            times = time_ms(step, gcfg.warmup, gcfg.repeats, device)
            peak, method = peak_memory_bytes(step, device)
        except (RuntimeError, torch.OutOfMemoryError) as exc:
            if not is_oom(exc):
                raise
            records.append({"approach": approach, "status": "OOM"})
            continue
        rec = {
            "approach": approach,
            "status": "ok",
            "step_ms": statistics.median(times),
            "peak_mb": peak / 2**20,
            "params": count_parameters(model),
            "memory_method": method,
        }
        log.info(
            "general %-13s step %.1f ms, peak %.1f MB, %d parameters",
            approach,
            rec["step_ms"],
            rec["peak_mb"],
            rec["params"],
        )
        records.append(rec)
    return {
        "records": records,
        "length": gcfg.length,
        "batch": gcfg.batch,
        "layers": gcfg.layers,
        "variant": gcfg.variant,
    }


def run_job(job: str, cfg: Config) -> dict:
    if cfg.efficiency.threads:
        torch.set_num_threads(cfg.efficiency.threads)
    if job == "attention":
        return attention_sweep(cfg.efficiency, cfg.attention)
    if job == "general":
        return general_sweep(cfg.general, cfg.quality.model, cfg.attention, cfg.efficiency.device)
    raise ValueError(f"unknown efficiency job {job!r}; valid: attention, general")


def run_in_child(job: str, cfg: Config, workdir: Path) -> dict:
    """Run `job` in a fresh interpreter with the fixed mmap threshold; return its JSON result."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path, out_path = workdir / f"{job}-config.json", workdir / f"{job}-result.json"
    atomic_write_json(cfg_path, to_dict(cfg))
    env = {**os.environ, **MMAP_ENV}
    cmd = [sys.executable, "-m", "papers.efficient_transformers.efficiency", job, str(cfg_path), str(out_path)]
    proc = subprocess.run(cmd, env=env, cwd=Path(__file__).resolve().parents[2])
    if proc.returncode != 0:
        raise RuntimeError(f"efficiency job {job!r} failed with status {proc.returncode} (see its log above)")
    return json.loads(out_path.read_text())


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    job, cfg_path, out_path = argv if argv is not None else sys.argv[1:]
    cfg = from_dict(Config, json.loads(Path(cfg_path).read_text()))
    atomic_write_json(out_path, run_job(job, cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
