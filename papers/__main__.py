"""python -m papers list | readme | check | path NAME

list    the papers and the verdicts of their committed results
readme  regenerate the results sections of every paper README and the top-level status table
check   exit 1 when a README differs from what the committed results render to
path    print a paper's folder (an unknown name lists the valid ones)
"""

from __future__ import annotations

import sys

from papers import UnknownPaperError, all_papers, get_paper
from papers.status import render_status_table, update_all_readmes


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else "list"
    if command == "list":
        print(render_status_table(all_papers()))
        return 0
    if command == "readme":
        for path in update_all_readmes(write=True):
            print(f"updated {path}")
        return 0
    if command == "check":
        stale = update_all_readmes(write=False)
        for path in stale:
            print(f"out of date: {path} (run `python -m papers readme`)", file=sys.stderr)
        return 1 if stale else 0
    if command == "path":
        if len(argv) < 2:
            print("usage: python -m papers path NAME", file=sys.stderr)
            return 2
        try:
            print(get_paper(argv[1]).dir)
        except UnknownPaperError as exc:
            print(exc, file=sys.stderr)
            return 2
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
