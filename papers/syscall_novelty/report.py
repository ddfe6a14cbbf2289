"""Turn scores into results.json: per cutting mode, per-novelty AUROC/F1 beside the paper's, the
extension scores' AUROC, LM accuracy, the ID-vs-ID check, the dataset table, training statistics, ROC
curves and score histograms. The paper's targets are judged in the global mode (the paper's); the same
bars in every other mode are separate targets labelled as ours."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from papers.syscall_novelty.config import Config  # noqa: E402
from papers.syscall_novelty.data import Split  # noqa: E402
from papers.syscall_novelty.evaluate import Detection, detect, roc_curve  # noqa: E402
from papers.syscall_novelty.scores import SCORE_LABELS, SCORES  # noqa: E402
from shared.metrics import auroc  # noqa: E402
from shared.results import EXTENSION_PREFIX, Results, Table, Target  # noqa: E402
from shared.run import Run  # noqa: E402
from shared.traces import TraceDataset  # noqa: E402
from shared.traces.signal import signal_table  # noqa: E402

LABELS = {
    "lstm": "LSTM",
    "transformer": "Transformer",
    "longformer": "Longformer",
    "ngram3": "3-gram",
    "ngram4": "4-gram",
}
NEURAL = ("lstm", "transformer", "longformer")
PAPER_MODE = "global"


def mode_label(mode: str) -> str:
    return "global (the paper's mode)" if mode == PAPER_MODE else f"{mode} (our extension)"


def _models(outputs: dict) -> list[str]:
    present = {m for _, m, _ in outputs}
    return [m for m in LABELS if m in present]


def _modes(outputs: dict) -> list[str]:
    present = {mode for mode, _, _ in outputs}
    return [PAPER_MODE, *sorted(present - {PAPER_MODE})] if PAPER_MODE in present else sorted(present)


def detections(outputs: dict, novelties: list[str], n: int, score: str = "ppl") -> dict[tuple, Detection]:
    """(mode, model, novelty, seed) -> the paper's protocol applied to `score` (ppl: the paper's)."""
    out = {}
    for (mode, model, seed), o in outputs.items():
        for nov in novelties:
            out[(mode, model, nov, seed)] = detect(
                o[f"{score}__valid_id"], o[f"{score}__valid_ood_{nov}"], o[f"{score}__test_id"],
                o[f"{score}__test_ood_{nov}"], n,
            )  # fmt: skip
    return out


def _mean(values: list[float]) -> tuple[float | None, float | None, int]:
    if not values:
        return None, None, 0
    return float(np.mean(values)), float(np.std(values)), len(values)


def measure(m: dict, mode: str, seed: int, outputs: dict, dets: dict) -> float | None:
    """One target's number for one mode and seed (None when its models did not run)."""
    if m["kind"] == "auroc" and (mode, m["model"], m["novelty"], seed) in dets:
        return dets[(mode, m["model"], m["novelty"], seed)].auroc
    if m["kind"] == "id_auroc" and (mode, m["model"], seed) in outputs:
        o = outputs[(mode, m["model"], seed)]
        return auroc(o["ppl__valid_id"], o["ppl__test_id"])
    if m["kind"] == "ngram_gap" and (mode, "ngram3", m["novelty"], seed) in dets:
        neural = [dets[(mode, k, m["novelty"], seed)].auroc for k in NEURAL if (mode, k, m["novelty"], seed) in dets]
        if neural:
            return max(neural) - dets[(mode, "ngram3", m["novelty"], seed)].auroc
    return None


def evaluate_targets(specs: list[dict], outputs: dict, dets: dict) -> list[Target]:
    """The paper's targets judged in the paper's (global) mode, then the same targets judged in each
    extension mode as separately named, labelled targets of ours."""
    seeds = sorted({s for _, _, s in outputs})
    modes = _modes(outputs) or [PAPER_MODE]
    targets = []
    for mode in modes:
        for spec in specs:
            values = [v for s in seeds if (v := measure(spec["measure"], mode, s, outputs, dets)) is not None]
            mean, std, n = _mean(values)
            fields = {k: v for k, v in spec.items() if k != "measure"}
            if mode == PAPER_MODE:
                fields["description"] = f"[global, paper's mode] {fields['description']}"
            else:
                fields["name"] = f"{mode}_{fields['name']}"
                fields["description"] = f"[{mode}, ours] {fields['description']}"
                fields["source"] = f"{EXTENSION_PREFIX} {mode} cutting, same bar as the paper's target"
            targets.append(Target(**fields, mean=mean, std=std, n=n).judge())
    return targets


def verdicts_table(targets: list[Target], modes: list[str]) -> Table:
    """Each target once, its global (the paper's mode) verdict beside each extension mode's."""
    by_name = {t.name: t for t in targets}
    paper = [t for t in targets if t.description.startswith("[global")]
    columns = ["target", "global (paper's mode)"] + [f"{m} (ours)" for m in modes if m != PAPER_MODE]
    rows = []
    for t in paper:
        row = [t.description.split("] ", 1)[1]]
        for mode in modes:
            o = t if mode == PAPER_MODE else by_name.get(f"{mode}_{t.name}")
            row.append("–" if o is None or o.mean is None else f"{o.mean:.3f} {o.verdict}")
        rows.append(row)
    counts = [f"reproduced (of {len(paper)})"]
    for mode in modes:
        got = [t if mode == PAPER_MODE else by_name.get(f"{mode}_{t.name}") for t in paper]
        counts.append(str(sum(1 for o in got if o is not None and o.verdict == "reproduced")))
    rows.append(counts)
    return Table("Verdicts per cutting mode: the paper's (global) and ours", columns, rows)


def novelty_label(nov: str, ref: dict) -> str:
    return nov if nov in ref["detection"] else f"{nov} (ours, not in the paper)"


def detection_table(dets: dict, mode: str, novelties: list[str], models: list[str], ref: dict) -> Table:
    columns = ["novelty"] + [f"{LABELS[m]} AUROC / F1" for m in models]
    rows = []
    for nov in novelties:
        row = [novelty_label(nov, ref)]
        for m in models:
            vals = [d for (md, mm, nn, _), d in dets.items() if md == mode and mm == m and nn == nov]
            if not vals:
                row.append("–")
                continue
            a, f = np.mean([d.auroc for d in vals]) * 100, np.mean([d.f1 for d in vals]) * 100
            paper = ref["detection"].get(nov, {}).get("ngram3" if m == "ngram4" else m)
            if m == "ngram4":
                p4 = ref["ngram4_auroc"].get(nov)
                paper_txt = f"{p4:.1f}" if p4 is not None else "–"
            else:
                paper_txt = f"{paper[0]:.1f} / {paper[1]:.1f}" if paper else "–"
            row.append(f"{a:.1f} / {f:.1f} (paper {paper_txt})")
        rows.append(row)
    return Table(f"Test AUROC / F1 (%) per novelty, {mode_label(mode)}: ours (the paper's)", columns, rows)


def scores_table(outputs: dict, mode: str, novelties: list[str], models: list[str], top_k: int) -> Table:
    """Test AUROC (%) of every score (the paper's mean loss and our extensions) per model and novelty."""
    rows = []
    for m in models:
        for score in SCORES:
            row = [LABELS[m], SCORE_LABELS[score].replace("top-k", f"top-{top_k}")]
            for nov in novelties:
                vals = [
                    auroc(o[f"{score}__test_id"], o[f"{score}__test_ood_{nov}"])
                    for (md, mm, _), o in outputs.items()
                    if md == mode and mm == m and f"{score}__test_id" in o
                ]
                row.append(f"{np.mean(vals) * 100:.1f}" if vals else "–")
            rows.append(row)
    title = f"Scores compared: test AUROC (%), {mode_label(mode)}; mean loss is the paper's, the rest ours"
    return Table(title, ["model", "score", *novelties], rows)


def accuracy_table(outputs: dict, modes: list[str], models: list[str], ref: dict) -> Table:
    rows = []
    for m in models:
        row = [LABELS[m]]
        for mode in modes:
            accs = [o["correct"] / max(o["total"], 1) * 100 for k, o in outputs.items() if k[:2] == (mode, m)]
            row.append(f"{np.mean(accs):.1f}" if accs else "–")
        paper = ref["lm_accuracy"].get(m)
        rows.append([*row, "–" if paper is None else f"{paper:.1f}"])
    columns = ["model", *[mode_label(mode) for mode in modes], "paper"]
    return Table("Next-syscall accuracy on test ID (%)", columns, rows)


def id_table(outputs: dict, modes: list[str], models: list[str]) -> Table:
    rows = []
    for m in models:
        row = [LABELS[m]]
        for mode in modes:
            vals = [auroc(o["ppl__valid_id"], o["ppl__test_id"]) for k, o in outputs.items() if k[:2] == (mode, m)]
            row.append(f"{np.mean(vals):.3f}" if vals else "–")
        rows.append(row)
    title = "Protocol check: valid ID vs test ID AUROC (0.5 = indistinguishable), the paper's score"
    return Table(title, ["model", *[mode_label(mode) for mode in modes]], rows)


def dataset_table(ds: TraceDataset, splits: dict[str, dict[str, Split]]) -> Table:
    """Per split: requests, those used, and per mode the truncated count and length; duration."""
    modes = list(splits)
    stats = {mode: {s.split: s for s in ds.stats(mode)} for mode in modes}
    rows = []
    for s in stats[PAPER_MODE].values():
        used = splits[PAPER_MODE].get(s.split)
        row = [s.split, s.requests, len(used) if used else 0]
        for mode in modes:
            st, sp = stats[mode][s.split], splits[mode].get(s.split)
            row += [sp.truncated if sp else 0, f"{st.length_mean:.1f} ± {st.length_sd:.1f}"]
        rows.append([*row, f"{s.duration_ms_mean:.2f} ± {s.duration_ms_sd:.2f}"])
    columns = ["split", "requests", "used"]
    for mode in modes:
        columns += [f"truncated ({mode})", f"length, events ({mode})"]
    return Table("Dataset: global mode as the paper, and our cutting modes", [*columns, "duration (ms)"], rows)


def training_table(outputs: dict, models: list[str]) -> Table:
    rows = []
    order = lambda kv: (kv[0][0] != PAPER_MODE, kv[0][0], list(LABELS).index(kv[0][1]), kv[0][2])  # noqa: E731
    for (mode, m, seed), o in sorted(outputs.items(), key=order):
        if m not in models or "updates" not in o:
            continue
        rows.append(
            [
                mode,
                LABELS[m],
                seed,
                f"{int(o['parameters']):,}",
                int(o["updates"]),
                int(o.get("threads", 0)) or "–",
                f"{float(o['train_s']):.0f}",
                f"{float(o['tokens']) / max(float(o['train_s']), 1e-9):,.0f}",
                f"{float(o['best_val_loss']):.4f}",
                str(o["stopped_by"]),
                f"{float(o['score_s']):.0f}",
            ]
        )
    columns = [
        "mode",
        "model",
        "seed",
        "parameters",
        "updates",
        "threads",
        "train (s)",
        "tokens/s",
        "best val loss",
        "stopped by",
        "scoring (s)",
    ]
    return Table("Training", columns, rows)


def figures(run: Run, outputs: dict, novelties: list[str], models: list[str]) -> list[str]:
    """Per mode: ROC curves per novelty and score histograms (the paper's score)."""
    seed = min(s for _, _, s in outputs)
    names = []
    for mode in _modes(outputs):
        present = [m for m in models if (mode, m, seed) in outputs]
        cols = 3
        rows = (len(novelties) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.6 * rows), squeeze=False)
        for ax, nov in zip(axes.ravel(), novelties, strict=False):
            for m in present:
                o = outputs[(mode, m, seed)]
                fpr, tpr = roc_curve(o["ppl__test_id"], o[f"ppl__test_ood_{nov}"])
                ax.plot(fpr, tpr, label=f"{LABELS[m]} ({auroc(o['ppl__test_id'], o[f'ppl__test_ood_{nov}']):.2f})")
            ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls=":")
            ax.set_title(nov)
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
            ax.legend(fontsize=7, loc="lower right")
        for ax in axes.ravel()[len(novelties) :]:
            ax.axis("off")
        fig.suptitle(f"ROC per novelty, test set, seed {seed}, {mode_label(mode)} (score: perplexity)")
        fig.tight_layout()
        names.append(f"roc_curves_{mode}.png")
        fig.savefig(run.dir / names[-1], dpi=110)
        plt.close(fig)

        fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3.4), squeeze=False)
        for ax, m in zip(axes[0], present, strict=True):
            o = outputs[(mode, m, seed)]
            series = {"normal": o["ppl__test_id"], **{nov: o[f"ppl__test_ood_{nov}"] for nov in novelties}}
            lo = min(np.log(v).min() for v in series.values())
            hi = max(np.log(v).max() for v in series.values())
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
            for name, v in series.items():
                lw = 1.8 if name == "normal" else 1
                ax.hist(np.log(v), bins=bins, histtype="step", lw=lw, label=name, density=True)
            ax.set_title(LABELS[m])
            ax.set_xlabel("log perplexity")
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"Score distributions, test set, seed {seed}, {mode_label(mode)}")
        fig.tight_layout()
        names.append(f"score_histograms_{mode}.png")
        fig.savefig(run.dir / names[-1], dpi=110)
        plt.close(fig)
    return names


def write_report(
    run: Run,
    cfg: Config,
    ds: TraceDataset,
    splits: dict[str, dict[str, Split]],
    novelties: list[str],
    outputs: dict,
    meta: dict,
    command: str,
    signal: dict | None = None,
) -> Results:
    models = _models(outputs)
    modes = _modes(outputs) or list(splits)
    dets = detections(outputs, novelties, cfg.thresholds)
    ref = meta["reference"]
    targets = evaluate_targets(meta["targets"], outputs, dets)
    tables = {}
    if signal and signal.get("rows"):
        columns, rows = signal_table(signal["rows"])
        title = (
            "Can a behaviour appear in these requests? Signal report (shared.traces): count-classifier AUROC on "
            "disjoint blocks, beside the normal-vs-normal floor"
        )
        tables["signal"] = Table(title, columns, rows)
    tables["verdicts"] = verdicts_table(targets, modes)
    for mode in modes:
        tables[f"detection_{mode}"] = detection_table(dets, mode, novelties, models, ref)
    for mode in modes:
        tables[f"scores_{mode}"] = scores_table(outputs, mode, novelties, models, cfg.score.top_k)
    tables |= {
        "accuracy": accuracy_table(outputs, modes, models, ref),
        "id_vs_id": id_table(outputs, modes, models),
        "training": training_table(outputs, models),
        "dataset": dataset_table(ds, splits),
    }
    figs = figures(run, outputs, novelties, models) if outputs else []
    m = ds.manifest
    train = splits[PAPER_MODE]["train"]
    results = run.new_results(
        command,
        targets,
        tables=tables,
        figures=figs,
        notes=[
            f"data: {ds.root.name} ({m.get('how', '')[:80]}...), kernel {m['host']['kernel']}; train "
            f"{len(train)} requests, {cfg.data.max_eval or 'all'} per evaluation split, "
            f"max {cfg.data.max_tokens} tokens; cutting modes {', '.join(cfg.data.modes)}; models "
            f"{', '.join(cfg.models)}, max {cfg.train.max_minutes} min of training each, "
            f"{cfg.train.workers} at once with {cfg.train.num_threads or 'default'} torch thread(s) each",
            f"scores: mean loss (the paper's perplexity) and our extensions: max per-token surprisal, mean of the "
            f"top {cfg.score.top_k}, summed surprisal of events whose name {cfg.score.unseen_order}-gram never "
            f"occurs in training",
            *([f"signal report not run: {signal['skipped']}"] if signal and signal.get("skipped") else []),
        ],
    )
    run.write_results(results)
    return results
