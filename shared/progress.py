"""Progress bars and logging: bars only on a terminal and on rank 0, or never with TQDM_DISABLE=1; with
several ranks every log line names its rank ("[rank 1/2]", shared.distributed)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

from shared.distributed import rank, rank_tag

T = TypeVar("T")

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def bars_enabled() -> bool:
    """True when stderr is a terminal, TQDM_DISABLE is not set and this is rank 0 (one bar per run)."""
    if os.environ.get("TQDM_DISABLE", "").lower() in {"1", "true", "yes"} or rank() != 0:
        return False
    return sys.stderr.isatty()


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, **kwargs) -> Iterator[T]:
    """Wrap `iterable` in a tqdm bar that stays silent when nobody is watching."""
    return iter(tqdm(iterable, desc=desc, total=total, disable=not bars_enabled(), leave=False, **kwargs))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted, not when the handler was made (a test that
    captures stderr, or a caller that redirects it, must not leave the handler writing to a closed stream)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _RankFormatter(logging.Formatter):
    """Prefixes each message with the rank when there are several (read per record: Lightning's launcher
    sets the rank environment after logging is configured)."""

    def format(self, record: logging.LogRecord) -> str:
        return rank_tag() + super().format(record)


def setup_logging(level: int | str = logging.INFO) -> None:
    """Configure the root logger once: timestamps, level, module name, to stderr."""
    root = logging.getLogger()
    if not any(getattr(h, "_shared", False) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_RankFormatter(_FORMAT, datefmt="%H:%M:%S"))
        handler._shared = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
