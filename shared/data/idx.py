"""The IDX format of MNIST and Fashion-MNIST, plain or gzipped, read with numpy only.

Header: two zero bytes, a dtype code, the number of dimensions, then one big-endian uint32 per
dimension, then the data. Anything that does not add up is a CorruptDataError naming the file.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from shared.data.checks import check_counts, check_images, check_labels, check_same_shape
from shared.data.errors import CorruptDataError, DatasetNotFoundError

DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DatasetNotFoundError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise CorruptDataError(f"{path}: gzip stream is damaged or truncated ({exc})") from exc
    return raw


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array of the declared dtype and shape."""
    if len(raw) < 4:
        raise CorruptDataError(f"{name}: {len(raw)} bytes, too short for an IDX header")
    if raw[0] != 0 or raw[1] != 0:
        raise CorruptDataError(f"{name}: bad magic {raw[:4].hex()}, an IDX file starts with 00 00")
    code, ndim = raw[2], raw[3]
    if code not in DTYPES:
        raise CorruptDataError(f"{name}: unknown dtype code 0x{code:02x}; valid: {[hex(c) for c in DTYPES]}")
    if ndim == 0:
        raise CorruptDataError(f"{name}: zero dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptDataError(f"{name}: header declares {ndim} dimensions but the file ends at byte {len(raw)}")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(DTYPES[code])
    expected = math.prod(shape) * dtype.itemsize  # python ints: a forged header cannot overflow it
    actual = len(raw) - header
    if actual != expected:
        raise CorruptDataError(
            f"{name}: shape {shape} needs {expected} data bytes, found {actual} (truncated or wrong file)"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


def find_idx(folder: Path, stem: str) -> Path:
    """`stem` or `stem.gz` inside `folder`, whichever exists."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetNotFoundError(f"{stem}[.gz] not found in {folder}")


def load_idx_split(
    folder: str | Path, how_to_get: str = "", n_classes: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four standard MNIST-style files of `folder`: (x_train, y_train, x_test, y_test).

    Checked: images are (n, rows, cols) of finite pixels in 0..255, the same size in both splits;
    labels are one integer in 0..n_classes-1 per image (MNIST and Fashion-MNIST have 10 classes).
    """
    folder = Path(folder)
    try:
        paths = [
            find_idx(folder, s)
            for s in (
                "train-images-idx3-ubyte",
                "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte",
            )
        ]
    except DatasetNotFoundError as exc:
        raise DatasetNotFoundError(f"{exc}. {how_to_get}".strip()) from None
    x_train, y_train, x_test, y_test = (read_idx(p) for p in paths)
    for x, y, x_path, y_path in ((x_train, y_train, paths[0], paths[1]), (x_test, y_test, paths[2], paths[3])):
        check_images(x, str(x_path))
        if x.ndim != 3:
            raise CorruptDataError(f"{x_path}: images must have shape (n, rows, cols), found {x.shape}")
        check_counts(x.shape[0], y.shape[0], str(x_path), str(y_path))
    y_train, y_test = (check_labels(y, n_classes, str(p)) for y, p in ((y_train, paths[1]), (y_test, paths[3])))
    check_same_shape([x_train.shape[1:], x_test.shape[1:]], [str(paths[0]), str(paths[2])])
    return x_train, y_train, x_test, y_test
