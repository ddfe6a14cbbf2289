"""Reproduce Fournier et al. (2019/2021) at one scale: python -m papers.request_analysis.reproduce --scale mini

Stages: tables (the authors' released requests, when present), traces (our collection with the injected
cache contention), sample (the shared traces sample: the paper's behaviours, a few requests each among the
normal ones), report. Each analysis is cached in the run folder.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import yaml

from papers.request_analysis.config import Config
from papers.request_analysis.data import ENV, EXPECTED, DataError, data_dir, load_tables, tables_not_found
from papers.request_analysis.pipeline import analyse
from papers.request_analysis.report import summarise, write_report
from papers.request_analysis.states import state_names
from papers.request_analysis.traces import requests_from_traces
from shared.cli import begin, run_command
from shared.config import to_dict
from shared.progress import get_logger
from shared.run import Run, content_hash
from shared.traces import SAMPLE_DIR, TraceError, load_dataset

PAPER_DIR = Path(__file__).resolve().parent
SAMPLE = PAPER_DIR / "sample"
STAGES = ("tables", "traces", "sample", "report")
log = get_logger("request_analysis")


def _dataset_key(path: Path, cfg: Config, **settings: object) -> dict:
    """Cache key of a trace analysis: the dataset's folder and manifest content, the pipeline config and the
    stage's own settings (a re-collected dataset or any changed setting reruns the stage)."""
    manifest = path / "manifest.json"
    return {
        "path": str(path),
        "content": content_hash(manifest.read_text()) if manifest.is_file() else None,
        "cfg": to_dict(cfg.pipeline),
        **settings,
    }


def run_tables(cfg: Config, folder: Path) -> dict:
    t0 = time.perf_counter()
    req = load_tables(folder)
    load_s = time.perf_counter() - t0
    p = cfg.pipeline
    a = analyse(req, p.min_ms, p.eps, p.min_samples, p.k, p.seed)
    out = summarise(a, p, labels=None)
    out["timing"] = {"load_s": load_s, **out["timing"]}
    return out


def run_traces(cfg: Config, path: Path) -> dict:
    ds = load_dataset(path)
    t0 = time.perf_counter()
    req, labels = requests_from_traces(ds)
    load_s = time.perf_counter() - t0
    p = cfg.pipeline
    a = analyse(req, 0.0, cfg.traces_eps, cfg.traces_min_samples, p.k, p.seed)
    out = summarise(a, p, labels=np.array(labels))
    out["timing"] = {"load_s": load_s, **out["timing"]}
    out["dataset"] = {"path": str(path), "created": ds.manifest["created"], "kernel": ds.manifest["host"]["kernel"]}
    return out


def run_sample(cfg: Config, path: Path) -> dict:
    """The pipeline on the shared sample: every normal request and `sample_injected` random requests of
    each other behaviour (seeded), DBSCAN's radius scaled to the median duration as the paper's."""
    ds = load_dataset(path)
    t0 = time.perf_counter()
    req, labels = requests_from_traces(ds)
    load_s = time.perf_counter() - t0
    lab = np.array(labels)
    rng = np.random.default_rng(cfg.pipeline.seed)
    keep = [np.nonzero(lab == "normal")[0]]
    for b in sorted(set(labels) - {"normal"}):
        idx = np.nonzero(lab == b)[0]
        keep.append(np.sort(rng.choice(idx, min(cfg.sample_injected, len(idx)), replace=False)))
    keep_idx = np.sort(np.concatenate(keep))
    sub, sub_labels = req.subset(keep_idx), lab[keep_idx]
    eps = cfg.sample_eps_share * float(np.median(sub.duration_ns)) / 1e6
    p = cfg.pipeline
    a = analyse(sub, 0.0, eps, cfg.sample_min_samples, p.k, p.seed)
    out = summarise(a, p, labels=sub_labels)
    out["timing"] = {"load_s": load_s, **out["timing"]}
    out["eps_ms"] = eps
    out["all_requests"] = {b: int((lab == b).sum()) for b in sorted(set(labels))}
    # each behaviour's effect on every one of its requests (not only the sampled): median duration
    normal_ms = float(np.median(req.duration_ns[lab == "normal"])) / 1e6 if (lab == "normal").any() else float("nan")
    out["median_ms_by_behaviour"] = {b: float(np.median(req.duration_ns[lab == b])) / 1e6 for b in sorted(set(labels))}
    out["slowdown_by_behaviour"] = {b: v / normal_ms for b, v in out["median_ms_by_behaviour"].items()}
    # where each behaviour's time goes (all its requests): the share of the summed duration in each state
    names = state_names(cfg.pipeline.state_order)
    out["state_share_by_behaviour"] = {}
    for b in sorted(set(labels)):
        t = req.times_ns[lab == b].sum(0)
        out["state_share_by_behaviour"][b] = dict(zip(names, (t / max(t.sum(), 1)).tolist(), strict=True))
    out["dataset"] = {"path": str(path), "created": ds.manifest["created"], "kernel": ds.manifest["host"]["kernel"],
                      "collector": ds.manifest.get("collection", {}).get("collector_version")}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    started = begin(PAPER_DIR, STAGES, Config, argv)
    if isinstance(started, int):
        return started
    args, cfg, stages = started
    try:  # before the run folder exists: a named folder that is not there writes nothing
        folder = data_dir(cfg.data.dir) if cfg.data.source == "tables" else None
        if cfg.data.source == "tables" and folder is None and not cfg.data.fallback_to_traces:
            raise DataError(f"the authors' tables were not found: set data.dir or ${ENV} ({EXPECTED})")
        if "traces" in stages and cfg.data.traces and not (Path(cfg.data.traces) / "manifest.json").is_file():
            raise DataError(f"data.traces={cfg.data.traces}: no manifest.json there; expected a shared.traces dataset")
        if "sample" in stages and cfg.data.sample and not (Path(cfg.data.sample) / "manifest.json").is_file():
            raise DataError(f"data.sample={cfg.data.sample}: no manifest.json there; expected a shared.traces dataset")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run = Run("request_analysis", args.scale, to_dict(cfg), [cfg.pipeline.seed], root=args.out, fresh=args.fresh)
    start = time.perf_counter()
    analyses: dict = {}
    if cfg.data.source == "tables" and folder is None:
        run.mark_degraded(tables_not_found())
    try:
        if folder is not None and "tables" in stages:
            with run.stage("tables"):
                key = {
                    "folder": str(folder),
                    "files": sorted(p.name for p in folder.glob("*_count.csv*")),
                    "cfg": to_dict(cfg.pipeline),
                }
                analyses["tables"] = run.cached_json("tables", key, lambda: run_tables(cfg, folder))
        if "traces" in stages:
            path = Path(cfg.data.traces) if cfg.data.traces else SAMPLE
            with run.stage("traces"):
                key = _dataset_key(path, cfg, eps=cfg.traces_eps, min=cfg.traces_min_samples)
                analyses["traces"] = run.cached_json("traces", key, lambda: run_traces(cfg, path))
        if "sample" in stages and cfg.analyse_sample:
            path = Path(cfg.data.sample) if cfg.data.sample else SAMPLE_DIR
            with run.stage("sample"):
                key = _dataset_key(
                    path, cfg, eps_share=cfg.sample_eps_share, min=cfg.sample_min_samples, injected=cfg.sample_injected
                )
                analyses["sample"] = run.cached_json("sample", key, lambda: run_sample(cfg, path))
    except (DataError, TraceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with run.stage("report"):
        results = write_report(run, cfg, analyses, yaml.safe_load((PAPER_DIR / "paper.yaml").read_text()), args.command)
    from papers.status import finish_run

    return finish_run(run, args, PAPER_DIR, results, start)


if __name__ == "__main__":
    sys.exit(run_command(main))
