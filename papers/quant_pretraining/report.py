"""The configuration table (final validation loss, Δ vs baseline, per-register perplexity, throughput),
the targets as margins on Δ, and the loss curves per group of configurations."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from papers.quant_pretraining.config import PAPER_DIR, Config  # noqa: E402
from papers.quant_pretraining.configurations import CONFIGURATIONS, FP8_TRAINING, Configuration  # noqa: E402
from papers.quant_pretraining.quantize import QuantSpec  # noqa: E402
from shared.metrics import t_interval  # noqa: E402
from shared.results import Results, Table, Target, judged_target  # noqa: E402
from shared.run import Run  # noqa: E402

FIGURE = "loss_curves.png"
GAP_FIGURE = "gap_over_training.png"
GRAN = {"tensor": "tensor", "row": "row", "column": "col"}


def _spec(s: QuantSpec | None) -> str:
    if s is None:
        return "–"
    return f"{s.bits}b {GRAN[s.granularity]}" + ("" if s.symmetric else " asym")


def val_loss(out: dict, vocab_size: int) -> float:
    """The final validation loss; a diverged run counts as a uniform predictor, ln(vocab)."""
    v = out["final"]["val_loss"]
    return v if math.isfinite(v) and not out["diverged"] else math.log(vocab_size)


def deltas(outputs: dict, name: str, vocab_size: int) -> list[float]:
    """Δ val loss of `name` against the baseline of the same seed, one per seed both ran."""
    seeds = sorted(s for (n, s) in outputs if n == name)
    return [
        val_loss(outputs[(name, s)], vocab_size) - val_loss(outputs[("baseline", s)], vocab_size)
        for s in seeds
        if ("baseline", s) in outputs
    ]


def target_values(measure: dict, outputs: dict, vocab_size: int) -> tuple[list[float], bool]:
    """The per-seed values of one target's measure, and whether they are paired differences (which get a t
    interval over seeds). delta: Δ of a configuration; delta_diff: Δa − Δb at the same seed; noise: the
    spread (max − min) of the baseline's val loss over its seeds, one value."""
    kind = measure["kind"]
    if kind == "delta":
        return deltas(outputs, measure["configuration"], vocab_size), True
    if kind == "delta_diff":
        a = dict(zip(_seeds(outputs, measure["a"]), deltas(outputs, measure["a"], vocab_size), strict=True))
        b = dict(zip(_seeds(outputs, measure["b"]), deltas(outputs, measure["b"], vocab_size), strict=True))
        return [a[s] - b[s] for s in sorted(a.keys() & b.keys())], True
    if kind == "noise":
        base = [val_loss(o, vocab_size) for (n, _), o in outputs.items() if n == "baseline"]
        return ([max(base) - min(base)] if len(base) > 1 else []), False
    raise ValueError(f"measure kind {kind!r}; valid: delta, delta_diff, noise")


def _seeds(outputs: dict, name: str) -> list[int]:
    return [s for s in sorted(s for (n, s) in outputs if n == name) if ("baseline", s) in outputs]


def evaluate_targets(specs: list[dict], outputs: dict, vocab_size: int) -> list[Target]:
    """Each target judged on its per-seed values; a difference measured at two or more seeds carries the 95%
    t interval of its mean (shared.metrics.t_interval), so a margin the seeds cannot settle reads "not
    resolvable"."""
    targets = []
    for spec in specs:
        values, paired = target_values(spec["measure"], outputs, vocab_size)
        ci = t_interval(values) if paired and len(values) >= 2 else None
        targets.append(judged_target({k: v for k, v in spec.items() if k != "measure"}, values, ci))
    return targets


def _ci_cell(values: list[float]) -> str:
    """ "+0.057 ± 0.004": the mean and the half-width of its 95% t interval (one seed: the value alone)."""
    if not values:
        return "–"
    if len(values) < 2:
        return f"{values[0]:+.3f}"
    lo, hi = t_interval(values)
    return f"{np.mean(values):+.3f} ± {(hi - lo) / 2:.3f}"


def gap_table(outputs: dict, names: list[str]) -> Table:
    """Δ val loss vs the baseline of the same seed at every evaluation step: how each gap evolves with
    training length (the same run read at its checkpoints, not shorter runs)."""
    steps = sorted({e["step"] for o in outputs.values() for e in o["evals"]})
    rows = []
    for name in names:
        if name == "baseline":
            continue
        seeds = _seeds(outputs, name)
        row: list = [name, len(seeds)]
        for step in steps:
            vals = []
            for s in seeds:
                a = {e["step"]: e["val_loss"] for e in outputs[(name, s)]["evals"]}
                b = {e["step"]: e["val_loss"] for e in outputs[("baseline", s)]["evals"]}
                if step in a and step in b and math.isfinite(a[step]):
                    vals.append(a[step] - b[step])
            row.append(_ci_cell(vals))
        rows.append(row)
    return Table(
        "Δ val loss vs the baseline of the same seed at each evaluation step (mean ± half-width of the 95% t "
        "interval over seeds): how the gap grows or closes with training length",
        ["configuration", "seeds", *(f"step {s}" for s in steps)],
        rows,
    )


def _row(c: Configuration, outs: list[dict], base: list[dict], vocab_size: int, registers: list[str]) -> list:
    loss = [val_loss(o, vocab_size) for o in outs]
    d = [val_loss(o, vocab_size) - val_loss(b, vocab_size) for o, b in zip(outs, base, strict=False)]
    states = ", ".join(f"{k} {_spec(s)}" for k, s in (("m", c.m), ("v", c.v)) if s) or (
        "bnb 8-bit" if c.optimizer != "adamw" else "fp32"
    )
    speed = np.mean([o["tokens_per_s"] for o in outs])
    ppl = [f"{np.mean([math.exp(min(o['final'][f'val_loss_{r}'], 50)) for o in outs]):.1f}" for r in registers]
    unstable = "diverged" if any(o["diverged"] for o in outs) else f"{max(o['max_loss_spike'] for o in outs):.2f}"
    w, a, g = (
        (_spec(c.w), _spec(c.a), _spec(c.g)) if c.gemm not in FP8_TRAINING else ("fp8 e4m3", "fp8 e4m3", "fp8 e5m2")
    )
    return [
        c.name, w, a, g, states,
        len(outs), f"{np.mean(loss):.3f}", _ci_cell(d), *ppl,
        f"{speed:,.0f}", unstable,
    ]  # fmt: skip


def _figure(run: Run, outputs: dict, names: list[str]) -> str:
    groups = ["8-bit layers", "ablations", "optimizer states", "real low precision"]
    fig, axes = plt.subplots(1, len(groups), figsize=(19, 4.2), sharey=True)
    base = outputs.get(("baseline", min(s for (n, s) in outputs if n == "baseline")))
    for ax, group in zip(axes, groups, strict=True):
        if base:
            ax.plot(*_smooth(base["curve"]), color="black", lw=2, label="baseline")
        for name in names:
            c = CONFIGURATIONS[name]
            seed = min(s for (n, s) in outputs if n == name)
            if c.group == group:
                ax.plot(*_smooth(outputs[(name, seed)]["curve"]), lw=1.2, label=name)
        ax.set_title(group)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("training loss (smoothed over 10 steps)")
    lo = min(min(o["curve"]["loss"]) for o in outputs.values() if all(map(math.isfinite, o["curve"]["loss"])))
    axes[0].set_ylim(lo - 0.2, lo + 3.0)
    fig.tight_layout()
    fig.savefig(run.dir / FIGURE, dpi=110)
    plt.close(fig)
    return FIGURE


def _gap_figure(run: Run, outputs: dict, names: list[str]) -> str:
    """Δ val loss vs the baseline at each evaluation step, mean and 95% t interval over seeds."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in names:
        seeds = _seeds(outputs, name)
        if name == "baseline" or not seeds:
            continue
        steps = [e["step"] for e in outputs[(name, seeds[0])]["evals"]]
        d = np.array([[a["val_loss"] - b["val_loss"] for a, b in zip(outputs[(name, s)]["evals"],
                       outputs[("baseline", s)]["evals"], strict=True)] for s in seeds])  # fmt: skip
        mean = d.mean(0)
        line = ax.plot(steps, mean, marker="o", ms=3, label=f"{name} ({len(seeds)} seed{'s' * (len(seeds) > 1)})")
        if len(seeds) > 1:
            band = np.array([t_interval(col) for col in d.T])
            ax.fill_between(steps, band[:, 0], band[:, 1], color=line[0].get_color(), alpha=0.2)
    ax.axhline(0.05, color="grey", ls="--", lw=1)
    ax.axhline(-0.05, color="grey", ls="--", lw=1)
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_xlabel("step")
    ax.set_ylabel("Δ val loss vs baseline (nats)")
    ax.set_title("The gap over training (bands: 95% t interval over seeds; dashed: the ±0.05 margin)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(run.dir / GAP_FIGURE, dpi=110)
    plt.close(fig)
    return GAP_FIGURE


def _smooth(curve: dict, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(curve["loss"], dtype=float)
    k = max(1, min(k, len(y)))
    return np.asarray(curve["step"])[k - 1 :], np.convolve(y, np.ones(k) / k, mode="valid")


def write_report(run: Run, cfg: Config, outputs: dict, command: str) -> Results:
    meta = yaml.safe_load((PAPER_DIR / "paper.yaml").read_text())
    any_out = next(iter(outputs.values()), None)
    vocab = cfg.data.vocab_size
    registers = sorted(k.removeprefix("val_loss_") for k in (any_out["final"] if any_out else {}) if k != "val_loss")
    names = [n for n in cfg.configurations if any(k[0] == n for k in outputs)]
    rows = []
    for name in names:
        seeds = _seeds(outputs, name)
        base = [outputs[("baseline", s)] for s in seeds]
        rows.append(_row(CONFIGURATIONS[name], [outputs[(name, s)] for s in seeds], base, vocab, registers))
    for (n, s), o in sorted(outputs.items()):
        if n == "baseline" and s not in cfg.seeds:
            rows.append(_row(CONFIGURATIONS[n], [o], [], vocab, registers))
            rows[-1][0] = f"baseline (seed {s})"
    columns = ["configuration", "W", "A", "G", "Adam states", "seeds", "val loss", "Δ vs baseline (95% CI)",
               *(f"ppl {r}" for r in registers), "tok/s (shared CPU)", "max spike"]  # fmt: skip
    table = Table(
        f"Final validation loss after {cfg.train.steps} steps x {cfg.train.batch_size} x {cfg.data.seq_len} "
        f"tokens (seeds {cfg.seeds}; {', '.join(cfg.one_seed) or 'none'} at the first only); Δ vs the baseline of "
        "the same seed, mean ± half-width of the 95% t interval over seeds; val loss and perplexities are means over "
        "seeds; max spike = largest rise of the training loss above its 10-step running minimum after the first "
        "10% of training",
        columns,
        rows,
    )
    figures = [_figure(run, outputs, names), _gap_figure(run, outputs, names)] if outputs else []
    p = next(iter(outputs.values()))["params"] if outputs else 0
    corpus = ", ".join(cfg.data.prose_sources) if cfg.data.source == "prose" else cfg.data.hf_dataset
    results = run.new_results(
        command,
        evaluate_targets(meta["targets"], outputs, vocab),
        tables={"configurations": table, "gap_over_training": gap_table(outputs, names)},
        figures=figures,
        notes=[
            f"GPT-2 architecture, {cfg.model.n_layer} layers x {cfg.model.n_embd} wide, {cfg.model.n_head} heads, "
            f"{p:,} parameters (position embeddings excluded); vocabulary {vocab}; "
            f"corpus: {cfg.data.source} ({corpus})",
            "tok/s is measured with two runs at a time and other jobs on the CPU, so it does not rank the "
            "configurations; `make bench PAPER=quant_pretraining` measures the overheads in one run (README)",
        ],
    )
    run.write_results(results)
    return results
