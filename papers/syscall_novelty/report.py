"""Turn scores into results.json: per-novelty AUROC/F1 beside the paper's, LM accuracy, the ID-vs-ID
check, the dataset table, training statistics, ROC curves and score histograms."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from papers.syscall_novelty.config import Config  # noqa: E402
from papers.syscall_novelty.data import Split  # noqa: E402
from papers.syscall_novelty.evaluate import Detection, detect, roc_curve  # noqa: E402
from shared.metrics import auroc  # noqa: E402
from shared.results import Results, Table, Target  # noqa: E402
from shared.run import Run  # noqa: E402
from shared.traces import TraceDataset  # noqa: E402

LABELS = {
    "lstm": "LSTM",
    "transformer": "Transformer",
    "longformer": "Longformer",
    "ngram3": "3-gram",
    "ngram4": "4-gram",
}
NEURAL = ("lstm", "transformer", "longformer")
FIGURES = ("roc_curves.png", "score_histograms.png")


def _models(outputs: dict) -> list[str]:
    present = {m for m, _ in outputs}
    return [m for m in LABELS if m in present]


def detections(outputs: dict, novelties: list[str], n: int) -> dict[tuple[str, str, int], Detection]:
    out = {}
    for (model, seed), o in outputs.items():
        for nov in novelties:
            out[(model, nov, seed)] = detect(
                o["ppl__valid_id"], o[f"ppl__valid_ood_{nov}"], o["ppl__test_id"], o[f"ppl__test_ood_{nov}"], n
            )
    return out


def _mean(values: list[float]) -> tuple[float | None, float | None, int]:
    if not values:
        return None, None, 0
    return float(np.mean(values)), float(np.std(values)), len(values)


def evaluate_targets(specs: list[dict], outputs: dict, dets: dict) -> list[Target]:
    seeds = sorted({s for _, s in outputs})
    targets = []
    for spec in specs:
        m = spec["measure"]
        values = []
        for seed in seeds:
            if m["kind"] == "auroc" and (m["model"], m["novelty"], seed) in dets:
                values.append(dets[(m["model"], m["novelty"], seed)].auroc)
            elif m["kind"] == "id_auroc" and (m["model"], seed) in outputs:
                o = outputs[(m["model"], seed)]
                values.append(auroc(o["ppl__valid_id"], o["ppl__test_id"]))
            elif m["kind"] == "ngram_gap" and ("ngram3", m["novelty"], seed) in dets:
                neural = [dets[(k, m["novelty"], seed)].auroc for k in NEURAL if (k, m["novelty"], seed) in dets]
                if neural:
                    values.append(max(neural) - dets[("ngram3", m["novelty"], seed)].auroc)
        mean, std, n = _mean(values)
        fields = {k: v for k, v in spec.items() if k != "measure"}
        targets.append(Target(**fields, mean=mean, std=std, n=n).judge())
    return targets


def detection_table(dets: dict, novelties: list[str], models: list[str], ref: dict) -> Table:
    columns = ["novelty"] + [f"{LABELS[m]} AUROC / F1" for m in models]
    rows = []
    for nov in novelties:
        row = [nov]
        for m in models:
            vals = [d for (mm, nn, _), d in dets.items() if mm == m and nn == nov]
            a, f = np.mean([d.auroc for d in vals]) * 100, np.mean([d.f1 for d in vals]) * 100
            paper = ref["detection"].get(nov, {}).get("ngram3" if m == "ngram4" else m)
            if m == "ngram4":
                p4 = ref["ngram4_auroc"].get(nov)
                paper_txt = f"{p4:.1f}" if p4 is not None else "–"
            else:
                paper_txt = f"{paper[0]:.1f} / {paper[1]:.1f}" if paper else "–"
            row.append(f"{a:.1f} / {f:.1f} (paper {paper_txt})")
        rows.append(row)
    return Table("Test AUROC / F1 (%) per novelty, ours (the paper's)", columns, rows)


def accuracy_table(outputs: dict, models: list[str], ref: dict) -> Table:
    rows = []
    for m in models:
        accs = [o["correct"] / max(o["total"], 1) * 100 for (mm, _), o in outputs.items() if mm == m]
        paper = ref["lm_accuracy"].get(m)
        rows.append([LABELS[m], f"{np.mean(accs):.1f}", "–" if paper is None else f"{paper:.1f}"])
    return Table("Next-syscall accuracy on test ID (%)", ["model", "ours", "paper"], rows)


def id_table(outputs: dict, models: list[str]) -> Table:
    rows = []
    for m in models:
        vals = [auroc(o["ppl__valid_id"], o["ppl__test_id"]) for (mm, _), o in outputs.items() if mm == m]
        rows.append([LABELS[m], f"{np.mean(vals):.3f}"])
    return Table("Protocol check: valid ID vs test ID AUROC (0.5 = indistinguishable)", ["model", "AUROC"], rows)


def dataset_table(ds: TraceDataset, splits: dict[str, Split]) -> Table:
    rows = []
    for s in ds.stats():
        used = splits.get(s.split)
        rows.append(
            [
                s.split,
                s.requests,
                len(used) if used else 0,
                used.truncated if used else 0,
                f"{s.length_mean:.1f} ± {s.length_sd:.1f}",
                f"{s.duration_ms_mean:.2f} ± {s.duration_ms_sd:.2f}",
            ]
        )
    columns = ["split", "requests", "used", "truncated", "length (events)", "duration (ms)"]
    return Table("Dataset (global mode, as the paper)", columns, rows)


def training_table(outputs: dict, models: list[str]) -> Table:
    rows = []
    for m in models:
        for (mm, seed), o in sorted(outputs.items(), key=lambda kv: kv[0][1]):
            if mm != m or "updates" not in o:
                continue
            rows.append(
                [
                    LABELS[m],
                    seed,
                    f"{int(o['parameters']):,}",
                    int(o["updates"]),
                    f"{float(o['train_s']):.0f}",
                    f"{float(o['tokens']) / max(float(o['train_s']), 1e-9):,.0f}",
                    f"{float(o['best_val_loss']):.4f}",
                    str(o["stopped_by"]),
                    f"{float(o['score_s']):.0f}",
                ]
            )
    columns = [
        "model",
        "seed",
        "parameters",
        "updates",
        "train (s)",
        "tokens/s",
        "best val loss",
        "stopped by",
        "scoring (s)",
    ]
    return Table("Training", columns, rows)


def figures(run: Run, outputs: dict, novelties: list[str], models: list[str]) -> list[str]:
    seed = min(s for _, s in outputs)
    cols = 3
    rows = (len(novelties) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.6 * rows), squeeze=False)
    for ax, nov in zip(axes.ravel(), novelties, strict=False):
        for m in models:
            o = outputs[(m, seed)]
            fpr, tpr = roc_curve(o["ppl__test_id"], o[f"ppl__test_ood_{nov}"])
            ax.plot(fpr, tpr, label=f"{LABELS[m]} ({auroc(o['ppl__test_id'], o[f'ppl__test_ood_{nov}']):.2f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls=":")
        ax.set_title(nov)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes.ravel()[len(novelties) :]:
        ax.axis("off")
    fig.suptitle(f"ROC per novelty, test set, seed {seed} (score: perplexity)")
    fig.tight_layout()
    fig.savefig(run.dir / FIGURES[0], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.4), squeeze=False)
    for ax, m in zip(axes[0], models, strict=True):
        o = outputs[(m, seed)]
        series = {"normal": o["ppl__test_id"], **{nov: o[f"ppl__test_ood_{nov}"] for nov in novelties}}
        lo = min(np.log(v).min() for v in series.values())
        hi = max(np.log(v).max() for v in series.values())
        bins = np.linspace(lo, hi, 40)
        for name, v in series.items():
            ax.hist(np.log(v), bins=bins, histtype="step", lw=1.8 if name == "normal" else 1, label=name, density=True)
        ax.set_title(LABELS[m])
        ax.set_xlabel("log perplexity")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Score distributions, test set, seed {seed}")
    fig.tight_layout()
    fig.savefig(run.dir / FIGURES[1], dpi=110)
    plt.close(fig)
    return list(FIGURES)


def write_report(
    run: Run,
    cfg: Config,
    ds: TraceDataset,
    splits: dict[str, Split],
    novelties: list[str],
    outputs: dict,
    meta: dict,
    command: str,
) -> Results:
    models = _models(outputs)
    dets = detections(outputs, novelties, cfg.thresholds)
    ref = meta["reference"]
    tables = {
        "detection": detection_table(dets, novelties, models, ref),
        "accuracy": accuracy_table(outputs, models, ref),
        "id_vs_id": id_table(outputs, models),
        "training": training_table(outputs, models),
        "dataset": dataset_table(ds, splits),
    }
    figs = figures(run, outputs, novelties, models) if outputs else []
    m = ds.manifest
    results = run.new_results(
        command,
        evaluate_targets(meta["targets"], outputs, dets),
        tables=tables,
        figures=figs,
        notes=[
            f"data: {ds.root.name} ({m.get('how', '')[:80]}...), kernel {m['host']['kernel']}; train "
            f"{len(splits['train'])} requests, {cfg.data.max_eval or 'all'} per evaluation split, "
            f"max {cfg.data.max_tokens} tokens; models {', '.join(cfg.models)}, max {cfg.train.max_minutes} "
            f"min of training each"
        ],
    )
    run.write_results(results)
    return results
