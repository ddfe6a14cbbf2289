"""make bench PAPER=syscall_args: training throughput (windows/s, tokens/s) and peak resident memory of
each model/task at the paper's sizes, name only vs all arguments, on this machine's CPU; each in a
child process so ru_maxrss is its own. The ratio that matters here is the cost of the arguments:
all-arguments throughput over name-only throughput."""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import time
from pathlib import Path

import torch

from papers.syscall_args.config import SETTINGS, DataConfig, EmbeddingConfig, ModelConfig
from papers.syscall_args.data import load_windows
from papers.syscall_args.model import build_model
from papers.syscall_args.train import IGNORE, inputs_targets
from shared.environment import machine_summary
from shared.io import atomic_write_json

OUT = Path(__file__).parent / "results" / "bench.json"
DATA = DataConfig(window=256, max_train=256, max_eval=16)
STEPS, BATCH, THREADS = 6, 64, 2


def _measure(experiment: str, setting: str, queue: mp.Queue) -> None:
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    vocab, windows, _ = load_windows(DATA)
    task = experiment.split("_")[1]
    model = build_model(
        experiment, SETTINGS[setting], EmbeddingConfig(), ModelConfig(), len(vocab.names), len(vocab.procs)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.from_numpy(windows["train"].x)
    g = torch.Generator().manual_seed(0)
    start, tokens = time.perf_counter(), 0
    for i in range(STEPS):
        batch = x[(i * BATCH) % len(x) :][:BATCH]
        inp, y = inputs_targets(batch, task, 0.25, len(vocab.names), g)
        loss = torch.nn.functional.cross_entropy(model(inp).transpose(1, 2), y, ignore_index=IGNORE)
        loss.backward()
        opt.step()
        opt.zero_grad()
        tokens += batch.shape[0] * batch.shape[1]
    seconds = time.perf_counter() - start
    queue.put(
        {
            "experiment": experiment,
            "setting": setting,
            "parameters": sum(p.numel() for p in model.parameters()),
            "windows_per_s": round(STEPS * BATCH / seconds, 1),
            "tokens_per_s": round(tokens / seconds),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    )


def main() -> None:
    ctx = mp.get_context("spawn")
    rows = []
    for experiment in ("lstm_lm", "transformer_lm", "transformer_mlm"):
        for setting in ("name", "all"):
            queue = ctx.Queue()
            proc = ctx.Process(target=_measure, args=(experiment, setting, queue))
            proc.start()
            rows.append(queue.get())
            proc.join()
            print(json.dumps(rows[-1]))
    ratios = {
        e: round(next(r["tokens_per_s"] for r in rows if r["experiment"] == e and r["setting"] == "all")
                 / next(r["tokens_per_s"] for r in rows if r["experiment"] == e and r["setting"] == "name"), 2)
        for e in ("lstm_lm", "transformer_lm", "transformer_mlm")
    }  # fmt: skip
    result = {
        "machine": machine_summary(),
        "command": "make bench PAPER=syscall_args",
        "setup": f"windows of {DATA.window} events from the shipped sample, batch {BATCH}, {STEPS} steps, "
        f"paper sizes, {THREADS} CPU threads",
        "runs": rows,
        "all_over_name_throughput": ratios,
    }
    atomic_write_json(OUT, result)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
