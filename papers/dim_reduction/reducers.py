"""PCA and Isomap as the paper runs them (scikit-learn), timing `fit` only."""

from __future__ import annotations

import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import Isomap

from papers.dim_reduction.config import IsomapConfig
from papers.dim_reduction.data import stratified_subset
from shared.seeding import numpy_global_seed


def fit_pca(
    x_train: np.ndarray, x_test: np.ndarray, d: int, seed: int, repeats: int = 1
) -> tuple[np.ndarray, np.ndarray, float, list[float]]:
    """PCA(n_components=d), otherwise scikit-learn defaults, fit on the whole training set.

    Fit `repeats` times (the same fit: random_state is fixed) and timed each time; returns the projections,
    the median fit time and every fit time. The median, because one sub-second fit is at the mercy of
    whatever else the machine is doing.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats}; valid: >= 1")
    times = []
    for _ in range(repeats):
        pca = PCA(n_components=d, random_state=seed)
        start = time.perf_counter()
        pca.fit(x_train)
        times.append(time.perf_counter() - start)
    return pca.transform(x_train), pca.transform(x_test), float(np.median(times)), times


def fit_isomap(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, d: int, cfg: IsomapConfig, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Isomap(n_neighbors, d) fit on a stratified subset (random_state = seed), then transform all.

    The transform runs in chunks: it is row-wise, and the whole 70k x 10k geodesic matrix at once
    would take several GB.
    """
    x_fit, _ = stratified_subset(x_train, y_train, cfg.fit_size, seed)
    iso = Isomap(n_neighbors=cfg.n_neighbors, n_components=d, n_jobs=-1, eigen_solver=cfg.eigen_solver)
    start = time.perf_counter()
    with numpy_global_seed(seed):  # Isomap takes no random_state; ARPACK's start vector uses the global RNG
        iso.fit(x_fit)
    seconds = time.perf_counter() - start

    def transform(x: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [iso.transform(x[i : i + cfg.transform_chunk]) for i in range(0, len(x), cfg.transform_chunk)]
        )

    return transform(x_train), transform(x_test), seconds
