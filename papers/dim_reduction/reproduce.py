"""Reproduce Fournier & Aloise (2019) at one scale: python -m papers.dim_reduction.reproduce --scale mini

Stages, each cached per (seed, d) in the run folder so an interrupted run resumes:
  baseline  k-NN on raw pixels
  pca       PCA at every d, then k-NN
  isomap    Isomap at every d, then k-NN
  dae, vae  the autoencoders at cfg.ae.dims (all d when empty), then k-NN
  report    results.json, tables and figures (always runs)
A stage left out of --stages still contributes what an earlier run cached: `--stages report`
renders whatever has been computed so far, without computing anything.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from papers.dim_reduction import data as datasets
from papers.dim_reduction.config import METHODS, Config
from papers.dim_reduction.knn import knn_score
from papers.dim_reduction.report import write_report
from shared.cli import begin, run_command
from shared.config import to_dict
from shared.data.errors import DataError
from shared.progress import get_logger, progress
from shared.run import Run, content_hash
from shared.seeding import seed_everything

PAPER_DIR = Path(__file__).resolve().parent
STAGES = ("baseline", *METHODS, "report")
log = get_logger("dim_reduction")


def load_paper_meta() -> dict:
    return yaml.safe_load((PAPER_DIR / "paper.yaml").read_text())


def fingerprint(ds: datasets.Dataset) -> str:
    """A cheap fingerprint of the data (shapes, a strided pixel sum, strided labels) for cache keys."""
    return content_hash(
        [ds.name, ds.x_train.shape, ds.x_test.shape, float(ds.x_train[::97].sum()), ds.y_train[::13].tolist()]
    )


def score(cfg: Config, z_train: np.ndarray, z_test: np.ndarray, ds: datasets.Dataset, seed: int) -> dict:
    """k-NN accuracy, chosen k and CV accuracy, and each test item's right/wrong (for intervals)."""
    s = knn_score(
        z_train, ds.y_train, z_test, ds.y_test, cfg.knn.n_iter, cfg.knn.folds, seed, cfg.knn.backend, cfg.knn.n_jobs
    )
    return {"accuracy": s.test_accuracy, "k": s.best_k, "cv_accuracy": s.cv_accuracy, "correct": s.test_correct}


def scalars(unit: dict) -> dict:
    """A unit's single numbers (for the metrics log), without its per-item arrays."""
    return {k: v for k, v in unit.items() if not isinstance(v, np.ndarray)}


def checkpoint_dir(run: Run, method: str, d: int, seed: int) -> Path:
    """Where an AE fit saves its per-epoch state until its unit is cached."""
    return run.dir / "checkpoints" / f"{method}-d{d}-seed{seed}"


def method_section(cfg: Config, method: str, d: int) -> dict:
    """The part of the config a (method, d) unit depends on: its cache key. An AE unit names its own epoch
    cap, so changing the cap at one d leaves the units at the other d cached."""
    if method == "pca":
        return to_dict(cfg.pca)
    if method == "isomap":
        return {k: v for k, v in to_dict(cfg.isomap).items() if k != "dims"}
    ae = {k: v for k, v in to_dict(cfg.ae).items() if k not in ("dims", "epochs_by_dim")}
    return {**ae, "max_epochs": cfg.ae.epochs_for(d)}


def run_method(
    run: Run, cfg: Config, method: str, ds: datasets.Dataset, seed: int, fp: str, compute: bool = True
) -> dict[int, dict]:
    """Accuracy, chosen k and fit time at each d of `method`, one cached unit per d.

    With compute=False only the units already cached are returned.
    """
    from papers.dim_reduction.autoencoders import fit_autoencoder
    from papers.dim_reduction.reducers import fit_isomap, fit_pca

    dims = cfg.dims_for(method)

    def key(d: int) -> dict:
        return {
            "data": fp,
            "seed": seed,
            "knn": to_dict(cfg.knn),
            "method": method,
            "cfg": method_section(cfg, method, d),
        }

    project: Callable[[int], dict]
    if method == "pca":

        def project(d: int) -> dict:
            z_train, z_test, fit_s, times = fit_pca(ds.x_train, ds.x_test, d, seed, cfg.pca.timing_repeats)
            return {"z_train": z_train, "z_test": z_test, "fit_s": fit_s, "fit_s_repeats": np.asarray(times)}

    elif method == "isomap" and not cfg.isomap.refit_per_dim and compute:
        d_max = max(dims)
        full = run.cached(
            "isomap-embedding",
            {**key(d_max), "d": d_max},
            lambda: dict(
                zip(
                    ("z_train", "z_test", "fit_s"),
                    fit_isomap(ds.x_train, ds.y_train, ds.x_test, d_max, cfg.isomap, seed),
                    strict=True,
                )
            ),
        )
        project = lambda d: {"z_train": full["z_train"][:, :d], "z_test": full["z_test"][:, :d], "fit_s": full["fit_s"]}  # noqa: E731
    elif method == "isomap":
        project = lambda d: dict(  # noqa: E731
            zip(
                ("z_train", "z_test", "fit_s"),
                fit_isomap(ds.x_train, ds.y_train, ds.x_test, d, cfg.isomap, seed),
                strict=True,
            )
        )
    else:

        def project(d: int) -> dict:
            ckpt = checkpoint_dir(run, method, d, seed)
            ae_cfg = replace(cfg.ae, max_epochs=cfg.ae.epochs_for(d))
            r = fit_autoencoder(method, ds.x_train, ds.y_train, ds.x_test, d, ae_cfg, seed, checkpoint_dir=ckpt)
            run.log_metrics(
                seed=seed,
                method=method,
                d=d,
                epochs=r.epochs,
                first_epoch=r.first_epoch,
                best_epoch=r.best_epoch,
                best_val_loss=r.best_val_loss,
            )
            return {
                "z_train": r.z_train,
                "z_test": r.z_test,
                "fit_s": r.fit_seconds,
                "epochs": r.epochs,
                "epoch_cap": ae_cfg.max_epochs,
            }

    def unit(d: int) -> dict:
        fit = project(d)
        z_train, z_test = fit.pop("z_train"), fit.pop("z_test")
        return {**score(cfg, z_train, z_test, ds, seed), **fit}

    curve = {}
    for d in progress(dims, desc=f"{method} seed {seed}"):
        if not compute:
            found = run.lookup(method, {**key(d), "d": d})
            if found is not None:
                curve[d] = found
            continue
        curve[d] = run.cached(method, {**key(d), "d": d}, lambda d=d: unit(d))
        shutil.rmtree(checkpoint_dir(run, method, d, seed), ignore_errors=True)  # the unit is cached now
        log.info(
            "%s d=%d seed=%d: accuracy %.5f (k=%d), fit %.2f s",
            method,
            d,
            seed,
            curve[d]["accuracy"],
            curve[d]["k"],
            curve[d]["fit_s"],
        )
        run.log_metrics(seed=seed, method=method, d=d, **scalars(curve[d]))
    return curve


def run_seed(run: Run, cfg: Config, stages: set[str], seed: int) -> dict:
    seed_everything(seed)
    ds = datasets.load(cfg.data, seed=0)  # the same data for every seed; seeds vary the methods
    fp = fingerprint(ds)
    log.info("%s: train %s, test %s, %d classes", ds.name, ds.x_train.shape, ds.x_test.shape, ds.n_classes)
    curve: dict = {}
    if cfg.baseline:
        key = {"data": fp, "seed": seed, "knn": to_dict(cfg.knn)}
        if "baseline" in stages:
            with run.stage(f"baseline/seed{seed}"):
                found = run.cached("baseline", key, lambda: score(cfg, ds.x_train, ds.x_test, ds, seed))
            log.info("raw k-NN baseline seed=%d: %.5f", seed, found["accuracy"])
        else:
            found = run.lookup("baseline", key)
        if found is not None:
            curve["baseline"] = found["accuracy"]
    for method in cfg.methods:
        if method in stages:
            with run.stage(f"{method}/seed{seed}"):
                curve[method] = run_method(run, cfg, method, ds, seed, fp)
        elif cached := run_method(run, cfg, method, ds, seed, fp, compute=False):
            curve[method] = cached
    return curve


def main(argv: list[str] | None = None) -> int:
    started = begin(PAPER_DIR, STAGES, Config, argv)
    if isinstance(started, int):
        return started
    args, cfg, stages = started
    run = Run("dim_reduction", args.scale, to_dict(cfg), cfg.seeds, root=args.out, fresh=args.fresh)
    start = time.perf_counter()
    try:
        curves = [run_seed(run, cfg, stages, seed) for seed in cfg.seeds]
    except DataError as exc:  # missing or bad data: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with run.stage("report"):
        results = write_report(run, cfg, curves, load_paper_meta(), args.command)
    from papers.status import finish_run

    return finish_run(run, args, PAPER_DIR, results, start)


if __name__ == "__main__":
    sys.exit(run_command(main))
