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
from papers.quant_pretraining.configurations import CONFIGURATIONS, Configuration  # noqa: E402
from papers.quant_pretraining.quantize import QuantSpec  # noqa: E402
from shared.results import Results, Table, Target  # noqa: E402
from shared.run import Run  # noqa: E402

FIGURE = "loss_curves.png"
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


def evaluate_targets(specs: list[dict], outputs: dict, vocab_size: int) -> list[Target]:
    targets = []
    for spec in specs:
        m = spec["measure"]
        if m["kind"] == "delta":
            values = deltas(outputs, m["configuration"], vocab_size)
        elif m["kind"] == "delta_diff":
            a, b = deltas(outputs, m["a"], vocab_size), deltas(outputs, m["b"], vocab_size)
            values = [x - y for x, y in zip(a, b, strict=False)] if a and b else []
        else:  # noise: spread of the baseline over seeds
            base = [val_loss(o, vocab_size) for (n, _), o in outputs.items() if n == "baseline"]
            values = [max(base) - min(base)] if len(base) > 1 else []
        fields = {k: v for k, v in spec.items() if k != "measure"}
        mean = float(np.mean(values)) if values else None
        std = float(np.std(values)) if values else None
        targets.append(Target(**fields, mean=mean, std=std, n=len(values)).judge())
    return targets


def _row(c: Configuration, outs: list[dict], base: list[dict], vocab_size: int, registers: list[str]) -> list:
    loss = [val_loss(o, vocab_size) for o in outs]
    d = [val_loss(o, vocab_size) - val_loss(b, vocab_size) for o, b in zip(outs, base, strict=False)]
    states = ", ".join(f"{k} {_spec(s)}" for k, s in (("m", c.m), ("v", c.v)) if s) or (
        "bnb 8-bit" if c.optimizer != "adamw" else "fp32"
    )
    speed = np.mean([o["tokens_per_s"] for o in outs])
    ppl = [f"{np.mean([math.exp(min(o['final'][f'val_loss_{r}'], 50)) for o in outs]):.1f}" for r in registers]
    unstable = "diverged" if any(o["diverged"] for o in outs) else f"{max(o['max_loss_spike'] for o in outs):.2f}"
    return [
        c.name, _spec(c.w), _spec(c.a), _spec(c.g), states,
        f"{np.mean(loss):.3f}", f"{np.mean(d):+.3f}" if d else "–", *ppl,
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
        if group == "real low precision" and ("w8a8_per_token", 0) in outputs:  # its fake-quant twin
            ax.plot(*_smooth(outputs[("w8a8_per_token", 0)]["curve"]), "--", lw=1.2, label="w8a8_per_token (fake)")
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
        seeds = sorted(s for (n, s) in outputs if n == name)
        base = [outputs[("baseline", s)] for s in seeds if ("baseline", s) in outputs]
        rows.append(_row(CONFIGURATIONS[name], [outputs[(name, s)] for s in seeds], base, vocab, registers))
    for (n, s), o in sorted(outputs.items()):
        if n == "baseline" and s not in cfg.seeds:
            rows.append(_row(CONFIGURATIONS[n], [o], [], vocab, registers))
            rows[-1][0] = f"baseline (seed {s})"
    columns = ["configuration", "W", "A", "G", "Adam states", "val loss", "Δ vs baseline",
               *(f"ppl {r}" for r in registers), "tok/s (shared CPU)", "max spike"]  # fmt: skip
    table = Table(
        f"Final validation loss after {cfg.train.steps} steps x {cfg.train.batch_size} x {cfg.data.seq_len} "
        f"tokens (seeds {cfg.seeds}); Δ vs the baseline of the same seed; max spike = largest rise of the "
        "training loss above its 10-step running minimum after the first 10% of training",
        columns,
        rows,
    )
    figures = [_figure(run, outputs, names)] if outputs else []
    p = next(iter(outputs.values()))["params"] if outputs else 0
    corpus = ", ".join(cfg.data.prose_sources) if cfg.data.source == "prose" else cfg.data.hf_dataset
    results = run.new_results(
        command,
        evaluate_targets(meta["targets"], outputs, vocab),
        tables={"configurations": table},
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
