"""The results.json schema: every number a README shows, with the paper's value and a verdict.

A target compares one reproduced quantity (mean, std over n seeds) with the paper's value:
- comparison "within": reproduced when |mean - paper| <= tolerance; when it misses on the better
  side (`higher_is_better`), the verdict is "better than paper".
- comparison "at_least" / "at_most": reproduced when mean >= / <= threshold (a claim such as
  "the autoencoders beat PCA" is a margin that must be at least 0).

A target may carry a 95% confidence interval [ci_low, ci_high] for its mean (over seeds, or a bootstrap over
test items: shared.metrics). When the interval holds both passing and failing values, the run cannot tell
which side the truth is on, and the verdict is "not resolvable" (at this scale) whatever side the mean is on.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from shared.io import atomic_write_json

SCHEMA = "repro-results/1"
VERDICTS = ("reproduced", "not reproduced", "better than paper", "not resolvable", "not run", "no reference")
COMPARISONS = ("within", "at_least", "at_most")
Comparison = Literal["within", "at_least", "at_most"]


class ResultsError(ValueError):
    """A results.json that does not follow the schema."""


EXTENSION_PREFIX = "extension:"


@dataclass
class Target:
    name: str
    description: str
    source: str
    comparison: Comparison = "within"
    paper: float | None = None
    tolerance: float | None = None
    threshold: float | None = None
    higher_is_better: bool | None = None
    mean: float | None = None
    std: float | None = None
    n: int = 0
    verdict: str = "not run"
    note: str = ""
    ci_low: float | None = None  # 95% interval of the mean; both or neither
    ci_high: float | None = None

    @property
    def is_extension(self) -> bool:
        """A target of ours that re-judges a paper's claim in a setting the paper did not use (its source
        starts with "extension:"): shown and judged like the others, counted apart from the paper's claims."""
        return self.source.startswith(EXTENSION_PREFIX)

    def judge(self) -> Target:
        """Set `verdict` from the numbers; returns self."""
        self.verdict = verdict_for(self)
        return self


def verdict_for(t: Target) -> str:
    if t.mean is None or t.n == 0 or (isinstance(t.mean, float) and math.isnan(t.mean)):
        return "not run"
    if t.comparison == "within":
        if t.paper is None or t.tolerance is None:
            return "no reference"
        lo, hi = t.paper - t.tolerance - 1e-12, t.paper + t.tolerance + 1e-12
        if _straddles(t, lambda v: lo <= v <= hi):
            return "not resolvable"
        diff = t.mean - t.paper
        if abs(diff) <= t.tolerance + 1e-12:
            return "reproduced"
        if t.higher_is_better is not None and (diff > 0) == t.higher_is_better:
            return "better than paper"
        return "not reproduced"
    if t.threshold is None:
        return "no reference"
    threshold = t.threshold

    def passes(v: float) -> bool:
        return v >= threshold if t.comparison == "at_least" else v <= threshold

    if _straddles(t, passes):
        return "not resolvable"
    return "reproduced" if passes(t.mean) else "not reproduced"


def _straddles(t: Target, passes: Callable[[float], bool]) -> bool:
    """Whether the target's interval holds both a passing and a failing value. The pass region is an
    interval (a half-line or paper ± tolerance), so it is enough to test its ends and the pass region's
    edges that fall inside it."""
    if t.ci_low is None or t.ci_high is None:
        return False
    lo, hi = t.ci_low, t.ci_high
    return passes(lo) != passes(hi) or (
        t.comparison == "within" and not passes(lo) and lo < t.paper < hi  # type: ignore[operator]
    )


R = TypeVar("R")


def judged_target(spec: dict[str, Any], values: Sequence[float], ci: tuple[float, float] | None = None) -> Target:
    """A paper.yaml target spec with the mean, population std and count of `values` (the seeds that
    measured it) and, when given, the 95% interval of that mean, judged; no values leaves it "not run"."""
    t = Target(**spec)
    if values:
        t.mean, t.std, t.n = float(np.mean(values)), float(np.std(values)), len(values)
        if ci is not None:
            t.ci_low, t.ci_high = float(ci[0]), float(ci[1])
            check_interval(t)
    return t.judge()


def check_interval(t: Target) -> None:
    """An interval is both ends or neither, finite, ordered, and holds the mean it is the interval of."""
    if (t.ci_low is None) != (t.ci_high is None):
        raise ResultsError(f"target {t.name!r}: ci_low and ci_high must be given together")
    if t.ci_low is None or t.ci_high is None:
        return
    if not (math.isfinite(t.ci_low) and math.isfinite(t.ci_high) and t.ci_low <= t.ci_high):
        raise ResultsError(f"target {t.name!r}: interval [{t.ci_low}, {t.ci_high}] must be finite and ordered")
    if t.mean is not None and not (t.ci_low - 1e-9 <= t.mean <= t.ci_high + 1e-9):
        raise ResultsError(f"target {t.name!r}: mean {t.mean} lies outside its interval [{t.ci_low}, {t.ci_high}]")


def judge_by_measures(
    specs: Sequence[dict[str, Any]],
    measures: Mapping[str, Callable[[R], float | None]],
    runs: Sequence[R],
    intervals: Mapping[str, tuple[float, float]] | None = None,
) -> list[Target]:
    """One judged Target per spec: its measure applied to each run (a seed), Nones dropped, with its interval
    from `intervals` where there is one. A spec without a measure is an error naming the known ones."""
    out = []
    for spec in specs:
        if spec["name"] not in measures:
            raise KeyError(f"paper.yaml target {spec['name']!r} has no measure; known: {', '.join(measures)}")
        values = [v for v in (measures[spec["name"]](r) for r in runs) if v is not None]
        out.append(judged_target(spec, values, (intervals or {}).get(spec["name"])))
    return out


@dataclass
class Table:
    """A small table for the README: a title, column names and rows of cells."""

    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class Results:
    paper: str
    scale: str
    command: str
    seeds: list[int]
    machine: str
    created: str
    git_commit: str
    targets: list[Target]
    tables: dict[str, Table] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    wall_time_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Why this run is not the configured experiment (it fell back to other data, ...): never published.
    degraded: list[str] = field(default_factory=list)
    schema: str = SCHEMA

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write(self, path: str | Path) -> Path:
        data = self.to_json()
        validate(data)
        return atomic_write_json(path, data)

    def verdict_counts(self, extensions: bool = False) -> dict[str, int]:
        """Verdicts of the paper's targets (or, with extensions=True, of our extension targets only)."""
        counts = {v: 0 for v in VERDICTS}
        for t in self.targets:
            if t.is_extension == extensions:
                counts[t.verdict] += 1
        return counts

    def verdict_summary(self) -> str:
        """'11 reproduced, 3 not reproduced' for the paper's targets, our extensions' counts after it."""

        def join(counts: dict[str, int]) -> str:
            return ", ".join(f"{n} {v}" for v, n in counts.items() if n)

        ours = join(self.verdict_counts(extensions=True))
        return join(self.verdict_counts()) + (f" (extensions of ours: {ours})" if ours else "")


_REQUIRED = {
    "schema": str,
    "paper": str,
    "scale": str,
    "command": str,
    "seeds": list,
    "machine": str,
    "created": str,
    "git_commit": str,
    "targets": list,
    "tables": dict,
    "figures": list,
    "wall_time_s": dict,
    "notes": list,
}
_OPTIONAL = {"degraded": list}  # absent in files written before it existed
_TARGET_REQUIRED = {"name": str, "description": str, "source": str, "comparison": str, "verdict": str, "n": int}
_OPTIONAL_NUMBERS = ("paper", "tolerance", "threshold", "mean", "std", "ci_low", "ci_high")


def validate(data: dict[str, Any]) -> None:
    """Raise ResultsError naming the first field that breaks the schema."""
    for key, typ in _REQUIRED.items():
        if key not in data:
            raise ResultsError(f"results: missing key {key!r}")
        if not isinstance(data[key], typ):
            raise ResultsError(f"results: {key!r} must be {typ.__name__}, got {type(data[key]).__name__}")
    for key, typ in _OPTIONAL.items():
        if key in data and not isinstance(data[key], typ):
            raise ResultsError(f"results: {key!r} must be {typ.__name__}, got {type(data[key]).__name__}")
    extra = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if extra:
        raise ResultsError(f"results: unknown key(s) {', '.join(map(repr, extra))}")
    if data["schema"] != SCHEMA:
        raise ResultsError(f"results: schema {data['schema']!r}, expected {SCHEMA!r}")
    names = set()
    for i, t in enumerate(data["targets"]):
        where = f"results: targets[{i}]"
        for key, typ in _TARGET_REQUIRED.items():
            if not isinstance(t.get(key), typ):
                raise ResultsError(f"{where}: {key!r} must be {typ.__name__}")
        if t["name"] in names:
            raise ResultsError(f"{where}: duplicate target name {t['name']!r}")
        names.add(t["name"])
        if t["verdict"] not in VERDICTS:
            raise ResultsError(f"{where}: verdict {t['verdict']!r}; valid: {', '.join(VERDICTS)}")
        if t["comparison"] not in COMPARISONS:
            raise ResultsError(f"{where}: comparison {t['comparison']!r}; valid: {', '.join(COMPARISONS)}")
        for key in _OPTIONAL_NUMBERS:
            v = t.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ResultsError(f"{where}: {key!r} must be a number or null")
        try:
            check_interval(_target_from(t))
        except ResultsError as exc:
            raise ResultsError(f"{where}: {exc}") from None
        if verdict_for(_target_from(t)) != t["verdict"]:
            raise ResultsError(f"{where}: verdict {t['verdict']!r} does not follow from its numbers")
    for name, table in data["tables"].items():
        if not isinstance(table, dict) or set(table) != {"title", "columns", "rows"}:
            raise ResultsError(f"results: tables[{name!r}] must have exactly title, columns, rows")
        width = len(table["columns"])
        for r, row in enumerate(table["rows"]):
            if len(row) != width:
                raise ResultsError(f"results: tables[{name!r}] row {r} has {len(row)} cells, expected {width}")


def _target_from(data: dict[str, Any]) -> Target:
    fields = {f.name for f in dataclasses.fields(Target)}
    return Target(**{k: v for k, v in data.items() if k in fields})


def load(path: str | Path) -> Results:
    """Read and validate a results.json."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read results: {exc}") from exc
    try:
        validate(data)
    except ResultsError as exc:
        raise ResultsError(f"{path}: {exc}") from None
    data = dict(data)
    data["targets"] = [_target_from(t) for t in data["targets"]]
    data["tables"] = {k: Table(**v) for k, v in data["tables"].items()}
    return Results(**data)
