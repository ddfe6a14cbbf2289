"""Reproduce the manifold-metric claim at one scale: python -m papers.manifold_expansion.reproduce --scale mini

Protocol inspired by arXiv 2405.15895 (the paper's exact definitions are unverified; see README):
for each base model family and seed, train the base; continue training it (the reference); for each
expansion, expand the trained base, measure every metric at expansion, continue training the expanded
model for the same budget, and record gain = its test accuracy - the continued base's.

Stages (each unit cached in the run folder, so an interrupted run resumes):
  expansions  base training, continued base, and every (expansion: metrics + continued training)
  report      results.json, correlation tables and the scatter plot (always runs)
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from papers.manifold_expansion import data as datasets
from papers.manifold_expansion.config import Config, Expansion, ModelConfig
from papers.manifold_expansion.correlate import Record
from papers.manifold_expansion.expand import expand
from papers.manifold_expansion.measure import measure_all, measure_trained
from papers.manifold_expansion.models import build, n_params
from papers.manifold_expansion.params import FlatModel
from papers.manifold_expansion.report import write_report
from papers.manifold_expansion.train import evaluate, train
from shared.cli import begin, run_command
from shared.config import to_dict
from shared.data.errors import CorruptDataError, DatasetNotFoundError
from shared.progress import get_logger, progress
from shared.run import Run, content_hash
from shared.seeding import seed_everything

PAPER_DIR = Path(__file__).resolve().parent
STAGES = ("expansions", "report")
STATE = "sd::"
UNIT_VERSION = 2  # what an expansion unit records (2: + the manifold estimates at the trained solution)
log = get_logger("manifold_expansion")


def load_paper_meta() -> dict:
    return yaml.safe_load((PAPER_DIR / "paper.yaml").read_text())


def pick_device(cfg: Config) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def fingerprint(ds: datasets.Dataset) -> str:
    return content_hash([ds.name, list(ds.x_train.shape), float(ds.x_train[::97].sum()), ds.y_train[::13].tolist()])


def _state_arrays(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {STATE + k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def _load_state(model: torch.nn.Module, value: dict) -> torch.nn.Module:
    state = {k[len(STATE) :]: torch.as_tensor(np.asarray(v)) for k, v in value.items() if k.startswith(STATE)}
    model.load_state_dict(state)
    return model


def base_model(run: Run, cfg: Config, mc: ModelConfig, ds: datasets.Dataset, seed: int, key: dict, device):
    """The trained base model of (family, seed), trained once and read back from the cache after."""

    def compute() -> dict:
        seed_everything(seed)
        model = build(mc, ds.in_shape, ds.n_classes).to(device)
        seconds = train(model, ds.x_train, ds.y_train, mc.base_epochs, mc.lr, mc.batch_size, seed)
        ev = evaluate(model, ds.x_test, ds.y_test)
        return {"accuracy": ev.accuracy, "loss": ev.loss, "seconds": seconds, **_state_arrays(model)}

    value = run.cached("base", key, compute)
    model = _load_state(build(mc, ds.in_shape, ds.n_classes), value).to(device)
    return model, value


def continue_training(model, mc: ModelConfig, ds: datasets.Dataset, seed: int) -> tuple[torch.nn.Module, dict]:
    """Continue training a copy for the family's budget (the same data order for every model of a seed):
    the trained copy and its test accuracy, loss and training seconds."""
    m = copy.deepcopy(model)
    seconds = train(m, ds.x_train, ds.y_train, mc.continue_epochs, mc.lr, mc.batch_size, seed + 1)
    ev = evaluate(m, ds.x_test, ds.y_test)
    return m, {"accuracy": ev.accuracy, "loss": ev.loss, "train_s": seconds}


def continued(model, mc: ModelConfig, ds: datasets.Dataset, seed: int) -> dict:
    return continue_training(model, mc, ds, seed)[1]


def expansion_unit(base, exp: Expansion, index: int, cfg: Config, mc: ModelConfig, ds, seed: int, device) -> dict:
    gen = torch.Generator().manual_seed(seed * 1000 + index)
    model = expand(base.cpu(), exp, gen, cfg.wider_noise).to(device)
    base.to(device)
    at_expansion = evaluate(model, ds.x_test, ds.y_test)
    reference = FlatModel.of(base).batched_loss(FlatModel.of(base).theta, ds.x_probe.to(device), ds.y_probe.to(device))
    metrics = measure_all(model, ds, cfg, seed, device, reference)
    trained, after = continue_training(model, mc, ds, seed)
    return {
        "params": n_params(model),
        "acc_at_expansion": at_expansion.accuracy,
        **metrics,
        **measure_trained(trained, ds, cfg, seed, device),
        **after,
    }


def run_family(
    run: Run, cfg: Config, mc: ModelConfig, ds: datasets.Dataset, seed: int, fp: str, compute: bool, device
) -> list[Record]:
    key = {"data": fp, "seed": seed, "model": to_dict(mc)}
    if not compute and run.lookup("base", key) is None:
        return []
    base, base_value = base_model(run, cfg, mc, ds, seed, key, device)
    ref = run.cached("base_continued", key, lambda: continued(base, mc, ds, seed))
    log.info(
        "%s seed %d: base %d params, test acc %.4f; continued %.4f",
        mc.name,
        seed,
        n_params(base),
        base_value["accuracy"],
        ref["accuracy"],
    )
    unit_cfg = {k: to_dict(getattr(cfg, k)) for k in ("simplex", "directional", "baselines", "wider_noise")}
    unit_cfg["unit"] = UNIT_VERSION
    records = []
    for i, exp in enumerate(progress(cfg.expansions, desc=f"{mc.name} seed {seed}")):
        ukey = {**key, "expansion": to_dict(exp), "index": i, "cfg": unit_cfg}
        if compute:
            value = run.cached(
                "expansion", ukey, lambda exp=exp, i=i: expansion_unit(base, exp, i, cfg, mc, ds, seed, device)
            )
        else:
            value = run.lookup("expansion", ukey)
            if value is None:
                continue
        gain = value["accuracy"] - ref["accuracy"]
        metrics = {k: float(v) for k, v in value.items() if not k.startswith(STATE)}
        metrics["base_train_s"] = float(ref["train_s"])
        metrics["base_accuracy"] = float(ref["accuracy"])  # gain = accuracy - base_accuracy
        records.append(Record(mc.name, seed, exp.name, exp.kind, gain, metrics))
        log.info(
            "%s seed %d %s: %d params, gain %+.4f, manifold %.3f (%.1f s), trained %.3f, continued training %.1f s",
            mc.name,
            seed,
            exp.name,
            int(value["params"]),
            gain,
            value["manifold"],
            value["manifold_s"],
            value["manifold_trained"],
            value["train_s"],
        )
        run.log_metrics(family=mc.name, seed=seed, expansion=exp.name, gain=gain, **metrics)
    return records


def main(argv: list[str] | None = None) -> int:
    started = begin(PAPER_DIR, STAGES, Config, argv)
    if isinstance(started, int):
        return started
    args, cfg, stages = started
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = pick_device(cfg)
    run = Run("manifold_expansion", args.scale, to_dict(cfg), cfg.seeds, root=args.out, fresh=args.fresh)
    start = time.perf_counter()
    try:
        ds = datasets.load(cfg.data, seed=0)  # the same data for every seed; seeds vary the models
    except (DatasetNotFoundError, CorruptDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info(
        "%s: train %s, test %s, probe %s", ds.name, tuple(ds.x_train.shape), tuple(ds.x_test.shape), len(ds.y_probe)
    )
    fp = fingerprint(ds)
    records: list[Record] = []
    for mc in cfg.models:
        for seed in cfg.seeds:
            compute = "expansions" in stages
            if compute:
                with run.stage(f"{mc.name}/seed{seed}"):
                    records += run_family(run, cfg, mc, ds, seed, fp, True, device)
            else:
                records += run_family(run, cfg, mc, ds, seed, fp, False, device)
    with run.stage("report"):
        results = write_report(run, cfg, records, load_paper_meta(), args.command)
    from papers.status import finish_run

    return finish_run(run, args, PAPER_DIR, results, start)


if __name__ == "__main__":
    sys.exit(run_command(main))
