"""syscall_novelty: the embedding, the three models' masks, encoding, scoring and the paper's threshold rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from papers.syscall_novelty.config import EmbeddingConfig, ModelConfig
from papers.syscall_novelty.data import DataError, Split, check_splits
from papers.syscall_novelty.evaluate import detect, score_split
from papers.syscall_novelty.model import build_model
from papers.syscall_novelty.train import warmup_factor
from shared.encodings import sinusoid
from shared.traces.tokens import END, START, TRUNCATE, UNKNOWN, Vocab, encode


def test_paper_dimensions_and_parameter_count():
    assert EmbeddingConfig().d_model == 168
    model = build_model("transformer", EmbeddingConfig(), ModelConfig(), n_names=95, n_procs=58)
    assert sum(p.numel() for p in model.parameters()) == 705_999  # the paper's Transformer log


def test_sinusoid_by_hand():
    out = sinusoid(torch.tensor([2.0]), 4, base=1e6)
    w = [1.0, math.exp(-math.log(1e6) * 2 / 4)]
    expected = [math.sin(2 * w[0]), math.sin(2 * w[1]), math.cos(2 * w[0]), math.cos(2 * w[1])]
    assert out[0].tolist() == pytest.approx(expected, rel=1e-6)


def _tokens(t: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(5, 20, (1, t, 7), generator=g)
    x[..., 1] = torch.randint(0, 3, (1, t), generator=g)
    x[..., 6] = torch.randint(0, 3, (1, t), generator=g)
    return x


@pytest.mark.parametrize("kind", ["lstm", "transformer", "longformer"])
def test_models_are_causal(kind):
    torch.manual_seed(0)
    model = build_model(kind, EmbeddingConfig(), ModelConfig(window=4), n_names=30, n_procs=30).eval()
    x = _tokens(12)
    changed = x.clone()
    changed[0, 8, 0] = 29  # change a later token: earlier outputs must not move
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert torch.allclose(a[0, :8], b[0, :8], atol=1e-6)
    assert not torch.allclose(a[0, 8:], b[0, 8:])


def test_longformer_window_and_global_token():
    torch.manual_seed(0)
    model = build_model("longformer", EmbeddingConfig(), ModelConfig(window=2, layers=1), 30, 30).eval()
    x = _tokens(10)
    far = x.clone()
    far[0, 3, 0] = 29  # position 9 sees only 7, 8, 9 and 0 with one layer and window 2
    first = x.clone()
    first[0, 0, 0] = 29
    with torch.no_grad():
        base, a, b = model(x), model(far), model(first)
    assert torch.allclose(base[0, 9], a[0, 9], atol=1e-6)
    assert not torch.allclose(base[0, 9], b[0, 9])  # token 0 is global


def test_encode_by_hand():
    vocab = Vocab({"[MASK]": 0, "[UNKNOWN]": 1, "[START]": 2, "[END]": 3, "[TRUNCATE]": 4, "read": 5},
                  {"[MASK]": 0, "[UNKNOWN]": 1, "[START]": 2, "[END]": 3, "[TRUNCATE]": 4, "apache2": 5})  # fmt: skip
    seq = {
        "name": np.array(["read", "read", "poll"]),
        "entry": np.array([1, 2, 1]),
        "ts": np.array([100, 130, 180]),
        "comm": np.array(["apache2", "apache2", "mariadbd"]),
        "pid": np.array([7, 7, 9]),
        "tid": np.array([8, 8, 9]),
        "ret": np.array([np.nan, -11.0, np.nan]),
    }
    tokens, truncated = encode(seq, vocab, max_tokens=10)
    assert not truncated
    assert tokens[:, 0].tolist() == [START, 5, 5, UNKNOWN, END]
    assert tokens[1:4, 1].tolist() == [1, 2, 1]
    assert tokens[1:4, 2].tolist() == [0, 30, 50]  # ns since the previous event
    assert tokens[1:4, 3].tolist() == [5, 5, UNKNOWN]
    assert tokens[1:4, 6].tolist() == [0, 2, 0]  # exit with a negative return: failure
    short, truncated = encode(seq, vocab, max_tokens=4)
    assert truncated and short[:, 0].tolist() == [START, 5, 5, TRUNCATE]


def test_batched_scoring_equals_one_request_at_a_time():
    torch.manual_seed(0)
    model = build_model("transformer", EmbeddingConfig(), ModelConfig(), 30, 30).eval()
    rng = np.random.default_rng(0)
    tokens = []
    for n in (5, 9, 14, 7):
        t = rng.integers(5, 20, (n, 7))
        t[:, 1], t[:, 6] = rng.integers(0, 3, n), rng.integers(0, 3, n)
        t[0, 0], t[-1, 0] = START, END
        tokens.append(t)
    split = Split("x", tokens, np.zeros(4), [np.array([])] * 4, 0)
    batched = score_split(model, split, batch_size=4, device=torch.device("cpu"))["perplexity"]
    single = [
        score_split(model, Split("x", [t], np.zeros(1), [np.array([])], 0), 1, torch.device("cpu"))["perplexity"][0]
        for t in tokens
    ]  # noqa: E501
    assert batched == pytest.approx(single, rel=1e-5)


def test_threshold_rule_by_hand():
    # validation: normal 1..4, novel 5..8 -> every threshold in [4, 5) separates them (F1 = 1)
    valid_id, valid_ood = np.array([1.0, 2, 3, 4]), np.array([5.0, 6, 7, 8])
    test_id, test_ood = np.array([1.0, 2, 3, 6]), np.array([5.0, 7, 8, 9])
    d = detect(valid_id, valid_ood, test_id, test_ood, n=8)  # candidates 1, 2, ..., 8
    assert d.threshold == 4.0 and d.valid_f1 == 1.0
    # test: TP = 4, FP = 1 (the 6), FN = 0
    assert d.precision == pytest.approx(0.8) and d.recall == 1.0 and d.f1 == pytest.approx(8 / 9)
    assert d.auroc == pytest.approx(15 / 16)


def test_warmup_then_inverse_sqrt():
    assert warmup_factor(0, 0) == 1.0
    assert warmup_factor(49, 100) == pytest.approx(0.5)
    assert warmup_factor(99, 100) == pytest.approx(1.0)
    assert warmup_factor(399, 100) == pytest.approx(0.5)


class _FakeDataset:
    def __init__(self, splits):
        self.root, self.splits = "fake", splits

    def split(self, name):
        import pyarrow as pa

        return pa.table({"request": [1]})


def test_missing_split_is_named():
    ds = _FakeDataset(["train", "valid_id", "test_id", "valid_ood_cpu"])
    with pytest.raises(DataError, match=r"missing split\(s\) \['test_ood_cpu'\]"):
        check_splits(ds, ["cpu"])
    with pytest.raises(DataError, match=r"missing split\(s\) \['train'\]"):
        check_splits(_FakeDataset(["valid_id", "test_id"]), [])


@pytest.mark.parametrize("problem", ["no splits", "missing folder"])
def test_a_malformed_or_missing_dataset_is_one_line_exit_2(tmp_path, capsys, problem):
    import json

    from papers.syscall_novelty.reproduce import main
    from shared.traces import SAMPLE_DIR

    ds = tmp_path / "ds"
    if problem == "no splits":
        ds.mkdir()
        manifest = json.loads((SAMPLE_DIR / "manifest.json").read_text())
        del manifest["splits"]
        (ds / "manifest.json").write_text(json.dumps(manifest))
        for name in ("requests.parquet", "events"):
            (ds / name).symlink_to(SAMPLE_DIR / name)
        expected = f"error: {ds / 'manifest.json'}: manifest key 'splits' is missing"
    else:
        expected = f"error: {ds}: no such dataset folder"
    rc = main(["--scale", "smoke", "--set", f"data.path={ds}", "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(expected) and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()
