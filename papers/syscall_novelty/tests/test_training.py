"""syscall_novelty training: same seed, same numbers; the n-gram's accuracy by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from papers.syscall_novelty.config import DataConfig, EmbeddingConfig, ModelConfig, TrainConfig
from papers.syscall_novelty.data import load_splits, open_dataset
from papers.syscall_novelty.evaluate import score_split
from papers.syscall_novelty.model import build_model
from papers.syscall_novelty.train import TrainResult, train
from shared.fit_record import CLOCK, FINISHED
from shared.seeding import seed_everything
from shared.traces.ngram import NgramModel

TINY_EMB = EmbeddingConfig(name=8, entry=4, ret=4, proc=4, pid=4, tid=4, position=2, elapsed=2)
TINY = ModelConfig(layers=1, hidden=16, heads=2, ffn_hidden=24, window=8)


CFG = TrainConfig(batch_size=8, max_updates=4, eval_every=2, eval_batch_size=8, accelerator="cpu", num_threads=1,
                  warmup={"transformer": 2})  # fmt: skip


def _train(ckpt: Path, kind: str, seed: int) -> tuple[TrainResult, np.ndarray]:
    data = DataConfig(max_train=24, max_eval=8, max_tokens=64)
    vocab, splits, _ = load_splits(data, open_dataset(data))
    seed_everything(seed)  # as reproduce.run_model: the initial weights follow the seed
    model = build_model(kind, TINY_EMB, TINY, len(vocab.names), len(vocab.procs))
    result = train(model, kind, splits["train"], splits["valid_id"], CFG, seed, ckpt)
    return result, score_split(model, splits["test_id"], 8, torch.device("cpu"))["perplexity"]


def _fit(tmp_path, kind: str, seed: int) -> np.ndarray:
    return _train(tmp_path / f"{kind}-{seed}", kind, seed)[1]


def test_same_seed_same_numbers(tmp_path):
    a = _fit(tmp_path / "a", "transformer", 0)
    b = _fit(tmp_path / "b", "transformer", 0)
    c = _fit(tmp_path / "c", "transformer", 1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.slow
def test_a_resumed_training_reports_the_original_throughput(tmp_path):
    """Rerun with the checkpoints present (the run stopped after training, while scoring): the result,
    tokens/s included, is the first run's; the weights are its best ones. Without the finished result
    (stopped after the last checkpoint) training resumes there and its clock and token count go on."""
    first, ppl = _train(tmp_path / "ckpt", "lstm", 0)
    assert first.updates == 4 and first.tokens > 0 and first.seconds > 0
    again, ppl_again = _train(tmp_path / "ckpt", "lstm", 0)
    assert again == first and again.tokens / again.seconds == first.tokens / first.seconds
    assert np.array_equal(ppl, ppl_again)
    (tmp_path / "ckpt" / FINISHED).unlink()
    clock = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)[CLOCK]
    assert clock["tokens"] == first.tokens and 0 < clock["seconds"] <= first.seconds
    resumed, _ = _train(tmp_path / "ckpt", "lstm", 0)
    assert resumed.updates == first.updates and resumed.tokens == first.tokens
    assert resumed.seconds >= clock["seconds"] and resumed.tokens / resumed.seconds > 0


def test_ngram_accuracy_by_hand():
    model = NgramModel.fit([np.array(["a", "b", "a", "c", "a", "b"])], order=2)
    # contexts: S->a (1), a->b (2), a->c (1), b->a (1), c->a (1): best after a is b
    correct, total = model.accuracy(np.array(["a", "b", "a", "c"]))
    assert (correct, total) == (3, 4)  # S->a ok, a->b ok, b->a ok, a->c wrong
