"""The protocol check every collection reports: an n-gram model must not tell two normal splits apart.

A 3-gram model over syscall names (the paper's n-gram baseline: counts, unseen n-grams get 1/|V|) is
fit on train; each request gets its perplexity; AUROC between valid_id and test_id must be near 0.5.
With sequential captures it was 0.72 on a 2-core VM, with alternating blocks 0.48
(trace_collection.md section 9). The novelties' AUROC against test_id is reported beside it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from shared.io import atomic_write_json
from shared.metrics import auroc
from shared.traces.dataset import MANIFEST, TraceDataset
from shared.traces.ngram import NgramModel

log = logging.getLogger(__name__)

TOLERANCE = 0.1  # |AUROC - 0.5| allowed between two normal splits


def perplexities(model: NgramModel, ds: TraceDataset, split: str) -> np.ndarray:
    return np.array([model.perplexity(s["name"]) for s in ds.sequences(split, "global", ("name",))])


def sanity_check(root: Path, order: int = 3) -> dict:
    """Fit on train, score every split, write the result into the manifest and return it."""
    ds = TraceDataset(root)
    if not {"train", "valid_id", "test_id"} <= set(ds.splits):
        raise ValueError(f"{root}: the sanity check needs train, valid_id and test_id; has {ds.splits}")
    train = [s["name"] for s in ds.sequences("train", "global", ("name",))]
    model = NgramModel.fit(train, order)
    ppl = {split: perplexities(model, ds, split) for split in ds.splits if split != "train"}
    id_auroc = auroc(ppl["valid_id"], ppl["test_id"])
    novelty = {
        s.removeprefix("test_ood_"): auroc(ppl["test_id"], p) for s, p in ppl.items() if s.startswith("test_ood_")
    }
    result = {
        "ngram_order": order,
        "id_vs_id_auroc": round(id_auroc, 4),
        "tolerance": TOLERANCE,
        "passed": abs(id_auroc - 0.5) <= TOLERANCE,
        "novelty_test_auroc": {k: round(v, 4) for k, v in novelty.items()},
    }
    verdict = "passed" if result["passed"] else "FAILED"
    result["summary"] = (
        f"{order}-gram valid_id vs test_id AUROC {id_auroc:.3f} ({verdict}: within 0.5 ± {TOLERANCE}); "
        + ", ".join(f"{k} {v:.3f}" for k, v in novelty.items())
    )
    (log.info if result["passed"] else log.warning)("sanity: %s", result["summary"])
    ds.manifest["sanity"] = result
    atomic_write_json(Path(root) / MANIFEST, ds.manifest)
    return result
