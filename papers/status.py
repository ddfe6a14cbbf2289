"""The status table of all papers (top-level README, `python -m papers list`) from committed results."""

from __future__ import annotations

import sys
from pathlib import Path

from papers import PAPERS_DIR, PaperInfo, all_papers
from shared.report import (
    BEGIN,
    END,
    committed_results,
    is_standard_scale,
    markdown_table,
    render_paper_results,
    update_readme,
)

README = PAPERS_DIR.parent / "README.md"
STATUS_BEGIN, STATUS_END = "<!-- status:begin -->", "<!-- status:end -->"


def paper_status(paper: PaperInfo) -> list[str]:
    results = committed_results(paper.dir)
    if not results:
        return [f"[{paper.name}](papers/{paper.name}/)", paper.title, "–", "no committed results"]
    scales, verdicts = [], []
    for r in results:
        name = r.scale if is_standard_scale(r.scale) else f"{r.scale} (ours)"
        scales.append(f"{name} ({r.machine.split(',')[0]})")
        verdicts.append(f"{name}: {r.verdict_summary()}")
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


def publish_run(run_dir: Path, paper_dir: Path, scale: str, figures: list[str], force: bool = False) -> None:
    """--publish: copy a run's results.json and figures to the paper's results/<scale>/ and re-render
    every README table from the committed results; shared.run.PublishError when the run may not be published."""
    from shared.distributed import is_rank_zero
    from shared.run import PublishError, publish

    if not is_rank_zero():
        raise PublishError("only rank 0 publishes (this process is another rank of a multi-process run)")

    publish(run_dir, paper_dir, scale, figures, force=force)
    update_all_readmes(write=True)


def finish_run(run, args, paper_dir: Path, results, started: float) -> int:
    """The end of every reproduce.py: say where the results are; with --publish, publish them (rank 0 only:
    with several ranks the others have ended before the report, see shared.run.RANK_ZERO_STAGES)."""
    import logging
    import time

    from shared.distributed import is_rank_zero

    if not is_rank_zero():
        return 0

    logging.getLogger(paper_dir.name).info(
        "done in %.1f s; results in %s", time.perf_counter() - started, run.results_path()
    )
    if args.publish:
        from shared.run import PublishError

        try:
            publish_run(run.dir, paper_dir, args.scale, results.figures, force=args.force_publish)
        except PublishError as exc:
            print(
                f"error: not published ({exc}); the results stay in {run.dir} (--force-publish publishes anyway)",
                file=sys.stderr,
            )
            return 3
    return 0
