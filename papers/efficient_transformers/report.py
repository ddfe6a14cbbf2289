"""Turn a run's summary into results.json: targets with verdicts, the efficiency tables (time,
memory, crossover), the LRA-format accuracy table, the general approaches, and the plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from papers.efficient_transformers.attention import FAMILIES, LABELS
from papers.efficient_transformers.targets import (
    acc_gap,
    accuracies,
    accuracy_interval,
    crossover,
    evaluate,
    fused_reference,
    ok_records,
    step_records,
)
from shared.results import Results, Table
from shared.run import Run

FIGURES = ("time_vs_length.png", "memory_vs_length.png", "forward_time_vs_length.png")
TASK_LABELS = {
    "listops": "ListOps (generated)",
    "kjv": "KJV bytes (text)",
    "lra_listops": "ListOps",
    "lra_text": "Text",
}
LRA_COLUMNS = {"listops": "listops", "lra_listops": "listops", "kjv": "text", "lra_text": "text"}


def _records(summary: dict) -> list[dict]:
    return summary.get("efficiency", {}).get("records", [])


def _lengths(summary: dict) -> list[int]:
    return sorted({r["n"] for r in _records(summary)})


def _variants(summary: dict) -> list[str]:
    seen: list[str] = []
    for r in _records(summary):
        if r["variant"] not in seen:
            seen.append(r["variant"])
    return seen


def _iqr(times: list[float]) -> tuple[float, float]:
    q1, q3 = np.percentile(times, [25, 75])
    return float(q1), float(q3)


def _cell(r: dict | None, key: str, digits: int, spread_key: str | None) -> str:
    """A table cell: the value, with the interquartile range of the timing rounds when asked for."""
    if r is None:
        return "–"
    if r["status"] != "ok":
        return r["status"]
    if key not in r:
        return "–"
    text = f"{r[key]:.{digits}f}"
    if spread_key and r.get(spread_key):
        q1, q3 = _iqr(r[spread_key])
        text += f" ({q1:.{digits}f}–{q3:.{digits}f})"
    return text


def sweep_table(summary: dict, key: str, title: str, digits: int = 1, spread_key: str | None = None) -> Table:
    """Variants x lengths of `key`; a failed point shows its status (OOM, unavailable); with spread_key,
    each time is followed by the interquartile range of its timing rounds."""
    lengths = _lengths(summary)
    cells = {(r["variant"], r["n"]): r for r in _records(summary)}
    rows = []
    for v in _variants(summary):
        rows.append([LABELS[v], FAMILIES[v], *[_cell(cells.get((v, n)), key, digits, spread_key) for n in lengths]])
    return Table(title=title, columns=["variant", "family", *[str(n) for n in lengths]], rows=rows)


def _case_label(r: dict) -> str:
    label = "Transformer (naive)" if r["variant"] == "naive" else LABELS[r["variant"]]
    return label + (f" k={r['k']}" if r.get("k") is not None else "")


def step_table(summary: dict, key: str, title: str, digits: int, spread_key: str | None) -> Table:
    """Cases (variants; Linformer once per k) x lengths of the whole-model training step."""
    recs = summary.get("step", {}).get("records", [])
    lengths = sorted({r["n"] for r in recs})
    cases: list[str] = []
    for r in recs:
        if r["case"] not in cases:
            cases.append(r["case"])
    cases.sort(key=lambda c: c.startswith("linformer k="))  # the k sweep last
    at = {(r["case"], r["n"]): r for r in recs}
    rows = []
    for c in cases:
        first = next(r for r in recs if r["case"] == c)
        cells = [_cell(at.get((c, n)), key, digits, spread_key) for n in lengths]
        rows.append([_case_label(first), FAMILIES[first["variant"]], *cells])
    return Table(title=title, columns=["model", "family", *[str(n) for n in lengths]], rows=rows)


def linformer_k_table(summary: dict) -> Table:
    """How the low-rank verdict depends on Linformer's k: its training-step memory at each k and length,
    as a ratio to the lightest model of another family at the same length."""
    recs = step_records(summary)
    lengths = sorted({r["n"] for r in recs})
    lra_k = summary.get("step", {}).get("linformer_k")
    others = {
        n: min(
            (
                r["peak_mb"]
                for r in recs
                if r["n"] == n and r["case"] == r["variant"] and r["family"] != "low-rank" and "peak_mb" in r
            ),
            default=None,
        )
        for n in lengths
    }
    ks = sorted({r["k"] for r in recs if r["variant"] == "linformer"})
    rows = []
    for k in ks:
        row: list = [f"{k}" + (" (LRA)" if k == lra_k else "")]
        for n in lengths:
            r = next((r for r in recs if r["variant"] == "linformer" and r["k"] == k and r["n"] == n), None)
            if r is None or "peak_mb" not in r:
                row.append("–")
                continue
            ratio = f" ({r['peak_mb'] / others[n]:.2f}×)" if others[n] else ""
            row.append(f"{r['peak_mb']:.1f}{ratio}")
        rows.append(row)
    return Table(
        title="Linformer's training-step peak memory (MB) by k, and in parentheses ÷ the lightest non-low-rank "
        "LRA model at that length (below 1: low rank is lightest)",
        columns=["k", *[f"N = {n}" for n in lengths]],
        rows=rows,
    )


def accuracy_diff_table(summary: dict) -> Table:
    """Every model's accuracy minus the Transformer's, per task and averaged, with the paired 95% bootstrap
    interval over test items: the scale of difference this run can resolve."""
    acc = accuracies(summary)
    tasks = list(summary.get("quality", {}))
    variants = sorted({v for _, v in acc if v != "sdpa"})
    rows = []
    for v in variants:
        row: list = [LABELS[v], FAMILIES[v]]
        for task in [*tasks, None]:
            stat = acc_gap(v, "sdpa", task)
            value = stat(acc)
            if value is None:
                row.append("–")
                continue
            ci = accuracy_interval(summary, stat, [v, "sdpa"])
            row.append(f"{value:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""))
        rows.append(row)
    return Table(
        title="Accuracy minus the Transformer's (points) with its paired 95% bootstrap interval over test items",
        columns=["model", "family", *[TASK_LABELS.get(t, t) for t in tasks], "mean over tasks"],
        rows=rows,
    )


def _rounds(summary: dict) -> int:
    return len(next((r["fwdbwd_all_ms"] for r in ok_records(summary) if r.get("fwdbwd_all_ms")), []))


def crossover_table(summary: dict) -> Table:
    ref = fused_reference(summary)
    recs = ok_records(summary)
    n_max = max((r["n"] for r in recs if r["variant"] == ref), default=None)
    at = {(r["variant"], r["n"]): r for r in recs}
    rows = []
    for v in _variants(summary):
        if FAMILIES[v] == "exact" or n_max is None:
            continue
        c = crossover(summary, v)
        mine, theirs = at.get((v, n_max)), at.get((ref, n_max))
        speed = f"{theirs['fwdbwd_ms'] / mine['fwdbwd_ms']:.2f}x" if mine and theirs and mine["fwdbwd_ms"] else "–"
        mem = f"{theirs['peak_mb'] / mine['peak_mb']:.2f}x" if mine and theirs and mine["peak_mb"] > 0 else "–"
        rows.append([LABELS[v], FAMILIES[v], "never (≤ " + str(n_max) + ")" if c is None else str(c), speed, mem])
    return Table(
        title=f"Crossover vs exact fused attention ({LABELS.get(ref, ref)}), forward+backward; "
        f"speed-up and memory saving at N = {n_max}",
        columns=["variant", "family", "faster from N =", f"speed-up at {n_max}", f"memory saving at {n_max}"],
        rows=rows,
    )


def fused_peak_table(summary: dict) -> Table:
    eff = summary.get("efficiency", {})
    peak = eff.get("matmul_tflops")
    rows = []
    for r in ok_records(summary):
        if FAMILIES[r["variant"]] == "exact" and "fwdbwd_tflops" in r:
            frac = f"{100 * r['fwdbwd_tflops'] / peak:.1f}%" if peak else "–"
            rows.append([LABELS[r["variant"]], r["n"], f"{1000 * r['fwdbwd_tflops']:.1f}", frac])
    return Table(
        title=f"Exact attention throughput (fwd+bwd GFLOP/s, FlashAttention's FLOP count) as a share of the "
        f"measured dense matmul rate ({1000 * (peak or 0):.0f} GFLOP/s, {eff.get('dtype')}, "
        f"{eff.get('threads')} threads)",
        columns=["variant", "N", "GFLOP/s", "share of matmul peak"],
        rows=rows,
    )


def accuracy_table(summary: dict, meta: dict) -> Table:
    tasks = list(summary.get("quality", {}))
    ref = meta.get("reference", {}).get("lra_accuracy", {})
    variants = sorted({v for t in tasks for v in summary["quality"][t]}, key=lambda v: ref.get(v, {}).get("avg", 0.0))
    rows = []
    for v in variants:
        accs = []
        row: list = [LABELS[v] if v != "sdpa" else "Transformer (SDPA)", FAMILIES[v]]
        for t in tasks:
            per_seed = summary["quality"][t].get(v)
            if per_seed:
                a = 100 * float(np.mean(list(per_seed.values())))
                accs.append(a)
                row.append(f"{a:.2f}")
            else:
                row.append("–")
        row.append(f"{np.mean(accs):.2f}" if accs else "–")
        lra = ref.get(v, {})
        row += [lra.get(LRA_COLUMNS[t], "–") for t in tasks] + [lra.get("avg", "–")]
        rows.append(row)
    majority = summary.get("majority", {})
    rows.append(
        [
            "majority class",
            "–",
            *[f"{100 * majority.get(t, float('nan')):.2f}" for t in tasks],
            "–",
            *["–" for _ in tasks],
            "–",
        ]
    )
    columns = [
        "model",
        "family",
        *[f"{TASK_LABELS.get(t, t)} ours" for t in tasks],
        "avg ours",
        *[f"LRA {LRA_COLUMNS[t]}" for t in tasks],
        "LRA avg (5 tasks)",
    ]
    return Table(
        title="Test accuracy (%) in LRA's format, ours beside LRA's published numbers", columns=columns, rows=rows
    )


def general_table(summary: dict) -> Table:
    gen = summary.get("general", {})
    recs = gen.get("records", [])
    base = next((r for r in recs if r["approach"] == "baseline" and r["status"] == "ok"), None)
    rows = []
    for r in recs:
        if r["status"] != "ok":
            rows.append([r["approach"], r["status"], "–", "–", "–", "–"])
            continue
        t = f"{r['step_ms'] / base['step_ms']:.2f}" if base and base["step_ms"] else "–"
        m = f"{r['peak_mb'] / base['peak_mb']:.2f}" if base and base["peak_mb"] else "–"
        rows.append([r["approach"], f"{r['step_ms']:.1f}", f"{r['peak_mb']:.1f}", r["params"], t, m])
    return Table(
        title=f"General approaches: one training step of the {gen.get('layers')}-layer model, N = "
        f"{gen.get('length')}, batch {gen.get('batch')}, {gen.get('variant')} attention",
        columns=["approach", "step ms (median)", "peak MB", "parameters", "time ÷ baseline", "memory ÷ baseline"],
        rows=rows,
    )


def plot_sweep(path: Path, summary: dict, key: str, ylabel: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    styles = {"exact": "-", "sparse": "--", "low-rank": "-.", "kernel": ":", "lsh": (0, (3, 1, 1, 1))}
    for v in _variants(summary):
        pts = sorted((r["n"], r[key]) for r in ok_records(summary) if r["variant"] == v and r.get(key))
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", ms=3, ls=styles[FAMILIES[v]], label=LABELS[v])
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length N")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(run: Run, summary: dict, meta: dict, command: str) -> Results:
    eff = summary.get("efficiency", {})
    setup = (
        f"batch {summary.get('batch')}, {summary.get('heads')} heads x {summary.get('head_dim')}, "
        f"{eff.get('dtype')}, {eff.get('device')}"
    )
    tables = {}
    figures: list[str] = []
    if _records(summary):
        tables["fwdbwd_ms"] = sweep_table(
            summary,
            "fwdbwd_ms",
            f"Attention forward+backward time (ms): median (interquartile range) of {_rounds(summary)} "
            f"interleaved rounds, {setup}",
            spread_key="fwdbwd_all_ms",
        )
        tables["fwd_ms"] = sweep_table(
            summary, "fwd_ms", f"Attention forward time (ms, median of the interleaved rounds), {setup}"
        )
        tables["peak_mb"] = sweep_table(summary, "peak_mb", f"Peak memory of one forward+backward (MB), {setup}")
        tables["crossover"] = crossover_table(summary)
        tables["exact_throughput"] = fused_peak_table(summary)
        plot_sweep(
            run.dir / FIGURES[0],
            summary,
            "fwdbwd_ms",
            "forward+backward time (ms)",
            f"Attention fwd+bwd time vs length ({setup})",
        )
        plot_sweep(
            run.dir / FIGURES[1], summary, "peak_mb", "peak memory (MB)", f"Peak memory of fwd+bwd vs length ({setup})"
        )
        plot_sweep(
            run.dir / FIGURES[2], summary, "fwd_ms", "forward time (ms)", f"Attention forward time vs length ({setup})"
        )
        figures = list(FIGURES)
    if summary.get("step", {}).get("records"):
        st = summary["step"]
        step_setup = (
            f"{st['model']['layers']} layers, d = {st['model']['dim']}, {st['model']['heads']} heads, batch "
            f"{st['batch']}, {st.get('device')}"
        )
        tables["step_ms"] = step_table(
            summary,
            "step_ms",
            f"Whole-model training step (LRA Table 2's measurement), time (ms): median (interquartile range) of "
            f"{len(next((r['step_all_ms'] for r in step_records(summary)), []))} interleaved rounds, {step_setup}",
            1,
            "step_all_ms",
        )
        tables["step_peak_mb"] = step_table(
            summary,
            "peak_mb",
            f"Whole-model training step, peak memory (MB: parameters, gradients, AdamW state, activations), "
            f"{step_setup}",
            1,
            None,
        )
        tables["linformer_k"] = linformer_k_table(summary)
    if summary.get("quality"):
        tables["accuracy"] = accuracy_table(summary, meta)
        if summary.get("quality_items"):
            tables["accuracy_diff"] = accuracy_diff_table(summary)
    if summary.get("general", {}).get("records"):
        tables["general"] = general_table(summary)
    targets = evaluate(meta["targets"], summary)
    notes = list(summary.get("notes", []))
    results = run.new_results(command, targets, tables=tables, figures=figures, notes=notes)
    run.write_results(results)
    return results
