"""The authors' released per-request tables (github.com/qfournier/request_analysis, MIT), read from a
folder given by --set data.dir=... or $REQUEST_ANALYSIS_DATA_DIR (never committed here).

Each group <id> has four files (plain or .gz), one row per request keyed `<pid>_<tid>_<timestamp>`:
  <id>_count.csv    key, intervals per state (10), REQUEST_DURATION (ns)
  <id>_times.csv    key, ns per state (10), REQUEST_DURATION (ns); the states sum to the duration
  <id>_states.csv   key:digits$, one digit per successive state interval, `$` ending the list
  <id>_syscalls.csv key:name,name,...,$
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from papers.request_analysis.states import N_STATES

ENV = "REQUEST_ANALYSIS_DATA_DIR"
DEFAULT = Path(__file__).resolve().parents[3] / "shared" / "data" / "request_analysis"
KINDS = ("count", "times", "states", "syscalls")
EXPECTED = "per group <id>: " + ", ".join(f"<id>_{k}.csv(.gz)" for k in KINDS)


class DataError(ValueError):
    """A table that cannot be read: the message names the file and, where it applies, the row."""


@dataclass
class Requests:
    """Per-request features: the paper's four tables, aligned by key."""

    keys: list[str]
    counts: np.ndarray  # (n, 10) intervals per state
    times_ns: np.ndarray  # (n, 10) ns per state
    duration_ns: np.ndarray  # (n,)
    states: list[str]  # digit strings
    syscalls: list[list[str]]
    source: str

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, idx: np.ndarray) -> Requests:
        idx = np.asarray(idx)
        return Requests(
            [self.keys[i] for i in idx], self.counts[idx], self.times_ns[idx], self.duration_ns[idx],
            [self.states[i] for i in idx], [self.syscalls[i] for i in idx], self.source,
        )  # fmt: skip


def data_dir(configured: str | None) -> Path | None:
    """The authors' tables: data.dir, else $REQUEST_ANALYSIS_DATA_DIR, else ../shared/data/request_analysis.
    A folder named by the config or the environment must exist and hold the tables (DataError naming
    it, never a silent fallback to another folder); None when neither names one and the default holds
    none, so the caller can fall back to the traces and say so."""
    for candidate, source in ((configured, "data.dir"), (os.environ.get(ENV), f"${ENV}")):
        if not candidate:
            continue
        folder = Path(candidate)
        if not folder.is_dir():
            raise DataError(f"{source}={candidate}: no such folder; expected the authors' tables ({EXPECTED})")
        if not groups_in(folder):
            raise DataError(
                f"{source}={candidate}: no <id>_count.csv(.gz) in it; expected the authors' tables ({EXPECTED})"
            )
        return folder
    return DEFAULT if DEFAULT.is_dir() and groups_in(DEFAULT) else None


def tables_not_found() -> str:
    """Why a tables run fell back to the traces (its results are degraded: not the paper's analysis)."""
    return f"the authors' tables were not found (data.dir and ${ENV} unset, none in {DEFAULT}): traces only"


def _open(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def _find(folder: Path, group: str, kind: str) -> Path:
    for name in (f"{group}_{kind}.csv", f"{group}_{kind}.csv.gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: group {group} has no {group}_{kind}.csv(.gz); each group needs {', '.join(KINDS)}")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a plain or gzipped table; an unreadable file is a DataError naming it."""
    try:
        with _open(path) as fh:
            yield from enumerate(fh, 1)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable text table ({type(exc).__name__}: {exc})") from exc


def _numeric(path: Path) -> dict[str, np.ndarray]:
    rows = {}
    for line_no, line in _lines(path):
        parts = line.rstrip("\n").split(",")
        if len(parts) != N_STATES + 2:
            raise DataError(f"{path}:{line_no}: {len(parts)} fields; expected key, {N_STATES} states, duration")
        try:
            rows[parts[0]] = np.array(parts[1:], dtype=np.int64)
        except ValueError as exc:
            raise DataError(f"{path}:{line_no}: a non-integer value ({exc})") from exc
    return rows


def _keyed(path: Path) -> dict[str, str]:
    rows = {}
    for line_no, line in _lines(path):
        key, sep, value = line.rstrip("\n").partition(":")
        if not sep:
            raise DataError(f"{path}:{line_no}: no ':' after the request key")
        rows[key] = value
    return rows


def load_group(folder: Path, group: str) -> Requests:
    paths = {k: _find(folder, group, k) for k in KINDS}
    count, times = _numeric(paths["count"]), _numeric(paths["times"])
    states, syscalls = _keyed(paths["states"]), _keyed(paths["syscalls"])
    keys = list(count)
    if not keys:
        raise DataError(f"{paths['count']}: no rows; expected one line per request")
    for kind, table in (("times", times), ("states", states), ("syscalls", syscalls)):
        if set(table) != set(keys):
            diff = sorted(set(table) ^ set(keys))[:3]
            raise DataError(f"{paths[kind]}: its request keys differ from {paths['count'].name}'s (e.g. {diff})")
    c = np.stack([count[k][:N_STATES] for k in keys])
    t = np.stack([times[k][:N_STATES] for k in keys])
    duration = np.array([times[k][N_STATES] for k in keys])
    for row, k in enumerate(keys):
        digits = states[k] = states[k].removesuffix("$")
        if digits and not digits.isdigit():
            raise DataError(
                f"{paths['states']}: row {row + 1} ({k}): a state that is not a digit 0-9 in {digits[:40]!r}"
            )
        if count[k][N_STATES] != times[k][N_STATES]:
            raise DataError(f"{paths['count']}: row {row + 1} ({k}): its duration differs from {paths['times'].name}'s")
    names = [[s for s in syscalls[k].split(",") if s and s != "$"] for k in keys]
    return Requests(keys, c, t, duration, [states[k] for k in keys], names, str(folder))


def groups_in(folder: Path) -> list[str]:
    return sorted({p.name.split("_", 1)[0] for p in folder.glob("*_count.csv*")})


def load_tables(folder: Path) -> Requests:
    groups = groups_in(folder)
    if not groups:
        raise DataError(f"{folder}: no <id>_count.csv(.gz) files (the authors' request tables)")
    parts = [load_group(folder, g) for g in groups]
    return Requests(
        [k for p in parts for k in p.keys], np.concatenate([p.counts for p in parts]),
        np.concatenate([p.times_ns for p in parts]), np.concatenate([p.duration_ns for p in parts]),
        [s for p in parts for s in p.states], [s for p in parts for s in p.syscalls], str(folder),
    )  # fmt: skip
