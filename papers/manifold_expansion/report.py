"""Turn a run's records into results.json: the targets with verdicts, the correlation table (metric x
coefficient, seed and bootstrap intervals), the gains per expansion, the cost of each metric, and the
scatter plot of metric vs gain per expansion type."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from papers.manifold_expansion.config import METRICS, Config
from papers.manifold_expansion.correlate import MetricSummary, Record, summarise
from shared.results import Results, Table, Target, judged_target
from shared.run import Run

MANIFOLD = ("manifold", "manifold_dir")
BASELINES = tuple(m for m in METRICS if m not in MANIFOLD)
LABELS = {
    "manifold": "manifold (simplex log-volume)",
    "manifold_dir": "manifold (directional step)",
    "grad_norm_at_expansion": "gradient norm at expansion",
    "hessian_trace": "Hessian trace (Hutchinson)",
    "zc_grad_norm": "zero-cost grad_norm",
    "snip": "zero-cost snip",
    "synflow": "zero-cost synflow",
}
FIGURE = "scatter_metric_vs_gain.png"
PROTOCOL_NOTE = "protocol inspired by arXiv 2405.15895; paper's exact definitions unverified"


def _ms(values: list[float], digits: int = 3) -> str:
    if not values:
        return "–"
    return f"{np.mean(values):+.{digits}f} ± {np.std(values):.{digits}f}"


def summaries(records: list[Record], cfg: Config) -> dict[str, MetricSummary]:
    pairs = cfg.pairs()
    return {m: summarise(records, m, pairs, m in MANIFOLD, cfg.analysis.bootstrap, cfg.analysis.ci) for m in METRICS}


def correlation_table(s: dict[str, MetricSummary], families: list[str], ci: float) -> Table:
    pct = f"{round(ci * 100)}%"
    columns = ["metric", "sign", "Spearman (runs, mean ± std)", "Kendall (runs, mean ± std)"]
    for f in families:
        columns += [f"{f}: pooled Spearman [{pct} CI]", f"{f}: pooled Kendall [{pct} CI]"]
    columns.append("equal-param pairs ordered right")
    rows = []
    for m, summ in s.items():
        row = [LABELS[m], "+" if m in MANIFOLD else ("best: +" if summ.sign > 0 else "best: −")]
        row += [_ms(summ.spearman), _ms(summ.kendall)]
        for f in families:
            p = summ.pooled[f]
            lo, hi = p["spearman_ci"]
            klo, khi = p["kendall_ci"]
            row += [f"{p['spearman']:+.3f} [{lo:+.2f}, {hi:+.2f}]", f"{p['kendall']:+.3f} [{klo:+.2f}, {khi:+.2f}]"]
        row.append(f"{np.mean(summ.pairs):.2f} (n={len(summ.pairs)})" if summ.pairs else "–")
        rows.append(row)
    return Table(
        title="Rank correlation of each metric (at expansion) with the gain after continued training. Baselines "
        "are read with their better sign (|rho| per run); the manifold metrics keep theirs",
        columns=columns,
        rows=rows,
    )


def gains_table(records: list[Record]) -> Table:
    rows = []
    keys = sorted({(r.family, r.expansion) for r in records}, key=lambda k: (k[0], k[1]))
    for family, name in keys:
        rs = [r for r in records if r.family == family and r.expansion == name]
        gains = [r.gain for r in rs]
        rows.append(
            [
                family,
                name,
                int(rs[0].metrics["params"]),
                f"{np.mean([r.metrics['acc_at_expansion'] for r in rs]):.4f}",
                f"{np.mean([r.metrics['accuracy'] for r in rs]):.4f}",
                _ms(gains, 4),
                f"{np.mean([r.metrics['manifold'] for r in rs]):.2f}",
                f"{np.mean([r.metrics['manifold_dir'] for r in rs]):.3f}",
                len(rs),
            ]
        )
    return Table(
        title="Each expansion (mean over seeds): test accuracy at expansion and after continued training, the gain "
        "over the base continued for the same budget, and the two manifold estimates",
        columns=[
            "family",
            "expansion",
            "params",
            "acc at expansion",
            "acc after",
            "gain",
            "manifold",
            "manifold dir",
            "seeds",
        ],
        rows=rows,
    )


def cost_table(records: list[Record]) -> Table:
    rows = []
    for family in sorted({r.family for r in records}):
        rs = [r for r in records if r.family == family]
        train_s = float(np.mean([r.metrics["train_s"] for r in rs]))
        for m in METRICS:
            sec = float(np.mean([r.metrics[f"{m}_s"] for r in rs]))
            rows.append([family, LABELS[m], f"{sec:.3f}", f"{train_s:.2f}", f"{sec / train_s:.4f}"])
    return Table(
        title="Cost per model in this run: seconds of each metric vs the continued training it predicts "
        "(make bench compares with training to convergence)",
        columns=["family", "metric", "metric s", "continued training s", "ratio"],
        rows=rows,
    )


def scatter(path: Path, records: list[Record]) -> None:
    """One panel per metric: the metric's rank within its (family, seed) run (0..1, what the rank correlation
    sees) against the gain, coloured by expansion type, one marker per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({r.kind for r in records})
    families = sorted({r.family for r in records})
    colors = {k: plt.cm.tab10(i % 10) for i, k in enumerate(kinds)}
    markers = dict(zip(families, "os^Dv<>", strict=False))
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5), dpi=110)
    runs: dict[tuple[str, int], list[Record]] = {}
    for r in records:
        runs.setdefault((r.family, r.seed), []).append(r)
    for ax, metric in zip(axes.flat, METRICS, strict=False):
        for rs in runs.values():
            vals = np.array([r.metrics[metric] for r in rs])
            ranks = vals.argsort().argsort() / max(len(vals) - 1, 1)
            for r, x in zip(rs, ranks, strict=True):
                ax.scatter(x, r.gain, color=colors[r.kind], marker=markers[r.family], s=22, alpha=0.8)
        ax.set_title(LABELS[metric], fontsize=9)
        ax.set_xlabel("metric rank within run", fontsize=8)
        ax.set_ylabel("gain (test accuracy)", fontsize=8)
        ax.grid(alpha=0.3)
    legend_ax = axes.flat[-1]
    legend_ax.axis("off")
    for k in kinds:
        legend_ax.scatter([], [], color=colors[k], label=k)
    for f in families:
        legend_ax.scatter([], [], color="gray", marker=markers[f], label=f)
    legend_ax.legend(loc="center", fontsize=9)
    fig.suptitle("Metric at expansion vs gain after continued training (" + PROTOCOL_NOTE + ")", fontsize=10)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def target_values(s: dict[str, MetricSummary]) -> dict[str, list[float]]:
    """Per-run (or per-pair) values of each paper.yaml target."""
    man = s["manifold"]
    best_s = np.max([s[b].spearman for b in BASELINES], axis=0)
    best_k = np.max([s[b].kendall for b in BASELINES], axis=0)
    best_pairs = max((float(np.mean(s[b].pairs)) for b in BASELINES if s[b].pairs), default=None)
    pair_margin = [] if not man.pairs or best_pairs is None else [float(np.mean(man.pairs)) - best_pairs]
    return {
        "manifold_spearman": man.spearman,
        "manifold_kendall": man.kendall,
        "manifold_minus_best_baseline_spearman": list(np.asarray(man.spearman) - best_s),
        "manifold_minus_best_baseline_kendall": list(np.asarray(man.kendall) - best_k),
        "manifold_minus_best_baseline_pairs": pair_margin,
        "directional_spearman": s["manifold_dir"].spearman,
    }


def evaluate_targets(specs: list[dict], values: dict[str, list[float]]) -> list[Target]:
    """Targets judged over the per-seed values each one's measure produced (target_values)."""
    for spec in specs:
        if spec["name"] not in values:
            raise KeyError(f"paper.yaml target {spec['name']!r} has no measure; known: {', '.join(values)}")
    return [judged_target(spec, values[spec["name"]]) for spec in specs]


def write_report(run: Run, cfg: Config, records: list[Record], meta: dict, command: str) -> Results:
    families = sorted({r.family for r in records})
    tables: dict[str, Table] = {}
    figures: list[str] = []
    targets = [Target(**spec).judge() for spec in meta["targets"]]
    if records:
        s = summaries(records, cfg)
        targets = evaluate_targets(meta["targets"], target_values(s))
        tables = {
            "correlation": correlation_table(s, families, cfg.analysis.ci),
            "gains": gains_table(records),
            "cost": cost_table(records),
        }
        scatter(run.dir / FIGURE, records)
        figures = [FIGURE]
    families_text = ", ".join(f"{m.name} ({m.kind} {m.widths})" for m in cfg.models)
    results = run.new_results(
        command,
        targets,
        tables=tables,
        figures=figures,
        notes=[
            PROTOCOL_NOTE,
            f"dataset {cfg.data.dataset}; train {cfg.data.train_size or 'full'}, test {cfg.data.test_size or 'full'}, "
            f"probe {cfg.data.probe_size}; families {families_text}; "
            f"{len(cfg.expansions)} expansions x {len(cfg.seeds)} seeds; simplex k={cfg.simplex.vertices}, "
            f"{cfg.simplex.steps} steps, lambda={cfg.simplex.volume_weight}, epsilon={cfg.simplex.epsilon}",
        ],
    )
    run.write_results(results)
    return results
