"""Score requests and turn scores into the paper's metrics.

Score: a request's perplexity, exp(mean cross-entropy of its next-name predictions); the extension
scores of scores.py come from the same per-token cross-entropies. Threshold: 100
evenly spaced values between the min and max perplexity of valid ID and valid OOD together; the one with
the best validation F1 (novel = positive) is applied to test ID and test OOD. AUROC uses the perplexity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from papers.syscall_novelty.data import Split, batches, collate
from papers.syscall_novelty.scores import SCORES, request_scores
from shared.metrics import auroc
from shared.traces.tokens import PAD


def target_flags(split: Split, i: int) -> np.ndarray:
    """The unseen flags of request i's predicted tokens: its kept events, then [END]/[TRUNCATE] (never
    unseen). All False when the split carries no flags."""
    n_targets = len(split.tokens[i]) - 1
    out = np.zeros(n_targets, dtype=bool)
    if split.unseen is not None:
        kept = split.unseen[i][: n_targets - 1]
        out[: len(kept)] = kept
    return out


def split_scores(surprisals: list[np.ndarray], split: Split, top_k: int) -> dict[str, np.ndarray]:
    """Every score of every request (scores.SCORES), from per-token surprisals in the split's order;
    'perplexity' is the paper's score, exp of the mean."""
    rows = [request_scores(s, target_flags(split, i), top_k) for i, s in enumerate(surprisals)]
    out = {name: np.array([r[name] for r in rows]) for name in SCORES}
    out["perplexity"] = np.exp(out["mean"])
    return out


@torch.no_grad()
def score_split(
    model: nn.Module, split: Split, batch_size: int, device: torch.device, top_k: int = 10
) -> dict[str, np.ndarray]:
    """Per-request scores (perplexity, the paper's, and the extension scores of scores.py), plus correct /
    total next-name predictions, in the split's order."""
    model.eval()
    surprisals: list[np.ndarray] = [np.zeros(0)] * len(split)
    correct = total = 0
    for idx in batches(split, batch_size, shuffle=False):
        b = collate(split, idx)
        x, y = b["x"].to(device), b["y"].to(device)
        logits = model(x)
        ce = F.cross_entropy(logits.transpose(1, 2).float(), y, ignore_index=PAD, reduction="none").cpu().numpy()
        mask = y != PAD
        for row, i in enumerate(idx):
            surprisals[i] = ce[row, : len(split.tokens[i]) - 1].astype(float)
        correct += int(((logits.argmax(-1) == y) & mask).sum())
        total += int(mask.sum())
    return {**split_scores(surprisals, split, top_k), "correct": np.int64(correct), "total": np.int64(total)}


@dataclass
class Detection:
    auroc: float
    f1: float
    precision: float
    recall: float
    accuracy: float
    threshold: float
    valid_f1: float


def _confusion(normal: np.ndarray, novel: np.ndarray, thr: np.ndarray) -> tuple[np.ndarray, ...]:
    tp = (novel[None, :] > thr[:, None]).sum(1).astype(float)
    fp = (normal[None, :] > thr[:, None]).sum(1).astype(float)
    fn = len(novel) - tp
    tn = len(normal) - fp
    return tp, fp, fn, tn


def _f1(tp, fp, fn) -> np.ndarray:
    return np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=(2 * tp + fp + fn) > 0)


def detect(valid_id: np.ndarray, valid_ood: np.ndarray, test_id: np.ndarray, test_ood: np.ndarray, n: int = 100):
    """The paper's protocol: threshold by validation F1, metrics on test, AUROC on test."""
    both = np.concatenate([valid_id, valid_ood])
    candidates = np.linspace(both.min(), both.max(), n)
    vf1 = _f1(*_confusion(valid_id, valid_ood, candidates)[:3])
    best = int(np.argmax(vf1))
    thr = candidates[best : best + 1]
    tp, fp, fn, tn = (float(v[0]) for v in _confusion(test_id, test_ood, thr))
    return Detection(
        auroc=auroc(test_id, test_ood),
        f1=float(_f1(np.array([tp]), np.array([fp]), np.array([fn]))[0]),
        precision=tp / (tp + fp) if tp + fp else 0.0,
        recall=tp / (tp + fn) if tp + fn else 0.0,
        accuracy=(tp + tn) / (tp + fp + fn + tn),
        threshold=float(thr[0]),
        valid_f1=float(vf1[best]),
    )


def roc_curve(normal: np.ndarray, novel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) over every threshold, for the figures."""
    thr = np.unique(np.concatenate([normal, novel]))[::-1]
    tp, fp, fn, tn = _confusion(normal, novel, np.r_[np.inf, thr])
    return fp / max(len(normal), 1), tp / max(len(novel), 1)
