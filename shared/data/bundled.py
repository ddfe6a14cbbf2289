"""Datasets that ship inside scikit-learn: no download, used for smoke scales."""

from __future__ import annotations

import numpy as np


def load_digits_split(
    test_fraction: float = 0.25, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (1,797 images, values 0-16) as a stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x.astype(np.uint8), y, test_size=test_fraction, stratify=y, random_state=seed
    )
    return x_tr, y_tr, x_te, y_te
