"""make bench PAPER=peft_alignment: SFT and DPO steps per second, and memory, of LoRA against QLoRA.

For two model shapes (the mini scale's 4 x 128 Llama and the medium's 8 x 512), each (method, adapter) runs
in its own spawned child process, so its peak resident memory (ru_maxrss; on a GPU, the peak CUDA
allocation) is its own: WARMUP steps, then STEPS timed steps with Table 6's recipe at batch 8 and 128
tokens. Models are seeded random inits, so the bench needs no trained family. Ratios are QLoRA / LoRA.
"""

from __future__ import annotations

import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

from papers.peft_alignment.config import Config, QuantConfig
from shared.config import load_config
from shared.environment import keep_freed_memory, machine_summary
from shared.io import atomic_write_json
from shared.lm_family import ModelSpec

OUT = Path(__file__).parent / "results" / "bench.json"
WARMUP, STEPS, BATCH, SEQ = 2, 10, 8, 128
SHAPES = {
    "mini 4x128": ModelSpec(hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=4, intermediate_size=384),
    "medium 8x512": ModelSpec(hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=8, intermediate_size=1536),
}


def _measure(shape: str, method: str, adapter: str, device: str, queue) -> None:
    """In a child process: build the model, train WARMUP + STEPS steps, report speed and peak memory."""
    import dataclasses

    import torch

    from papers.peft_alignment import align, data
    from papers.peft_alignment.config import DataConfig
    from shared.lm_family import world
    from shared.lm_family.train import cpu_settings, new_model, save_model
    from shared.text.tokenizer import train_bpe

    keep_freed_memory()  # as the reproduce command's workers run (shared/environment.py)
    cpu_settings(1)
    cfg = load_config(Config, Path(__file__).parent / "configs" / "mini.yaml")
    recipe = dataclasses.replace(cfg.method(method), batch_size=BATCH, max_length=SEQ)
    pairs = data.local_pairs("bt", DataConfig(n_pairs=200), 0)["harmless"]
    tok = train_bpe([world.chat_text(p["prompt"] + p["chosen"] + p["rejected"]) for p in pairs] * 3, 2048)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(save_model(new_model(SHAPES[shape], tok, 0), tok, Path(tmp) / "base"))
        quant = QuantConfig(compute_dtype="bfloat16" if device == "cuda" else "float32")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        model = align.load_base(path, adapter, quant, device)
        weight_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
        align.train(method, model, tok, pairs, dataclasses.replace(recipe, steps=WARMUP), 0, 1, device)
        start = time.perf_counter()
        model = align.load_base(path, adapter, quant, device)
        _, info = align.train(method, model, tok, pairs, dataclasses.replace(recipe, steps=STEPS), 0, 1, device)
        seconds = time.perf_counter() - start
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    queue.put(
        {
            "steps_per_s": round(STEPS / info["seconds"], 3),
            "wall_s_incl_load": round(seconds, 2),
            "base_weights_mb": round(weight_mb, 2),
            "peak_mb": round(peak),
            "rss_before_mb": round(before),
            "trainable_params": info["trainable_params"],
        }
    )


def measure(shape: str, method: str, adapter: str, device: str) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(shape, method, adapter, device, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> int:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows: dict = {}
    for shape in SHAPES:
        for method in ("sft", "dpo"):
            lora, qlora = (measure(shape, method, a, device) for a in ("lora", "qlora"))
            rows[f"{shape} {method}"] = {
                "lora": lora,
                "qlora": qlora,
                "qlora_over_lora_speed": round(qlora["steps_per_s"] / lora["steps_per_s"], 3),
                "qlora_over_lora_peak_memory": round(qlora["peak_mb"] / lora["peak_mb"], 3),
                "qlora_over_lora_weights": round(qlora["base_weights_mb"] / lora["base_weights_mb"], 3),
            }
            print(shape, method, rows[f"{shape} {method}"], flush=True)
    result = {
        "machine": machine_summary(),
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu, 1 torch thread per process",
        "steps": STEPS,
        "warmup": WARMUP,
        "batch": BATCH,
        "seq_len": SEQ,
        "memory": "peak CUDA allocation" if device == "cuda" else "peak RSS of the child process",
        "runs": rows,
    }
    atomic_write_json(OUT, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
