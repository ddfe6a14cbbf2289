"""Reproduce Chitsaz et al. (2024) at one scale: python -m papers.quant_pretraining.reproduce --scale mini

Stages (each run cached by content hash in the run folder, and resumed from its checkpoint):
  data    the corpus: prose + a BPE trained here (smoke, mini) or OpenWebText + GPT-2's tokenizer
  train   every (configuration, seed) pre-trained for the same tokens, same batches, same init
  report  results.json, tables and loss curves (always runs)
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from papers.quant_pretraining.config import PAPER_DIR, Config
from papers.quant_pretraining.configurations import get_configuration
from papers.quant_pretraining.data import Corpus, load_corpus, zero_shot_streams
from papers.quant_pretraining.report import write_report
from papers.quant_pretraining.train import train_one
from shared.cli import begin, run_command
from shared.config import to_dict
from shared.data.errors import DatasetNotFoundError
from shared.distributed import rank
from shared.io import atomic_write_json
from shared.progress import get_logger, setup_logging
from shared.run import Run, content_hash

STAGES = ("data", "train", "report")
log = get_logger("quant_pretraining")


class TrainCache:
    """Finished runs by content: (configuration, seed, model, data, train, engine). Shared by every
    run folder of a scale, so adding a configuration to a table trains only that configuration."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, key: dict) -> Path:
        return self.folder / f"{key['configuration']}-seed{key['seed']}-{content_hash(key)}.json"

    def get(self, key: dict) -> dict | None:
        path = self._path(key)
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, key: dict, summary: dict) -> dict:
        atomic_write_json(self._path(key), summary)
        return json.loads(self._path(key).read_text())  # the same types a rerun reads back


def _train_in_worker(cfg: Config, corpus: Corpus, name: str, seed: int, ckpt: Path) -> dict:
    setup_logging()  # a spawned worker starts with logging unconfigured
    summary = train_one(cfg, corpus, get_configuration(name), seed, ckpt)
    ckpt.unlink(missing_ok=True) if ckpt.is_file() else shutil.rmtree(ckpt, ignore_errors=True)
    return summary


def train_all(cfg: Config, corpus: Corpus, pending: list[tuple[str, int]], ckpt_dir: Path) -> Iterator:
    """Yield ((configuration, seed), summary) as runs finish: in this process, or in cfg.parallel_runs
    worker processes (spawned, one torch thread each: two cores run two models faster than one model
    on two threads). Each run is seeded on its own, so the numbers do not depend on the parallelism."""
    jobs = [(name, seed, ckpt_dir / f"{name}-seed{seed}.ckpt") for name, seed in pending]
    if cfg.parallel_runs <= 1:
        for name, seed, ckpt in jobs:
            yield (name, seed), _train_in_worker(cfg, corpus, name, seed, ckpt)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(cfg.parallel_runs, mp_context=context) as pool:
        futures = {pool.submit(_train_in_worker, cfg, corpus, *job): job[:2] for job in jobs}
        for future in as_completed(futures):
            yield futures[future], future.result()


def main(argv: list[str] | None = None) -> int:
    started = begin(PAPER_DIR, STAGES, Config, argv)
    if isinstance(started, int):
        return started
    args, cfg, stages = started
    # Every shard of a SLURM array writes to the same run folder: the folder's id leaves the shard out.
    unsharded = dataclasses.replace(cfg, shard=0, num_shards=1)
    run = Run("quant_pretraining", args.scale, to_dict(unsharded), cfg.seeds, root=args.out, fresh=args.fresh)
    start = time.perf_counter()
    try:
        with run.stage("data"):
            corpus = load_corpus(cfg.data, run.dir.parent / "corpus")
            if cfg.data.zero_shot:  # the paper's zero-shot suite, evaluated beside the validation split
                corpus.valid.update(zero_shot_streams(cfg.data.zero_shot, corpus.tokenizer_dir))
    except DatasetNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info(
        "corpus: %d training tokens, validation %s", len(corpus.train), {k: len(v) for k, v in corpus.valid.items()}
    )
    train_key = content_hash([to_dict(cfg.model), to_dict(cfg.data), to_dict(cfg.train), to_dict(cfg.engine)])
    keys = {(name, seed): {"configuration": name, "seed": seed, "train": train_key} for name, seed in cfg.runs()}
    cache = TrainCache(run.dir.parent / "train-cache")
    outputs = {run_: found for run_, key in keys.items() if (found := cache.get(key)) is not None}
    mine = {run_ for i, run_ in enumerate(keys) if i % cfg.num_shards == cfg.shard}
    pending = [run_ for run_ in keys if run_ not in outputs and run_ in mine]
    if "train" in stages and pending:
        log.info("training %d of %d runs, %d at a time", len(pending), len(keys), cfg.parallel_runs)
        with run.stage("train"):
            for (name, seed), summary in train_all(cfg, corpus, pending, run.dir / "checkpoints"):
                outputs[(name, seed)] = cache.put(keys[(name, seed)], summary) if rank() == 0 else summary
                log.info("%s seed %d: val loss %.4f, %.0f tok/s", name, seed, summary["final"]["val_loss"],
                         summary["tokens_per_s"])  # fmt: skip
    if cfg.num_shards > 1:  # one task of a SLURM array: the merge job after it reports
        log.info("shard %d of %d done; the merge job (num_shards=1) reports once every shard has", cfg.shard,
                 cfg.num_shards)  # fmt: skip
        return 0
    with run.stage("report"):
        results = write_report(run, cfg, outputs, args.command)
    from papers.status import finish_run

    return finish_run(run, args, PAPER_DIR, results, start)


if __name__ == "__main__":
    sys.exit(run_command(main))
