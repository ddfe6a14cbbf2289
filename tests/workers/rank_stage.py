"""Run by tests/test_distributed.py as one rank of a multi-process run (RANK / WORLD_SIZE in the environment):
a run folder, a cached stage, a cached_json stage, a rank-zero-first block, then the report stage.

python tests/workers/rank_stage.py ROOT OUT.json [--fresh]

Every compute appends "<stage> <rank>" to ROOT/computed.log, so the test counts who computed what. The value a
stage computes is VALUE from the environment, so a stale cache entry (another VALUE) can be told apart.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from shared.distributed import rank, rank_zero_first
from shared.io import atomic_write_json
from shared.progress import get_logger, setup_logging
from shared.run import Run

log = get_logger("rank_stage")


def note(root: Path, stage: str) -> None:
    with open(root / "computed.log", "a") as fh:
        fh.write(f"{stage} {rank()}\n")
    time.sleep(0.3)  # long enough that a rank that did not wait would have computed it too


def main(root: Path, out: Path, fresh: bool) -> int:
    setup_logging()
    value = int(os.environ["VALUE"])
    run = Run("toy", "smoke", {"k": 1}, [0], root=root, fresh=fresh)

    def compute() -> dict:
        note(root, "prep")
        return {"x": np.arange(5) * value}

    def summary() -> dict:
        note(root, "summary")
        return {"value": value, "nested": {"list": [1, 2]}}

    with run.stage("prep"):
        prep = run.cached("prep", {"v": 1}, compute)
        info = run.cached_json("summary", {"v": 1}, summary)
    corpus = root / "corpus.json"
    with rank_zero_first(corpus, "the corpus") as first:
        if not corpus.exists():
            note(root, "corpus")
            atomic_write_json(corpus, {"value": value})
    log.info("stages read: prep %s", prep["x"].tolist())
    atomic_write_json(out, {"prep": prep["x"].tolist(), "summary": info, "first": first,
                            "corpus": json.loads(corpus.read_text())})  # fmt: skip
    with run.stage("report"):  # the other ranks end here
        atomic_write_json(root / "report.json", {"rank": rank()})
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), "--fresh" in sys.argv[3:]))
