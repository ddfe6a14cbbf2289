"""Image classification splits through HF datasets, for users with a network or a local HF cache.

The real hub ids live in the papers' full configs; offline (tests set HF_DATASETS_OFFLINE=1) the
loader fails with one DatasetNotFoundError that names the id and how to get the files instead.
"""

from __future__ import annotations

import numpy as np

from shared.data.checks import check_counts, check_labels
from shared.data.errors import CorruptDataError, DatasetNotFoundError


def load_hf_image_splits(
    hf_id: str | None, name: str, how_to_get: str = "", n_classes: int | None = None
) -> tuple[np.ndarray, ...]:
    """(x_train uint8, y_train int64, x_test, y_test) of dataset `hf_id`, whose image column is
    `image` or `img` and label column `label` (integers in 0..n_classes-1 when n_classes is given)."""
    if not hf_id:
        raise DatasetNotFoundError(f"{name}: data.source=hf needs data.hf_id")
    from datasets import load_dataset

    try:
        ds = load_dataset(hf_id)
    except Exception as exc:  # offline, unknown id, no cache: all end the same way for the user
        raise DatasetNotFoundError(
            f"{name}: HF datasets could not load {hf_id!r} ({type(exc).__name__}: {exc}). "
            f"It needs a network or a local HF cache (HF_DATASETS_OFFLINE=1 forbids downloads). {how_to_get}"
        ) from exc
    missing = [s for s in ("train", "test") if s not in ds]
    if missing:
        raise CorruptDataError(f"{hf_id}: no {missing} split; it has {list(ds)}, and train and test are needed")
    columns = ds["train"].column_names
    image_key = next((k for k in ("image", "img") if k in columns), None)
    if image_key is None or "label" not in columns:
        raise CorruptDataError(f"{hf_id}: needs an 'image' (or 'img') and a 'label' column; it has {columns}")
    out = []
    for split in ("train", "test"):
        part = ds[split].with_format("numpy")
        images, labels = np.stack(part[image_key]).astype(np.uint8), part["label"]
        labels = check_labels(labels, n_classes, f"{hf_id}[{split}]") if n_classes else np.asarray(labels, np.int64)
        check_counts(len(images), len(labels), f"{hf_id}[{split}]", f"{hf_id}[{split}]")
        out += [images, labels]
    return tuple(out)
