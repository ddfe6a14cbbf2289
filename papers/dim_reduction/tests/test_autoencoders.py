import numpy as np
import pytest
import torch

from papers.dim_reduction.autoencoders import (
    Autoencoder,
    VariationalAutoencoder,
    fit_autoencoder,
    split_train_val,
    widths,
)
from papers.dim_reduction.config import AutoencoderConfig
from shared.data.bundled import load_digits_split


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
    assert all(torch.count_nonzero(m.bias) == 0 for m in linears)  # Keras zero bias init
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


def test_a_fit_resumed_from_its_checkpoint_equals_an_uninterrupted_one(tmp_path):
    x_tr, y_tr, x_te, _ = load_digits_split()
    x_tr, x_te = x_tr.astype(np.float32) / 16, x_te.astype(np.float32) / 16
    whole = fit_autoencoder("dae", x_tr, y_tr, x_te, 3, AutoencoderConfig(max_epochs=4, num_threads=1), 0)
    ckpt = tmp_path / "ckpt"
    # "interrupted" after 2 epochs: last.ckpt holds the state at the end of epoch 2
    fit_autoencoder("dae", x_tr, y_tr, x_te, 3, AutoencoderConfig(max_epochs=2, num_threads=1), 0, ckpt)
    assert (ckpt / "last.ckpt").is_file()
    resumed = fit_autoencoder("dae", x_tr, y_tr, x_te, 3, AutoencoderConfig(max_epochs=4, num_threads=1), 0, ckpt)
    assert (whole.first_epoch, resumed.first_epoch) == (0, 2)  # it resumed; it did not start over
    assert resumed.epochs == 4 and resumed.best_epoch == whole.best_epoch
    assert np.array_equal(resumed.z_train, whole.z_train) and np.array_equal(resumed.z_test, whole.z_test)


def test_a_damaged_checkpoint_is_discarded(tmp_path):
    x_tr, y_tr, x_te, _ = load_digits_split()
    x_tr, x_te = x_tr.astype(np.float32) / 16, x_te.astype(np.float32) / 16
    (tmp_path / "last.ckpt").write_bytes(b"truncated")
    res = fit_autoencoder("dae", x_tr, y_tr, x_te, 2, AutoencoderConfig(max_epochs=1, num_threads=1), 0, tmp_path)
    assert res.epochs == 1 and res.first_epoch == 0 and (tmp_path / "last.ckpt").stat().st_size > 1000
