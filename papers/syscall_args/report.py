"""The ablation table (accuracy per model x task x argument setting, mean ± std over seeds) beside the
paper's, the gains over name only and over the compensated model, n-gram baselines, a bar figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from papers.syscall_args.config import Config  # noqa: E402
from shared.report import mean_std_cell  # noqa: E402
from shared.results import Results, Table, Target  # noqa: E402
from shared.run import Run  # noqa: E402

LABELS = {"lstm_lm": "LSTM LM", "transformer_lm": "Transformer LM", "transformer_mlm": "Transformer MLM"}
SETTING_LABELS = {
    "name": "name only",
    "name_64": "name, emb 64",
    "time": "+time",
    "call": "+call",
    "proc": "+proc",
    "all": "all arguments",
}  # noqa: E501
FIGURE = "ablation.png"


def _acc(outputs: dict, experiment: str, setting: str) -> list[float]:
    return [o["test_acc"] * 100 for (e, s, _), o in sorted(outputs.items()) if e == experiment and s == setting]


def _gaps(outputs: dict, experiment: str, a: str, b: str) -> list[float]:
    seeds = sorted({sd for (e, s, sd) in outputs if e == experiment and s in (a, b)})
    out = []
    for sd in seeds:
        if (experiment, a, sd) in outputs and (experiment, b, sd) in outputs:
            out.append((outputs[(experiment, a, sd)]["test_acc"] - outputs[(experiment, b, sd)]["test_acc"]) * 100)
    return out


def _cell(values: list[float]) -> str:
    return mean_std_cell(values, digits=1)


def evaluate_targets(specs: list[dict], outputs: dict, ngrams: dict) -> list[Target]:
    targets = []
    for spec in specs:
        m = spec["measure"]
        if m["kind"] == "gap":
            values = _gaps(outputs, m["experiment"], m["a"], m["b"])
        else:  # best all-arguments LM minus the best n-gram, per seed
            seeds = sorted({sd for (_, s, sd) in outputs if s == "all"})
            best_ngram = max((v["accuracy"] * 100 for v in ngrams.values()), default=None)
            values = []
            for sd in seeds:
                lm = [
                    outputs[(e, "all", sd)]["test_acc"] * 100
                    for e in ("lstm_lm", "transformer_lm")
                    if (e, "all", sd) in outputs
                ]
                if lm and best_ngram is not None:
                    values.append(max(lm) - best_ngram)
        fields = {k: v for k, v in spec.items() if k != "measure"}
        mean = float(np.mean(values)) if values else None
        std = float(np.std(values)) if values else None
        targets.append(Target(**fields, mean=mean, std=std, n=len(values)).judge())
    return targets


def write_report(
    run: Run, cfg: Config, outputs: dict, ngrams: dict, windows: dict, meta: dict, command: str
) -> Results:
    ref = meta["reference"]
    experiments = [e for e in cfg.experiments if any(k[0] == e for k in outputs)]
    settings = [s for s in cfg.settings if any(k[1] == s for k in outputs)]
    rows = []
    for e in experiments:
        rows.append([f"{LABELS[e]} (ours)"] + [_cell(_acc(outputs, e, s)) for s in settings])
        rows.append([f"{LABELS[e]} (paper)"] + [f"{ref['accuracy'][e][s]:.1f}" for s in settings])
    ablation = Table("Test accuracy (%) by argument setting, ours (mean ± std over seeds) and the paper's (Requests)",
                     ["model / task"] + [SETTING_LABELS[s] for s in settings], rows)  # fmt: skip
    gain_rows = []
    for e in experiments:
        for b in ("name", "name_64"):
            if b in settings and "all" in settings:
                paper = ref["accuracy"][e]["all"] - ref["accuracy"][e][b]
                gain_rows.append(
                    [LABELS[e], f"all − {SETTING_LABELS[b]}", _cell(_gaps(outputs, e, "all", b)), f"{paper:.1f}"]
                )
    gains = Table("Gain of all arguments (points)", ["model / task", "difference", "ours", "paper"], gain_rows)
    ngram_rows = [
        [f"{o}-gram", f"{v['accuracy'] * 100:.1f}", f"{ref['ngram_valid_accuracy'].get(o, float('nan')):.1f}"]
        for o, v in sorted(ngrams.items())
    ]  # noqa: E501
    ngram = Table("n-gram next-name accuracy on the validation windows (%)", ["model", "ours", "paper"], ngram_rows)
    runs = Table(
        "Runs (mean over seeds)",
        ["model / task", "setting", "parameters", "updates", "train (s)", "validation acc"],
        [
            [LABELS[e], SETTING_LABELS[s],
             f"{int(np.mean([o['parameters'] for (ee, ss, _), o in outputs.items() if ee == e and ss == s])):,}",
             f"{np.mean([o['updates'] for (ee, ss, _), o in outputs.items() if ee == e and ss == s]):.0f}",
             f"{np.mean([o['seconds'] for (ee, ss, _), o in outputs.items() if ee == e and ss == s]):.0f}",
             f"{np.mean([o['val_acc'] for (ee, ss, _), o in outputs.items() if ee == e and ss == s]) * 100:.1f}"]
            for e in experiments for s in settings if any(k[:2] == (e, s) for k in outputs)
        ],
    )  # fmt: skip
    figures = []
    if outputs:
        fig, ax = plt.subplots(figsize=(9, 3.8))
        width = 0.8 / max(len(settings), 1)
        for i, s in enumerate(settings):
            means = [np.mean(_acc(outputs, e, s)) if _acc(outputs, e, s) else np.nan for e in experiments]
            stds = [np.std(_acc(outputs, e, s)) if _acc(outputs, e, s) else 0 for e in experiments]
            ax.bar(np.arange(len(experiments)) + i * width, means, width, yerr=stds, label=SETTING_LABELS[s])
        ax.set_xticks(np.arange(len(experiments)) + width * (len(settings) - 1) / 2, [LABELS[e] for e in experiments])
        ax.set_ylabel("test accuracy (%)")
        lo = min(
            np.nanmin([np.mean(_acc(outputs, e, s)) for s in settings if _acc(outputs, e, s)]) for e in experiments
        )
        ax.set_ylim(max(0, lo - 10), 100)
        ax.legend(fontsize=7, ncol=3)
        ax.set_title("Argument ablation (mean ± std over seeds)")
        fig.tight_layout()
        fig.savefig(run.dir / FIGURE, dpi=110)
        plt.close(fig)
        figures.append(FIGURE)
    results = run.new_results(
        command,
        evaluate_targets(meta["targets"], outputs, ngrams),
        tables={"ablation": ablation, "gains": gains, "ngram": ngram, "runs": runs},
        figures=figures,
        notes=[
            f"windows of {cfg.data.window} syscall events from the normal blocks: train {len(windows['train'].x)}, "
            f"validation {len(windows['valid_id'].x)}, test {len(windows['test_id'].x)}; each run capped at "
            f"{cfg.train.max_seconds or 'no'} s of training"
        ],
    )
    run.write_results(results)
    return results
