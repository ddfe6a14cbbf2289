"""Reproduce Fournier et al. (2023) at one scale: python -m papers.syscall_novelty.reproduce --scale mini

Stages, each cached in the run folder (an interrupted run resumes; training resumes from its last
checkpoint):
  ngram                        the n-gram baselines: perplexity of every evaluation request
  lstm, transformer, longformer  train on normal requests, then score every evaluation request
  report                       results.json, tables and figures (always runs)
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from papers.syscall_novelty.config import MODELS, Config
from papers.syscall_novelty.data import DataError, Split, load_splits, open_dataset
from papers.syscall_novelty.evaluate import score_split
from papers.syscall_novelty.model import build_model
from papers.syscall_novelty.report import write_report
from papers.syscall_novelty.train import train
from shared.cli import begin, run_command
from shared.config import to_dict
from shared.progress import get_logger
from shared.run import Run, content_hash
from shared.seeding import seed_everything
from shared.traces import TraceError
from shared.traces.ngram import NgramModel

PAPER_DIR = Path(__file__).resolve().parent
STAGES = ("ngram", *MODELS, "report")
log = get_logger("syscall_novelty")


def load_paper_meta() -> dict:
    return yaml.safe_load((PAPER_DIR / "paper.yaml").read_text())


def run_ngram(splits: dict[str, Split], order: int) -> dict:
    model = NgramModel.fit(splits["train"].names, order)
    out: dict = {}
    for name, split in splits.items():
        if name != "train":
            out[f"ppl__{name}"] = np.array([model.perplexity(s) for s in split.names])
    hits = [model.accuracy(s) for s in splits["test_id"].names]
    out["correct"], out["total"] = sum(h[0] for h in hits), sum(h[1] for h in hits)
    return out


def run_model(run: Run, cfg: Config, kind: str, vocab, splits: dict[str, Split], seed: int) -> dict:
    seed_everything(seed)
    model = build_model(kind, cfg.embedding, cfg.model, len(vocab.names), len(vocab.procs))
    ckpt = run.dir / "checkpoints" / f"{kind}-seed{seed}"
    result = train(model, kind, splits["train"], splits["valid_id"], cfg.train, seed, ckpt)
    log.info(
        "%s seed %d: %d updates in %.0f s (%s), best validation loss %.4f",
        kind, seed, result.updates, result.seconds, result.stopped_by, result.best_val_loss,
    )  # fmt: skip
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.train.accelerator != "cpu" else "cpu")
    model.to(device)
    out: dict = {
        "updates": result.updates,
        "train_s": result.seconds,
        "tokens": result.tokens,
        "best_val_loss": result.best_val_loss,
        "stopped_by": result.stopped_by,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    start = time.perf_counter()
    for name, split in splits.items():
        if name == "train":
            continue
        scores = score_split(model, split, cfg.train.eval_batch_size, device)
        out[f"ppl__{name}"] = scores["perplexity"]
        if name == "test_id":
            out["correct"], out["total"] = scores["correct"], scores["total"]
    out["score_s"] = time.perf_counter() - start
    return out


def main(argv: list[str] | None = None) -> int:
    started = begin(PAPER_DIR, STAGES, Config, argv)
    if isinstance(started, int):
        return started
    args, cfg, stages = started
    try:  # before the run folder exists: a dataset that is missing or malformed writes nothing
        ds = open_dataset(cfg.data)
    except (DataError, TraceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run = Run("syscall_novelty", args.scale, to_dict(cfg), cfg.seeds, root=args.out, fresh=args.fresh)
    start = time.perf_counter()
    try:
        with run.stage("data"):
            vocab, splits, novelties = load_splits(cfg.data, ds)
    except (DataError, TraceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info(
        "%s: %d train requests, %d splits, novelties %s, %d syscall names, %d process names",
        ds.root, len(splits["train"]), len(splits), novelties, len(vocab.names), len(vocab.procs),
    )  # fmt: skip
    data_key = {"data": to_dict(cfg.data), "requests": ds.manifest["files"]["requests.parquet"]["sha256"]}
    outputs: dict = {}
    for seed in cfg.seeds:
        for order in cfg.ngram_orders:
            key = {**data_key, "order": order}
            if "ngram" in stages:
                with run.stage(f"ngram{order}/seed{seed}"):
                    compute = lambda o=order: run_ngram(splits, o)  # noqa: E731
                    outputs[(f"ngram{order}", seed)] = run.cached(f"ngram{order}", key, compute)
            elif (found := run.lookup(f"ngram{order}", key)) is not None:
                outputs[(f"ngram{order}", seed)] = found
        for kind in cfg.models:
            model_cfg = content_hash([to_dict(cfg.embedding), to_dict(cfg.model), to_dict(cfg.train)])
            key = {**data_key, "kind": kind, "seed": seed, "model": model_cfg}
            if kind in stages:
                with run.stage(f"{kind}/seed{seed}"):
                    # every rank trains (Lightning DDP inside the compute); rank 0 writes the cache
                    outputs[(kind, seed)] = run.cached(
                        kind, key, lambda k=kind, s=seed: run_model(run, cfg, k, vocab, splits, s), every_rank=True
                    )
                shutil.rmtree(run.dir / "checkpoints" / f"{kind}-seed{seed}", ignore_errors=True)
            elif (found := run.lookup(kind, key)) is not None:
                outputs[(kind, seed)] = found
    with run.stage("report"):
        results = write_report(run, cfg, ds, splits, novelties, outputs, load_paper_meta(), args.command)
    from papers.status import finish_run

    return finish_run(run, args, PAPER_DIR, results, start)


if __name__ == "__main__":
    sys.exit(run_command(main))
