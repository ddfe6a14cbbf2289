"""Content checks every image-classification reader applies: labels are class indices, pixels are finite.

A dataset that breaks them would otherwise surface far away (201 classes from one label 200, a NaN
deep inside a k-NN search); here it is one CorruptDataError naming the file, the first bad value and
what is valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from shared.data.errors import CorruptDataError


def _flat(values: Any) -> np.ndarray:
    """`values` as a numpy array; a list numpy cannot make rectangular becomes a 1-D object array."""
    if isinstance(values, np.ndarray):
        return values
    try:
        return np.asarray(values)
    except ValueError:  # ragged: keep the items, find the bad one below
        items = list(values)
        out = np.empty(len(items), dtype=object)
        for i, item in enumerate(items):
            out[i] = item
        return out


def check_labels(labels: Any, n_classes: int, name: str) -> np.ndarray:
    """`labels` as int64 when they are a flat sequence of integers in 0..n_classes-1, else one
    CorruptDataError naming `name`, the first offending label and its index."""
    valid = f"labels must be integers in 0..{n_classes - 1}"
    arr = _flat(labels)
    if arr.ndim != 1:
        raise CorruptDataError(f"{name}: {valid}, one per image; found an array of shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        items = arr.tolist() if isinstance(labels, np.ndarray) else list(labels)  # as given, before numpy's casts
        for i, value in enumerate(items):
            if not isinstance(value, int) or isinstance(value, bool):
                raise CorruptDataError(f"{name}: {valid}, found {value!r} ({type(value).__name__}) at index {i}")
        values = items  # python ints of any size: compare before narrowing to int64
        bad = [i for i, v in enumerate(values) if not 0 <= v < n_classes]
        if bad:
            raise CorruptDataError(
                f"{name}: {valid}, found {values[bad[0]]} at index {bad[0]} ({len(bad)} out of range)"
            )
        return np.asarray(values, dtype=np.int64)
    bad = np.flatnonzero((arr < 0) | (arr >= n_classes))
    if bad.size:
        i = int(bad[0])
        raise CorruptDataError(f"{name}: {valid}, found {arr[i]} at index {i} ({bad.size} out of range)")
    return arr.astype(np.int64)


def check_images(images: np.ndarray, name: str, max_value: float = 255.0) -> np.ndarray:
    """`images` when it is a numeric array of shape (n, ...) with n >= 1 and finite values in
    0..max_value, else one CorruptDataError naming `name` and the first offending pixel."""
    valid = f"pixels must be finite numbers in 0..{max_value:g}"
    if images.dtype.kind not in "iuf":
        raise CorruptDataError(f"{name}: {valid}, found dtype {images.dtype}")
    if images.ndim < 2 or images.shape[0] == 0:
        raise CorruptDataError(f"{name}: expected images of shape (n, rows, cols), n >= 1; found {images.shape}")
    if images.dtype == np.uint8 and max_value >= 255:
        return images  # every byte is a valid pixel
    bad = ~np.isfinite(images) if images.dtype.kind == "f" else np.zeros(images.shape, bool)
    bad |= (images < 0) | (images > max_value)
    if bad.any():
        where = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), images.shape))
        raise CorruptDataError(
            f"{name}: {valid}, found {images[where]} at image {where[0]}, position {where[1:]} "
            f"({int(bad.sum())} bad values)"
        )
    return images


def check_counts(n_images: int, n_labels: int, images: str, labels: str) -> None:
    """One label per image: else a CorruptDataError naming both files."""
    if n_images == n_labels:
        return
    if images == labels:
        raise CorruptDataError(f"{images}: {n_images} images but {n_labels} labels; they must match one to one")
    raise CorruptDataError(
        f"{images} has {n_images} images but {labels} has {n_labels} labels; they must match one to one"
    )


def check_same_shape(shapes: Sequence[tuple[int, ...]], names: Sequence[str]) -> None:
    """Every split's images the same size (a k-NN cannot compare 28x28 with 32x32)."""
    if len(set(shapes)) > 1:
        listed = ", ".join(f"{n}: {s}" for n, s in zip(names, shapes, strict=True))
        raise CorruptDataError(f"image sizes differ between files ({listed}); every split must have the same size")
