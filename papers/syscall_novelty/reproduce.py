"""Reproduce Fournier et al. (2023) at one scale: python -m papers.syscall_novelty.reproduce --scale mini

Stages, each cached in the run folder (an interrupted run resumes; training resumes from its last
checkpoint):
  ngram                        the n-gram baselines: scores of every evaluation request
  lstm, transformer, longformer  train on normal requests, then score every evaluation request
  report                       results.json, tables and figures (always runs)

Every stage runs once per cutting mode (data.modes: global, the paper's, then our extension modes).
With train.workers > 1 the models train in that many processes at once (one torch thread each).
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch
import yaml

from papers.syscall_novelty.config import MODELS, Config
from papers.syscall_novelty.data import DataError, Split, load_splits, open_dataset
from papers.syscall_novelty.evaluate import score_split
from papers.syscall_novelty.model import build_model
from papers.syscall_novelty.report import write_report
from papers.syscall_novelty.scores import SCORES, UnseenNgrams, request_scores
from papers.syscall_novelty.train import train
from shared.cli import begin, run_command
from shared.config import to_dict
from shared.progress import get_logger
from shared.run import Run, content_hash
from shared.seeding import seed_everything
from shared.traces import TraceError
from shared.traces.ngram import NgramModel
from shared.traces.signal import signal_report
from shared.traces.tokens import Vocab

PAPER_DIR = Path(__file__).resolve().parent
STAGES = ("ngram", *MODELS, "report")
log = get_logger("syscall_novelty")


def load_paper_meta() -> dict:
    return yaml.safe_load((PAPER_DIR / "paper.yaml").read_text())


def run_ngram(splits: dict[str, Split], order: int, top_k: int) -> dict:
    model = NgramModel.fit(splits["train"].names, order)
    out: dict = {}
    for name, split in splits.items():
        if name == "train":
            continue
        surprisals = [-model.log_probs(s) for s in split.names]
        flags = split.unseen or [np.zeros(len(s), dtype=bool) for s in split.names]
        rows = [request_scores(s, f, top_k) for s, f in zip(surprisals, flags, strict=True)]
        for score in SCORES:
            out[f"{score}__{name}"] = np.array([r[score] for r in rows])
        out[f"ppl__{name}"] = np.exp(out[f"mean__{name}"])
    hits = [model.accuracy(s) for s in splits["test_id"].names]
    out["correct"], out["total"] = sum(h[0] for h in hits), sum(h[1] for h in hits)
    return out


def train_and_score(cfg: Config, kind: str, n_names: int, n_procs: int, splits: dict[str, Split], seed: int,
                    ckpt: Path) -> dict:  # fmt: skip
    """Train one model on normal requests, then score every evaluation request: the cached result.
    Runs in this process or in a worker process (train.workers > 1)."""
    seed_everything(seed)
    model = build_model(kind, cfg.embedding, cfg.model, n_names, n_procs)
    result = train(model, kind, splits["train"], splits["valid_id"], cfg.train, seed, ckpt)
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.train.accelerator != "cpu" else "cpu")
    model.to(device)
    out: dict = {
        "updates": result.updates,
        "train_s": result.seconds,
        "tokens": result.tokens,
        "best_val_loss": result.best_val_loss,
        "stopped_by": result.stopped_by,
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
    }
    start = time.perf_counter()
    for name, split in splits.items():
        if name == "train":
            continue
        scores = score_split(model, split, cfg.train.eval_batch_size, device, cfg.score.top_k)
        out[f"ppl__{name}"] = scores["perplexity"]
        for score in SCORES:
            out[f"{score}__{name}"] = scores[score]
        if name == "test_id":
            out["correct"], out["total"] = scores["correct"], scores["total"]
    out["score_s"] = time.perf_counter() - start
    return out


def _worker_init(threads: int) -> None:
    """A training worker: its own torch thread count (1: two workers on two cores, no oversubscription)."""
    if threads:
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)


def load_mode(cfg: Config, ds, mode: str) -> tuple[Vocab, dict[str, Split], list[str]]:
    """The splits cut in one mode, with every event's unseen-n-gram flag (training n-grams of this mode)."""
    vocab, splits, novelties = load_splits(cfg.data, ds, mode)
    unseen = UnseenNgrams.fit(splits["train"].names, vocab, cfg.score.unseen_order)
    for split in splits.values():
        split.unseen = [unseen.flags(n) for n in split.names]
    return vocab, splits, novelties


def signal_rows(ds, cfg: Config) -> dict:
    """shared.traces' signal report in our cutting modes, or why it could not run (too few blocks)."""
    try:
        return {"rows": signal_report(ds, tuple(cfg.data.modes))}
    except TraceError as exc:
        log.warning("signal report skipped: %s", exc)
        return {"rows": [], "skipped": str(exc)}


def _log_fit(mode: str, kind: str, seed: int, out: dict) -> None:
    log.info(
        "%s/%s seed %d: %d updates in %.0f s on %d thread(s) (%s), best validation loss %.4f, scoring %.0f s",
        mode, kind, seed, int(out["updates"]), float(out["train_s"]), int(out.get("threads", 0)),
        str(out["stopped_by"]), float(out["best_val_loss"]), float(out["score_s"]),
    )  # fmt: skip


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
    loaded: dict[str, tuple[Vocab, dict[str, Split], list[str]]] = {}
    try:
        for mode in cfg.data.modes:
            with run.stage(f"data/{mode}"):
                loaded[mode] = load_mode(cfg, ds, mode)
    except (DataError, TraceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for mode, (vocab, splits, novelties) in loaded.items():
        log.info(
            "%s, %s mode: %d train requests, %d splits, novelties %s, %d syscall names, %d process names",
            ds.root, mode, len(splits["train"]), len(splits), novelties, len(vocab.names), len(vocab.procs),
        )  # fmt: skip
    data_key = {"data": to_dict(cfg.data), "requests": ds.manifest["files"]["requests.parquet"]["sha256"]}
    signal = None
    if cfg.data.signal_report:
        with run.stage("signal report"):
            signal = run.cached_json("signal", {**data_key, "modes": cfg.data.modes}, lambda: signal_rows(ds, cfg))
    model_cfg = content_hash([to_dict(cfg.embedding), to_dict(cfg.model), to_dict(cfg.train), to_dict(cfg.score)])
    outputs: dict = {}  # (mode, model, seed) -> cached outputs
    jobs: list[tuple[str, str, int, dict]] = []  # models to train: (mode, kind, seed, cache key)
    for mode, (_vocab, splits, _) in loaded.items():
        for seed in cfg.seeds:
            for order in cfg.ngram_orders:
                key = {**data_key, "mode": mode, "order": order, "score": to_dict(cfg.score)}
                if "ngram" in stages:
                    with run.stage(f"ngram{order}/{mode}/seed{seed}"):
                        compute = lambda o=order, s=splits: run_ngram(s, o, cfg.score.top_k)  # noqa: E731
                        outputs[(mode, f"ngram{order}", seed)] = run.cached(f"ngram{order}", key, compute)
                elif (found := run.lookup(f"ngram{order}", key)) is not None:
                    outputs[(mode, f"ngram{order}", seed)] = found
            for kind in cfg.models:
                key = {**data_key, "mode": mode, "kind": kind, "seed": seed, "model": model_cfg}
                if kind in stages:
                    jobs.append((mode, kind, seed, key))
                elif (found := run.lookup(kind, key)) is not None:
                    outputs[(mode, kind, seed)] = found
    ckpt = lambda mode, kind, seed: run.dir / "checkpoints" / f"{mode}-{kind}-seed{seed}"  # noqa: E731
    if cfg.train.workers > 1:
        todo = []
        for mode, kind, seed, key in jobs:
            if (found := run.lookup(kind, key)) is not None:
                outputs[(mode, kind, seed)] = found
            else:
                todo.append((mode, kind, seed, key))
        workers = max(1, min(cfg.train.workers, len(todo)))
        with run.stage(f"models/{workers} workers"), ProcessPoolExecutor(
            workers, mp_context=mp.get_context("spawn"), initializer=_worker_init, initargs=(cfg.train.num_threads,)
        ) as pool:  # fmt: skip
            futures = {}
            for mode, kind, seed, key in todo:
                vocab, splits, _ = loaded[mode]
                args_ = (cfg, kind, len(vocab.names), len(vocab.procs), splits, seed, ckpt(mode, kind, seed))
                futures[pool.submit(train_and_score, *args_)] = (mode, kind, seed, key)
            for future in as_completed(futures):
                mode, kind, seed, key = futures[future]
                result = future.result()
                outputs[(mode, kind, seed)] = run.cached(kind, key, lambda r=result: r)
                _log_fit(mode, kind, seed, result)
                shutil.rmtree(ckpt(mode, kind, seed), ignore_errors=True)
    else:
        for mode, kind, seed, key in jobs:
            vocab, splits, _ = loaded[mode]
            with run.stage(f"{kind}/{mode}/seed{seed}"):
                # every rank trains (Lightning DDP inside the compute); rank 0 writes the cache
                compute = lambda m=mode, k=kind, s=seed, sp=splits, v=vocab: train_and_score(  # noqa: E731
                    cfg, k, len(v.names), len(v.procs), sp, s, ckpt(m, k, s)
                )
                outputs[(mode, kind, seed)] = run.cached(kind, key, compute, every_rank=True)
                _log_fit(mode, kind, seed, outputs[(mode, kind, seed)])
            shutil.rmtree(ckpt(mode, kind, seed), ignore_errors=True)
    with run.stage("report"):
        splits_by_mode = {mode: loaded[mode][1] for mode in loaded}
        novelties = loaded["global"][2]
        meta = load_paper_meta()
        results = write_report(run, cfg, ds, splits_by_mode, novelties, outputs, meta, args.command, signal)
    from papers.status import finish_run

    return finish_run(run, args, PAPER_DIR, results, start)


if __name__ == "__main__":
    sys.exit(run_command(main))
