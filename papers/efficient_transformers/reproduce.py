"""Reproduce the survey's trade-offs at one scale: python -m papers.efficient_transformers.reproduce --scale mini

Stages, each cached in the run folder so an interrupted run resumes:
  efficiency  attention time and memory vs length for every variant (FlashAttention's protocol),
              in a child process so that CPU peak memory can be read (see efficiency.py)
  step        one training step of the whole model per variant and length: time and peak memory as
              LRA's Table 2 measured them, with a Linformer k sweep
  general     one training step with each general approach (checkpointing, bf16, reversible, sharing)
  quality     every variant trained with the same model and update budget on each task, test accuracy
  report      results.json, tables and figures (always runs)
"""

from __future__ import annotations

import functools
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import torch
import yaml

from papers.efficient_transformers.config import Config, TaskConfig
from papers.efficient_transformers.data.tasks import TaskData, load_task
from papers.efficient_transformers.efficiency import run_in_child
from papers.efficient_transformers.report import write_report
from papers.efficient_transformers.train import train_and_score
from shared.cli import begin, run_command
from shared.config import to_dict
from shared.data.errors import CorruptDataError, DatasetNotFoundError
from shared.progress import get_logger, progress
from shared.run import Run, content_hash
from shared.seeding import seed_everything

PAPER_DIR = Path(__file__).resolve().parent
STAGES = ("efficiency", "step", "general", "quality", "report")
log = get_logger("efficient_transformers")


def load_paper_meta() -> dict:
    return yaml.safe_load((PAPER_DIR / "paper.yaml").read_text())


def run_efficiency(run: Run, cfg: Config, compute: bool) -> dict | None:
    key = {"efficiency": to_dict(cfg.efficiency), "attention": to_dict(cfg.attention)}
    if not compute:
        return run.lookup_json("efficiency", key)
    with run.stage("efficiency"):
        return run.cached_json("efficiency", key, lambda: run_in_child("attention", cfg, run.dir / "efficiency"))


def run_step(run: Run, cfg: Config, compute: bool) -> dict | None:
    key = {
        "step": to_dict(cfg.step),
        "model": to_dict(cfg.quality.model),
        "attention": to_dict(cfg.attention),
        "budget": [cfg.efficiency.compression_ratio, cfg.efficiency.compressed_max],
        "device": cfg.efficiency.device,
        "threads": cfg.efficiency.threads,
    }
    return _child_stage(run, cfg, "step", key, compute)


def run_general(run: Run, cfg: Config, compute: bool) -> dict | None:
    key = {
        "general": to_dict(cfg.general),
        "model": to_dict(cfg.quality.model),
        "attention": to_dict(cfg.attention),
        "device": cfg.efficiency.device,
        "threads": cfg.efficiency.threads,
    }
    return _child_stage(run, cfg, "general", key, compute)


def _child_stage(run: Run, cfg: Config, stage: str, key: dict, compute: bool) -> dict | None:
    """A timing stage measured in a child process (a clean allocator and thread pool), cached by `key`;
    without `compute`, only what an earlier run cached."""
    if not compute:
        return run.lookup_json(stage, key)
    with run.stage(stage):
        return run.cached_json(stage, key, lambda: run_in_child(stage, cfg, run.dir / "efficiency"))


def _train_unit(task_cfg: TaskConfig, variant: str, seed: int, cfg: Config) -> dict:
    """One (task, variant, seed) training in a worker process: one torch thread, the task built once
    per process. The result depends only on the unit's seed, not on which worker ran it."""
    torch.set_num_threads(max(1, cfg.quality.train.threads))
    seed_everything(seed)
    train = replace(cfg.quality.train, steps=task_cfg.steps or cfg.quality.train.steps)
    return train_and_score(_task(task_cfg), variant, cfg.attention, cfg.quality.model, train, seed)


_TASKS: dict[str, TaskData] = {}


def _task(task_cfg: TaskConfig) -> TaskData:
    """The task's tensors, built once per process."""
    key = content_hash(to_dict(task_cfg))
    if key not in _TASKS:
        _TASKS[key] = load_task(task_cfg)
    return _TASKS[key]


def _dispatch(pending: list, cfg: Config) -> Iterator[tuple[tuple, Callable[[], dict]]]:
    """(unit, a callable giving its result) as units finish: in this process with one worker,
    else in a pool of spawned processes."""
    if cfg.quality.train.workers <= 1:
        for unit in pending:
            yield unit, functools.partial(_train_unit, *unit, cfg)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=cfg.quality.train.workers, mp_context=ctx) as pool:
        futures = {pool.submit(_train_unit, *unit, cfg): unit for unit in pending}
        for fut in as_completed(futures):
            yield futures[fut], fut.result


def run_quality(run: Run, cfg: Config, compute: bool) -> tuple[dict, dict, dict]:
    """{task: {variant: {seed: accuracy}}}, the same with each test item's correctness (a list of 0/1)
    in place of the accuracy, and each task's majority-class accuracy; units run in `train.workers`
    processes."""
    q = cfg.quality
    units = [(t, v, s) for t in q.tasks for v in q.variants for s in cfg.seeds]

    def key(t: TaskConfig, v: str, s: int) -> dict:
        return {
            "task": to_dict(t),
            "variant": v,
            "seed": s,
            "model": to_dict(q.model),
            "train": to_dict(q.train),
            "attention": to_dict(cfg.attention),
        }

    found = {(t.name, v, s): run.lookup_json("quality", key(t, v, s)) for t, v, s in units}
    pending = [(t, v, s) for t, v, s in units if found[(t.name, v, s)] is None]
    majority = {}
    for t in q.tasks:
        m = run.lookup_json("majority", {"task": to_dict(t)})
        if m is None and compute:
            data = _task(t)
            log.info(
                "%s: train %s, test %s, majority-class accuracy %.3f",
                t.name,
                tuple(data.x_train.shape),
                tuple(data.x_test.shape),
                data.majority_accuracy(),
            )
            m = run.cached_json("majority", {"task": to_dict(t)}, lambda d=data: {"acc": d.majority_accuracy()})
        if m is not None:
            majority[t.name] = m["acc"]
    if compute and pending:
        with run.stage("quality"):
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=max(1, q.train.workers), mp_context=ctx) as pool:
                futures = {pool.submit(_train_unit, t, v, s, cfg): (t, v, s) for t, v, s in pending}
                for fut in progress(as_completed(futures), desc="quality", total=len(futures)):
                    t, v, s = futures[fut]
                    res = run.cached_json("quality", key(t, v, s), fut.result)
                    found[(t.name, v, s)] = res
                    run.log_metrics(task=t.name, variant=v, seed=s, **{k: x for k, x in res.items() if k != "correct"})
                    log.info(
                        "quality %s/%s seed %d: accuracy %.4f (%.0f s)", t.name, v, s, res["accuracy"], res["train_s"]
                    )
    quality: dict = {t.name: {} for t in q.tasks}
    items: dict = {t.name: {} for t in q.tasks}
    for (task, v, s), res in found.items():
        if res is not None:
            quality[task].setdefault(v, {})[str(s)] = res["accuracy"]
            if "correct" in res:
                items[task].setdefault(v, {})[str(s)] = res["correct"]
    return quality, items, majority


def main(argv: list[str] | None = None) -> int:
    started = begin(PAPER_DIR, STAGES, Config, argv)
    if isinstance(started, int):
        return started
    args, cfg, stages = started
    run = Run("efficient_transformers", args.scale, to_dict(cfg), cfg.seeds, root=args.out, fresh=args.fresh)
    start = time.perf_counter()
    eff = cfg.efficiency
    summary: dict = {
        "seeds": cfg.seeds,
        "fused_reference": eff.fused_reference,
        "batch": eff.batch,
        "heads": eff.heads,
        "head_dim": eff.head_dim,
    }
    summary["efficiency"] = run_efficiency(run, cfg, "efficiency" in stages) or {}
    summary["step"] = run_step(run, cfg, "step" in stages) or {}
    summary["general"] = run_general(run, cfg, "general" in stages) or {}
    try:
        summary["quality"], summary["quality_items"], summary["majority"] = run_quality(run, cfg, "quality" in stages)
    except (DatasetNotFoundError, CorruptDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary["notes"] = [
        f"quality: {cfg.quality.train.steps} updates (unless the task sets its own) of batch "
        f"{cfg.quality.train.batch} per variant and task, "
        f"{cfg.quality.model.layers} layers, d={cfg.quality.model.dim}, {cfg.quality.model.heads} heads; "
        f"tasks "
        + ", ".join(
            f"{t.name} (N={t.max_len}, {t.n_train} train / {t.n_test} test, {t.steps or cfg.quality.train.steps} "
            "updates)"
            for t in cfg.quality.tasks
        ),
        f"efficiency: approximations get m = min(N/{eff.compression_ratio}, {eff.compressed_max}) (FlashAttention's "
        f"rule); {eff.warmup} warm-up calls per variant, then {eff.repeats} interleaved rounds (each times every "
        f"variant once, order rotated), median and interquartile range; "
        f"{summary['efficiency'].get('threads', '?')} threads; peak memory by "
        + ("cuda.max_memory_allocated" if eff.device.startswith("cuda") else "VmHWM in a child process"),
        f"model step (LRA Table 2's measurement): one AdamW training step of the whole {cfg.quality.model.layers}-"
        f"layer d={cfg.quality.model.dim} model at batch {cfg.step.batch}, N = {cfg.step.lengths}; "
        f"{cfg.step.warmup} warm-up steps per case, {cfg.step.repeats} interleaved rounds; peak memory of building "
        f"the model and running two steps (parameters, gradients, AdamW state, activations); Linformer at LRA's "
        f"k = {cfg.step.linformer_k}, swept over k = {cfg.step.linformer_ks}",
        "accuracy intervals: 95% percentile bootstrap over test items (2,000 resamples), paired (every model scored "
        "on the same resampled items); they cover test-set sampling, not training-seed variance",
    ]
    for stage in ("efficiency", "step"):
        load = summary[stage].get("loadavg")
        if load:
            summary["notes"].append(
                f"{stage}: load average (1/5/15 min) {'/'.join(f'{x:.2f}' for x in load['before'])} before, "
                f"{'/'.join(f'{x:.2f}' for x in load['after'])} after (2 cores: above 2 means other processes "
                "shared them)"
            )
    with run.stage("report"):
        results = write_report(run, summary, load_paper_meta(), args.command)
    from papers.status import finish_run

    return finish_run(run, args, PAPER_DIR, results, start)


if __name__ == "__main__":
    sys.exit(run_command(main))
