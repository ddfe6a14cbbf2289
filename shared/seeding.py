"""One call to make a run repeatable: same seed, same numbers on CPU."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


def seed_everything(seed: int, deterministic: bool = True) -> np.random.Generator:
    """Seed Python, NumPy and (if imported) torch; return a NumPy Generator for explicit use.

    torch is only touched when a paper has imported it, so shared/ stays usable without it.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return np.random.default_rng(seed)


@contextmanager
def numpy_global_seed(seed: int) -> Iterator[None]:
    """Run a block with NumPy's global RNG seeded, then put the previous state back.

    For library code that draws from the global RNG and takes no random_state (scikit-learn's
    Isomap seeds ARPACK's start vector that way), so its result does not depend on what ran before.
    """
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)
