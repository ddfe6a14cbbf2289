"""Lightning fits whose measurements survive a resume.

A fit resumed from its last checkpoint must report the whole training's wall time (and tokens), not the few
steps after the restart: `TrainClock` carries them in the checkpoint. A fit that had finished (the run stopped
later, while scoring) leaves a record beside its checkpoints, so a rerun reads the result and the best
weights' file name back instead of training again (`read_finished`, `write_finished`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from shared.io import atomic_write_json

CLOCK = "train_clock"  # checkpoint key: training seconds and tokens so far
FINISHED = "trained.json"  # in the checkpoint folder: the finished fit's identity, record and best checkpoint


class TrainClock:
    """Mixin for a LightningModule (list it first): training seconds and tokens across sessions. Call
    `start_clock()` right before `trainer.fit`; count tokens into `tokens_seen` in `training_step`."""

    seconds_before: float = 0.0
    session_start: float = 0.0
    tokens_seen: int = 0

    def start_clock(self) -> None:
        self.session_start = time.perf_counter()

    def train_seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.session_start

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CLOCK] = {"seconds": self.train_seconds(), "tokens": self.tokens_seen}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        clock = checkpoint.get(CLOCK, {})
        self.seconds_before, self.tokens_seen = float(clock.get("seconds", 0.0)), int(clock.get("tokens", 0))


def read_finished(ckpt_dir: Path, identity: dict[str, Any]) -> tuple[dict[str, Any], str | None] | None:
    """(record, best checkpoint name) of the finished fit in `ckpt_dir` when it is this one (same identity,
    best checkpoint still there); None otherwise, also for an unreadable record."""
    try:
        saved = json.loads((ckpt_dir / FINISHED).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("identity") != identity:
        return None
    best = saved.get("best")
    if best and not (ckpt_dir / best).is_file():
        return None
    return saved.get("record", {}), best


def write_finished(ckpt_dir: Path, identity: dict[str, Any], record: dict[str, Any], best: str | None) -> None:
    """Record a finished fit (atomically: a crash leaves the old record or none)."""
    atomic_write_json(ckpt_dir / FINISHED, {"identity": identity, "record": record, "best": best})
