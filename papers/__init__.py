"""One package per reproduced paper; this module finds them.

A paper is a folder here holding paper.yaml. Nothing else needs registering: the contract test
and `python -m papers list` pick a new paper up the moment its folder exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PAPERS_DIR = Path(__file__).resolve().parent
REQUIRED_FIELDS = ("name", "title", "authors", "venue", "arxiv", "code", "targets")
REQUIRED_CONFIGS = ("smoke", "mini", "medium", "full")


class UnknownPaperError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class PaperInfo:
    name: str
    dir: Path
    meta: dict[str, Any]

    @property
    def title(self) -> str:
        return self.meta["title"]


def paper_names() -> list[str]:
    return sorted(p.parent.name for p in PAPERS_DIR.glob("*/paper.yaml"))


def get_paper(name: str) -> PaperInfo:
    """The paper folder `name`; an unknown name lists the valid ones."""
    names = paper_names()
    if name not in names:
        raise UnknownPaperError(f"unknown paper {name!r}; valid: {', '.join(names) or '(none)'}")
    directory = PAPERS_DIR / name
    meta = yaml.safe_load((directory / "paper.yaml").read_text())
    return PaperInfo(name, directory, meta)


def all_papers() -> list[PaperInfo]:
    return [get_paper(n) for n in paper_names()]
