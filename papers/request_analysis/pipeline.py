"""The paper's analysis: outliers by DBSCAN on time per thread state, k-means on the outliers' state
counts, n-gram characterisation of each group against the normal requests (functions.py, notebook)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import DBSCAN, KMeans
from sklearn.ensemble import IsolationForest
from sklearn.preprocessing import StandardScaler

from papers.request_analysis.data import Requests


@dataclass
class Analysis:
    kept: Requests
    dropped: int  # measurement errors removed before the analysis
    outlier: np.ndarray  # bool per kept request (DBSCAN noise)
    cluster: np.ndarray  # k-means label per outlier (index into the outliers), ordered by size
    isolation_flags: int
    all_duration_ns: np.ndarray  # every request before dropping measurement errors


def drop_measurement_errors(req: Requests, min_ms: float) -> tuple[Requests, int]:
    """The paper drops its two shortest requests (0.14 and 4.22 ms; the next is 20.5 ms) as measurement
    errors; we drop every request shorter than `min_ms`."""
    keep = np.nonzero(req.duration_ns / 1e6 >= min_ms)[0]
    return req.subset(keep), len(req) - len(keep)


def outliers(times_ms: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    """DBSCAN(eps, min_samples, ball_tree) on the time (ms) spent in each state: noise = outlier."""
    labels = DBSCAN(eps=eps, min_samples=min_samples, algorithm="ball_tree").fit_predict(times_ms)
    return labels == -1


def cluster_outliers(counts: np.ndarray, k: int, seed: int = 42) -> np.ndarray:
    """k-means (n_init 20, max_iter 999) on standardised state counts; labels renumbered by cluster size."""
    if len(counts) < k:
        return np.zeros(len(counts), dtype=int)
    x = StandardScaler().fit_transform(counts.astype(float))
    labels = KMeans(n_clusters=k, n_init=20, max_iter=999, random_state=seed).fit_predict(x)
    order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
    rank = np.empty(k, dtype=int)
    rank[order] = np.arange(k)
    return rank[labels]


def isolation_forest_flags(times_ms: np.ndarray, seed: int = 42) -> int:
    forest = IsolationForest(n_estimators=250, contamination=0.005, max_features=1.0, random_state=seed)
    return int((forest.fit_predict(times_ms) == -1).sum())


def analyse(req: Requests, min_ms: float, eps: float, min_samples: int, k: int, seed: int = 42) -> Analysis:
    kept, dropped = drop_measurement_errors(req, min_ms)
    times_ms = kept.times_ns / 1e6
    is_out = outliers(times_ms, eps, min_samples)
    labels = cluster_outliers(kept.counts[is_out], k, seed)
    return Analysis(kept, dropped, is_out, labels, isolation_forest_flags(times_ms, seed), req.duration_ns)


def ngram_counts(seqs: list[list[str]], n: int) -> list[Counter]:
    return [Counter(zip(*(s[i:] for i in range(n)), strict=False)) for s in seqs]


def characterise(
    groups: dict[str, list[list[str]]], reference: str, n_max: int = 3, top: int = 5
) -> dict[str, list[dict]]:
    """Per group, the n-grams (n = 1..n_max) whose mean count per request differs most from the
    reference group's, with mean and SEM for both (the paper's ngram.csv)."""
    out = {}
    ref_counts = {n: ngram_counts(groups[reference], n) for n in range(1, n_max + 1)}
    for name, seqs in groups.items():
        if name == reference or not seqs:
            continue
        rows = []
        for n in range(1, n_max + 1):
            counts = ngram_counts(seqs, n)
            # sorted: a set of strings iterates in PYTHONHASHSEED's order, and tied rows kept it (issue: the
            # published cluster text swapped two tied 3-grams between two runs of the same seed)
            grams = sorted(set().union(*counts)) if counts else []
            for g in grams:
                a = np.array([c.get(g, 0) for c in counts], dtype=float)
                b = np.array([c.get(g, 0) for c in ref_counts[n]], dtype=float)
                sem_a = a.std(ddof=1) / np.sqrt(len(a)) if len(a) > 1 else 0.0
                sem_b = b.std(ddof=1) / np.sqrt(len(b)) if len(b) > 1 else 0.0
                rows.append(
                    {
                        "ngram": " ".join(g),
                        "n": n,
                        "mean": a.mean(),
                        "sem": sem_a,
                        "ref_mean": b.mean(),
                        "ref_sem": sem_b,
                    }
                )
        rows.sort(key=lambda r: (-(r["mean"] - r["ref_mean"]) / (r["ref_mean"] + 1.0), r["n"], r["ngram"]))
        out[name] = rows[:top]
    return out
