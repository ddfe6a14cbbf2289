"""Reproduce Fournier et al. (2019/2021) at one scale: python -m papers.request_analysis.reproduce --scale mini

Stages: tables (the authors' released requests, when present), traces (our collection with the injected
cache contention), report. Each analysis is cached in the run folder.
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
from papers.request_analysis.traces import requests_from_traces
from shared.cli import begin, run_command
from shared.config import to_dict
from shared.progress import get_logger
from shared.run import Run, content_hash
from shared.traces import TraceError, load_dataset

PAPER_DIR = Path(__file__).resolve().parent
SAMPLE = PAPER_DIR / "sample"
STAGES = ("tables", "traces", "report")
log = get_logger("request_analysis")


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
                manifest = path / "manifest.json"
                key = {
                    "path": str(path),
                    "content": content_hash(manifest.read_text()) if manifest.is_file() else None,
                    "cfg": to_dict(cfg.pipeline),
                    "eps": cfg.traces_eps,
                    "min": cfg.traces_min_samples,
                }
                analyses["traces"] = run.cached_json("traces", key, lambda: run_traces(cfg, path))
    except (DataError, TraceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with run.stage("report"):
        results = write_report(run, cfg, analyses, yaml.safe_load((PAPER_DIR / "paper.yaml").read_text()), args.command)
    from papers.status import finish_run

    return finish_run(run, args, PAPER_DIR, results, start)


if __name__ == "__main__":
    sys.exit(run_command(main))
