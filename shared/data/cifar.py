"""CIFAR-10 "python version" batches, read without ever unpickling arbitrary objects.

The batches are pickles of a dict of bytes, lists, ints and numpy arrays. A restricted unpickler
allows exactly the globals numpy needs to rebuild an array, so a crafted file cannot run code.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from shared.data.checks import check_counts, check_labels
from shared.data.errors import CorruptDataError, DatasetNotFoundError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}
N_CLASSES = 10
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
HOW_TO_GET = (
    "Download cifar-10-python.tar.gz from the CIFAR-10 page (Krizhevsky), extract it and pass the "
    "folder holding data_batch_1..5 and test_batch."
)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: images as (n, 32, 32, 3) uint8 and labels as (n,) int64 in 0..9."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"CIFAR-10 batch not found: {path}. {HOW_TO_GET}")
    try:
        obj = _RestrictedUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as exc:  # the unpickler runs no foreign code, so any failure means a damaged file
        raise CorruptDataError(
            f"{path}: not a CIFAR-10 python batch, truncated or damaged ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(obj, dict):
        raise CorruptDataError(f"{path}: expected a dict, found {type(obj).__name__}")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if data is None or labels is None:
        raise CorruptDataError(f"{path}: missing 'data' or 'labels' (keys: {list(obj)})")
    if not isinstance(data, np.ndarray):
        raise CorruptDataError(f"{path}: data must be a uint8 array of shape (n, 3072), found {type(data).__name__}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] == 0:
        raise CorruptDataError(f"{path}: data must be uint8 of shape (n, 3072), n >= 1; got {data.dtype} {data.shape}")
    labels = check_labels(labels, N_CLASSES, str(path))
    check_counts(data.shape[0], labels.shape[0], str(path), str(path))
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def load_cifar10(folder: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) from an extracted cifar-10-batches-py folder."""
    folder = Path(folder)
    train = [read_batch(folder / name) for name in TRAIN_BATCHES]
    x_test, y_test = read_batch(folder / TEST_BATCH)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return x_train, y_train, x_test, y_test
