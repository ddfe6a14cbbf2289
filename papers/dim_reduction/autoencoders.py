"""The paper's deep autoencoder (DAE) and variational autoencoder (VAE), trained with Lightning.

Architecture, initialisation and optimiser follow the authors' Keras code: Dense(D/2)-BN-ReLU,
Dense(D/4)-BN-ReLU, Dense(D/8)-BN-ReLU, Dense(d) and the mirror decoder with a sigmoid output;
Glorot-uniform weights, zero biases; Keras BatchNorm (momentum 0.99, eps 1e-3); Adam with Keras
defaults (eps 1e-7); early stopping on validation loss that restores the best weights.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from sklearn.model_selection import train_test_split
from torch import nn

from papers.dim_reduction.config import AutoencoderConfig

MIN_DELTA = {"dae": 1e-4, "vae": 0.01}  # the authors' EarlyStopping(min_delta=...)

# Lightning's banners (accelerator found, tips, "fit stopped") would drown the run's own log.
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=r".*treespec.*")
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


def dense(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def block(n_in: int, n_out: int) -> nn.Sequential:
    """Dense -> BatchNorm (Keras defaults) -> ReLU."""
    return nn.Sequential(dense(n_in, n_out), nn.BatchNorm1d(n_out, eps=1e-3, momentum=0.01), nn.ReLU())


def widths(n_features: int) -> list[int]:
    """Hidden widths D/2, D/4, D/8 (784 -> 392, 196, 98; 3072 -> 1536, 768, 384)."""
    return [n_features // 2, n_features // 4, n_features // 8]


def encoder(n_features: int, d: int) -> nn.Sequential:
    w = widths(n_features)
    return nn.Sequential(block(n_features, w[0]), block(w[0], w[1]), block(w[1], w[2]), dense(w[2], d))


def decoder(n_features: int, d: int) -> nn.Sequential:
    w = widths(n_features)
    return nn.Sequential(block(d, w[2]), block(w[2], w[1]), block(w[1], w[0]), dense(w[0], n_features), nn.Sigmoid())


class Autoencoder(L.LightningModule):
    """Deep AE: MSE reconstruction; the projection is the encoder output."""

    kind = "dae"

    def __init__(self, n_features: int, d: int, lr: float = 1e-3) -> None:
        super().__init__()
        self.lr = lr
        self.encoder = encoder(n_features, d)
        self.decoder = decoder(n_features, d)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(self.decoder(self.encoder(x)), x)

    def training_step(self, batch, _):
        loss = self.loss(batch[0])
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _):
        self.log("val_loss", self.loss(batch[0]), on_step=False, on_epoch=True, prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr, eps=1e-7)


class VariationalAutoencoder(Autoencoder):
    """VAE on the same trunk: Dense(d) -> (z_mean, z_log_var) heads; the projection is z_mean.

    Loss as the authors': D * MSE(x, x_hat) + (-0.5 * mean over latent dims of the KL terms).
    """

    kind = "vae"

    def __init__(self, n_features: int, d: int, lr: float = 1e-3) -> None:
        super().__init__(n_features, d, lr)
        self.n_features = n_features
        self.z_mean = dense(d, d)
        self.z_log_var = dense(d, d)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.z_mean(self.encoder(x))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        mu, log_var = self.z_mean(h), self.z_log_var(h)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        recon = self.n_features * nn.functional.mse_loss(self.decoder(z), x, reduction="none").mean(dim=1)
        kl = -0.5 * torch.mean(1 + log_var - mu.square() - log_var.exp(), dim=1)
        return (recon + kl).mean()


MODELS = {"dae": Autoencoder, "vae": VariationalAutoencoder}


class RestoreBestWeights(Callback):
    """Keep the weights of the best validation epoch and load them when training ends (Keras'
    restore_best_weights): an improvement must beat the best by more than min_delta."""

    def __init__(self, min_delta: float) -> None:
        self.min_delta, self.best, self.state, self.best_epoch = min_delta, float("inf"), None, -1

    def on_validation_epoch_end(self, trainer, module) -> None:
        if trainer.sanity_checking:
            return
        current = float(trainer.callback_metrics["val_loss"])
        if current < self.best - self.min_delta:
            self.best, self.best_epoch = current, trainer.current_epoch
            self.state = copy.deepcopy(module.state_dict())

    def on_fit_end(self, trainer, module) -> None:
        if self.state is not None:
            module.load_state_dict(self.state)


class TensorBatches:
    """Mini-batches over tensors already on the training device: no worker processes, no copies.

    Shuffles with its own generator each epoch (as Keras' fit(shuffle=True)); the last partial
    batch is kept.
    """

    def __init__(self, x: torch.Tensor, batch_size: int, shuffle: bool, seed: int) -> None:
        self.x, self.batch_size, self.shuffle = x, batch_size, shuffle
        self.gen = torch.Generator(device="cpu").manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        n = len(self.x)
        order = torch.randperm(n, generator=self.gen).to(self.x.device) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                yield (self.x[start : start + self.batch_size],)
            else:
                yield (self.x[order[start : start + self.batch_size]],)


def split_train_val(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split; both sizes floored to multiples of 100 as in the authors' code."""
    n = len(y)
    n_val = max(100, int(n * val_fraction) // 100 * 100)
    n_train = max(100, int(n * (1 - val_fraction)) // 100 * 100)
    if n_train + n_val > n:
        raise ValueError(f"{n} samples are too few for a {n_train}/{n_val} train/validation split")
    tr, va = train_test_split(np.arange(n), train_size=n_train, test_size=n_val, stratify=y, random_state=seed)
    return x[tr], x[va]


@dataclass
class FitResult:
    z_train: np.ndarray
    z_test: np.ndarray
    fit_seconds: float
    epochs: int
    best_epoch: int
    best_val_loss: float


def fit_autoencoder(
    kind: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, d: int, cfg: AutoencoderConfig, seed: int
) -> FitResult:
    """Train a DAE or VAE of bottleneck d and project train and test sets.

    Fit time covers the train/validation split and training, as the paper's timing does.
    """
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    L.seed_everything(seed, workers=False, verbose=False)
    start = time.perf_counter()
    x_tr, x_va = split_train_val(x_train, y_train, cfg.val_fraction, seed)
    device = torch.device("cuda" if cfg.accelerator in ("gpu", "cuda") and torch.cuda.is_available() else "cpu")
    t_tr, t_va = torch.from_numpy(x_tr).to(device), torch.from_numpy(x_va).to(device)
    model = MODELS[kind](x_train.shape[1], d, cfg.lr)
    restore = RestoreBestWeights(MIN_DELTA[kind])
    stop = EarlyStopping(monitor="val_loss", min_delta=MIN_DELTA[kind], patience=cfg.patience, mode="min")
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        max_epochs=cfg.max_epochs,
        callbacks=[stop, restore],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=device.type == "cpu",
    )
    trainer.fit(
        model,
        train_dataloaders=TensorBatches(t_tr, cfg.batch_size, shuffle=True, seed=seed),
        val_dataloaders=TensorBatches(t_va, cfg.batch_size, shuffle=False, seed=seed),
    )
    fit_seconds = time.perf_counter() - start
    return FitResult(
        z_train=project(model, x_train, device),
        z_test=project(model, x_test, device),
        fit_seconds=fit_seconds,
        epochs=trainer.current_epoch,
        best_epoch=restore.best_epoch,
        best_val_loss=restore.best,
    )


@torch.no_grad()
def project(model: Autoencoder, x: np.ndarray, device: torch.device, batch: int = 10000) -> np.ndarray:
    model.eval().to(device)
    parts = [model.project(torch.from_numpy(x[i : i + batch]).to(device)).cpu() for i in range(0, len(x), batch)]
    return torch.cat(parts).numpy().astype(np.float64)
