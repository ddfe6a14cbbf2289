"""make bench PAPER=manifold_expansion: seconds per model of each metric vs training the expanded model to
convergence, as a ratio measured in one process on the same model.

For each model family of the chosen config (mini by default): train the base, apply one expansion (the
first width-vs-depth wider of the config), time every metric at expansion, then train the expanded model
until the validation loss stops improving (patience 3; validation = 2,000 held-out training images).
A metric is useful for choosing an expansion only if it is much cheaper than that training: the target is
a ratio of at most 0.1. Writes papers/manifold_expansion/results/bench.json and prints a table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from papers.manifold_expansion import data as datasets
from papers.manifold_expansion.config import METRICS, Config
from papers.manifold_expansion.expand import expand
from papers.manifold_expansion.measure import measure_all
from papers.manifold_expansion.models import build, n_params
from papers.manifold_expansion.params import FlatModel
from papers.manifold_expansion.train import train, train_to_convergence
from shared.config import load_config
from shared.environment import machine_summary
from shared.io import atomic_write_json
from shared.report import markdown_table
from shared.seeding import seed_everything

PAPER_DIR = Path(__file__).resolve().parent
TARGET_RATIO = 0.1
VAL_SIZE = 2000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m papers.manifold_expansion.bench", description=__doc__)
    parser.add_argument("--scale", default="mini", help="config whose data, models and metric settings to time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--out", default=str(PAPER_DIR / "results" / "bench.json"))
    args = parser.parse_args(argv)
    cfg = load_config(Config, PAPER_DIR / "configs" / f"{args.scale}.yaml")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    ds = datasets.load(cfg.data)
    x_tr, y_tr = ds.x_train[VAL_SIZE:], ds.y_train[VAL_SIZE:]
    x_val, y_val = ds.x_train[:VAL_SIZE], ds.y_train[:VAL_SIZE]
    exp = next(e for e in cfg.expansions if e.op == "wider" and e.match is not None)
    cases, rows = [], []
    for mc in cfg.models:
        seed_everything(args.seed)
        base = build(mc, ds.in_shape, ds.n_classes).to(device)
        train(base, x_tr, y_tr, mc.base_epochs, mc.lr, mc.batch_size, args.seed)
        model = expand(base.cpu(), exp, torch.Generator().manual_seed(args.seed), cfg.wider_noise).to(device)
        base_fm = FlatModel.of(base)
        reference = base_fm.batched_loss(base_fm.theta, ds.x_probe.to(device), ds.y_probe.to(device))
        measure_all(model, ds, cfg, args.seed, device, reference)  # warm-up: first calls pay one-off imports
        metrics = measure_all(model, ds, cfg, args.seed, device, reference)
        train_s, epochs = train_to_convergence(
            model, x_tr, y_tr, x_val, y_val, mc.lr, mc.batch_size, args.seed, max_epochs=args.max_epochs
        )
        case = {
            "family": mc.name,
            "expansion": exp.name,
            "params": n_params(model),
            "convergence_s": train_s,
            "convergence_epochs": epochs,
            "metrics_s": {m: metrics[f"{m}_s"] for m in METRICS},
            "ratio": {m: metrics[f"{m}_s"] / train_s for m in METRICS},
        }
        case["meets_target"] = case["ratio"]["manifold"] <= TARGET_RATIO
        cases.append(case)
        for m in METRICS:
            rows.append(
                [mc.name, m, f"{metrics[f'{m}_s']:.3f}", f"{train_s:.1f} ({epochs} ep)", f"{case['ratio'][m]:.4f}"]
            )
    report = {
        "scale": args.scale,
        "dataset": ds.name,
        "train": int(len(y_tr)),
        "machine": machine_summary(),
        "target_ratio": TARGET_RATIO,
        "cases": cases,
    }
    atomic_write_json(args.out, report)
    print(f"{ds.name}: train {len(y_tr)}, validation {VAL_SIZE}; {machine_summary()}")
    print(markdown_table(["family", "metric", "metric s", "training to convergence s", "ratio"], rows))
    print(f"wrote {Path(args.out)}")
    return 0 if all(c["meets_target"] for c in cases) else 1


if __name__ == "__main__":
    raise SystemExit(main())
