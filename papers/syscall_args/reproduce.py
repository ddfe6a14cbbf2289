"""Reproduce Fournier et al. (MSR 2021) at one scale: python -m papers.syscall_args.reproduce --scale mini

Stages (cached in the run folder, so an interrupted run resumes):
  ngram                                 n-gram next-name accuracy on the validation windows
  lstm_lm, transformer_lm, transformer_mlm   every argument setting x seed of that model/task pair
  report                                results.json, the ablation table and figure (always runs)
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import yaml

from papers.syscall_args.config import EXPERIMENTS, SETTINGS, Config
from papers.syscall_args.data import DataError, load_windows, open_dataset
from papers.syscall_args.model import build_model
from papers.syscall_args.report import write_report
from papers.syscall_args.train import fit
from shared.cli import begin, run_command
from shared.config import to_dict
from shared.progress import get_logger, setup_logging
from shared.run import Run, content_hash
from shared.seeding import seed_everything
from shared.traces import TraceError
from shared.traces.ngram import NgramModel

PAPER_DIR = Path(__file__).resolve().parent
STAGES = ("ngram", *EXPERIMENTS, "report")
log = get_logger("syscall_args")


def ngram_accuracy(windows: dict, order: int) -> dict:
    """Validation accuracy (the paper's n-gram number) and, per test window, the next-name predictions it
    gets right after the first event (the positions an LM predicts), to compare with the LMs on the same
    test windows."""
    model = NgramModel.fit(windows["train"].names, order)
    hits = [model.accuracy(w) for w in windows["valid_id"].names]
    # the first event's prediction (from the [START] padding alone) is the same in a window and in its
    # first event alone: subtracting it leaves the positions an LM predicts
    test = [np.subtract(model.accuracy(w), model.accuracy(w[:1])) for w in windows["test_id"].names]
    return {
        "accuracy": sum(h[0] for h in hits) / max(sum(h[1] for h in hits), 1),
        "test_correct": np.array([h[0] for h in test], dtype=np.int64),
        "test_total": np.array([h[1] for h in test], dtype=np.int64),
    }


def run_one(run_dir: Path, cfg: Config, experiment: str, setting: str, seed: int, vocab, windows: dict) -> dict:
    seed_everything(seed)
    model = build_model(experiment, SETTINGS[setting], cfg.embedding, cfg.model, len(vocab.names), len(vocab.procs))
    ckpt = run_dir / "checkpoints" / f"{experiment}-{setting}-seed{seed}"
    result = fit(model, experiment, windows, cfg.train, len(vocab.names), seed, ckpt)
    shutil.rmtree(ckpt, ignore_errors=True)
    log.info(
        "%s %s seed %d: test accuracy %.4f (validation %.4f), %d updates (stopped: %s) in %.0f s, %d parameters",
        experiment, setting, seed, result.test_acc, result.best_val_acc, result.updates, result.stopped,
        result.seconds, result.parameters,
    )  # fmt: skip
    return {
        "test_acc": result.test_acc,
        "val_acc": result.best_val_acc,
        "updates": result.updates,
        "seconds": result.seconds,
        "parameters": result.parameters,
        "stopped": result.stopped,
        "test_correct": result.test_correct,
        "test_total": result.test_total,
        "val_updates": result.val_updates,
        "val_curve": result.val_curve,
    }


_WORKER: dict = {}


def _worker_init(run_dir: Path, cfg: Config, vocab, windows: dict) -> None:
    """A training process of a pool (spawned): one torch thread (train.workers needs num_threads=1)."""
    import torch

    setup_logging()  # a spawned process starts without the parent's handlers
    torch.set_num_threads(cfg.train.num_threads)
    _WORKER.update(run_dir=run_dir, cfg=cfg, vocab=vocab, windows=windows)


def _worker_run(experiment: str, setting: str, seed: int) -> dict:
    w = _WORKER
    return run_one(w["run_dir"], w["cfg"], experiment, setting, seed, w["vocab"], w["windows"])


def train_all(run: Run, cfg: Config, jobs: list[tuple[str, str, int, dict]], vocab, windows: dict) -> dict:
    """Every (experiment, setting, seed) job, each cached as soon as it ends (an interrupted run resumes).
    With train.workers > 1 they run side by side in spawned processes, the longest budgets first."""
    outputs: dict = {}
    todo = []
    for experiment, setting, seed, key in jobs:
        if (found := run.lookup("fit", key)) is not None:
            outputs[(experiment, setting, seed)] = run.cached("fit", key, lambda: found)  # counts its compute time
        else:
            todo.append((experiment, setting, seed, key))
    if cfg.train.workers <= 1 or len(todo) <= 1:
        for experiment, setting, seed, key in todo:
            compute = lambda e=experiment, s=setting, sd=seed: run_one(run.dir, cfg, e, s, sd, vocab, windows)  # noqa: E731
            # every rank trains (Lightning DDP inside); rank 0 writes the cache
            outputs[(experiment, setting, seed)] = run.cached("fit", key, compute, every_rank=True)
        return outputs
    todo.sort(key=lambda j: -cfg.train.max_updates.get(j[0], 0) * (6 if j[0].startswith("transformer") else 1))
    log.info("training %d runs, %d side by side (one torch thread each)", len(todo), cfg.train.workers)
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(cfg.train.workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(run.dir, cfg, vocab, windows)) as pool:  # fmt: skip
        futures = {pool.submit(_worker_run, e, s, sd): (e, s, sd, key) for e, s, sd, key in todo}
        try:
            for done in as_completed(futures):
                experiment, setting, seed, key = futures[done]
                value = done.result()
                outputs[(experiment, setting, seed)] = run.cached("fit", key, lambda v=value: v)
        except BaseException:  # a failed run or Ctrl-C: the queued runs do not start (finished ones are cached)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return outputs


def main(argv: list[str] | None = None) -> int:
    started = begin(PAPER_DIR, STAGES, Config, argv)
    if isinstance(started, int):
        return started
    args, cfg, stages = started
    try:  # before the run folder exists: a dataset that is missing or malformed writes nothing
        ds = open_dataset(cfg.data)
    except TraceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run = Run("syscall_args", args.scale, to_dict(cfg), cfg.seeds, root=args.out, fresh=args.fresh)
    start = time.perf_counter()
    try:
        with run.stage("data"):
            vocab, windows, ds = load_windows(cfg.data, ds=ds)
    except (DataError, TraceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info(
        "%s: windows of %d events: train %d, valid %d, test %d; %d names, %d processes",
        ds.root, cfg.data.window, len(windows["train"].x), len(windows["valid_id"].x), len(windows["test_id"].x),
        len(vocab.names), len(vocab.procs),
    )  # fmt: skip
    data_key = {"data": to_dict(cfg.data), "requests": ds.manifest["files"]["requests.parquet"]["sha256"]}
    ngrams: dict[int, dict] = {}
    for order in cfg.ngram_orders:
        key = {**data_key, "order": order, "test_windows": True}
        if "ngram" in stages:
            ngrams[order] = run.cached("ngram", key, lambda o=order: ngram_accuracy(windows, o))
        elif (found := run.lookup("ngram", key)) is not None:
            ngrams[order] = found
    # the training config without train.workers (how many run side by side does not change a run)
    train_key = {k: v for k, v in to_dict(cfg.train).items() if k != "workers"}
    model_key = content_hash([to_dict(cfg.embedding), to_dict(cfg.model), train_key])
    outputs: dict = {}
    jobs = []
    for experiment in cfg.experiments:
        for setting in cfg.settings:
            for seed in cfg.seeds:
                key = {**data_key, "experiment": experiment, "setting": setting, "seed": seed, "model": model_key}
                if experiment in stages:
                    jobs.append((experiment, setting, seed, key))
                elif (found := run.lookup("fit", key)) is not None:
                    outputs[(experiment, setting, seed)] = found
    if jobs:
        with run.stage("train"):
            outputs.update(train_all(run, cfg, jobs, vocab, windows))
    with run.stage("report"):
        results = write_report(run, cfg, outputs, ngrams, windows, load_paper_meta(), args.command)
    from papers.status import finish_run

    return finish_run(run, args, PAPER_DIR, results, start)


def load_paper_meta() -> dict:
    return yaml.safe_load((PAPER_DIR / "paper.yaml").read_text())


if __name__ == "__main__":
    sys.exit(run_command(main))
