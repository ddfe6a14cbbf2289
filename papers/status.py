"""The status table of all papers (top-level README, `python -m papers list`) from committed results."""

from __future__ import annotations

from pathlib import Path

from papers import PAPERS_DIR, PaperInfo, all_papers
from shared.report import BEGIN, END, committed_results, markdown_table, render_paper_results, update_readme

README = PAPERS_DIR.parent / "README.md"
STATUS_BEGIN, STATUS_END = "<!-- status:begin -->", "<!-- status:end -->"


def paper_status(paper: PaperInfo) -> list[str]:
    results = committed_results(paper.dir)
    if not results:
        return [f"[{paper.name}](papers/{paper.name}/)", paper.title, "–", "no committed results"]
    scales, verdicts = [], []
    for r in results:
        scales.append(f"{r.scale} ({r.machine.split(',')[0]})")
        counts = r.verdict_counts()
        verdicts.append(f"{r.scale}: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n))
    return [f"[{paper.name}](papers/{paper.name}/)", paper.title, "; ".join(scales), "; ".join(verdicts)]


def render_status_table(papers: list[PaperInfo]) -> str:
    rows = [paper_status(p) for p in papers]
    return markdown_table(["paper", "title", "committed scales", "targets"], rows)


def update_all_readmes(write: bool) -> list[Path]:
    """Re-render every generated section; return the files that were (or would be) changed."""
    papers = all_papers()
    sections = [(p.dir / "README.md", render_paper_results(p.dir), BEGIN, END) for p in papers]
    sections.append((README, render_status_table(papers), STATUS_BEGIN, STATUS_END))
    return [path for path, body, begin, end in sections if update_readme(path, body, begin, end, write=write)]
