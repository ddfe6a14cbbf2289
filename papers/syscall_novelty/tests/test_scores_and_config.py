"""syscall_novelty extension scores against hand-computed surprisals, and the config's new fields."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from papers.syscall_novelty.config import Config
from papers.syscall_novelty.data import Split
from papers.syscall_novelty.evaluate import score_split
from papers.syscall_novelty.reproduce import run_ngram
from papers.syscall_novelty.scores import UnseenNgrams, request_scores
from shared.config import ConfigError, load_config
from shared.traces.tokens import END, START, TRUNCATE, Vocab

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_request_scores_by_hand():
    s = np.array([1.0, 3.0, 2.0, 5.0])
    flags = np.array([False, True, False, True])
    assert request_scores(s, flags, top_k=2) == {"mean": 2.75, "max": 5.0, "topk": 4.0, "unseen": 8.0}
    # k beyond the request's length: the mean of all its tokens; no unseen event: 0
    assert request_scores(s, np.zeros(4, bool), top_k=10) == {"mean": 2.75, "max": 5.0, "topk": 2.75, "unseen": 0.0}
    with pytest.raises(ValueError, match="must be equal"):
        request_scores(s, flags[:3], top_k=2)


def test_unseen_ngrams_by_hand():
    vocab = Vocab.build([np.array(["a", "b", "c"])], [np.array(["p"])])
    unseen = UnseenNgrams.fit([np.array(["a", "b", "c"])], vocab, order=2)
    # training bigrams: (S,a) (a,b) (b,c); query bigrams: (S,a) seen, (a,c) (c,b) unseen, (b,z): z never seen
    assert unseen.flags(np.array(["a", "c", "b", "z"])).tolist() == [False, True, True, True]
    assert unseen.flags(np.array(["a", "b", "c"])).tolist() == [False, False, False]
    # order 1: only names; the unknown name alone is unseen
    assert UnseenNgrams.fit([np.array(["a", "b"])], vocab, 1).flags(np.array(["b", "c", "a"])).tolist() == [
        False,
        True,
        False,
    ]


class _Bigram(nn.Module):
    """A fixed 'language model': the logits of the next name depend only on the current name."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x[..., 0]]


def _tokens(calls: list[int]) -> np.ndarray:
    t = np.zeros((len(calls), 7), dtype=np.int64)
    t[:, 0] = calls
    return t


def test_model_scores_equal_hand_computed_surprisals():
    v = 8
    rng = np.random.default_rng(0)
    table = rng.normal(size=(v, v))
    model = _Bigram(torch.tensor(table, dtype=torch.float32))

    def surprisal(prev: int, nxt: int) -> float:  # -log softmax(table[prev])[nxt], by hand
        return -(table[prev, nxt] - math.log(sum(math.exp(z) for z in table[prev])))

    requests = [[START, 5, 6, 7, 5, END], [START, 6, 6, TRUNCATE], [START, 7, END]]
    unseen = [np.array([False, True, False, True]), np.array([True, False, True]), np.array([True])]
    # the second request was truncated after 2 of its 3 events: its third flag is not scored
    split = Split("x", [_tokens(r) for r in requests], np.zeros(3), [np.array([])] * 3, 1, unseen)
    got = score_split(model, split, batch_size=2, device=torch.device("cpu"), top_k=2)
    # per predicted token (the events, then [END]/[TRUNCATE], which is never unseen)
    expected_flags = [[False, True, False, True, False], [True, False, False], [True, False]]
    for i, r in enumerate(requests):
        s = np.array([surprisal(a, b) for a, b in zip(r[:-1], r[1:], strict=True)])
        flags = np.array(expected_flags[i])
        assert got["mean"][i] == pytest.approx(s.mean(), rel=1e-5)
        assert got["perplexity"][i] == pytest.approx(math.exp(s.mean()), rel=1e-5)
        assert got["max"][i] == pytest.approx(s.max(), rel=1e-5)
        assert got["topk"][i] == pytest.approx(np.sort(s)[-2:].mean(), rel=1e-5)
        assert got["unseen"][i] == pytest.approx(s[flags].sum(), rel=1e-5)
    assert got["unseen"][2] == pytest.approx(surprisal(START, 7), rel=1e-5)


def test_ngram_scores_by_hand():
    names = lambda *s: np.array(s)  # noqa: E731
    train = names("a", "b", "a", "b")
    vocab = Vocab.build([train], [names("p")])
    test = names("a", "b", "c")
    unseen = UnseenNgrams.fit([train], vocab, order=2)
    split = lambda n, seqs: Split(n, [np.zeros((1, 7), np.int64)] * len(seqs), np.zeros(len(seqs)), seqs, 0)  # noqa: E731
    splits = {"train": split("train", [train]), "test_id": split("test_id", [test])}
    splits["test_id"].unseen = [unseen.flags(test)]
    out = run_ngram(splits, order=2, top_k=2)
    # bigram counts: (S,a) 1, (a,b) 2, (b,a) 1; vocab S, UNK, a, b: |V| = 4; c is unknown
    s = np.array([-math.log(1 / 1), -math.log(2 / 2), -math.log(1 / 4)])  # (S,a), (a,b), (b,UNK): unseen
    assert out["mean__test_id"][0] == pytest.approx(s.mean())
    assert out["ppl__test_id"][0] == pytest.approx(math.exp(s.mean()))
    assert out["max__test_id"][0] == pytest.approx(math.log(4))
    assert out["topk__test_id"][0] == pytest.approx((math.log(4) + 0.0) / 2)
    assert out["unseen__test_id"][0] == pytest.approx(math.log(4))  # only (b, c) is unseen


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("score.top_k=0", "score.top_k: 0 is out of range"),
        ("score.unseen_order=0", "score.unseen_order: 0 is out of range"),
        ("score.unseen_order=7", "score.unseen_order must be in 1..6"),
        ("train.workers=0", "train.workers: 0 is out of range"),
        ("data.modes=[thread]", "data.modes: .* must start with 'global'"),
        ("data.modes=[global,global]", "data.modes: .* must start with 'global'"),
        ("data.modes=[global,nope]", r"data.modes: unknown \['nope'\]; valid: global"),
        ("train.accelerator=gpu", "train.workers 2 .* needs train.accelerator cpu"),
    ],
)
def test_new_config_fields_are_range_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Config, CONFIGS / "mini.yaml", [override])


def test_mini_config_trains_two_single_thread_workers_in_two_modes():
    cfg = load_config(Config, CONFIGS / "mini.yaml")
    assert cfg.train.workers == 2 and cfg.train.num_threads == 1
    assert cfg.data.modes[0] == "global" and len(cfg.data.modes) == 2
