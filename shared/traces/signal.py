"""Does a behaviour leave a trace a model could find? A count-based check, per cutting mode.

For each behaviour and cutting mode: what changed against normal (length, duration, the syscalls whose
per-request counts moved most), and the AUROC of a logistic regression on log1p per-request syscall-count
vectors, trained and tested on DISJOINT capture blocks (2 folds: blocks alternate between folds in
capture order, normal and behaviour blocks alike; the AUROC is the mean over the two held-out folds).

Blocks, not requests, are held out because requests of one block share its machine state: a classifier
tested on requests of its training blocks scores block identity, not the behaviour. The same classifier,
run on normal blocks against other normal blocks (k random normal blocks, k a behaviour's block count,
against the rest; several draws), gives the floor: what block-to-block drift alone scores. A behaviour
whose AUROC is not above the floor's band is reported as "no signal": 0.5 +- the largest of MIN_BAND, the
draws' largest |AUROC - 0.5| and twice their root-mean-square distance from 0.5 (about two standard
deviations: a behaviour has as few blocks as a draw, so one draw in ten lands that far by chance).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.io import atomic_write_json
from shared.metrics import auroc
from shared.traces.cutting import MODES, RULES
from shared.traces.dataset import TraceDataset
from shared.traces.errors import TraceError
from shared.traces.events import dict_codes

NORMAL = "normal"
MIN_BAND = 0.05  # the floor's band is at least 0.5 +- this, however tight its draws
FLOOR_DRAWS = 10
TOP = 3  # syscalls listed per behaviour
PER_BLOCK = 400  # requests per block the report uses, evenly spaced


@dataclass
class Counts:
    """Per-request syscall counts of one cutting mode, with each request's block, behaviour and duration."""

    x: np.ndarray  # requests x vocabulary
    vocab: list[str]
    block: np.ndarray
    behaviour: np.ndarray
    duration_ms: np.ndarray
    linked: np.ndarray  # causal mode: the request found its PHP window


def count_matrices(ds: TraceDataset, modes: tuple[str, ...], per_block: int | None = None) -> dict[str, Counts]:
    """Every request's syscall-name counts in each of `modes`, block by block (Counts.block says which), in
    one pass over the blocks (each block is read and linked once). per_block: at most this many requests
    of each block, evenly spaced over it (the report's cost grows with requests, its answer hardly)."""
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise TraceError(f"unknown mode {bad[0]!r}; valid: {', '.join(MODES)}")
    req = {k: np.asarray(v) for k, v in ds.requests.select(["block", "behaviour", "duration_ns"]).to_pydict().items()}
    rank = {b: i for i, b in enumerate(dict.fromkeys(req["block"].tolist()))}
    perm = np.argsort([rank[b] for b in req["block"]], kind="stable")  # block by block, as ds.cut orders them
    req = {k: v[perm] for k, v in req.items()}
    vocab: dict[str, int] = {}
    flat: dict[str, list[np.ndarray]] = {m: [] for m in modes}
    owner: dict[str, list[np.ndarray]] = {m: [] for m in modes}
    keep, linked = [], []
    start = used_rows = 0
    for block in rank:
        cut, _ = ds.cut(block)
        n = len(cut.row_begin)
        pick = (
            np.arange(n)
            if per_block is None or n <= per_block
            else np.unique(np.linspace(0, n - 1, per_block).round().astype(int))
        )
        codes, names = dict_codes(ds.events(block).column("name"))
        to_global = np.array([vocab.setdefault(v, len(vocab)) for v in names], dtype=np.int64)
        gcodes = to_global[codes] if len(codes) else codes.astype(np.int64)
        for m in modes:
            rows = [cut.rows(int(i), m) for i in pick]
            flat[m].append(gcodes[np.concatenate(rows)] if len(rows) else np.zeros(0, np.int64))
            owner[m].append(np.repeat(np.arange(used_rows, used_rows + len(pick)), [len(r) for r in rows]))
        keep.append(start + pick)
        linked.append(cut.rule[pick] > 0)
        start += n
        used_rows += len(pick)
    sel = np.concatenate(keep) if keep else np.zeros(0, np.int64)
    names = np.array(list(vocab), dtype=object)
    out = {}
    for m in modes:
        size = (used_rows, len(vocab))
        idx = np.concatenate(owner[m]) * len(vocab) + np.concatenate(flat[m]) if used_rows else np.zeros(0, np.int64)
        x = np.bincount(idx, minlength=size[0] * size[1]).reshape(size).astype(np.float64)
        used = x.sum(axis=0) > 0  # only syscall rows are counted: probe and sched names drop out
        out[m] = Counts(
            x=x[:, used],
            vocab=names[used].tolist(),
            block=req["block"][sel].astype(object),
            behaviour=req["behaviour"][sel].astype(object),
            duration_ms=req["duration_ns"][sel].astype(np.float64) / 1e6,
            linked=np.concatenate(linked) if linked else np.zeros(0, bool),
        )
    return out


def _block_order(ds: TraceDataset) -> list[str]:
    return [b["id"] for b in ds.manifest["blocks"]]


def _folds(blocks: list[str]) -> dict[str, int]:
    """Blocks (in capture order) alternate between fold 0 and fold 1."""
    return {b: i % 2 for i, b in enumerate(blocks)}


def block_disjoint_auroc(x: np.ndarray, y: np.ndarray, fold: np.ndarray, seed: int = 0) -> float:
    """Mean held-out AUROC of a logistic regression on log1p counts over the two block folds: train on
    fold f, score fold 1 - f. y: 1 = behaviour, 0 = normal. nan when a fold lacks a class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    feats = np.log1p(x)
    scores = []
    with threadpool_limits(1):  # threaded BLAS ran these small fits 10x slower on a busy 2-core machine
        for f in (0, 1):
            train, test = fold == f, fold != f
            if len(set(y[train])) < 2 or len(set(y[test])) < 2:
                return float("nan")
            clf = make_pipeline(
                StandardScaler(), LogisticRegression(solver="newton-cholesky", class_weight="balanced", max_iter=200)
            )
            clf.fit(feats[train], y[train])
            p = clf.decision_function(feats[test])
            scores.append(auroc(p[y[test] == 0], p[y[test] == 1]))
    return float(np.mean(scores))


def _floor(c: Counts, normal_blocks: list[str], k: int, draws: int, seed: int) -> list[float]:
    """Normal blocks against other normal blocks, shaped like a behaviour's test: k random normal blocks play
    the behaviour (k = a behaviour's block count, so the floor sees as few blocks per class as a behaviour
    does, and as much chance from block drift), the rest stay normal; each side's blocks in two folds."""
    rng = np.random.default_rng(seed)
    m = np.isin(c.block, normal_blocks)
    out = []
    for _ in range(draws):
        pseudo = set(rng.choice(normal_blocks, size=k, replace=False).tolist())
        fold = {
            **_folds([b for b in normal_blocks if b in pseudo]),
            **_folds([b for b in normal_blocks if b not in pseudo]),
        }
        y = np.array([b in pseudo for b in c.block[m]], dtype=int)
        f = np.array([fold[b] for b in c.block[m]])
        out.append(block_disjoint_auroc(c.x[m], y, f, seed))
    return out


def _moved(c: Counts, normal: np.ndarray, other: np.ndarray, top: int) -> list[dict]:
    """The syscalls whose per-request counts moved most: by standardised mean difference."""
    a, b = c.x[normal], c.x[other]
    ma, mb = a.mean(axis=0), b.mean(axis=0)
    sd = np.sqrt((a.var(axis=0) + b.var(axis=0)) / 2)
    effect = (mb - ma) / np.maximum(sd, 0.1)
    order = np.argsort(-np.abs(effect), kind="stable")[:top]
    return [
        {"name": c.vocab[j], "normal": round(float(ma[j]), 2), "behaviour": round(float(mb[j]), 2),
         "effect": round(float(effect[j]), 2)}
        for j in order
    ]  # fmt: skip


def signal_report(
    ds: TraceDataset,
    modes: tuple[str, ...] = ("global", "causal"),
    draws: int = FLOOR_DRAWS,
    seed: int = 0,
    per_block: int | None = PER_BLOCK,
) -> list[dict]:
    """One row per (mode, behaviour), the normal-vs-normal floor first (behaviour 'normal'); see the
    module docstring. Every value is JSON-ready. per_block: requests used per block (None: all)."""
    blocks = _block_order(ds)
    behaviour_of = {b["id"]: b["behaviour"] for b in ds.manifest["blocks"]}
    normal_blocks = [b for b in blocks if behaviour_of[b] == NORMAL]
    if len(normal_blocks) < 4:
        raise TraceError(
            f"{ds.root}: the signal report needs at least 4 normal blocks (has {len(normal_blocks)}): "
            "2 per pseudo-class for the block-disjoint floor"
        )
    behaviours = [b for b in dict.fromkeys(behaviour_of[x] for x in blocks) if b != NORMAL]
    sizes = [sum(behaviour_of[x] == b for x in blocks) for b in behaviours]
    k = int(min(max(np.median(sizes) if sizes else 2, 2), len(normal_blocks) // 2))
    rows = []
    counts = count_matrices(ds, modes, per_block)
    for mode in modes:
        c = counts[mode]
        is_normal = c.behaviour == NORMAL
        floor = _floor(c, normal_blocks, k, draws, seed)
        dev = np.array([f - 0.5 for f in floor if np.isfinite(f)])
        half = max(
            MIN_BAND, float(np.max(np.abs(dev), initial=0)), 2 * float(np.sqrt(np.mean(dev**2))) if len(dev) else 0
        )
        band = [round(0.5 - half, 4), round(0.5 + half, 4)]
        floor_mean = float(np.nanmean(floor))
        base = {"mode": mode, "floor": round(floor_mean, 4), "floor_band": band}
        rows.append(
            {**base, "behaviour": NORMAL, "requests": int(is_normal.sum()), "blocks": len(normal_blocks),
             "length": _mean(c.x[is_normal].sum(axis=1)), "duration_ms_median": _median(c.duration_ms[is_normal]),
             "linked": _linked(c, is_normal, mode), "auroc": round(floor_mean, 4),
             "floor_draws": [round(f, 4) for f in floor], "verdict": "floor (normal vs normal)"}
        )  # fmt: skip
        for name in behaviours:
            own = [b for b in blocks if behaviour_of[b] == name]
            m = is_normal | (c.behaviour == name)
            fold = {**_folds(normal_blocks), **_folds(own)}
            y = (c.behaviour[m] == name).astype(int)
            score = (
                block_disjoint_auroc(c.x[m], y, np.array([fold[b] for b in c.block[m]]), seed)
                if len(own) >= 2
                else float("nan")
            )
            is_b = c.behaviour == name
            length_n, length_b = _mean(c.x[is_normal].sum(axis=1)), _mean(c.x[is_b].sum(axis=1))
            dur_n, dur_b = _median(c.duration_ms[is_normal]), _median(c.duration_ms[is_b])
            if not np.isfinite(score):
                verdict = "too few blocks (needs 2)"
            else:
                verdict = "signal" if score > band[1] else "no signal"
            rows.append(
                {**base, "behaviour": name, "requests": int(is_b.sum()), "blocks": len(own),
                 "length": length_b, "length_normal": length_n, "length_ratio": _ratio(length_b, length_n),
                 "duration_ms_median": dur_b, "duration_ms_median_normal": dur_n, "slowdown": _ratio(dur_b, dur_n),
                 "linked": _linked(c, is_b, mode), "moved": _moved(c, is_normal, is_b, TOP),
                 "auroc": round(score, 4) if np.isfinite(score) else None, "verdict": verdict}
            )  # fmt: skip
    return rows


def _linked(c: Counts, m: np.ndarray, mode: str) -> float | None:
    """Causal mode: the share of requests that found their PHP window (None in the other modes)."""
    return _mean(c.linked[m]) if mode == "causal" else None


def _mean(x: np.ndarray) -> float | None:
    return round(float(np.mean(x)), 4) if len(x) else None


def _median(x: np.ndarray) -> float | None:
    return round(float(np.median(x)), 4) if len(x) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def signal_table(rows: list[dict]) -> tuple[list[str], list[list]]:
    """(columns, rows) for shared.report.markdown_table."""
    columns = ["mode", "behaviour", "requests (blocks)", "length", "median ms",
               "syscalls that moved most (normal → it)", "count-classifier AUROC", "verdict"]  # fmt: skip
    out = []
    for r in rows:
        if r["behaviour"] == NORMAL:
            length, dur, moved = f"{r['length']:.1f}", f"{r['duration_ms_median']:.2f}", "–"
            score = f"{r['auroc']:.3f} (floor; band {r['floor_band'][0]:.2f}–{r['floor_band'][1]:.2f})"
        else:
            length = f"{r['length']:.1f} (×{r['length_ratio']:.2f})"
            dur = f"{r['duration_ms_median']:.2f} (×{r['slowdown']:.2f})"
            moved = ", ".join(f"{m['name']} {m['normal']:g}→{m['behaviour']:g}" for m in r["moved"])
            score = "–" if r["auroc"] is None else f"{r['auroc']:.3f}"
        out.append([r["mode"], r["behaviour"], f"{r['requests']} ({r['blocks']})", length, dur, moved, score,
                    r["verdict"]])  # fmt: skip
    return columns, out


def write_report(rows: list[dict], path: Path, effects: dict | None = None) -> None:
    """The report as JSON (a list of rows, see signal_report; the collector's measured effects per
    behaviour beside it when the manifest has them), written atomically."""
    atomic_write_json(Path(path), {"signal_report": rows, "rules": RULES_NOTE, "effects": effects or {}})


EFFECT_COLUMNS = (
    ("blocks", "blocks"), ("requests", "requests"), ("rps", "req/s"), ("handler_ms_p50", "handler p50 ms"),
    ("slowdown_handler", "slowdown"), ("duration_ms_p50", "window p50 ms"), ("latency_ms_p50", "client p50 ms"),
    ("queueing_ms_p50", "queueing p50 ms"), ("connections", "connections"), ("lost_events", "lost events"),
)  # fmt: skip


def effects_table(effects: dict) -> tuple[list[str], list[list]]:
    """(columns, rows) of the collector's measured effects per behaviour (manifest 'effects'), for
    shared.report.markdown_table; a value the manifest lacks shows as –."""
    columns = ["behaviour", *[label for _, label in EFFECT_COLUMNS]]
    rows = [[name, *["–" if e.get(k) is None else e[k] for k, _ in EFFECT_COLUMNS]] for name, e in effects.items()]
    return columns, rows


RULES_NOTE = (
    "per mode and behaviour: logistic regression on log1p per-request syscall counts, trained on one half of "
    "the capture blocks and scored on the other (2 folds, mean AUROC); floor: the same on normal blocks, k "
    f"random ones (k = a behaviour's block count) against the rest ({FLOOR_DRAWS} draws); 'no signal' when the "
    "AUROC is not above 0.5 + max(|draw - 0.5|, 2 rms(draw - 0.5), "
    f"{MIN_BAND}); causal-mode links: {', '.join(RULES)} (shared/traces/cutting.py)"
)
