"""The experiment grid as jobs, and the worker functions that run them.

A job is one cell x seed: (dataset, method, model, preference, adapter, seed). Its adapter is saved in a
folder named by a content hash of everything that decides it (the base model's weights, the recipe, the
data, the seed), so a rerun skips trained adapters; its scores are cached by that hash plus the
evaluation config. Merges (Table 3) are evaluation-only jobs over merged model folders.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from papers.peft_alignment.config import Config
from papers.peft_alignment.evaluation import EvalSets
from shared.config import from_dict, to_dict
from shared.io import atomic_dir
from shared.progress import get_logger, setup_logging
from shared.run import content_hash

log = get_logger(__name__)
VERSION = 1  # bump when training code changes what an adapter holds
MERGES = ("slerp_sft", "slerp_dpo", "dare_sft", "dare_dpo", "dare_all")


@dataclass(frozen=True)
class Job:
    dataset: str
    method: str
    model: str
    preference: str
    adapter: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.method}-{self.model}-{self.preference}-{self.adapter}-s{self.seed}"

    @property
    def cell(self) -> tuple[str, str, str, str, str]:
        return (self.dataset, self.method, self.model, self.preference, self.adapter)


def plan(cfg: Config) -> list[Job]:
    """The main grid over every seed, then the adapter comparison on the first `compare_seeds` seeds."""
    g = cfg.grid
    jobs = [
        Job(d, m, mo, p, g.adapter, s)
        for s in cfg.seeds
        for d in g.datasets
        for m in g.methods
        for mo in g.models
        for p in g.preferences
    ]
    if g.compare_adapter and g.compare_adapter != g.adapter:
        jobs += [
            Job(d, m, mo, p, g.compare_adapter, s)
            for s in cfg.seeds[: g.compare_seeds]
            for d in g.compare_datasets
            for m in g.methods
            for mo in g.models
            for p in g.compare_preferences
        ]
    return jobs


def merge_parents(cfg: Config, model: str, seed: int) -> dict[str, Job]:
    """The four aligned models a model's merges combine: {harmless,helpful} x {sft,dpo} on merge.dataset."""
    return {
        f"{p}_{m}": Job(cfg.merge.dataset, m, model, p, cfg.grid.adapter, seed)
        for m in ("sft", "dpo")
        for p in ("harmless", "helpful")
    }


def merge_members(name: str) -> tuple[str, list[str]]:
    """(mergekit method, parent keys) of a Table 3 merge."""
    method, which = name.split("_")
    parents = ["harmless_sft", "helpful_sft", "harmless_dpo", "helpful_dpo"]
    if which != "all":
        parents = [p for p in parents if p.endswith(which)]
    return ("slerp" if method == "slerp" else "dare_ties"), parents


def adapter_key(cfg: Config, job: Job, base_key: str) -> str:
    source = to_dict(cfg.data) if cfg.source == "local" else {"hh": cfg.hub.hh, "bt": cfg.hub.beavertails}
    return content_hash(
        {
            "version": VERSION,
            "job": asdict(job),
            "recipe": to_dict(cfg.method(job.method)),
            "quant": to_dict(cfg.qlora) if job.adapter == "qlora" else None,
            "data": source,
            "data_seed": cfg.family.seed,
            "base": base_key,
        }
    )


def preference_pairs(cfg: Config, dataset: str, preference: str) -> list[dict]:
    """The job's training pairs: generated (local) or the Hub release (full), split by the paper's rules."""
    from papers.peft_alignment import data

    if cfg.source == "hub":
        from papers.peft_alignment.hub import hub_pairs

        splits = hub_pairs(cfg.hub, dataset)
    else:
        splits = data.local_pairs(dataset, cfg.data, cfg.family.seed)
    return data.preference_split(splits, preference, cfg.family.seed)


def _tokenizer(cfg: Config, path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if cfg.source == "hub":
        from papers.peft_alignment.hub import apply_template

        apply_template(tok, cfg.hub.models, path)
    return tok


def _worker_setup(cfg: Config) -> None:
    from shared.lm_family.train import cpu_settings

    setup_logging()  # a spawned worker starts with logging unconfigured
    cpu_settings(cfg.family.num_threads)


def run_align_job(
    cfg_dict: dict, job: Job, base_path: str, adapter_dir: str, merged_dir: str | None, sets: EvalSets
) -> dict:
    """Train the job's adapter (or load it when saved), evaluate it, and save the merged model when the
    merges need it. Runs in a worker process: everything it needs comes in as plain data."""
    from papers.peft_alignment import align
    from papers.peft_alignment.evaluation import evaluate
    from shared.lm_family.train import save_model

    cfg = from_dict(Config, cfg_dict)
    _worker_setup(cfg)
    device, adir = cfg.family.device, Path(adapter_dir)
    tok = _tokenizer(cfg, base_path)
    if (adir / "train.json").is_file():
        model = align.load_adapter(base_path, adir, job.adapter, cfg.qlora, device)
        info = json.loads((adir / "train.json").read_text())
    else:
        log.info("training %s", job.name)
        model = align.load_base(base_path, job.adapter, cfg.qlora, device)
        pairs = preference_pairs(cfg, job.dataset, job.preference)
        model, info = align.train(
            job.method, model, tok, pairs, cfg.method(job.method), job.seed, cfg.family.num_threads, device
        )
        info["n_pairs"] = len(pairs)

        with atomic_dir(adir) as tmp:
            align.save_adapter(model, tmp)
            (tmp / "train.json").write_text(json.dumps(info))
    scores = evaluate(model, tok, sets, cfg.eval, cfg.family.seed)
    log.info("%s: overall %.3f", job.name, scores["overall"])
    if merged_dir and not (Path(merged_dir) / "config.json").is_file():
        if job.adapter == "qlora":  # merge into the unquantized base, as QLoRA users do before merging models
            from peft import PeftModel

            full = align.load_base(base_path, "lora", cfg.qlora, device, cfg.qlora.compute_dtype)
            model = PeftModel.from_pretrained(full, str(adir))
        save_model(model.merge_and_unload(), tok, merged_dir)
    return {"job": asdict(job), "train": info, "scores": scores}


def run_eval_job(cfg_dict: dict, model_path: str, sets: EvalSets) -> dict:
    """Evaluate one model folder (an original model or a merge)."""
    from papers.peft_alignment.evaluation import evaluate
    from shared.lm_family.train import load_model

    cfg = from_dict(Config, cfg_dict)
    _worker_setup(cfg)
    if cfg.source == "hub":
        from papers.peft_alignment.align import load_base

        model = load_base(model_path, "lora", cfg.qlora, cfg.family.device, cfg.hub.dtype).eval()
    else:
        model = load_model(model_path).to(cfg.family.device)
    return {"scores": evaluate(model, _tokenizer(cfg, model_path), sets, cfg.eval, cfg.family.seed)}
