"""Reproduce Fournier et al. (MSR 2021) at one scale: python -m papers.syscall_args.reproduce --scale mini

Stages (cached in the run folder, so an interrupted run resumes):
  ngram                                 n-gram next-name accuracy on the validation windows
  lstm_lm, transformer_lm, transformer_mlm   every argument setting x seed of that model/task pair
  report                                results.json, the ablation table and figure (always runs)
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import yaml

from papers.syscall_args.config import EXPERIMENTS, SETTINGS, Config
from papers.syscall_args.data import DataError, load_windows, open_dataset
from papers.syscall_args.model import build_model
from papers.syscall_args.report import write_report
from papers.syscall_args.train import fit
from shared.cli import begin, run_command
from shared.config import to_dict
from shared.progress import get_logger
from shared.run import Run, content_hash
from shared.seeding import seed_everything
from shared.traces import TraceError
from shared.traces.ngram import NgramModel

PAPER_DIR = Path(__file__).resolve().parent
STAGES = ("ngram", *EXPERIMENTS, "report")
log = get_logger("syscall_args")


def ngram_accuracy(windows: dict, order: int) -> dict:
    model = NgramModel.fit(windows["train"].names, order)
    hits = [model.accuracy(w) for w in windows["valid_id"].names]
    return {"accuracy": sum(h[0] for h in hits) / max(sum(h[1] for h in hits), 1)}


def run_one(run: Run, cfg: Config, experiment: str, setting: str, seed: int, vocab, windows: dict) -> dict:
    seed_everything(seed)
    model = build_model(experiment, SETTINGS[setting], cfg.embedding, cfg.model, len(vocab.names), len(vocab.procs))
    ckpt = run.dir / "checkpoints" / f"{experiment}-{setting}-seed{seed}"
    result = fit(model, experiment, windows, cfg.train, len(vocab.names), seed, ckpt)
    shutil.rmtree(ckpt, ignore_errors=True)
    log.info(
        "%s %s seed %d: test accuracy %.4f (validation %.4f), %d updates in %.0f s, %d parameters",
        experiment, setting, seed, result.test_acc, result.best_val_acc, result.updates, result.seconds,
        result.parameters,
    )  # fmt: skip
    return {
        "test_acc": result.test_acc,
        "val_acc": result.best_val_acc,
        "updates": result.updates,
        "seconds": result.seconds,
        "parameters": result.parameters,
    }


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
        key = {**data_key, "order": order}
        if "ngram" in stages:
            ngrams[order] = run.cached("ngram", key, lambda o=order: ngram_accuracy(windows, o))
        elif (found := run.lookup("ngram", key)) is not None:
            ngrams[order] = found
    model_key = content_hash([to_dict(cfg.embedding), to_dict(cfg.model), to_dict(cfg.train)])
    outputs: dict = {}
    for experiment in cfg.experiments:
        for setting in cfg.settings:
            for seed in cfg.seeds:
                key = {**data_key, "experiment": experiment, "setting": setting, "seed": seed, "model": model_key}
                if experiment in stages:
                    with run.stage(f"{experiment}/{setting}/seed{seed}"):
                        compute = lambda e=experiment, s=setting, sd=seed: run_one(run, cfg, e, s, sd, vocab, windows)  # noqa: E731, E501
                        # every rank trains (Lightning DDP inside); rank 0 writes the cache
                        outputs[(experiment, setting, seed)] = run.cached("fit", key, compute, every_rank=True)
                elif (found := run.lookup("fit", key)) is not None:
                    outputs[(experiment, setting, seed)] = found
    with run.stage("report"):
        results = write_report(run, cfg, outputs, ngrams, windows, load_paper_meta(), args.command)
    from papers.status import finish_run

    return finish_run(run, args, PAPER_DIR, results, start)


def load_paper_meta() -> dict:
    return yaml.safe_load((PAPER_DIR / "paper.yaml").read_text())


if __name__ == "__main__":
    sys.exit(run_command(main))
