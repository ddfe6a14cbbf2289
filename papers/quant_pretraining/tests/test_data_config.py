"""Document split, batch partitioning over ranks, evaluation windows, and the config's checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from papers.quant_pretraining.config import PAPER_DIR, Config
from papers.quant_pretraining.configurations import CONFIGURATIONS, get_configuration
from papers.quant_pretraining.data import RandomWindows, eval_windows, split_documents
from shared.config import ConfigError, load_config


def test_split_is_seeded_disjoint_and_complete():
    docs = [f"doc {i}" for i in range(1000)]
    train, valid = split_documents(docs, 0.02, 2345)
    assert len(valid) == 20 and len(train) == 980 and not set(train) & set(valid)
    assert (train, valid) == split_documents(docs, 0.02, 2345)
    assert valid != split_documents(docs, 0.02, 1)[1]


def test_micro_batches_of_all_ranks_make_up_the_global_batch():
    stream = np.arange(10_000, dtype=np.uint16)
    full = RandomWindows(stream, seq_len=16, batch_size=8, micro_batch=8, seed=3)
    parts = RandomWindows(stream, seq_len=16, batch_size=8, micro_batch=2, seed=3)
    x, y = full(5, 0, 0, 1)
    pieces = [parts(5, micro, rank, 2)[0] for micro in range(2) for rank in range(2)]
    assert torch.equal(torch.cat(pieces), x)
    assert torch.equal(y[:, :-1], x[:, 1:])  # targets are the inputs shifted by one
    assert not torch.equal(full(6, 0, 0, 1)[0], x)


def test_eval_windows_tile_the_stream_with_stride_seq_len():
    w = eval_windows(np.arange(50), seq_len=8, max_windows=None)
    assert w.shape == (6, 9) and w[1, 0] == 8 and w[-1, -1] == 48
    assert eval_windows(np.arange(50), 8, 2).shape == (2, 9)
    with pytest.raises(ValueError, match="no window of 9"):
        eval_windows(np.arange(5), 8, None)


def test_every_configuration_is_one_of_the_authors():
    assert {"baseline", "w8a8g8_per_token", "w4_per_column", "v8_per_channel", "m4_per_tensor"} <= set(CONFIGURATIONS)
    g8 = get_configuration("g8_per_token").g
    assert g8 is not None and g8.min_range == 1e-9 and g8.granularity == "row"
    with pytest.raises(KeyError, match="unknown configuration 'w3'; valid: baseline"):
        get_configuration("w3")


def test_config_refuses_unknown_configurations_and_uneven_batches(tmp_path):
    path = PAPER_DIR / "configs" / "smoke.yaml"
    with pytest.raises(ConfigError, match="unknown \\['w3'\\]; valid: baseline"):
        load_config(Config, path, ["configurations=[baseline,w3]"])
    with pytest.raises(ConfigError, match="batch_size=5 is not a multiple of micro_batch=2"):
        load_config(Config, path, ["train.batch_size=5"])
    with pytest.raises(ConfigError, match="add it"):
        load_config(Config, path, ["configurations=[w8_per_channel]"])


def test_full_config_is_the_papers_recipe():
    cfg = load_config(Config, PAPER_DIR / "configs" / "full.yaml")
    t = cfg.train
    assert (t.lr, t.warmup, t.weight_decay, t.clip, t.steps, t.betas) == (6e-4, 1000, 0.1, 1.0, 300_000, (0.9, 0.999))
    assert t.batch_size * cfg.data.seq_len == 524_288 and cfg.grad_accum() == 4
    assert (cfg.model.n_layer, cfg.model.n_embd, cfg.model.n_head) == (12, 768, 12)
    assert cfg.data.hf_dataset == "Skylion007/openwebtext" and cfg.engine.strategy == "ddp"
