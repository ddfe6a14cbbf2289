"""Reproduce the trade-offs of parameter-efficient preference alignment: python -m papers.peft_alignment.reproduce

Stages, each cached so an interrupted run resumes:
  family   the pre-trained model and its instruction-tuned sibling (shared.lm_family; full: Hub ids)
  align    every grid job: SFT or DPO with LoRA or QLoRA, then the five evaluation axes (worker processes)
  merges   SLERP and DARE-TIES merges of the aligned models (mergekit), evaluated like the rest
  report   results.json, the grid table, the findings with verdicts, figures (always runs)
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import yaml

from papers.peft_alignment import grid
from papers.peft_alignment.config import Config
from papers.peft_alignment.evaluation import VERSION as EVAL_VERSION
from papers.peft_alignment.evaluation import EvalSets, local_eval_sets
from papers.peft_alignment.grid import Job
from shared.cli import begin, run_command
from shared.config import to_dict
from shared.environment import child_malloc_env, keep_freed_memory
from shared.lm_family import merging
from shared.progress import get_logger, progress
from shared.run import Run, content_hash

PAPER_DIR = Path(__file__).resolve().parent
STAGES = ("family", "align", "merges", "report")
log = get_logger("peft_alignment")


def load_paper_meta() -> dict:
    return yaml.safe_load((PAPER_DIR / "paper.yaml").read_text())


def original_models(cfg: Config, out: Path) -> dict[str, str]:
    """{grid model name: folder or Hub id}: the family's base and instruct models at local scales."""
    if cfg.source == "hub":
        return {name: cfg.hub.models[name].id for name in cfg.grid.models}
    from shared.lm_family import build_family

    fam = build_family(cfg.family, out / "lm_family", stages=("instruct",))
    models = {"base": str(fam.base), "instruct": str(fam.instruct)}
    if cfg.smollm2 != "off":
        from shared.lm_family.pretrained import converted_smollm2

        models["smollm2"] = str(converted_smollm2(out / "pretrained"))  # ~34 s the first time, then cached
    return models


def ladder_config(cfg: Config, rung) -> Config:
    """The config of one ladder rung: the family at another size, the first seeds, no adapter comparison,
    no SmolLM2."""
    family = dataclasses.replace(cfg.family, model=rung.model)
    grid_cfg = dataclasses.replace(cfg.grid, compare_adapter="", models=[m for m in cfg.grid.models if m != "smollm2"])
    return dataclasses.replace(
        cfg, family=family, seeds=cfg.seeds[: rung.seeds], grid=grid_cfg, smollm2="off", ladder=[]
    )


def eval_sets(cfg: Config) -> EvalSets:
    if cfg.source == "hub":
        from papers.peft_alignment.hub import hub_eval_sets

        return hub_eval_sets(cfg)
    from shared.lm_family.family import prose_sample, web_toxic_sample

    web = set(web_toxic_sample(cfg.family))  # knowledge is cloze on prose, not on the toxic web sentences
    prose = [p for p in prose_sample(cfg.family) if p not in web]
    return local_eval_sets(cfg.eval, prose, cfg.family.seed, cfg.data.train_areas)


def model_sets(cfg: Config, model: str, sets: EvalSets) -> tuple[EvalSets, dict]:
    """The evaluation sets a model (its grid cells and merges too) is scored on, and their cache key: SmolLM2's
    are cut to `smollm2_eval_fraction`, the rest are whole."""
    key = {**to_dict(cfg.eval), "version": EVAL_VERSION}
    if model != "smollm2" or cfg.smollm2_eval_fraction >= 1.0:
        return sets, key
    from papers.peft_alignment.evaluation import shrink

    return shrink(sets, cfg.smollm2_eval_fraction), {**key, "fraction": cfg.smollm2_eval_fraction}


Task = tuple[str, Callable, tuple]  # (label, worker function, its arguments)


def execute(cfg: Config, tasks: list[Task]) -> Iterator[tuple[str, dict]]:
    """Yield (label, result) as tasks finish: here, or in cfg.parallel_runs spawned workers (one torch
    thread each). Every job seeds itself, so the numbers do not depend on the parallelism."""
    if cfg.parallel_runs <= 1 or len(tasks) <= 1:
        for label, fn, args in tasks:
            yield label, fn(*args)
        return
    context = multiprocessing.get_context("spawn")
    with child_malloc_env(), ProcessPoolExecutor(cfg.parallel_runs, mp_context=context) as pool:
        futures = {pool.submit(fn, *args): label for label, fn, args in tasks}  # workers keep freed memory
        for future in as_completed(futures):
            yield futures[future], future.result()


def needs_merged(cfg: Config, job: Job) -> bool:
    return (
        cfg.merge.enabled
        and job.adapter == cfg.grid.adapter
        and job.dataset == cfg.merge.dataset
        and job.preference in ("harmless", "helpful")
    )


def run_grid(
    run: Run, cfg: Config, stages: set[str], models: dict[str, str], sets: EvalSets, label: str = "align"
) -> dict:
    """Align and evaluate every job of this shard (cached); evaluate the original models."""
    cfg_dict = to_dict(cfg)
    base_keys = {name: merging.weights_key(path) for name, path in models.items()}
    scored = {name: model_sets(cfg, name, sets) for name in models}  # (sets, their cache key) per original model
    jobs = grid.plan(cfg)
    mine = {j.name for i, j in enumerate(jobs) if i % cfg.grid.num_shards == cfg.grid.shard}  # this task runs these
    results: dict[str, dict] = {}
    tasks: list[Task] = []
    keys: dict[str, dict] = {}
    merged: dict[str, str] = {}
    for job in jobs:
        akey = grid.adapter_key(cfg, job, base_keys[job.model])
        keys[job.name] = {"adapter": akey, "eval": scored[job.model][1]}
        adir = run.dir / "adapters" / f"{job.name}-{akey}"
        mdir = run.dir / "merged" / f"{job.name}-{akey}" if needs_merged(cfg, job) else None
        if mdir is not None:
            merged[job.name] = str(mdir)
        found = run.lookup_json("job", keys[job.name])
        if found is not None and (mdir is None or (mdir / "config.json").is_file()):
            results[job.name] = found
        elif job.name in mine:
            args = (cfg_dict, job, models[job.model], str(adir), str(mdir) if mdir else None, scored[job.model][0])
            tasks.append((job.name, grid.run_align_job, args))
    for name, path in models.items():
        keys[f"original-{name}"] = {"model": base_keys[name], "eval": scored[name][1]}
        found = run.lookup_json("job", keys[f"original-{name}"])
        if found is not None:
            results[f"original-{name}"] = found
        elif cfg.grid.shard == 0:  # in a SLURM array, the first task scores the originals (first: SmolLM2's is long)
            tasks.insert(0, (f"original-{name}", grid.run_eval_job, (cfg_dict, path, scored[name][0])))
    if "align" in stages and tasks:
        log.info("%d of %d jobs to run, %d at a time", len(tasks), len(jobs) + len(models), cfg.parallel_runs)
        with run.stage(label):
            for name, result in progress(execute(cfg, tasks), total=len(tasks), desc=label):
                results[name] = run.cached_json("job", keys[name], lambda result=result: result)
    return {"results": results, "merged": merged, "jobs": [dataclasses.asdict(j) for j in jobs]}


def run_merges(
    run: Run,
    cfg: Config,
    stages: set[str],
    models: dict[str, str],
    merged: dict,
    sets: EvalSets,
    stage_label: str = "merges",
) -> dict:
    """Table 3: SLERP of two aligned models and DARE-TIES of two or four, over each original model."""
    cfg_dict, out, tasks, keys, paths = to_dict(cfg), {}, [], {}, {}
    for model in cfg.grid.models:
        msets, eval_key = model_sets(cfg, model, sets)  # SmolLM2's merges on SmolLM2's sets, as its cells
        for seed in cfg.seeds:
            parents = {k: merged.get(j.name) for k, j in grid.merge_parents(cfg, model, seed).items()}
            if any(p is None or not (Path(p) / "config.json").is_file() for p in parents.values()):
                continue
            for name in grid.MERGES:
                method, members = grid.merge_members(name)
                if method == "slerp":
                    mk_cfg = merging.slerp(parents[members[0]], parents[members[1]], cfg.merge.slerp_t, cfg.merge.dtype)
                else:
                    weights = {parents[m]: 1.0 for m in members}
                    mk_cfg = merging.ties(models[model], weights, cfg.merge.dare_density, "dare_ties", cfg.merge.dtype)
                label = f"{name}-{model}-s{seed}"
                key = content_hash({"merge": mk_cfg, "parents": sorted(Path(p).name for p in parents.values())})
                dest = run.dir / "merges" / f"{label}-{key}"
                keys[label] = {"merge": key, "eval": eval_key}
                paths[label] = dest
                found = run.lookup_json("merge", keys[label])
                if found is not None:
                    out[label] = found
                    continue
                if "merges" not in stages:
                    continue
                if not (dest / "config.json").is_file():
                    merging.run_mergekit(mk_cfg, dest, seed=seed, device=cfg.family.device)
                tasks.append((label, grid.run_eval_job, (cfg_dict, str(dest), msets)))
    if tasks:
        with run.stage(stage_label):
            for name, result in progress(execute(cfg, tasks), total=len(tasks), desc=stage_label):
                out[name] = run.cached_json("merge", keys[name], lambda result=result: result)
    return out


def main(argv: list[str] | None = None) -> int:
    started = begin(PAPER_DIR, STAGES, Config, argv)
    if isinstance(started, int):
        return started
    args, cfg, stages = started
    if cfg.source == "local":
        from shared.text.prose import prose_installed

        if not prose_installed():
            return 2
    from shared.lm_family.train import cpu_settings

    cpu_settings(cfg.family.num_threads)
    # Every shard of a SLURM array writes to the same run folder: the folder's id leaves the shard out.
    unsharded = dataclasses.replace(cfg, grid=dataclasses.replace(cfg.grid, shard=0, num_shards=1))
    run = Run("peft_alignment", args.scale, to_dict(unsharded), cfg.seeds, root=args.out, fresh=args.fresh)
    start = time.perf_counter()
    with run.stage("family"):
        models = original_models(cfg, Path(args.out))
    sets = eval_sets(cfg)
    outcome = run_grid(run, cfg, stages, models, sets)
    if cfg.grid.num_shards > 1 and "report" not in (args.stages or ()):  # one task of a SLURM array
        log.info(
            "shard %d of %d done; once every shard has, run `--stages merges,report`",
            cfg.grid.shard,
            cfg.grid.num_shards,
        )
        return 0
    outcome["merges"] = run_merges(run, cfg, stages, models, outcome["merged"], sets)
    ladder = {}
    for rung in cfg.ladder if cfg.source == "local" else ():
        lcfg = ladder_config(cfg, rung)
        with run.stage(f"family-{rung.name}"):
            lmodels = original_models(lcfg, Path(args.out))
        lout = run_grid(run, lcfg, stages, lmodels, sets, label=f"align-{rung.name}")
        lout["merges"] = run_merges(run, lcfg, stages, lmodels, lout["merged"], sets, stage_label=f"merges-{rung.name}")
        ladder[rung.name] = (lcfg, lout)
    from papers.peft_alignment.report import write_report

    with run.stage("report"):
        results = write_report(run, cfg, outcome, load_paper_meta(), args.command, ladder)
    from papers.status import finish_run

    return finish_run(run, args, PAPER_DIR, results, start)


if __name__ == "__main__":
    keep_freed_memory()  # this command's own process (family training); workers get child_malloc_env
    sys.exit(run_command(main))
