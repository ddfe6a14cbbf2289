"""Turn a run's records into results.json: the targets with verdicts, the correlation table (metric x
coefficient, seed and bootstrap intervals), the gains per expansion, the cost of each metric, and the
scatter plot of metric vs gain per expansion type."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from papers.manifold_expansion.config import METRICS, TRAINED, Config
from papers.manifold_expansion.correlate import Best, MetricSummary, Record, best_fixed, best_per_run, summarise
from shared.metrics import bootstrap_ci, t_interval
from shared.results import Results, Table, Target, judged_target
from shared.run import Run

ALL = METRICS + TRAINED
MANIFOLD = ("manifold", "manifold_dir", *TRAINED)
BASELINES = tuple(m for m in METRICS if m not in MANIFOLD)
TARGET_LEVEL = 0.95  # the level of every target's interval (results.json's ci_low/ci_high are 95%)
LABELS = {
    "manifold": "manifold (simplex log-volume)",
    "manifold_dir": "manifold (directional step)",
    "manifold_trained": "manifold (simplex) at the trained solution",
    "manifold_dir_trained": "manifold (directional) at the trained solution",
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
    return {m: summarise(records, m, pairs, m in MANIFOLD, cfg.analysis.bootstrap, cfg.analysis.ci) for m in ALL}


def interval(values: list[float]) -> tuple[float, float] | None:
    """The 95% Student-t interval of the mean over runs; None with fewer than two runs."""
    return t_interval(values, TARGET_LEVEL) if len(values) >= 2 else None


def _mci(values: list[float]) -> str:
    """mean ± std [95% CI] of per-run values."""
    ci = interval(values)
    return _ms(values) + ("" if ci is None else f" [{ci[0]:+.3f}, {ci[1]:+.3f}]")


def best_baselines(s: dict[str, MetricSummary]) -> dict[str, tuple[Best, list[float]]]:
    """Per coefficient: the best baseline chosen once across runs (sign fixed) and the per-run maximum of |.|."""
    out = {}
    for coef, attr in (("spearman", "rho"), ("kendall", "tau")):
        per_run = {b: getattr(s[b], attr) for b in BASELINES}
        out[coef] = (best_fixed(per_run), best_per_run(per_run))
    return out


def best_pairs(s: dict[str, MetricSummary]) -> str | None:
    """The baseline with the largest share of equal-parameter pairs ordered right (each with its sign fixed
    across runs), chosen once over the pooled (pair, run) items."""
    shares = {b: float(np.mean(s[b].pairs)) for b in BASELINES if s[b].pairs}
    return max(shares, key=shares.__getitem__) if shares else None


def _baseline_name(best: Best) -> str:
    return f"{LABELS[best.metric]} ({'+' if best.sign > 0 else '−'})"


def comparison_table(s: dict[str, MetricSummary]) -> Table:
    """Each manifold estimate against the two readings of the best baseline, with 95% intervals over runs."""
    bests = best_baselines(s)
    rows = []
    for coef in ("spearman", "kendall"):
        fixed, per_run = bests[coef]
        for m in MANIFOLD:
            own = getattr(s[m], coef)
            rows.append(
                [
                    LABELS[m],
                    coef.capitalize(),
                    _mci(own),
                    _baseline_name(fixed),
                    _mci(fixed.values),
                    _mci(list(np.subtract(own, fixed.values))),
                    _mci(per_run),
                    _mci(list(np.subtract(own, per_run))),
                ]
            )
    return Table(
        title="Each manifold estimate against the best baseline, two ways (per run: mean ± std [95% t-interval "
        "over runs]). Chosen once: the baseline and sign with the best mean over all runs (the targets compare "
        "this one). Per-run max: the largest |rho| of any baseline in each run, a different baseline and sign per "
        "run (biased upward; the targets' definition before issue 22)",
        columns=[
            "manifold estimate",
            "coefficient",
            "manifold",
            "best baseline, chosen once (sign)",
            "its value",
            "manifold − it (targets)",
            "per-run max |baseline|",
            "manifold − per-run max (old)",
        ],
        rows=rows,
    )


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
        title="Rank correlation of each metric with the gain after continued training (the baselines and the "
        "first two manifold rows at expansion; the last two at the trained expanded solution). Baselines are read "
        "with their better sign (|rho| per run; the sign column is that of their mean, used for the pairs); the "
        "manifold metrics keep theirs",
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
                f"{np.mean([r.metrics['manifold_trained'] for r in rs]):.2f}",
                f"{np.mean([r.metrics['manifold_dir_trained'] for r in rs]):.3f}",
                len(rs),
            ]
        )
    return Table(
        title="Each expansion (mean over seeds): test accuracy at expansion and after continued training, the gain "
        "over the base continued for the same budget, and the two manifold estimates at expansion and at the "
        "trained solution",
        columns=[
            "family",
            "expansion",
            "params",
            "acc at expansion",
            "acc after",
            "gain",
            "manifold",
            "manifold dir",
            "manifold trained",
            "manifold dir trained",
            "seeds",
        ],
        rows=rows,
    )


def cost_table(records: list[Record]) -> Table:
    rows = []
    for family in sorted({r.family for r in records}):
        rs = [r for r in records if r.family == family]
        train_s = float(np.mean([r.metrics["train_s"] for r in rs]))
        for m in ALL:
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
    fig, axes = plt.subplots(2, 5, figsize=(20, 7.5), dpi=110)
    runs: dict[tuple[str, int], list[Record]] = {}
    for r in records:
        runs.setdefault((r.family, r.seed), []).append(r)
    for ax, metric in zip(axes.flat, ALL, strict=False):
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
    fig.suptitle(
        "Metric (at expansion; 'trained': at the trained solution) vs gain after continued training ("
        + PROTOCOL_NOTE
        + ")",
        fontsize=10,
    )
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


Measure = tuple[list[float], tuple[float, float] | None]


def target_values(s: dict[str, MetricSummary], n_boot: int) -> dict[str, Measure]:
    """Per-run (or pooled) values of each paper.yaml target and the 95% interval of their mean: Student t over
    runs, or for the pairs a paired bootstrap over the (pair, run) items."""
    man = s["manifold"]
    bests = best_baselines(s)
    fixed_s, fixed_k = bests["spearman"][0], bests["kendall"][0]
    pairs: Measure = ([], None)
    pair_base = best_pairs(s)
    if man.pairs and pair_base is not None:
        a, b = np.array(man.pairs), np.array(s[pair_base].pairs)
        ci = None if len(a) < 2 else bootstrap_ci(lambda u, v: u.mean() - v.mean(), a, b, n_boot=n_boot)
        pairs = ([float(a.mean() - b.mean())], ci)

    def per_run(values: list[float]) -> Measure:
        values = [float(v) for v in values]
        return values, interval(values)

    return {
        "manifold_spearman": per_run(man.spearman),
        "manifold_kendall": per_run(man.kendall),
        "manifold_minus_best_baseline_spearman": per_run(list(np.subtract(man.spearman, fixed_s.values))),
        "manifold_minus_best_baseline_kendall": per_run(list(np.subtract(man.kendall, fixed_k.values))),
        "manifold_minus_best_baseline_pairs": pairs,
        "directional_spearman": per_run(s["manifold_dir"].spearman),
        "manifold_trained_spearman": per_run(s["manifold_trained"].spearman),
    }


def evaluate_targets(specs: list[dict], values: dict[str, Measure]) -> list[Target]:
    """Targets judged over the per-seed values each one's measure produced (target_values), with their interval."""
    for spec in specs:
        if spec["name"] not in values:
            raise KeyError(f"paper.yaml target {spec['name']!r} has no measure; known: {', '.join(values)}")
    return [judged_target(spec, values[spec["name"]][0], ci=values[spec["name"]][1]) for spec in specs]


RECORD_COLUMNS = (
    "params",
    "base_accuracy",
    "accuracy",
    "acc_at_expansion",
    *METRICS,
    "manifold_scale",
    *TRAINED,
    "manifold_trained_scale",
)


def _record_cell(r: Record, column: str) -> float | int:
    return int(r.metrics[column]) if column == "params" else r.metrics[column]


def records_table(records: list[Record], bisect_steps: int) -> Table:
    """Every (family, seed, expansion) point, unrounded in results.json: every correlation, interval and pair
    share above can be recomputed from these rows (gain = accuracy - base_accuracy, on the full test set)."""
    rows = []
    for r in sorted(records, key=lambda r: (r.family, r.seed, r.expansion)):
        rows.append([r.family, r.seed, r.expansion, r.gain, *(_record_cell(r, c) for c in RECORD_COLUMNS)])
    return Table(
        title="Per-point records (family, seed, expansion): the gain and every metric; results.json holds them "
        "unrounded so every correlation can be recomputed. manifold_scale is the simplex's shrink factor "
        f"({2.0**-bisect_steps:g} = 2^-{bisect_steps}, the floor: off the base's manifold)",
        columns=["family", "seed", "expansion", "gain", *RECORD_COLUMNS],
        rows=rows,
    )


def write_report(run: Run, cfg: Config, records: list[Record], meta: dict, command: str) -> Results:
    families = sorted({r.family for r in records})
    tables: dict[str, Table] = {}
    figures: list[str] = []
    targets = [Target(**spec).judge() for spec in meta["targets"]]
    if records:
        s = summaries(records, cfg)
        targets = evaluate_targets(meta["targets"], target_values(s, cfg.analysis.bootstrap))
        tables = {
            "correlation": correlation_table(s, families, cfg.analysis.ci),
            "comparison": comparison_table(s),
            "gains": gains_table(records),
            "cost": cost_table(records),
            "records": records_table(records, cfg.simplex.bisect_steps),
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
