"""Turn a run's curves into results.json: targets with verdicts, the accuracy and fit-time tables,
and the accuracy-vs-dimension and fit-time plots with the paper's curves overlaid."""

from __future__ import annotations

import numpy as np

from papers.dim_reduction.config import METHODS, Config
from papers.dim_reduction.targets import evaluate
from shared.report import line_plot
from shared.results import Results, Table
from shared.run import Run

LABELS = {"pca": "PCA", "isomap": "Isomap", "dae": "DAE", "vae": "VAE"}
# Our curve keys and the names of the same quantities in paper.yaml's reference.
PAPER_KEYS = {"accuracy": "accuracy", "fit_s": "fit_time_s"}
FIGURES = ("accuracy_vs_dimension.png", "fit_time_vs_dimension.png")


def aggregate(curves: list[dict], method: str, key: str) -> dict[int, tuple[float, float, int]]:
    """{d: (mean, std, n)} of `key` over the seeds that ran `method` at d."""
    dims = sorted({d for c in curves for d in c.get(method, {})})
    out = {}
    for d in dims:
        vals = [c[method][d][key] for c in curves if d in c.get(method, {})]
        out[d] = (float(np.mean(vals)), float(np.std(vals)), len(vals))
    return out


def paper_curve(reference: dict | None, method: str, key: str) -> dict[int, float]:
    if not reference:
        return {}
    return dict(zip(reference["dims"], reference[method][PAPER_KEYS[key]], strict=True))


def _cell(stats: tuple[float, float, int] | None, digits: int = 4) -> str:
    if stats is None:
        return "–"
    mean, std, n = stats
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if n > 1 else "")


def curve_table(curves: list[dict], reference: dict | None, key: str, title: str, digits: int) -> Table:
    methods = [m for m in METHODS if any(m in c for c in curves)]
    stats = {m: aggregate(curves, m, key) for m in methods}
    paper = {m: paper_curve(reference, m, key) for m in methods}
    dims = sorted({d for m in methods for d in stats[m]})
    with_paper = reference is not None
    columns = ["d"]
    for m in methods:
        columns += [f"{LABELS[m]} ours", f"{LABELS[m]} paper"] if with_paper else [LABELS[m]]
    rows = []
    for d in dims:
        row: list = [d]
        for m in methods:
            row.append(_cell(stats[m].get(d), digits))
            if with_paper:
                p = paper[m].get(d)
                row.append("–" if p is None else f"{p:.{digits}f}")
        rows.append(row)
    return Table(title=title, columns=columns, rows=rows)


def plots(
    run: Run, curves: list[dict], reference: dict | None, baseline_paper: float | None, dataset: str
) -> list[str]:
    methods = [m for m in METHODS if any(m in c for c in curves)]
    acc_series, time_series, acc_ref, time_ref = {}, {}, {}, {}
    for m in methods:
        acc = aggregate(curves, m, "accuracy")
        fit = aggregate(curves, m, "fit_s")
        dims = sorted(acc)
        acc_series[LABELS[m]] = (dims, [acc[d][0] for d in dims], [acc[d][1] for d in dims])
        time_series[LABELS[m]] = (dims, [fit[d][0] for d in dims], None)
        for key, store in (("accuracy", acc_ref), ("fit_s", time_ref)):
            p = paper_curve(reference, m, key)
            if p:
                store[f"{LABELS[m]} (paper)"] = (sorted(p), [p[d] for d in sorted(p)])
    hlines = {}
    ours = [c["baseline"] for c in curves if "baseline" in c]
    if ours:
        hlines[f"raw k-NN, ours ({np.mean(ours):.4f})"] = float(np.mean(ours))
    if baseline_paper is not None:
        hlines[f"raw k-NN, paper ({baseline_paper:.4f})"] = baseline_paper
    line_plot(
        run.dir / FIGURES[0],
        acc_series,
        f"{dataset}: k-NN test accuracy vs dimension",
        "dimension d",
        "accuracy",
        reference=acc_ref,
        hlines=hlines,
    )
    line_plot(
        run.dir / FIGURES[1],
        time_series,
        f"{dataset}: fit time vs dimension (paper: GPU/32-CPU nodes)",
        "dimension d",
        "fit time (s)",
        reference=time_ref,
        logy=True,
    )
    return list(FIGURES)


def epochs_note(cfg: Config, curves: list[dict]) -> str | None:
    """How many epochs each AE trained at each d (its cap in brackets), over the seeds."""
    parts = []
    for m in ("dae", "vae"):
        for d in cfg.dims_for(m) if m in cfg.methods else []:
            ran = sorted({int(c[m][d]["epochs"]) for c in curves if "epochs" in c.get(m, {}).get(d, {})})
            if ran:
                parts.append(f"{LABELS[m]} d={d}: {'/'.join(map(str, ran))} ({cfg.ae.epochs_for(d)})")
    return "AE epochs trained (cap): " + ", ".join(parts) if parts else None


def write_report(run: Run, cfg: Config, curves: list[dict], meta: dict, command: str) -> Results:
    dataset = cfg.data.dataset
    reference = meta["reference"].get(dataset)
    baseline_paper = meta["reference"]["baselines"].get(dataset)
    # paper.yaml's targets are Fashion-MNIST's; on another dataset they compare nothing.
    specs = meta["targets"] if dataset == "fashion_mnist" else []
    targets = evaluate(specs, curves, reference or {})
    tables = {
        "accuracy": curve_table(curves, reference, "accuracy", f"{dataset}: k-NN test accuracy by dimension", 4),
        "fit_time": curve_table(curves, reference, "fit_s", f"{dataset}: fit time (s) by dimension", 2),
        "k": curve_table(curves, None, "k", "k chosen by the 5-fold search (mean over seeds)", 1),
    }
    figures = plots(run, curves, reference, baseline_paper, dataset)
    results = run.new_results(
        command,
        targets,
        tables=tables,
        figures=figures,
        notes=[
            line
            for line in (
                f"dataset {dataset}; train {cfg.data.train_size or 'full'}, test {cfg.data.test_size or 'full'}; "
                f"AE dims {cfg.dims_for('dae')}; Isomap dims {cfg.dims_for('isomap')}; k-NN n_iter {cfg.knn.n_iter}",
                epochs_note(cfg, curves),
                f"PCA fit time: the median of {cfg.pca.timing_repeats} fits at each d. The fit-time ratio divides "
                "an AE's fit time (split and training to its epoch cap or early stop) by PCA's at the same d, on "
                "the same machine, data and process",
            )
            if line
        ],
    )
    run.write_results(results)
    return results
