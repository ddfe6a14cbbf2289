"""The harness records what it measures (time, memory, statuses), and the targets and crossover
are computed as specified from a hand-made summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from papers.efficient_transformers.attention import AttentionParams
from papers.efficient_transformers.config import EfficiencyConfig
from papers.efficient_transformers.efficiency import MMAP_ENV, exact_flops, measure_attention
from papers.efficient_transformers.targets import MEASURES, crossover

PEAK_CHILD = """
import json, torch
from papers.efficient_transformers.efficiency import peak_memory_bytes

def alloc():
    x = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    x.add_(1)

print(json.dumps(peak_memory_bytes(alloc, "cpu")))
"""


def test_peak_memory_sees_a_known_allocation():
    """Measured as the harness measures (run_in_child): in a fresh process with MMAP_ENV. In the test process
    itself glibc may serve the 64 MiB from heap memory earlier tests freed, already resident, and read 0."""
    env = {**os.environ, **MMAP_ENV}
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", PEAK_CHILD], env=env, cwd=root, capture_output=True, text=True, check=True
    )
    peak, method = json.loads(out.stdout.strip().splitlines()[-1])
    assert method == "VmHWM"
    assert 60 * 2**20 < peak < 200 * 2**20


def test_measure_attention_records_times_and_memory():
    cfg = EfficiencyConfig(batch=1, heads=1, head_dim=16, lengths=[64], warmup=0, repeats=2)
    rec = measure_attention("performer", 64, cfg, AttentionParams())
    assert rec["status"] == "ok" and rec["fwd_ms"] > 0 and rec["fwdbwd_ms"] > 0 and len(rec["fwdbwd_all_ms"]) == 2
    assert rec["peak_mb"] >= 0 and rec["family"] == "kernel"


def test_quadratic_variants_beyond_the_memory_cap_are_recorded_not_run():
    cfg = EfficiencyConfig(batch=1, heads=1, head_dim=16, lengths=[4096], max_score_bytes=1e6)
    rec = measure_attention("naive", 4096, cfg, AttentionParams())
    assert rec["status"] == "OOM (predicted)" and "fwd_ms" not in rec


def test_flop_count_is_flashattentions():
    assert exact_flops(1, 1, 2, 3, False) == 4 * 4 * 3 and exact_flops(1, 1, 2, 3, True) == 3.5 * 48


def _rec(v, n, ms, mb=1.0):
    fam = {
        "naive": "exact",
        "sdpa_flash": "exact",
        "linformer": "low-rank",
        "performer": "kernel",
        "local": "sparse",
        "reformer": "lsh",
    }[v]
    return {"variant": v, "family": fam, "n": n, "status": "ok", "fwdbwd_ms": ms, "peak_mb": mb}


SUMMARY = {
    "seeds": [0],
    "fused_reference": "sdpa_flash",
    "efficiency": {
        "device": "cpu",
        "records": [
            _rec("sdpa_flash", 512, 1.0, 10),
            _rec("sdpa_flash", 1024, 4.0, 20),
            _rec("sdpa_flash", 2048, 16.0, 40),
            _rec("naive", 512, 2.0, 30),
            _rec("naive", 1024, 8.0, 100),
            _rec("naive", 2048, 40.0, 400),
            _rec("linformer", 512, 2.0, 5),
            _rec("linformer", 1024, 3.0, 6),
            _rec("linformer", 2048, 6.0, 8),
            _rec("performer", 512, 0.5, 9),
            _rec("performer", 1024, 5.0, 9),
            _rec("performer", 2048, 5.0, 9),
            _rec("reformer", 512, 9.0, 50),
            _rec("reformer", 1024, 9.0, 50),
            _rec("reformer", 2048, 50.0, 50),
            _rec("local", 512, 3.0, 7),
            _rec("local", 1024, 3.5, 8),
            _rec("local", 2048, 7.0, 12),
        ],
    },
    "quality": {
        "listops": {"sdpa": {"0": 0.4}, "local": {"0": 0.2}, "bigbird": {"0": 0.45}, "performer": {"0": 0.3}},
        "kjv": {"sdpa": {"0": 0.6}, "local": {"0": 0.5}, "bigbird": {"0": 0.55}, "performer": {"0": 0.5}},
    },
    "step": {
        "linformer_k": 16,
        "records": [
            {"case": c, "variant": v, "family": f, "n": n, "k": k, "status": "ok", "step_ms": ms, "peak_mb": mb}
            for c, v, f, k, n, ms, mb in [
                ("naive", "naive", "exact", None, 1024, 10.0, 50.0),
                ("naive", "naive", "exact", None, 4096, 100.0, 700.0),
                ("reformer", "reformer", "lsh", None, 1024, 25.0, 40.0),
                ("reformer", "reformer", "lsh", None, 4096, 80.0, 90.0),
                ("linear", "linear", "kernel", None, 1024, 5.0, 12.0),
                ("linear", "linear", "kernel", None, 4096, 20.0, 30.0),
                ("linformer", "linformer", "low-rank", 16, 1024, 5.0, 10.0),
                ("linformer", "linformer", "low-rank", 16, 4096, 20.0, 24.0),
                ("linformer k=256", "linformer", "low-rank", 256, 4096, 30.0, 60.0),  # the sweep: not judged
            ]
        ],
    },
}


def test_crossover_needs_every_longer_length():
    assert crossover(SUMMARY, "linformer") == 1024  # slower at 512, faster at 1024 and 2048
    assert crossover(SUMMARY, "performer") == 2048  # faster at 512 but not at 1024
    assert crossover(SUMMARY, "reformer") is None


def test_targets_from_a_summary():
    assert MEASURES["kernel_fastest"](SUMMARY) == pytest.approx(5.0 / 6.0)  # vs Linformer at 2048
    assert MEASURES["lowrank_lightest"](SUMMARY) == pytest.approx(24 / 30)  # whole-model step at 4096, k = 16
    assert MEASURES["reformer_slower_1k"](SUMMARY) == pytest.approx(2.5)
    assert MEASURES["reformer_slower_4k"](SUMMARY) == pytest.approx(0.8)
    assert MEASURES["reformer_slower_2k"](SUMMARY) is None  # not measured at 2048: "not run"
    assert MEASURES["fused_beats_pytorch_attention"](SUMMARY) == pytest.approx(40 / 16)
    assert MEASURES["fused_memory_linear"](SUMMARY) == pytest.approx(2.0)
    assert MEASURES["local_weak_on_listops"](SUMMARY) == pytest.approx(20.0)
    assert MEASURES["bigbird_beats_transformer"](SUMMARY) == pytest.approx(0.0)
    assert MEASURES["sparse_best_quality"](SUMMARY) == pytest.approx(50.0 - 40.0)
    assert MEASURES["gpu_crossover_length"](SUMMARY) is None  # a CPU run cannot judge the GPU claim
    gpu = {**SUMMARY, "efficiency": {**SUMMARY["efficiency"], "device": "cuda"}}
    assert MEASURES["gpu_crossover_length"](gpu) == 1024
