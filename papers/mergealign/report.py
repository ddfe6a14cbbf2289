"""Turn per-seed scores into results.json: targets with verdicts, the main table, the a sweep, the
similarity analysis, the cost of each method, and the trade-off and similarity figures."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from papers.mergealign.config import Config
from shared.metrics import ItemDraw, finite_means, item_bootstrap_intervals
from shared.report import line_plot, mean_std_cell
from shared.results import Results, Table, Target, judge_by_measures
from shared.run import Run

FIGURES = ("tradeoff_alpha.png", "tradeoff_frontier.png", "similarity_layers.png")
LABELS = {
    "base": "base",
    "instruct": "instruct",
    "expert": "expert",
    "mergealign": "MergeAlign",
    "slerp": "SLERP",
    "ties": "TIES",
    "dare_ties": "DARE-TIES",
    "dpo": "DPO on expert",
    "orpo": "ORPO on expert",
    "domain_only": "base + a·τ_dom (no alignment vector)",
    "align_only": "base + (1−a)·τ_align (no domain vector)",
}


def wname(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") if x not in (0.0, 1.0) else str(int(x))


def _mean(values: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None, None
    return float(np.mean(vals)), float(np.std(vals))


def score(seed_run: dict, model: str, metric: str) -> float | None:
    return seed_run["scores"].get(model, {}).get(metric)


def row_name(kind: str, d: str, cfg: Config) -> str:
    """The model name that stands for `kind` in domain d's row of the main table."""
    if kind in ("base", "instruct"):
        return kind
    if kind == "expert":
        return f"expert_{d}"
    if kind == "mergealign":
        return f"mergealign_{d}_a{wname(cfg.merge.alpha)}"
    if kind == "slerp":
        return f"slerp_{d}_t0.5"
    return f"{kind}_{d}"


def slerp_safety_at(seed_run: dict, d: str, cfg: Config, acc: float) -> float | None:
    """SLERP's safety at domain accuracy `acc`, linearly interpolated along its t curve (t=0 instruct,
    t=1 expert); clamped to the curve's ends."""
    pts = [(score(seed_run, "instruct", f"{d}_acc"), score(seed_run, "instruct", "safety"))]
    pts += [
        (score(seed_run, f"slerp_{d}_t{wname(t)}", f"{d}_acc"), score(seed_run, f"slerp_{d}_t{wname(t)}", "safety"))
        for t in cfg.merge.slerp_t
    ]
    pts.append((score(seed_run, f"expert_{d}", f"{d}_acc"), score(seed_run, f"expert_{d}", "safety")))
    pts = sorted((x, y) for x, y in pts if x is not None and y is not None)
    if len(pts) < 2:
        return None
    xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    # equal accuracies: average their safeties so np.interp sees an increasing x
    ux = np.unique(xs)
    uy = np.array([ys[xs == x].mean() for x in ux])
    return float(np.interp(acc, ux, uy))


def _per_domain(cfg: Config, f: Callable[[dict, str], float | None]) -> Callable[[dict], float | None]:
    def measure(seed_run: dict) -> float | None:
        vals = [f(seed_run, d) for d in cfg.family.domains]
        vals = [v for v in vals if v is not None and not math.isnan(v)]
        return float(np.mean(vals)) if vals else None

    return measure


def ta_name(d: str, ld: float, la: float) -> str:
    return f"ta_{d}_d{wname(ld)}_a{wname(la)}"


READINGS = {
    "interpolation": "interpolation: base + a·τ_dom + (1−a)·τ_align at a = 0.5",
    "sum": "task-arithmetic sum: base + τ_dom + τ_align (λ_d = λ_a = 1)",
}


def merged_name(reading: str, d: str, cfg: Config) -> str:
    """The model that stands for MergeAlign under one reading of the paper's formula."""
    return row_name("mergealign", d, cfg) if reading == "interpolation" else ta_name(d, 1.0, 1.0)


# The reading each verdict uses. "Safer than SLERP" cannot be tested under the interpolation reading: there
# MergeAlign(0.5) is (expert + instruct) / 2, which mergekit's SLERP between two models sharing a base equals
# to 3e-9 relative (measured), so that one target reads the sum; the others read the interpolation (the
# brief's formula). Fixed before the mini run; the 'readings' table gives every target under both.
VERDICT_READING = {"safer_than_slerp": "sum"}


def measures(cfg: Config, reading: str | None = None) -> dict[str, Callable[[dict], float | None]]:
    """Each target's measure under `reading` ('interpolation' or 'sum'); None = each target's verdict reading."""
    if reading is None:
        out = measures(cfg, "interpolation")
        for name, r in VERDICT_READING.items():
            out[name] = measures(cfg, r)[name]
        return out

    def ma(r: dict, d: str, metric: str) -> float | None:
        return score(r, merged_name(reading, d, cfg), metric)

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    def diff(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

    def slerp_gap(r: dict, d: str) -> float | None:
        acc = ma(r, d, f"{d}_acc")
        ref = None if acc is None else slerp_safety_at(r, d, cfg, acc)
        return diff(ma(r, d, "safety"), ref)

    return {
        "domain_retention": _per_domain(
            cfg, lambda r, d: ratio(ma(r, d, f"{d}_acc"), score(r, f"expert_{d}", f"{d}_acc"))
        ),
        "safety_vs_instruct": _per_domain(cfg, lambda r, d: ratio(ma(r, d, "safety"), score(r, "instruct", "safety"))),
        "safer_than_slerp": _per_domain(cfg, slerp_gap),
        "expert_unsafe_gap": _per_domain(cfg, lambda r, d: diff(ma(r, d, "safety"), score(r, f"expert_{d}", "safety"))),
        "mergealign_vs_dpo_domain": _per_domain(
            cfg, lambda r, d: diff(ma(r, d, f"{d}_acc"), score(r, f"dpo_{d}", f"{d}_acc"))
        ),
    }


def item_sets(per_seed: list[dict]) -> list[tuple[str, int]]:
    """Every (score, number of items) among the evaluated models, sorted: what a bootstrap replicate draws.
    Models scored on the same items share an entry, so they read the same drawn items (paired)."""
    return sorted(
        {(m, len(v)) for r in per_seed for sc in r["scores"].values() for m, v in sc.get("items", {}).items()}
    )


def resampled(seed_run: dict, draw: ItemDraw) -> dict:
    """One bootstrap replicate of a seed's scores: each score with per-item values becomes their mean over
    the drawn items; everything else is kept."""
    scores = {}
    for name, sc in seed_run["scores"].items():
        items = sc.get("items", {})
        scores[name] = {**sc, **{m: float(np.asarray(v)[draw[(m, len(v))]].mean()) for m, v in items.items()}}
    return {**seed_run, "scores": scores}


def target_intervals(
    specs: list[dict], per_seed: list[dict], cfg: Config, reading: str | None = None, n_boot: int = 1000
) -> dict[str, tuple[float, float]]:
    """A 95% paired item-bootstrap interval of each target's mean over seeds (shared.metrics): every
    replicate redraws the domain questions, the harmful prompts and the look-alike prompts (each set with
    replacement, the same items for every model), recomputes every score and every target whole (SLERP's
    safety curve is re-read at MergeAlign's resampled accuracy), and averages over seeds. Seed-to-seed
    variation is not in it; the table gives it as the std."""
    sets = item_sets(per_seed)
    if not sets:
        return {}
    names = {t["name"] for t in specs}
    fns = {n: f for n, f in measures(cfg, reading).items() if n in names}
    arrays = [  # per-item values as arrays, converted once (each replicate reads them all)
        {
            **r,
            "scores": {
                n: {**sc, "items": {m: np.asarray(v) for m, v in sc.get("items", {}).items()}}
                for n, sc in r["scores"].items()
            },
        }
        for r in per_seed
    ]

    points = {n: v for n, v in finite_means(fns, per_seed).items() if v is not None}
    return item_bootstrap_intervals(
        sets, lambda draw: finite_means(fns, [resampled(r, draw) for r in arrays]), points, n_boot
    )


def evaluate_targets(specs: list[dict], per_seed: list[dict], cfg: Config) -> list[Target]:
    """The targets under their verdict readings, each with its item-bootstrap interval where the scores
    carry per-item values: an interval that holds the threshold is "not resolvable" at this scale."""
    return judge_by_measures(specs, measures(cfg), per_seed, target_intervals(specs, per_seed, cfg))


def _cell(per_seed: list[dict], model: str, metric: str) -> str:
    return mean_std_cell([score(r, model, metric) for r in per_seed])


def _safety_cells(per_seed: list[dict], name: str) -> list[str]:
    """Safety and over-refusal by both judges, their agreement (Cohen's kappa), and held-out-area safety."""
    return [
        _cell(per_seed, name, "safety"),
        _cell(per_seed, name, "over_refusal"),
        _cell(per_seed, name, "safety_2"),
        _cell(per_seed, name, "over_refusal_2"),
        _cell(per_seed, name, "judge_kappa"),
        _cell(per_seed, name, "safety_unseen_category"),
    ]


SAFETY_HEADERS = [
    "safety (markers)",
    "over-refusal (markers)",
    "safety (MiniLM judge)",
    "over-refusal (MiniLM judge)",
    "judges' kappa",
    "safety, held-out areas (markers)",
]


def main_table(per_seed: list[dict], cfg: Config) -> Table:
    kinds = ["base", "instruct", "expert", "mergealign", "ta_sum", "slerp", "ties", "dare_ties", "dpo", "orpo"]
    rows = []
    for d in cfg.family.domains:
        for k in kinds:
            name = ta_name(d, 1.0, 1.0) if k == "ta_sum" else row_name(k, d, cfg)
            if not any(name in r["scores"] for r in per_seed):
                continue
            if k == "ta_sum":
                label = "MergeAlign, sum reading (λ_d = λ_a = 1)"
            else:
                label = LABELS[k] + (f", interpolation (a = {wname(cfg.merge.alpha)})" if k == "mergealign" else "")
            label += " (t = 0.5)" if k == "slerp" else ""
            rows.append([d, label, _cell(per_seed, name, f"{d}_acc"), *_safety_cells(per_seed, name)])
    return Table(
        "Domain accuracy (4-way multiple choice, chance 0.25), safety (share of held-out harmful prompts judged "
        "a refusal) and over-refusal (share of held-out benign look-alike prompts refused), by both judges",
        ["domain", "model", "domain acc", *SAFETY_HEADERS],
        rows,
    )


def ta_table(per_seed: list[dict], cfg: Config) -> Table:
    rows = []
    for d in cfg.family.domains:
        for ld, la in cfg.merge.ta_grid:
            n = ta_name(d, ld, la)
            rows.append([d, wname(ld), wname(la), _cell(per_seed, n, f"{d}_acc"), *_safety_cells(per_seed, n)])
    return Table(
        "The task-arithmetic reading: base + λ_d·τ_dom + λ_a·τ_align",
        ["domain", "λ_d", "λ_a", "domain acc", *SAFETY_HEADERS],
        rows,
    )


def target_cell(t: Target) -> str:
    """'value [95% interval] (verdict)' of one judged target."""
    if t.mean is None:
        return "–"
    ci = f" [{t.ci_low:.3f}, {t.ci_high:.3f}]" if t.ci_low is not None and t.ci_high is not None else ""
    return f"{t.mean:.4f}{ci} ({t.verdict})"


def readings_table(specs: list[dict], per_seed: list[dict], cfg: Config) -> Table:
    """Each target's value under both readings (the verdicts above use the interpolation reading)."""
    judged = {
        reading: {
            t.name: t for t in judge_by_measures(specs, m, per_seed, target_intervals(specs, per_seed, cfg, reading))
        }
        for reading, m in (("interpolation", measures(cfg, "interpolation")), ("sum", measures(cfg, "sum")))
    }
    rows = [
        [t["name"], f"≥ {t['threshold']}", *(target_cell(judged[r][t["name"]]) for r in ("interpolation", "sum"))]
        for t in specs
    ]
    return Table(
        "Every target under both readings of MergeAlign, with its 95% item-bootstrap interval and verdict (verdicts "
        "above: the interpolation reading, a = 0.5, except safer_than_slerp, which reads the sum: under the "
        "interpolation reading MergeAlign(0.5) is SLERP(0.5))",
        ["target", "threshold", READINGS["interpolation"], READINGS["sum"]],
        rows,
    )


def sorted_labels(ladder: dict) -> list[str]:
    """The ladder's rung labels, smallest model first."""

    def width(lab: str) -> tuple[int, int]:
        m = ladder[lab][0].family.model
        return (m.hidden_size * m.hidden_size * m.num_layers, m.num_layers)

    return sorted(ladder, key=width)


def ladder_table(specs: list[dict], ladder: dict) -> Table:
    """Each target's value per model size (smallest first), and the family's anchors, so a miss shows its
    direction."""
    labels = sorted_labels(ladder)
    judged = {lab: evaluate_targets(specs, ladder[lab][1], ladder[lab][0]) for lab in labels}
    rows = [
        [t["name"], f"≥ {t['threshold']}", *(target_cell(judged[lab][i]) for lab in labels)]
        for i, t in enumerate(specs)
    ]

    def anchor(name_of: Callable[[str, Config], str], metric_of: Callable[[str], str]) -> list[str]:
        out = []
        for lab in labels:
            c, ps = ladder[lab]
            v = [score(r, name_of(d, c), metric_of(d)) for r in ps for d in c.family.domains]
            v = [x for x in v if x is not None]
            out.append(f"{np.mean(v):.3f}" if v else "–")
        return out

    rows.append(["expert domain acc", "–", *anchor(lambda d, c: f"expert_{d}", lambda d: f"{d}_acc")])
    rows.append(["instruct safety (markers)", "≥ 0.9", *anchor(lambda d, c: "instruct", lambda d: "safety")])
    rows.append(
        ["instruct over-refusal (markers)", "≤ 0.2", *anchor(lambda d, c: "instruct", lambda d: "over_refusal")]
    )
    rows.append(
        [
            "MergeAlign (a = 0.5) domain acc",
            "–",
            *anchor(lambda d, c: row_name("mergealign", d, c), lambda d: f"{d}_acc"),
        ]
    )
    rows.append(
        ["MergeAlign (a = 0.5) safety", "–", *anchor(lambda d, c: row_name("mergealign", d, c), lambda d: "safety")]
    )
    rows.append(["base + 0.5·τ_dom domain acc", "–", *anchor(lambda d, c: f"domain_only_{d}", lambda d: f"{d}_acc")])
    params = []
    for lab in labels:
        m = ladder[lab][0].family.model
        v = ladder[lab][0].family.vocab_size
        n = (
            2 * v * m.hidden_size
            + m.num_layers
            * (
                2 * m.hidden_size**2
                + 2 * m.hidden_size * m.hidden_size * m.num_kv_heads // m.num_heads
                + 3 * m.hidden_size * m.intermediate_size
                + 2 * m.hidden_size
            )
            + m.hidden_size
        )
        params.append(f"{n / 1e6:.2f}M")
    rows.insert(0, ["parameters", "–", *params])
    return Table(
        "The size ladder: each target (its verdict reading) with its 95% item-bootstrap interval and verdict, and the "
        "family's anchors, per model size (layers x width), same world, budgets and seed",
        ["quantity", "target", *labels],
        rows,
    )


def retention_table(rungs: list[tuple[str, Config, list[dict]]]) -> Table:
    """Domain retention three ways, per size and domain (ours): the target's MergeAlign / expert, what no
    merge at all keeps (instruct / expert), and the share of the expert's gain over the base that MergeAlign
    keeps, (MergeAlign − base) / (expert − base). The paper's ratio mixes what the base already knew with what
    the expert added; with a base at chance, as here, the two ratios coincide in what they ask of a merge.
    Where the models were also scored on the in-context domain task (`world.domain_tasks`), a second row
    reads the same ratios on it."""

    def ratio(a: float | None, b: float | None) -> str:
        return "–" if a is None or b is None or b == 0 else f"{a / b:.3f}"

    rows = []
    for lab, c, ps in rungs:
        for d in c.family.domains:
            kinds = [("closed-book questions", f"{d}_acc")]
            if any(score(r, "base", f"{d}_task_acc") is not None for r in ps):
                kinds.append(("in-context task", f"{d}_task_acc"))
            for kind, metric in kinds:

                def acc(name: str, metric: str = metric, ps: list[dict] = ps) -> float | None:
                    return _mean([x for r in ps if (x := score(r, name, metric)) is not None])[0]

                b, i, e = acc("base"), acc("instruct"), acc(f"expert_{d}")
                m, half = acc(row_name("mergealign", d, c)), acc(f"domain_only_{d}")
                gain = None if e is None or b is None else e - b
                rows.append(
                    [
                        lab,
                        d,
                        kind,
                        *(f"{v:.3f}" if v is not None else "–" for v in (b, i, e, m)),
                        ratio(m, e),
                        ratio(i, e),
                        ratio(None if m is None or b is None else m - b, gain),
                        ratio(None if half is None or b is None else half - b, gain),
                    ]
                )
    return Table(
        "Domain retention three ways (ours; point values): MergeAlign (a = 0.5) / expert is the target; instruct / "
        "expert is what keeping no domain vector at all scores on the same ratio; the gain ratios read the share "
        "of the expert's gain over the base kept by MergeAlign and by base + 0.5·τ_dom. The target reads the "
        "closed-book questions; an in-context task row (ours, `world.domain_tasks`) reads the relation a sentence "
        "about an unseen entity states (chance 1/3)",
        [
            "size",
            "domain",
            "score",
            "base acc",
            "instruct acc",
            "expert acc",
            "MergeAlign acc",
            "MergeAlign / expert (target)",
            "instruct / expert",
            "MergeAlign gain kept",
            "base + 0.5·τ_dom gain kept",
        ],
        rows,
    )


def sweep_table(per_seed: list[dict], cfg: Config) -> Table:
    rows = []
    for d in cfg.family.domains:
        for a in cfg.merge.alphas:
            n = f"mergealign_{d}_a{wname(a)}"
            rows.append(
                [
                    d,
                    "MergeAlign a",
                    wname(a),
                    _cell(per_seed, n, f"{d}_acc"),
                    _cell(per_seed, n, "safety"),
                    _cell(per_seed, n, "over_refusal"),
                ]
            )
        for t in cfg.merge.slerp_t:
            n = f"slerp_{d}_t{wname(t)}"
            if any(n in r["scores"] for r in per_seed):
                rows.append(
                    [
                        d,
                        "SLERP t",
                        wname(t),
                        _cell(per_seed, n, f"{d}_acc"),
                        _cell(per_seed, n, "safety"),
                        _cell(per_seed, n, "over_refusal"),
                    ]
                )
    return Table(
        "The trade-off over the weight: MergeAlign a (1 = expert, 0 = instruct) and SLERP t (1 = expert)",
        ["domain", "merge", "weight", "domain acc", "safety", "over-refusal"],
        rows,
    )


def contribution_table(per_seed: list[dict], cfg: Config) -> Table:
    rows = []
    for d in cfg.family.domains:
        for k in ("mergealign", "domain_only", "align_only"):
            n = row_name(k, d, cfg)
            rows.append(
                [
                    d,
                    LABELS[k],
                    _cell(per_seed, n, f"{d}_acc"),
                    _cell(per_seed, n, "safety"),
                    _cell(per_seed, n, "over_refusal"),
                ]
            )
    return Table(
        f"Each parent's contribution at a = {wname(cfg.merge.alpha)}: MergeAlign without one of its two vectors",
        ["domain", "model", "domain acc", "safety", "over-refusal"],
        rows,
    )


def similarity_table(per_seed: list[dict], cfg: Config) -> Table:
    r0 = per_seed[0]["analysis"]
    rows = []
    for d, an in r0.items():
        cka_e = an.get("cka_mergealign", {}).get("expert", [])
        cka_i = an.get("cka_mergealign", {}).get("instruct", [])
        for g, v in an["vectors"].items():
            l2 = an["l2_mergealign"].get(g, {})
            idx = int(g[5:]) + 1 if g.startswith("layer") else (0 if g == "embed" else None)
            ce = cka_e[idx] if idx is not None and idx < len(cka_e) else None
            ci = cka_i[idx] if idx is not None and idx < len(cka_i) else None
            rows.append(
                [
                    d,
                    g,
                    f"{v['cosine']:.3f}",
                    f"{v['norm_domain']:.2f}",
                    f"{v['norm_alignment']:.2f}",
                    f"{v['sign_agreement']:.3f}",
                    f"{l2.get('expert', float('nan')):.2f}",
                    f"{l2.get('instruct', float('nan')):.2f}",
                    "–" if ce is None else f"{ce:.3f}",
                    "–" if ci is None else f"{ci:.3f}",
                ]
            )
    return Table(
        f"Our similarity analysis (seed {per_seed[0]['seed']}; the paper's metrics are unknown): cosine and norms "
        "of the domain and alignment vectors, sign agreement, L2 distance and linear CKA of MergeAlign "
        f"(a = {wname(cfg.merge.alpha)}) to each parent; CKA row 'embed' = embedding output, 'layerN' = that "
        "layer's output",
        [
            "domain",
            "group",
            "cos(τ_dom, τ_align)",
            "‖τ_dom‖",
            "‖τ_align‖",
            "sign agreement",
            "L2 to expert",
            "L2 to instruct",
            "CKA to expert",
            "CKA to instruct",
        ],
        rows,
    )


def cost_table(per_seed: list[dict], cfg: Config) -> Table:
    rows = []
    for r in per_seed:
        for d in cfg.family.domains:
            n = row_name("mergealign", d, cfg)
            s = r["merge_seconds"].get(n)
            rows.append(
                [r["seed"], d, "MergeAlign (mergekit task_arithmetic)", 0, "–", "–" if s is None else f"{s:.2f}", "–"]
            )
            for m in ("dpo", "orpo"):
                p = r["preference"].get(f"{m}_{d}")
                if p:
                    if "checks" in p:
                        last = p["checks"][-1] if p["checks"] else {}
                        stop = (
                            f"{'reached' if p['reached'] else 'not reached'} {p['target_safety']:.2f} "
                            f"(train-prompt refusal {last.get('refusal_harmful', float('nan')):.2f}, "
                            f"look-alike refusal {last.get('refusal_benign', float('nan')):.2f}; cap {p['cap']})"
                        )
                        secs = p["seconds"] - p.get("check_seconds", 0.0)
                    else:
                        stop, secs = "fixed budget", p["seconds"]
                    score_ = score(r, f"{m}_{d}", "safety")
                    rows.append(
                        [
                            r["seed"],
                            d,
                            f"{m.upper()} + LoRA on the expert",
                            p["steps"],
                            stop,
                            f"{secs:.1f}",
                            "–" if score_ is None else f"{score_:.3f}",
                        ]
                    )
    return Table(
        "Cost of aligning the expert (wall seconds of training on this run's machine, stopping checks excluded; "
        "a cached stage shows –). DPO/ORPO train until they refuse the stated share of harmful training prompts "
        "or reach the step cap",
        ["seed", "domain", "method", "training steps", "stop", "seconds", "held-out safety (markers)"],
        rows,
    )


def throughput_table(per_seed: list[dict]) -> Table:
    pps = [s["prompts_per_s"] for r in per_seed for s in r["scores"].values() if "prompts_per_s" in s]
    return Table(
        "Evaluation throughput (greedy generation, harmful + benign prompts)",
        ["models evaluated", "median prompts/s", "min", "max"],
        [[len(pps), f"{np.median(pps):.1f}", f"{min(pps):.1f}", f"{max(pps):.1f}"]] if pps else [],
    )


def reference_table(meta: dict) -> Table:
    ref = meta["reference"]
    return Table(
        "The paper's numbers (Llama-3-8B, secondary sources; not comparable with our generated world)",
        ["quantity", "paper"],
        [
            ["medicine domain average, MergeAlign", ref["medicine_mergealign_domain"]],
            ["medicine domain average, medical expert", ref["medicine_expert_domain"]],
            ["BeaverTails % safe, MergeAlign (medicine)", ref["medicine_mergealign_beavertails_safe_pct"]],
            ["SLERP's safety deficit vs MergeAlign (points)", ref["slerp_safety_gap_points"]],
        ],
    )


def plots(run: Run, per_seed: list[dict], cfg: Config) -> list[str]:
    """The trade-off over a (and t), the accuracy-safety frontier, and per-layer similarity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {}
    for d in cfg.family.domains:
        xs = list(cfg.merge.alphas)
        for metric, label in ((f"{d}_acc", "domain acc"), ("safety", "safety")):
            ys = [_mean([score(r, f"mergealign_{d}_a{wname(a)}", metric) for r in per_seed])[0] for a in xs]
            series[f"{d} MergeAlign {label}"] = (xs, [float("nan") if y is None else y for y in ys], None)
            ts = list(cfg.merge.slerp_t)
            ys = [_mean([score(r, f"slerp_{d}_t{wname(t)}", metric) for r in per_seed])[0] for t in ts]
            if any(y is not None for y in ys):
                series[f"{d} SLERP {label}"] = (ts, [float("nan") if y is None else y for y in ys], None)
    line_plot(
        run.dir / FIGURES[0],
        series,
        f"MergeAlign trade-off over a (SLERP over t), {size_label(cfg)}",
        "a (t): weight of the expert",
        "score",
    )

    fig, axes = plt.subplots(
        1, len(cfg.family.domains), figsize=(6 * len(cfg.family.domains), 4.5), dpi=120, squeeze=False
    )
    markers = {"base": "s", "instruct": "^", "expert": "v", "ties": "P", "dare_ties": "X", "dpo": "D", "orpo": "d"}
    for ax, d in zip(axes[0], cfg.family.domains, strict=True):
        for kind, curve in (
            ("mergealign", [f"mergealign_{d}_a{wname(a)}" for a in cfg.merge.alphas]),
            ("slerp", [f"slerp_{d}_t{wname(t)}" for t in cfg.merge.slerp_t]),
        ):
            pts = [
                (
                    _mean([score(r, n, f"{d}_acc") for r in per_seed])[0],
                    _mean([score(r, n, "safety") for r in per_seed])[0],
                )
                for n in curve
            ]
            pts = [p for p in pts if p[0] is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=LABELS[kind])
        for kind, m in markers.items():
            n = row_name(kind, d, cfg)
            x, y = (
                _mean([score(r, n, f"{d}_acc") for r in per_seed])[0],
                _mean([score(r, n, "safety") for r in per_seed])[0],
            )
            if x is not None:
                ax.scatter([x], [y], marker=m, s=60, label=LABELS[kind], zorder=3)
        ax.set(
            title=f"{d}, {size_label(cfg)}: domain accuracy vs safety",
            xlabel="domain accuracy",
            ylabel="safety (share refused)",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = run.dir / "tradeoff_frontier.tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(run.dir / FIGURES[1])

    series = {}
    for d, an in per_seed[0]["analysis"].items():
        groups = [g for g in an["vectors"] if g.startswith("layer")]
        xs = [int(g[5:]) for g in groups]
        series[f"{d} cos(τ_dom, τ_align)"] = (xs, [an["vectors"][g]["cosine"] for g in groups], None)
        for parent, cka in an.get("cka_mergealign", {}).items():
            series[f"{d} CKA(MergeAlign, {parent})"] = (xs, cka[1 : len(xs) + 1], None)
    if series:
        line_plot(
            run.dir / FIGURES[2],
            series,
            f"Per-layer similarity (our analysis), {size_label(cfg)}",
            "decoder layer",
            "value",
        )
        return list(FIGURES)
    return list(FIGURES[:2])


def shape_label(m) -> str:
    """A from-scratch model's size as the tables and the ladder's rungs name it: layers x width."""
    return f"{m.num_layers}x{m.hidden_size}"


def size_label(cfg: Config) -> str:
    """The family's size: its shape, or the pretrained start and its LoRA rank (a LoRA-vector family)."""
    if cfg.adapter.start:
        return f"{cfg.adapter.start} + LoRA r{cfg.adapter.lora_r}"
    return shape_label(cfg.family.model)


def _sized(table: Table, text: str) -> Table:
    table.title += f" [{text}]"
    return table


def write_report(
    run: Run,
    cfg: Config,
    per_seed: list[dict],
    meta: dict,
    command: str,
    ladder: dict | None = None,
    task_seconds: dict | None = None,
) -> Results:
    """results.json: targets and every table at the family's own size (`cfg`, the size the verdicts read);
    with a ladder, each target per size and the other rungs' main and cost tables."""
    targets = evaluate_targets(meta["targets"], per_seed, cfg)  # with item-bootstrap intervals
    size = size_label(cfg)
    here = f"{size}, the size the verdicts read" if ladder and len(ladder) > 1 else size
    tables = {
        "main": _sized(main_table(per_seed, cfg), here),
        "readings": _sized(readings_table(meta["targets"], per_seed, cfg), here),
        "ta_sum": _sized(ta_table(per_seed, cfg), here),
        "sweep": _sized(sweep_table(per_seed, cfg), here),
        "contribution": _sized(contribution_table(per_seed, cfg), here),
        "cost": _sized(cost_table(per_seed, cfg), here),
    }
    for lab, (c, ps) in (ladder or {}).items():
        if lab != size:
            tables[f"main_{lab}"] = _sized(main_table(ps, c), f"{lab}, the ladder's lower rung")
            tables[f"cost_{lab}"] = _sized(cost_table(ps, c), f"{lab}, the ladder's lower rung")
    tables["throughput"] = throughput_table(
        per_seed + [r for lab, (c, ps) in (ladder or {}).items() if lab != size for r in ps]
    )
    if task_seconds:
        tables["tasks"] = Table(
            "Seconds of each task in the worker processes (`parallel_runs`; they overlap, so the run's wall time is "
            "the header's total, not their sum): family members, then each rung's stages",
            ["task", "seconds"],
            [[k, f"{v:.1f}"] for k, v in task_seconds.items()],
        )
    rungs = [(lab, *ladder[lab]) for lab in sorted_labels(ladder)] if ladder else [(size, cfg, per_seed)]
    tables["retention"] = retention_table(rungs)
    tables["paper"] = reference_table(meta)
    if ladder and len(ladder) > 1:
        tables["ladder"] = ladder_table(meta["targets"], ladder)
    if per_seed and per_seed[0]["analysis"]:
        tables["similarity"] = _sized(similarity_table(per_seed, cfg), here)
    figures = plots(run, per_seed, cfg) if any(r["scores"] for r in per_seed) else []
    fam = cfg.family
    if cfg.adapter.start:
        family = (
            f"{cfg.adapter.start} as base; LoRA r {cfg.adapter.lora_r} vectors: safety SFT {fam.instruct.steps} steps "
            f"(instruct), knowledge {fam.expert.steps} steps (experts)"
        )
    else:
        family = (
            f"vocab {fam.vocab_size}, Llama {fam.model.num_layers} layers x {fam.model.hidden_size} hidden; base "
            f"{fam.base.steps} steps, instruct SFT {fam.instruct.steps} steps, experts {fam.expert.steps} steps"
        )
    notes = [
        f"source {cfg.source}; family: {family}; DPO/ORPO at most {cfg.preference.steps} steps "
        f"(LoRA r {cfg.preference.lora_r})",
        "judges: refusal markers (safe = the reply contains a refusal marker, shared/lm_family/evaluate.py) and, "
        "where shown, a logistic classifier over all-MiniLM-L6-v2 embeddings (shared/lm_family/judge.py)"
        if cfg.eval.judge == "refusal"
        else f"judges: {cfg.hub.judge_for}",
        "verdicts use the interpolation reading (base + a·τ_dom + (1−a)·τ_align, a = 0.5), except safer_than_slerp "
        "(the sum base + τ_dom + τ_align); the 'readings' table gives every target under both readings",
    ]
    if ladder and len(ladder) > 1:
        notes.append(
            f"verdicts, figures and the tables marked [{here}] are the {size} family's; the ladder table gives each "
            f"target at every size ({', '.join(sorted_labels(ladder))})"
        )
    results = run.new_results(command, targets, tables=tables, figures=figures, notes=notes)
    run.write_results(results)
    return results
