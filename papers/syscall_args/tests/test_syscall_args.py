"""syscall_args: embedding sizes per setting, masking rule, windows, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from papers.syscall_args.config import SETTINGS, DataConfig, EmbeddingConfig, ModelConfig, TrainConfig
from papers.syscall_args.data import COLUMNS, load_windows
from papers.syscall_args.model import CALL, build_model
from papers.syscall_args.train import IGNORE, accuracy, fit, mask_batch
from shared.fit_record import CLOCK, FINISHED
from shared.seeding import seed_everything
from shared.traces.tokens import PAD


@pytest.mark.parametrize(
    "experiment,setting,dim",
    [("lstm_lm", "name", 32), ("lstm_lm", "all", 64), ("transformer_lm", "name", 40), ("transformer_lm", "all", 72),
     ("transformer_mlm", "name_64", 72), ("transformer_lm", "proc", 64), ("transformer_lm", "time", 48)],
)  # fmt: skip
def test_input_sizes_are_the_papers(experiment, setting, dim):
    model = build_model(experiment, SETTINGS[setting], EmbeddingConfig(), ModelConfig(), 129, 208)
    assert model.emb.dim == dim


def test_lstm_parameter_count_in_the_papers_range():
    model = build_model("lstm_lm", SETTINGS["all"], EmbeddingConfig(), ModelConfig(), 129, 208)
    assert 141_000 <= sum(p.numel() for p in model.parameters()) <= 157_000 + 4_000  # + process table


def test_masking_follows_80_10_10():
    x = torch.zeros((200, 100, len(COLUMNS)), dtype=torch.int64)
    x[..., CALL] = 7
    x[..., CALL + 1 :] = 3
    masked, y = mask_batch(x, 0.25, n_names=50, g=torch.Generator().manual_seed(0))
    chosen = y != IGNORE
    assert chosen.float().mean().item() == pytest.approx(0.25, abs=0.01)
    assert (y[chosen] == 7).all()
    as_mask = (masked[..., CALL] == PAD) & chosen
    unchanged = (masked[..., CALL] == 7) & chosen
    assert as_mask.sum() / chosen.sum() == pytest.approx(0.8, abs=0.02)
    assert (unchanged.sum() / chosen.sum()).item() == pytest.approx(0.1, abs=0.02)  # random may hit 7 rarely
    zeroed = (masked[..., CALL + 1 :] == 0).all(-1) & as_mask
    assert zeroed.sum() / as_mask.sum() == pytest.approx(0.8, abs=0.03)
    assert ((masked[..., CALL + 1 :] == 3).all(-1) | ~chosen | as_mask).all()  # others keep their arguments


def test_mlm_cannot_see_the_future_only_in_lm():
    torch.manual_seed(0)
    lm = build_model("transformer_lm", SETTINGS["all"], EmbeddingConfig(), ModelConfig(layers=1), 30, 30).eval()
    x = torch.randint(5, 20, (1, 10, len(COLUMNS)))
    x[..., 1:3] = torch.randint(0, 3, (1, 10, 2))
    y = x.clone()
    y[0, 7, CALL] = 25
    with torch.no_grad():
        assert torch.allclose(lm(x)[0, :7], lm(y)[0, :7], atol=1e-6)


def test_windows_from_the_sample():
    vocab, windows, _ = load_windows(DataConfig(window=64, max_train=50, max_eval=20))
    x = windows["train"].x
    assert x.shape == (50, 64, len(COLUMNS))
    assert (x[:, 0, COLUMNS.index("time")] == 0).all() and (np.diff(x[..., COLUMNS.index("time")], axis=1) >= 0).all()
    assert set(np.unique(x[..., COLUMNS.index("entry")])) <= {1, 2}
    assert len(windows["valid_id"].names[0]) == 64


def test_same_seed_same_accuracy(tmp_path):
    vocab, windows, _ = load_windows(DataConfig(window=32, max_train=64, max_eval=16))
    cfg = TrainConfig(batch_size={"lm": 16, "mlm": 16}, eval_every={"lm": 2, "mlm": 2},
                      max_updates={"transformer_mlm": 4}, accelerator="cpu", num_threads=1)  # fmt: skip
    tiny = ModelConfig(layers=1, heads=2, ffn=16, lstm_hidden=8, lstm_layers=1)

    def run(seed: int, where: str) -> float:
        seed_everything(seed)
        model = build_model(
            "transformer_mlm", SETTINGS["all"], EmbeddingConfig(), tiny, len(vocab.names), len(vocab.procs)
        )
        return fit(model, "transformer_mlm", windows, cfg, len(vocab.names), seed, tmp_path / where).test_acc

    assert run(0, "a") == run(0, "b")


@pytest.mark.slow
def test_a_resumed_fit_reports_the_original_training_time(tmp_path):
    """A rerun with the checkpoints present (stopped after training) reports the first run's wall time
    and accuracy; without the finished record it resumes from the last checkpoint, clock included."""
    vocab, windows, _ = load_windows(DataConfig(window=32, max_train=64, max_eval=16))
    cfg = TrainConfig(batch_size={"lm": 16, "mlm": 16}, eval_every={"lm": 2, "mlm": 2},
                      max_updates={"lstm_lm": 4}, accelerator="cpu", num_threads=1)  # fmt: skip
    tiny = ModelConfig(lstm_hidden=8, lstm_layers=1)

    def run():
        seed_everything(0)
        model = build_model("lstm_lm", SETTINGS["all"], EmbeddingConfig(), tiny, len(vocab.names), len(vocab.procs))
        return fit(model, "lstm_lm", windows, cfg, len(vocab.names), 0, tmp_path / "ckpt")

    first = run()
    assert first.updates == 4 and first.seconds > 0
    assert run() == first
    (tmp_path / "ckpt" / FINISHED).unlink()
    clock = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)[CLOCK]
    assert 0 < clock["seconds"] <= first.seconds
    resumed = run()
    assert resumed.updates == first.updates and resumed.seconds >= clock["seconds"]
    assert resumed.test_acc == first.test_acc


def test_accuracy_of_a_perfect_lm_is_one():
    class Echo(torch.nn.Module):  # predicts the next name from a sequence whose names count up
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            nxt = (x[..., CALL] + 1).clamp(max=19)
            return torch.nn.functional.one_hot(nxt, 20).float() + self.w

    x = np.zeros((3, 8, len(COLUMNS)), dtype=np.int64)
    x[..., CALL] = np.arange(5, 13)
    assert accuracy(Echo(), x, "lm", TrainConfig(), 20) == 1.0


@pytest.mark.parametrize("problem", ["no splits", "missing folder"])
def test_a_malformed_or_missing_dataset_is_one_line_exit_2(tmp_path, capsys, problem):
    import json

    from papers.syscall_args.reproduce import main
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
