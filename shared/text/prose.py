"""English prose from Debian packages: the Python 3.11 documentation and the King James Bible.

Two registers on purpose: modern technical English (python3.11-doc's reST sources, with code,
directives, tables and markup removed) and archaic narrative (bible-kjv, one verse per line with its
reference stripped). Both install as root with `make setup` (shared/apt.txt). Paragraphs come back
in a fixed order (sorted files, canonical verse order), so a seed fully determines any split.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from shared.data.errors import DatasetNotFoundError

PYTHON_DOC = Path("/usr/share/doc/python3.11/html/_sources")
SOURCES = ("python-doc", "kjv")
PACKAGES = {"python-doc": "python3.11-doc", "kjv": "bible-kjv-text bible-kjv"}

_HEADING_RULE = re.compile(r"^([=\-~^\"'`#*+.])\1{2,}\s*$")
_ROLE = re.compile(r":[\w:+-]+:`!?~?([^`<]*?)(?:\s*<[^>]*>)?`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`__?")
_LITERAL = re.compile(r"``([^`]+)``")
_EMPH = re.compile(r"(\*\*|\*|`)([^*`]+)\1_?")
_VERSE_REF = re.compile(r"^\d?[A-Za-z]+\d+:\d+\s+")


def missing_sources(sources: Iterable[str] = SOURCES) -> list[str]:
    """The requested sources whose Debian package is not installed here."""
    present = {"python-doc": PYTHON_DOC.is_dir(), "kjv": shutil.which("bible") is not None}
    return [s for s in sources if not present[s]]


def prose_installed(sources: Iterable[str] = SOURCES) -> bool:
    """True when every source is installed; otherwise print one error line naming what to install."""
    missing = missing_sources(sources)
    if missing:
        print(f"error: prose sources {missing} are not installed; run `make setup` as root", file=sys.stderr)
    return not missing


def _clean_inline(text: str) -> str:
    text = _LINK.sub(r"\1", text)
    text = _ROLE.sub(r"\1", text)
    text = _LITERAL.sub(r"\1", text)
    text = _EMPH.sub(r"\2", text)
    return re.sub(r"\s+", " ", text).strip()


def rst_paragraphs(source: str) -> list[str]:
    """Prose paragraphs of one reST file: unindented text blocks that are not headings, directives,
    tables, list-only markup or literal blocks; inline roles and links reduced to their text."""
    paragraphs: list[str] = []
    for block in re.split(r"\n\s*\n", source):
        lines = block.split("\n")
        if not lines or lines[0].startswith((" ", "\t", "..", "+", "|", ">>>", "=", "*")):
            continue
        if any(_HEADING_RULE.match(line) for line in lines):
            continue
        if any(line.startswith((" ", "\t")) for line in lines):
            continue  # definition lists, option lists, continued directives
        text = _clean_inline(" ".join(lines))
        if text.endswith("::"):
            text = text[:-1]  # "For example::" introduces a literal block; keep the sentence
        if len(text.split()) >= 8 and text[0].isalpha():
            paragraphs.append(text)
    return paragraphs


def python_doc(root: Path = PYTHON_DOC) -> list[str]:
    if not root.is_dir():
        raise DatasetNotFoundError(f"{root} not found; install it with: apt-get install {PACKAGES['python-doc']}")
    paragraphs: list[str] = []
    for path in sorted(root.rglob("*.rst.txt")):
        paragraphs += rst_paragraphs(path.read_text(errors="replace"))
    return paragraphs


def kjv() -> list[str]:
    """One paragraph per verse, Genesis to Revelation, references removed."""
    if shutil.which("bible") is None:
        raise DatasetNotFoundError(f"the `bible` reader is missing; install: apt-get install {PACKAGES['kjv']}")
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    return [_VERSE_REF.sub("", line).strip() for line in out.splitlines() if line.strip()]


def load_prose(sources: Iterable[str] = SOURCES) -> list[str]:
    """Paragraphs of the named sources, concatenated in the order given."""
    sources = list(sources)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown prose source(s) {unknown}; valid: {', '.join(SOURCES)}")
    readers = {"python-doc": python_doc, "kjv": kjv}
    return [p for s in sources for p in readers[s]()]
