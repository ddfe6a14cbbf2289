"""Reproduce Chitsaz et al. (2024) at one scale: python -m papers.quant_pretraining.reproduce --scale mini

Stages (each run cached by content hash in the run folder, and resumed from its checkpoint):
  data    the corpus: prose + a BPE trained here (smoke, mini) or OpenWebText + GPT-2's tokenizer
  train   every (configuration, seed) pre-trained for the same tokens, same batches, same init
  report  results.json, tables and loss curves (always runs)
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from papers.quant_pretraining.config import Config
from papers.quant_pretraining.configurations import get_configuration
from papers.quant_pretraining.data import load_corpus, zero_shot_streams
from papers.quant_pretraining.report import write_report
from papers.quant_pretraining.train import train_one
from shared.cli import begin
from shared.config import to_dict
from shared.data.errors import DatasetNotFoundError
from shared.progress import get_logger
from shared.run import Run, content_hash

PAPER_DIR = Path(__file__).resolve().parent
STAGES = ("data", "train", "report")
log = get_logger("quant_pretraining")


def main(argv: list[str] | None = None) -> int:
    started = begin(PAPER_DIR, STAGES, Config, argv)
    if isinstance(started, int):
        return started
    args, cfg, stages = started
    run = Run("quant_pretraining", args.scale, to_dict(cfg), cfg.seeds, root=args.out, fresh=args.fresh)
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
    outputs: dict[tuple[str, int], dict] = {}
    for name, seed in cfg.runs():
        key = {"configuration": name, "seed": seed, "train": train_key}
        if "train" in stages:
            ckpt = run.dir / "checkpoints" / f"{name}-seed{seed}.ckpt"
            with run.stage(f"train/{name}/seed{seed}"):
                outputs[(name, seed)] = run.cached_json(
                    "train", key, lambda n=name, s=seed, c=ckpt: train_one(cfg, corpus, get_configuration(n), s, c)
                )
            shutil.rmtree(ckpt, ignore_errors=True) if ckpt.is_dir() else ckpt.unlink(missing_ok=True)
        elif (found := run.lookup_json("train", key)) is not None:
            outputs[(name, seed)] = found
    with run.stage("report"):
        results = write_report(run, cfg, outputs, args.command)
    from papers.status import finish_run

    return finish_run(run, args, PAPER_DIR, results, start)


if __name__ == "__main__":
    sys.exit(main())
