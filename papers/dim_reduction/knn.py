"""The paper's k-NN protocol, computed cheaply and exactly.

The authors run scikit-learn's RandomizedSearchCV over KNeighborsClassifier (uniform weights,
Euclidean), k drawn from 1 .. int(sqrt(n)) - 1, 5-fold stratified CV without shuffling, then refit
on all training data and score the test set. Each (k, fold) fit there queries the neighbours again.

Here each fold's validation set is queried once for the k_max nearest neighbours, sorted by
distance; the vote of the first k of them is the prediction of a k-NN classifier for every k at
once. Ties in the vote go to the smallest class label, as scikit-learn's mode/argmax does. The
chosen k is the first candidate (in sampling order) with the highest mean fold accuracy, as
RandomizedSearchCV's rank_test_score does. `bench.py` checks both against scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import ParameterSampler, StratifiedKFold
from sklearn.neighbors import NearestNeighbors

# Exact search either way; a k-d tree is much faster for very few dimensions, brute force above.
KD_TREE_MAX_DIM = 9


def k_range(n_train: int) -> list[int]:
    """The paper's candidate k: 1 .. int(sqrt(n_train)) - 1."""
    return list(range(1, int(np.sqrt(n_train))))


def candidate_ks(n_train: int, n_iter: int | None, seed: int) -> list[int]:
    """The k values RandomizedSearchCV(n_iter, random_state=seed) would try, in its order.

    With n_iter None (or at least the range size) every k is a candidate: a full grid.
    """
    ks = k_range(n_train)
    if not ks:
        raise ValueError(f"n_train={n_train} is too small for a k-NN search (need at least 4 samples)")
    if n_iter is None or n_iter >= len(ks):
        return ks
    sampler = ParameterSampler({"n_neighbors": ks}, n_iter=n_iter, random_state=seed)
    return [int(p["n_neighbors"]) for p in sampler]


def neighbors(
    reference: np.ndarray, query: np.ndarray, k: int, backend: str = "sklearn", n_jobs: int = -1
) -> np.ndarray:
    """Indices (n_query, k) of each query's k nearest reference rows, nearest first."""
    if k > len(reference):
        raise ValueError(f"k={k} exceeds the {len(reference)} reference samples")
    if backend == "sklearn":
        algorithm = "kd_tree" if reference.shape[1] <= KD_TREE_MAX_DIM else "brute"
        nn = NearestNeighbors(n_neighbors=k, algorithm=algorithm, n_jobs=n_jobs).fit(reference)
        return nn.kneighbors(query, return_distance=False)
    if backend == "torch":
        return _torch_neighbors(reference, query, k)
    raise ValueError(f"unknown k-NN backend {backend!r}; valid: sklearn, torch")


def _torch_neighbors(reference: np.ndarray, query: np.ndarray, k: int, chunk: int = 4096) -> np.ndarray:
    """Brute-force float64 neighbours with torch, on the GPU when there is one.

    Distances are taken from the coordinate differences, not |q|^2 - 2 q.r + |r|^2, whose
    cancellation error could reorder near-equal neighbours relative to scikit-learn.
    """
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ref = torch.as_tensor(reference, dtype=torch.float64, device=device)
    out = []
    for start in range(0, len(query), chunk):
        q = torch.as_tensor(query[start : start + chunk], dtype=torch.float64, device=device)
        dist = torch.cdist(q, ref, compute_mode="donot_use_mm_for_euclid_dist")
        out.append(torch.topk(dist, k, dim=1, largest=False, sorted=True).indices.cpu())
    return torch.cat(out).numpy()


def vote_accuracies(
    neighbor_labels: np.ndarray, y_true: np.ndarray, ks: Sequence[int], n_classes: int
) -> dict[int, float]:
    """Accuracy of the uniform k-NN vote for every k in ks, from labels of neighbours sorted by distance.

    Counts grow one neighbour rank at a time; argmax picks the smallest label on a tie.
    """
    n_query, k_max = neighbor_labels.shape
    wanted = set(ks)
    if max(wanted) > k_max:
        raise ValueError(f"k={max(wanted)} needs more than the {k_max} neighbours given")
    counts = np.zeros((n_query, n_classes), dtype=np.int32)
    rows = np.arange(n_query)
    out: dict[int, float] = {}
    for rank in range(max(wanted)):
        counts[rows, neighbor_labels[:, rank]] += 1
        if rank + 1 in wanted:
            out[rank + 1] = float(np.mean(counts.argmax(axis=1) == y_true))
    return out


def vote(neighbor_labels: np.ndarray, k: int, n_classes: int) -> np.ndarray:
    """The uniform k-NN vote of each query (the smallest label on a tie), from neighbour labels nearest first."""
    counts = np.zeros((len(neighbor_labels), n_classes), dtype=np.int32)
    rows = np.arange(len(neighbor_labels))
    for rank in range(k):
        counts[rows, neighbor_labels[:, rank]] += 1
    return counts.argmax(axis=1)


@dataclass
class KnnScore:
    best_k: int
    cv_accuracy: float
    test_accuracy: float
    candidates: list[int]
    cv_scores: list[float]  # mean fold accuracy per candidate, in candidate order
    # whether each test item is classified right at best_k: what a bootstrap over test items resamples
    test_correct: np.ndarray


def encode_labels(y_train: np.ndarray, y_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Labels as 0..C-1 (scikit-learn's classes_ order); test labels unseen in training become -1."""
    classes = np.unique(y_train)
    lookup = {c: i for i, c in enumerate(classes)}
    enc_test = np.array([lookup.get(c, -1) for c in y_test.tolist()], dtype=np.int64)
    return np.searchsorted(classes, y_train), enc_test, len(classes)


def cv_search(
    x: np.ndarray, y: np.ndarray, ks: Sequence[int], folds: int = 5, backend: str = "sklearn", n_jobs: int = -1
) -> tuple[int, list[float]]:
    """(best k, mean CV accuracy per candidate) for encoded labels y."""
    n_classes = int(y.max()) + 1
    k_max = max(ks)
    fold_scores = []
    for train_idx, val_idx in StratifiedKFold(n_splits=folds).split(x, y):
        idx = neighbors(x[train_idx], x[val_idx], k_max, backend, n_jobs)
        acc = vote_accuracies(y[train_idx][idx], y[val_idx], ks, n_classes)
        fold_scores.append([acc[k] for k in ks])
    means = np.average(np.asarray(fold_scores).T, axis=1)
    best = int(np.flatnonzero(means == means.max())[0])
    return int(ks[best]), means.tolist()


def knn_score(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_iter: int | None = 60,
    folds: int = 5,
    seed: int = 0,
    backend: str = "sklearn",
    n_jobs: int = -1,
) -> KnnScore:
    """The paper's k-NN evaluation: CV search for k on the training set, accuracy on the test set."""
    ytr, yte, n_classes = encode_labels(y_train, y_test)
    ks = candidate_ks(len(ytr), n_iter, seed)
    best_k, means = cv_search(x_train, ytr, ks, folds, backend, n_jobs)
    idx = neighbors(x_train, x_test, best_k, backend, n_jobs)
    correct = vote(ytr[idx], best_k, n_classes) == yte
    return KnnScore(best_k, float(max(means)), float(correct.mean()), list(ks), means, correct)
