"""make bench PAPER=syscall_novelty: training throughput and peak memory of each model on this machine's
CPU, and batched scoring against scoring one request at a time (the reference path), in one run.

Each model runs in a child process so its peak resident memory (ru_maxrss) is its own.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import time
from pathlib import Path

import numpy as np
import torch

from papers.syscall_novelty.config import DataConfig, EmbeddingConfig, ModelConfig
from papers.syscall_novelty.data import Split, batches, collate, load_splits, open_dataset
from papers.syscall_novelty.evaluate import score_split
from papers.syscall_novelty.model import build_model
from papers.syscall_novelty.train import lm_loss
from shared.environment import machine_summary
from shared.io import atomic_write_json

OUT = Path(__file__).parent / "results" / "bench.json"
DATA = DataConfig(max_train=96, max_eval=32, max_tokens=512)
STEPS, BATCH, THREADS = 8, 16, 2


def _measure(kind: str, queue: mp.Queue) -> None:
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    vocab, splits, _ = load_splits(DATA, open_dataset(DATA))
    train = splits["train"]
    model = build_model(kind, EmbeddingConfig(), ModelConfig(), len(vocab.names), len(vocab.procs))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    chunks = batches(train, BATCH, shuffle=True)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    requests = tokens = 0
    start = time.perf_counter()
    for i in range(STEPS):
        b = collate(train, chunks[i % len(chunks)])
        loss = lm_loss(model(b["x"]), b["y"], 0.1)
        loss.backward()
        opt.step()
        opt.zero_grad()
        requests += len(b["y"])
        tokens += int((b["y"] != 0).sum())
    train_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    test: Split = splits["test_id"]
    cpu = torch.device("cpu")
    t0 = time.perf_counter()
    batched = score_split(model, test, 32, cpu)["perplexity"]
    batched_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = np.array(
        [score_split(model, Split("one", [t], np.zeros(1), [t], 0), 1, cpu)["perplexity"][0] for t in test.tokens]
    )
    single_s = time.perf_counter() - t0
    queue.put(
        {
            "model": kind,
            "train_requests_per_s": round(requests / train_s, 2),
            "train_tokens_per_s": round(tokens / train_s),
            "peak_rss_mb": round(peak_mb),
            "rss_growth_mb": round((peak_mb * 1024 - base_rss) / 1024),
            "score_batched_requests_per_s": round(len(test) / batched_s, 1),
            "score_one_by_one_requests_per_s": round(len(test) / single_s, 1),
            "batched_speedup": round(single_s / batched_s, 2),
            "max_abs_perplexity_difference": float(np.max(np.abs(batched - single))),
        }
    )


def main() -> None:
    ctx = mp.get_context("spawn")
    rows = []
    for kind in ("lstm", "transformer", "longformer"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_measure, args=(kind, queue))
        proc.start()
        rows.append(queue.get())
        proc.join()
        print(json.dumps(rows[-1]))
    result = {
        "machine": machine_summary(),
        "command": "make bench PAPER=syscall_novelty",
        "setup": f"the shipped sample, {DATA.max_train} train requests, max {DATA.max_tokens} tokens, batch {BATCH}, "
        f"{STEPS} training steps, paper dimensions, {THREADS} CPU threads; scoring {DATA.max_eval} test requests",
        "models": rows,
    }
    atomic_write_json(OUT, result)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
