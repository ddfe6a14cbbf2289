"""syscall_novelty training: same seed, same numbers; the n-gram's accuracy by hand."""

from __future__ import annotations

import numpy as np
import torch

from papers.syscall_novelty.config import DataConfig, EmbeddingConfig, ModelConfig, TrainConfig
from papers.syscall_novelty.data import load_splits, open_dataset
from papers.syscall_novelty.evaluate import score_split
from papers.syscall_novelty.model import build_model
from papers.syscall_novelty.train import train
from shared.seeding import seed_everything
from shared.traces.ngram import NgramModel

TINY_EMB = EmbeddingConfig(name=8, entry=4, ret=4, proc=4, pid=4, tid=4, position=2, elapsed=2)
TINY = ModelConfig(layers=1, hidden=16, heads=2, ffn_hidden=24, window=8)


def _fit(tmp_path, kind: str, seed: int) -> np.ndarray:
    data = DataConfig(max_train=24, max_eval=8, max_tokens=64)
    vocab, splits, _ = load_splits(data, open_dataset(data))
    cfg = TrainConfig(batch_size=8, max_updates=4, eval_every=2, eval_batch_size=8, accelerator="cpu",
                      num_threads=1, warmup={"transformer": 2})  # fmt: skip
    seed_everything(seed)  # as reproduce.run_model: the initial weights follow the seed
    model = build_model(kind, TINY_EMB, TINY, len(vocab.names), len(vocab.procs))
    train(model, kind, splits["train"], splits["valid_id"], cfg, seed, tmp_path / f"{kind}-{seed}")
    return score_split(model, splits["test_id"], 8, torch.device("cpu"))["perplexity"]


def test_same_seed_same_numbers(tmp_path):
    a = _fit(tmp_path / "a", "transformer", 0)
    b = _fit(tmp_path / "b", "transformer", 0)
    c = _fit(tmp_path / "c", "transformer", 1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_ngram_accuracy_by_hand():
    model = NgramModel.fit([np.array(["a", "b", "a", "c", "a", "b"])], order=2)
    # contexts: S->a (1), a->b (2), a->c (1), b->a (1), c->a (1): best after a is b
    correct, total = model.accuracy(np.array(["a", "b", "a", "c"]))
    assert (correct, total) == (3, 4)  # S->a ok, a->b ok, b->a ok, a->c wrong
