import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from papers.dim_reduction import autoencoders
from papers.dim_reduction.autoencoders import (
    Autoencoder,
    VariationalAutoencoder,
    fit_autoencoder,
    load_checkpoint,
    split_train_val,
    widths,
)
from papers.dim_reduction.config import AutoencoderConfig
from shared.data.bundled import load_digits_split

ROOT = Path(__file__).resolve().parents[3]


def test_architecture_follows_the_paper():
    assert widths(784) == [392, 196, 98] and widths(3072) == [1536, 768, 384] and widths(520) == [260, 130, 65]
    model = Autoencoder(784, 5)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (784, 392),
        (392, 196),
        (196, 98),
        (98, 5),
        (5, 98),
        (98, 196),
        (196, 392),
        (392, 784),
    ]
    assert len(linears) == 8 and all(torch.count_nonzero(m.bias) == 0 for m in linears)  # Keras zero bias init
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bn) == 6 and bn[0].eps == 1e-3 and bn[0].momentum == pytest.approx(0.01)
    with torch.no_grad():
        out = model.decoder(model.project(torch.rand(4, 784)))
    assert out.shape == (4, 784) and float(out.min()) >= 0 and float(out.max()) <= 1


def test_vae_loss_is_the_authors_formula():
    torch.manual_seed(0)
    vae = VariationalAutoencoder(16, 2).eval()
    x = torch.rand(3, 16)
    torch.manual_seed(1)
    loss = vae.loss(x)
    torch.manual_seed(1)
    h = vae.encoder(x)
    mu, log_var = vae.z_mean(h), vae.z_log_var(h)
    z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
    recon = 16 * ((vae.decoder(z) - x) ** 2).mean(1)
    kl = -0.5 * (1 + log_var - mu**2 - log_var.exp()).mean(1)
    assert torch.allclose(loss, (recon + kl).mean())
    assert vae.project(x).shape == (3, 2)


def test_split_floors_to_hundreds_and_stratifies():
    y = np.repeat(np.arange(10), 6000)
    x = np.arange(60000, dtype=np.float32)[:, None]
    tr, va = split_train_val(x, y, 0.1, seed=0)
    assert (len(tr), len(va)) == (54000, 6000)
    assert np.intersect1d(tr[:, 0], va[:, 0]).size == 0
    tr, va = split_train_val(x[:1347], np.resize(np.arange(10), 1347), 0.1, seed=0)
    assert (len(tr), len(va)) == (1200, 100)


def test_fit_is_deterministic_and_projects_both_sets():
    x_tr, y_tr, x_te, _ = load_digits_split()
    x_tr, x_te = x_tr.astype(np.float32) / 16, x_te.astype(np.float32) / 16
    cfg = AutoencoderConfig(max_epochs=2, num_threads=1)
    a = fit_autoencoder("dae", x_tr, y_tr, x_te, 3, cfg, seed=0)
    b = fit_autoencoder("dae", x_tr, y_tr, x_te, 3, cfg, seed=0)
    assert a.z_train.shape == (len(x_tr), 3) and a.z_test.shape == (len(x_te), 3)
    assert np.array_equal(a.z_train, b.z_train) and a.epochs == 2 and a.best_epoch in (0, 1)
    v = fit_autoencoder("vae", x_tr, y_tr, x_te, 2, cfg, seed=0)
    assert v.z_test.shape == (len(x_te), 2) and np.isfinite(v.best_val_loss)


def test_early_stopping_restores_the_best_weights():
    x_tr, y_tr, x_te, _ = load_digits_split()
    x_tr, x_te = x_tr.astype(np.float32) / 16, x_te.astype(np.float32) / 16
    # a patience of 1 stops early; the weights left are those of the best validation epoch
    res = fit_autoencoder("dae", x_tr, y_tr, x_te, 2, AutoencoderConfig(max_epochs=60, patience=1, lr=0.05), 0)
    assert res.epochs < 60 and res.best_epoch < res.epochs


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x_tr, y_tr, x_te, _ = load_digits_split()
    return x_tr.astype(np.float32) / 16, y_tr, x_te.astype(np.float32) / 16


class CheckpointSpy(L.Callback):
    """At the start of each epoch, the epoch that the checkpoint on disk holds (None: no file yet)."""

    def __init__(self, path: Path) -> None:
        self.path, self.seen = path, []

    def on_train_epoch_start(self, trainer, module) -> None:
        held = load_checkpoint(self.path)["epoch"] if self.path.is_file() else None
        self.seen.append((trainer.current_epoch, held))


def test_a_checkpoint_is_written_at_the_end_of_every_epoch(tmp_path):
    x_tr, y_tr, x_te = digits()
    spy = CheckpointSpy(tmp_path / "last.ckpt")
    cfg = AutoencoderConfig(max_epochs=4, num_threads=1)
    fit_autoencoder("dae", x_tr, y_tr, x_te, 3, cfg, 0, tmp_path, extra_callbacks=[spy])
    # epoch e starts with the state after epoch e-1 on disk, not only once training has ended
    assert spy.seen == [(0, None), (1, 0), (2, 1), (3, 2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary file left behind


def test_the_checkpoint_round_trips_with_weights_only(tmp_path):
    x_tr, y_tr, x_te = digits()
    res = fit_autoencoder("vae", x_tr, y_tr, x_te, 2, AutoencoderConfig(max_epochs=2, num_threads=1), 0, tmp_path)
    ckpt = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 2 * 12  # 1,200 training rows in batches of 100
    fresh = VariationalAutoencoder(64, 2)
    fresh.load_state_dict(ckpt["state_dict"])  # strict: every tensor is there under its name
    best = ckpt["callbacks"]["RestoreBestWeights"]["state"]
    assert best.keys() == res.model.state_dict().keys() and len(best) == 50  # 10 Linear x 2 + 6 BatchNorm x 5
    assert all(torch.equal(best[k], v) for k, v in res.model.state_dict().items())  # the weights the fit returned
    assert ckpt["callbacks"]["ResumeState"]["cpu_rng"].dtype == torch.uint8


class Evil:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["EVIL_MARK"]),))


@pytest.mark.parametrize("content", ["truncated", "code"])
def test_a_damaged_or_foreign_checkpoint_is_discarded(tmp_path, monkeypatch, content):
    x_tr, y_tr, x_te = digits()
    mark = tmp_path / "ran"
    monkeypatch.setenv("EVIL_MARK", str(mark))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    if content == "truncated":
        fit_autoencoder("dae", x_tr, y_tr, x_te, 2, AutoencoderConfig(max_epochs=1, num_threads=1), 0, ckpt)
        (ckpt / "last.ckpt").write_bytes((ckpt / "last.ckpt").read_bytes()[:-100])
    else:
        torch.save({"epoch": 5, "state_dict": Evil()}, ckpt / "last.ckpt")
    (ckpt / ".last.ckpt.abc.tmp").write_bytes(b"half of a write a crash cut short")
    res = fit_autoencoder("dae", x_tr, y_tr, x_te, 2, AutoencoderConfig(max_epochs=1, num_threads=1), 0, ckpt)
    assert res.epochs == 1 and res.first_epoch == 0 and not mark.exists()  # started over; ran no code
    assert sorted(p.name for p in ckpt.iterdir()) == ["last.ckpt"]
    assert load_checkpoint(ckpt / "last.ckpt")["epoch"] == 0


# Run in a child process, killed with SIGKILL at the kill point: nothing in the fit gets to clean up
# or save, as when a job is killed or a machine dies.
CHILD = """
import os, signal, sys
from pathlib import Path

import lightning as L
import numpy as np

from papers.dim_reduction.autoencoders import fit_autoencoder
from papers.dim_reduction.config import AutoencoderConfig
from shared.data.bundled import load_digits_split

kind, where, ckpt = sys.argv[1], sys.argv[2], Path(sys.argv[3])
KILL_EPOCH = 2


class KillMidEpoch(L.Callback):
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.current_epoch == KILL_EPOCH and batch_idx == 5:
            os.kill(os.getpid(), signal.SIGKILL)


class KillMidWrite:
    # the checkpoint of epoch KILL_EPOCH dies half written: shared.io writes it through os.fdopen
    def __init__(self, fh):
        self.fh = fh

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.fh.__exit__(*exc)

    def write(self, data):
        self.fh.write(data[: len(data) // 2])
        self.fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def __getattr__(self, name):
        return getattr(self.fh, name)


callbacks = []
if where == "mid_epoch":
    callbacks.append(KillMidEpoch())
else:
    fdopen, writes = os.fdopen, []

    def killing_fdopen(fd, mode="r", *args, **kwargs):
        fh = fdopen(fd, mode, *args, **kwargs)
        if mode == "wb":
            writes.append(fd)
            if len(writes) == KILL_EPOCH + 1:
                return KillMidWrite(fh)
        return fh

    os.fdopen = killing_fdopen

x_tr, y_tr, x_te, _ = load_digits_split()
x_tr, x_te = x_tr.astype(np.float32) / 16, x_te.astype(np.float32) / 16
cfg = AutoencoderConfig(max_epochs=int(sys.argv[4]), num_threads=1)
fit_autoencoder(kind, x_tr, y_tr, x_te, 3, cfg, 0, ckpt, extra_callbacks=callbacks)
print("the fit was not killed")
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind, where", [("dae", "mid_epoch"), ("vae", "mid_write")])
def test_a_fit_killed_mid_training_resumes_to_the_uninterrupted_weights(tmp_path, kind, where):
    """Bit-identical on CPU: the same batches (permutation from seed and epoch), the same torch RNG
    stream (restored from the checkpoint; the VAE samples from it), deterministic kernels, one thread."""
    x_tr, y_tr, x_te = digits()
    ckpt, max_epochs = tmp_path / "ckpt", 5
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", CHILD, kind, where, str(ckpt), str(max_epochs)]
    child = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    # on disk: the state after epochs 0 and 1, complete; epoch 2's work is lost
    state = load_checkpoint(ckpt / "last.ckpt")
    assert (state["epoch"], state["global_step"]) == (1, 2 * 12)
    leftovers = [p.name for p in ckpt.iterdir() if p.name != "last.ckpt"]
    assert len(leftovers) == (where == "mid_write")  # the half-written epoch-2 file, under a temporary name

    cfg = AutoencoderConfig(max_epochs=max_epochs, num_threads=1)
    resumed = fit_autoencoder(kind, x_tr, y_tr, x_te, 3, cfg, 0, ckpt)
    whole = fit_autoencoder(kind, x_tr, y_tr, x_te, 3, cfg, 0)
    assert (resumed.first_epoch, whole.first_epoch) == (2, 0)  # it resumed; it did not start over
    assert (resumed.epochs, resumed.best_epoch) == (whole.epochs, whole.best_epoch) == (max_epochs, whole.best_epoch)
    a, b = resumed.model.state_dict(), whole.model.state_dict()
    assert a.keys() == b.keys() and len(a) > 0
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert np.array_equal(resumed.z_train, whole.z_train) and np.array_equal(resumed.z_test, whole.z_test)


def test_a_fit_that_stopped_early_does_not_train_on_when_rerun(tmp_path):
    """Killed after its last epoch but before its result was cached, a rerun must return the same fit."""
    x_tr, y_tr, x_te = digits()
    cfg = AutoencoderConfig(max_epochs=60, patience=1, lr=0.05, num_threads=1)
    first = fit_autoencoder("dae", x_tr, y_tr, x_te, 2, cfg, 0, tmp_path)
    assert first.epochs < 60
    again = fit_autoencoder("dae", x_tr, y_tr, x_te, 2, cfg, 0, tmp_path)
    assert again.first_epoch == again.epochs == first.epochs and again.best_epoch == first.best_epoch
    assert np.array_equal(again.z_train, first.z_train)


def test_checkpoint_writes_are_left_out_of_the_fit_time(tmp_path, monkeypatch):
    """Each save "takes" 100 s on a shifted clock; the fit time, the paper's measure, has none of it."""
    shift = [0.0]
    real = time.perf_counter
    monkeypatch.setattr(autoencoders.time, "perf_counter", lambda: real() + shift[0])
    save = autoencoders.AtomicCheckpointIO.save_checkpoint

    def slow_save(self, checkpoint, path, storage_options=None):
        save(self, checkpoint, path, storage_options)
        shift[0] += 100.0

    monkeypatch.setattr(autoencoders.AtomicCheckpointIO, "save_checkpoint", slow_save)
    x_tr, y_tr, x_te = digits()
    res = fit_autoencoder("dae", x_tr, y_tr, x_te, 2, AutoencoderConfig(max_epochs=3, num_threads=1), 0, tmp_path)
    assert shift[0] == 300.0 and 0 < res.fit_seconds < 100
    # and the time carried in the checkpoint (for a resumed fit's total) leaves it out too
    assert 0 < load_checkpoint(tmp_path / "last.ckpt")["callbacks"]["FitClock"]["elapsed"] < 100
