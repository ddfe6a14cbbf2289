"""Render results.json into README tables (between markers) and write PNG plots.

A paper README holds `<!-- results:begin -->` ... `<!-- results:end -->`; `render_paper_results`
produces what goes between them from the committed results, and a test checks they are equal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.io import atomic_write_text
from shared.results import Results, Table, load

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
SCALE_ORDER = ("smoke", "mini", "medium", "full")


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value != 0 and (abs(value) >= 1e4 or abs(value) < 10**-digits):
            return f"{value:.{digits - 1}e}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.{digits}f}"
    return str(value)


def mean_std_cell(values: Sequence[float | None], digits: int = 3) -> str:
    """ "mean ± std" (population std) over the values that exist, the ± only with two or more; "–" for none."""
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "–"
    mean = f"{float(np.mean(vals)):.{digits}f}"
    return mean + (f" ± {float(np.std(vals)):.{digits}f}" if len(vals) > 1 else "")


def cell(value: Any) -> str:
    """A table cell: formatted, with any '|' escaped so it cannot split the row."""
    return fmt(value).replace("|", "\\|")


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "| " + " | ".join(cell(c) for c in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join([head, sep, *body])


def _claim(t) -> str:
    if t.comparison == "within":
        return f"{fmt(t.paper)} ± {fmt(t.tolerance)}" if t.paper is not None else "–"
    sign = "≥" if t.comparison == "at_least" else "≤"
    ref = f" (paper {fmt(t.paper)})" if t.paper is not None else ""
    return f"{sign} {fmt(t.threshold)}{ref}"


def _spread(std: float | None, mean: float | None) -> bool:
    """Whether a seed std is a real spread, not the rounding left by averaging equal per-seed values
    (two seeds that agree give 5.6e-17, which fmt would print as '5.551e-17')."""
    return bool(std) and std > 1e-12 * max(1.0, abs(mean or 0.0))


def targets_table(results: Results) -> str:
    rows = []
    for t in results.targets:
        got = "–" if t.mean is None else fmt(t.mean) + (f" ± {fmt(t.std)}" if _spread(t.std, t.mean) else "")
        if t.mean is not None and t.ci_low is not None and t.ci_high is not None:
            got += f" [{fmt(t.ci_low)}, {fmt(t.ci_high)}]"
        rows.append([t.description, _claim(t), t.source, got, t.n, f"**{t.verdict}**"])
    return markdown_table(
        ["target", "paper (tolerance)", "source", "reproduced (mean ± std [95% CI])", "seeds", "verdict"], rows
    )


FOLD_ROWS = 30  # longer tables (per-point records) are folded in the README, whole in results.json


def table_markdown(table: Table) -> str:
    body = markdown_table(table.columns, table.rows)
    if len(table.rows) > FOLD_ROWS:
        return f"<details><summary><b>{table.title}</b> ({len(table.rows)} rows)</summary>\n\n{body}\n\n</details>"
    return f"**{table.title}**\n\n" + body


def render_results(results: Results, figure_dir: str = "") -> str:
    """The README section for one results.json: provenance line, targets, extra tables, figures."""
    counts = results.verdict_summary()
    ours = "" if is_standard_scale(results.scale) else " (ours: an extension config, not a compared scale)"
    parts = [
        f"### Scale `{results.scale}`{ours}: {counts}",
        f"Command: `{results.command}` · seeds {results.seeds} · machine: {results.machine} · "
        f"commit `{results.git_commit[:12]}` · {results.created} · "
        f"total wall time {fmt(sum(results.wall_time_s.values()), 1)} s",
        targets_table(results),
    ]
    parts += [table_markdown(t) for t in results.tables.values()]
    parts += [f"![{name}]({figure_dir}{name})" for name in results.figures]
    parts += [f"- {note}" for note in results.notes]
    return "\n\n".join(parts)


def is_standard_scale(scale: str) -> bool:
    """smoke / mini / medium / full; any other results folder is an extension config of ours."""
    return scale in SCALE_ORDER


def committed_results(paper_dir: str | Path) -> list[Results]:
    """The committed results of a paper, smoke excluded: the standard scales in order, then any other
    config's (an extension of ours such as mergealign's mini_base_domain), by name."""
    base = Path(paper_dir) / "results"
    others = sorted(p.parent.name for p in base.glob("*/results.json") if p.parent.name not in SCALE_ORDER)
    found = []
    for scale in (*SCALE_ORDER[1:], *others):
        path = base / scale / "results.json"
        if path.is_file():
            found.append(load(path))
    return found


def render_paper_results(paper_dir: str | Path) -> str:
    results = committed_results(paper_dir)
    if not results:
        return "No committed results yet."
    return "\n\n".join(render_results(r, f"results/{r.scale}/") for r in results)


def replace_between_markers(text: str, body: str, begin: str = BEGIN, end: str = END) -> str:
    if begin not in text or end not in text:
        raise ValueError(f"markers {begin} / {end} not found")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def update_readme(readme: str | Path, body: str, begin: str = BEGIN, end: str = END, write: bool = True) -> bool:
    """Put `body` between the markers of `readme` (atomically, when `write`); True when it differs."""
    readme = Path(readme)
    old = readme.read_text()
    new = replace_between_markers(old, body, begin, end)
    if write and new != old:
        atomic_write_text(readme, new)
    return new != old


def line_plot(
    path: str | Path,
    series: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float] | None]],
    title: str,
    xlabel: str,
    ylabel: str,
    reference: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    hlines: dict[str, float] | None = None,
    logy: bool = False,
) -> Path:
    """One PNG: our series (x, y, optional std band), the paper's curves dashed, horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    colors = {}
    for label, (x, y, err) in series.items():
        (line,) = ax.plot(x, y, marker="o", ms=3, label=label)
        colors[label] = line.get_color()
        if err is not None:
            lo = [a - b for a, b in zip(y, err, strict=True)]
            hi = [a + b for a, b in zip(y, err, strict=True)]
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2)
    for label, (x, y) in (reference or {}).items():
        ax.plot(x, y, ls="--", lw=1, color=colors.get(label.split(" ")[0], "gray"), label=f"{label}")
    for i, (label, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, ls=(":", "-.", "--")[i % 3], color=("black", "dimgray", "gray")[i % 3], lw=1, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
