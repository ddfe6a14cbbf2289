"""The efficiency harness, after FlashAttention's micro-benchmark (Dao et al., 2022, Appendix E):
random q, k, v of (batch, heads, N, head_dim), no projections; forward and forward+backward; warm-up
calls, then `repeats` interleaved rounds that time every variant at a length once each (median and
spread); peak memory of one forward+backward. The same harness times and measures one training step of
the whole model per variant (`step_sweep`, LRA Table 2's measurement) and the general approaches.

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
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from papers.efficient_transformers.attention import FAMILIES, AttentionParams, build_attention
from papers.efficient_transformers.config import Config, EfficiencyConfig, GeneralConfig, ModelConfig, StepConfig
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
    return interleaved_ms({"fn": fn}, warmup, repeats, device)["fn"]


def interleaved_ms(
    fns: dict[str, Callable[[], None]], warmup: int, repeats: int, device: str
) -> dict[str, list[float]]:
    """Wall time (ms) of each function in `repeats` rounds, after `warmup` untimed calls of each.

    Every round times every function once, the order rotated by one each round, so a change in machine
    load during the measurement (other processes on a shared machine) falls on all of them alike
    instead of on whichever was measured last; the per-round times also give the spread."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    names = list(fns)
    if not names:
        return {}
    for name in names:
        for _ in range(warmup):
            fns[name]()
    sync()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            fns[name]()
            sync()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def spread(times: list[float]) -> dict[str, float]:
    """Median, quartiles and extremes of a list of timings (ms)."""
    q1, med, q3 = (float(x) for x in np.percentile(times, [25, 50, 75]))
    return {"median": med, "q1": q1, "q3": q3, "min": float(min(times)), "max": float(max(times))}


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def exact_flops(b: int, h: int, n: int, d: int, backward: bool) -> float:
    """FlashAttention's count: 4 B H N^2 d for the forward; the backward is 2.5x the forward."""
    fwd = 4.0 * b * h * n * n * d
    return fwd * 3.5 if backward else fwd


def _attention_case(variant: str, n: int, cfg: EfficiencyConfig, params: AttentionParams) -> dict:
    """The module, inputs and the forward / forward+backward callables of one (variant, length) point."""
    dtype, dev = DTYPES[cfg.dtype], cfg.device
    module = build_attention(variant, params.budgeted(n, cfg.compression_ratio, cfg.compressed_max), n, cfg.head_dim)
    module = module.to(dev)
    gen = torch.Generator(device=dev).manual_seed(n)
    shape = (cfg.batch, cfg.heads, n, cfg.head_dim)
    q, k, v = (torch.randn(shape, device=dev, dtype=dtype, generator=gen).requires_grad_(True) for _ in range(3))
    grad = torch.randn(shape, device=dev, dtype=dtype, generator=gen)

    def forward() -> None:
        module(q, k, v)

    def forward_backward() -> None:
        module(q, k, v).backward(grad)
        for t in (q, k, v):
            t.grad = None

    return {"fwd": forward, "fwdbwd": forward_backward}


def _guarded(rec: dict, fn: Callable[[], object]) -> tuple[bool, object]:
    """(True, fn()), or (False, None) with rec["status"] = "OOM" when fn runs out of memory; other errors
    propagate."""
    try:
        return True, fn()
    except (RuntimeError, torch.OutOfMemoryError) as exc:
        if not is_oom(exc):
            raise
        rec["status"] = "OOM"
        return False, None


def timed_rounds(
    fns: dict[str, Callable[[], None]], recs: dict[str, dict], warmup: int, repeats: int, device: str
) -> dict[str, list[float]]:
    """interleaved_ms over fns; when that runs out of memory with every case resident, each function is
    timed on its own instead and one that still fails is marked OOM in its record."""
    ok, times = _guarded({}, lambda: interleaved_ms(fns, warmup, repeats, device))
    if ok:
        return times  # type: ignore[return-value]
    out = {}
    for name, fn in fns.items():
        ok, t = _guarded(recs[name], lambda fn=fn: interleaved_ms({"x": fn}, warmup, repeats, device)["x"])
        if ok:
            out[name] = t
    return out  # type: ignore[return-value]


def measure_length(variants: list[str], n: int, cfg: EfficiencyConfig, params: AttentionParams) -> list[dict]:
    """Every variant at length n: forward and forward+backward times in interleaved rounds (median and
    spread), then the peak memory of one forward+backward of each variant on its own."""
    dev = cfg.device
    recs: dict[str, dict] = {}
    cases: dict[str, dict] = {}
    for variant in variants:
        score_bytes = cfg.batch * cfg.heads * n * n * 4
        rec: dict = {"variant": variant, "family": FAMILIES[variant], "n": n, "status": "ok"}
        rec["score_matrix_mb"] = score_bytes / 2**20
        recs[variant] = rec
        if variant in QUADRATIC and score_bytes > cfg.max_score_bytes:
            rec["status"] = "OOM (predicted)"
            continue
        ok, case = _guarded(rec, lambda v=variant: _attention_case(v, n, cfg, params))
        if ok:
            cases[variant] = case  # type: ignore[assignment]
    for kind in ("fwd", "fwdbwd"):
        fns = {v: c[kind] for v, c in cases.items() if recs[v]["status"] == "ok"}
        for v, t in timed_rounds(fns, recs, cfg.warmup, cfg.repeats, dev).items():
            recs[v][f"{kind}_ms"] = spread(t)["median"]
            recs[v][f"{kind}_all_ms"] = t
    for v in list(cases):
        fn = cases.pop(v)["fwdbwd"]  # the cases measured before are freed first
        if recs[v]["status"] != "ok":
            continue
        ok, measured = _guarded(recs[v], lambda fn=fn: peak_memory_bytes(fn, dev))
        if ok:
            peak, method = measured  # type: ignore[misc]
            recs[v].update(peak_mb=peak / 2**20, memory_method=method)
            if FAMILIES[v] == "exact":
                flops = exact_flops(cfg.batch, cfg.heads, n, cfg.head_dim, True)
                recs[v]["fwdbwd_tflops"] = flops / (recs[v]["fwdbwd_ms"] * 1e9)
        if dev.startswith("cuda"):
            torch.cuda.empty_cache()
    return [recs[v] for v in variants]


def measure_attention(variant: str, n: int, cfg: EfficiencyConfig, params: AttentionParams) -> dict:
    """One (variant, length) point on its own (see measure_length)."""
    return measure_length([variant], n, cfg, params)[0]


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
    load_before = os.getloadavg()
    records = []
    for n in progress(cfg.lengths, desc="attention sweep"):
        unavailable = [v for v in cfg.variants if v.startswith("sdpa_") and v[5:] not in available]
        measured = iter(measure_length([v for v in cfg.variants if v not in unavailable], n, cfg, params))
        for variant in cfg.variants:
            if variant in unavailable:
                records.append({"variant": variant, "family": "exact", "n": n, "status": "unavailable"})
                continue
            rec = next(measured)
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
        "loadavg": {"before": load_before, "after": os.getloadavg()},  # 1/5/15-minute load: other processes
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


def _step_case(
    variant: str, n: int, params: AttentionParams, model_cfg: ModelConfig, batch: int, device: str
) -> Callable[[], None]:
    """One training step (forward, cross-entropy, backward, AdamW update) of the quality model with this
    attention, on fixed random bytes (LRA Table 2 timed byte-level text classification)."""
    from papers.efficient_transformers.model import Classifier

    torch.manual_seed(0)
    model = Classifier(model_cfg, 258, 2, n, variant, params).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(n)
    tokens = torch.randint(258, (batch, n), generator=gen).to(device)
    labels = torch.randint(2, (batch,), generator=gen).to(device)

    def step() -> None:
        torch.nn.functional.cross_entropy(model(tokens), labels).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def step_points(scfg: StepConfig, eff: EfficiencyConfig, params: AttentionParams, n: int) -> dict[str, dict]:
    """{case name: (variant, attention params, Linformer k or None)} at length n: every variant with
    FlashAttention's budget, Linformer with LRA's k, and one extra Linformer case per swept k."""
    base = params.budgeted(n, eff.compression_ratio, eff.compressed_max)
    out = {}
    for v in scfg.variants:
        k = scfg.linformer_k if v == "linformer" else None
        out[v] = {"variant": v, "params": base if k is None else replace(base, linformer_k=k), "k": k}
    if "linformer" in scfg.variants:
        for k in scfg.linformer_ks:
            if k != scfg.linformer_k:
                out[f"linformer k={k}"] = {"variant": "linformer", "params": replace(base, linformer_k=k), "k": k}
    return out


def step_sweep(scfg: StepConfig, model_cfg: ModelConfig, params: AttentionParams, eff: EfficiencyConfig) -> dict:
    """LRA Table 2's measurement on the whole model: per length, the training-step time of every case in
    interleaved rounds, then the peak memory of building the model and running two steps (parameters,
    gradients, AdamW state and activations: what a device must hold), each case on its own."""
    dev = eff.device
    load_before = os.getloadavg()
    records = []
    for n in progress(scfg.lengths, desc="model step sweep"):
        points = step_points(scfg, eff, params, n)
        recs = {
            name: {
                "case": name,
                "variant": p["variant"],
                "family": FAMILIES[p["variant"]],
                "n": n,
                "k": p["k"],
                "status": "ok",
            }
            for name, p in points.items()
        }
        steps = {}
        for name, p in points.items():
            ok, fn = _guarded(
                recs[name], lambda p=p, n=n: _step_case(p["variant"], n, p["params"], model_cfg, scfg.batch, dev)
            )
            if ok:
                steps[name] = fn
        for name, t in timed_rounds(steps, recs, scfg.warmup, scfg.repeats, dev).items():
            recs[name].update(step_ms=spread(t)["median"], step_all_ms=t)
        steps.clear()
        for name, p in points.items():
            if recs[name]["status"] != "ok":
                continue

            def build_and_step(p: dict = p, n: int = n) -> None:
                step = _step_case(p["variant"], n, p["params"], model_cfg, scfg.batch, dev)
                step()  # the first step allocates AdamW's state
                step()

            ok, measured = _guarded(recs[name], lambda f=build_and_step: peak_memory_bytes(f, dev))
            if ok:
                peak, method = measured  # type: ignore[misc]
                recs[name].update(peak_mb=peak / 2**20, memory_method=method)
            if dev.startswith("cuda"):
                torch.cuda.empty_cache()
            log.info(
                "step %-16s N=%-6d %s %s ms, peak %s MB",
                name,
                n,
                recs[name]["status"],
                _f(recs[name].get("step_ms")),
                _f(recs[name].get("peak_mb")),
            )
        records += list(recs.values())
    return {
        "records": records,
        "loadavg": {"before": load_before, "after": os.getloadavg()},
        "batch": scfg.batch,
        "linformer_k": scfg.linformer_k,
        "model": to_dict(model_cfg),
        "device": dev,
        "threads": torch.get_num_threads(),
    }


def run_job(job: str, cfg: Config) -> dict:
    if cfg.efficiency.threads:
        torch.set_num_threads(cfg.efficiency.threads)
    if job == "attention":
        return attention_sweep(cfg.efficiency, cfg.attention)
    if job == "step":
        return step_sweep(cfg.step, cfg.quality.model, cfg.attention, cfg.efficiency)
    if job == "general":
        return general_sweep(cfg.general, cfg.quality.model, cfg.attention, cfg.efficiency.device)
    raise ValueError(f"unknown efficiency job {job!r}; valid: attention, step, general")


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
