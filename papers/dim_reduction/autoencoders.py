"""The paper's deep autoencoder (DAE) and variational autoencoder (VAE), trained with Lightning.

Architecture, initialisation and optimiser follow the authors' Keras code: Dense(D/2)-BN-ReLU,
Dense(D/4)-BN-ReLU, Dense(D/8)-BN-ReLU, Dense(d) and the mirror decoder with a sigmoid output;
Glorot-uniform weights, zero biases; Keras BatchNorm (momentum 0.99, eps 1e-3); Adam with Keras
defaults (eps 1e-7); early stopping on validation loss that restores the best weights.
"""

from __future__ import annotations

import copy
import io
import logging
import time
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping
from lightning.pytorch.plugins.io import TorchCheckpointIO
from sklearn.model_selection import train_test_split
from torch import nn

from papers.dim_reduction.config import AutoencoderConfig, ae_split_sizes
from shared.io import atomic_write_bytes

MIN_DELTA = {"dae": 1e-4, "vae": 0.01}  # the authors' EarlyStopping(min_delta=...)
CHECKPOINT_NAME = "last.ckpt"

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

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "state": self.state}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.state = state["best"], state["best_epoch"], state["state"]


class FitClock(Callback):
    """Wall time of a fit, carried through checkpoints so a resumed fit reports its whole cost.

    Time spent writing checkpoints is left out (`paused`): the paper's fit times have none, and a
    CIFAR-10 checkpoint (weights, Adam moments, best weights) is about 200 MB per epoch.
    """

    def __init__(self) -> None:
        self.before, self.start, self.first_epoch = 0.0, time.perf_counter(), 0
        self.excluded, self.paused_at = 0.0, None

    def on_train_start(self, trainer, module) -> None:
        self.first_epoch = trainer.current_epoch  # > 0 when resumed from a checkpoint

    def elapsed(self) -> float:
        now = time.perf_counter() if self.paused_at is None else self.paused_at
        return self.before + now - self.start - self.excluded

    @contextmanager
    def paused(self):
        self.paused_at = time.perf_counter()
        try:
            yield
        finally:
            self.excluded += time.perf_counter() - self.paused_at
            self.paused_at = None

    def state_dict(self) -> dict:
        return {"elapsed": self.elapsed()}

    def load_state_dict(self, state: dict) -> None:
        self.before = state["elapsed"]


class ResumeState(Callback):
    """What Lightning's checkpoint leaves out but an identical resumed fit needs: torch's RNG states
    (the VAE samples from them, in training and validation) and whether early stopping had already
    ended the fit (a run killed after its last epoch, before its result was cached, must not train on)."""

    def __init__(self) -> None:
        self.trainer: L.Trainer | None = None
        self.pending: dict | None = None

    def setup(self, trainer, module, stage: str) -> None:
        self.trainer = trainer

    def state_dict(self) -> dict:
        # saved by the checkpoint callback, which runs after early stopping's end-of-epoch check
        state = {"cpu_rng": torch.get_rng_state(), "stopped": bool(self.trainer and self.trainer.should_stop)}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.pending = state  # applied at train start, once Lightning has finished restoring

    def on_train_start(self, trainer, module) -> None:
        if self.pending is None:
            return
        torch.set_rng_state(self.pending["cpu_rng"])
        if "cuda_rng" in self.pending and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self.pending["cuda_rng"])
        trainer.should_stop = self.pending["stopped"]
        self.pending = None


class EpochCheckpoint(Checkpoint):
    """Save the whole training state to `path` at the end of every epoch.

    Lightning's ModelCheckpoint with save_top_k=0 writes last.ckpt only when training ends, so a fit
    killed mid-way had nothing to resume from. The end of the training epoch is after validation, so
    early stopping and best-weight tracking have already counted this epoch, and Lightning restores
    such a checkpoint as a finished epoch.
    """

    def __init__(self, path: Path, clock: FitClock) -> None:
        self.path, self.clock = Path(path), clock

    def on_train_epoch_end(self, trainer, module) -> None:
        if not trainer.sanity_checking:
            with self.clock.paused():  # I/O, not fitting
                trainer.save_checkpoint(self.path)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file beside the target and renamed over it, and read back
    with weights_only=True (tensors and plain values only, never code).

    Lightning's own save stages the file in the system temp folder and moves it; across filesystems
    that move is a copy, which a crash can leave half-done under the real name.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = None) -> dict:
        return load_checkpoint(Path(path))


def load_checkpoint(path: Path) -> dict:
    """A fit's checkpoint, loaded with weights_only=True: it holds only tensors and plain values."""
    return torch.load(path, map_location="cpu", weights_only=True)


class TensorBatches:
    """Mini-batches over tensors already on the training device: no worker processes, no copies.

    Reshuffles every epoch (as Keras' fit(shuffle=True)) with a permutation drawn from (seed,
    epoch), so a fit resumed from a checkpoint sees the same batches as one never interrupted.
    `epoch` is a callable returning the trainer's current epoch. The last partial batch is kept.
    """

    def __init__(self, x: torch.Tensor, batch_size: int, shuffle: bool, seed: int, epoch=lambda: 0) -> None:
        self.x, self.batch_size, self.shuffle, self.seed, self.epoch = x, batch_size, shuffle, seed, epoch

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        n = len(self.x)
        order = None
        if self.shuffle:
            gen = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + self.epoch())
            order = torch.randperm(n, generator=gen).to(self.x.device)
        for start in range(0, n, self.batch_size):
            if order is None:
                yield (self.x[start : start + self.batch_size],)
            else:
                yield (self.x[order[start : start + self.batch_size]],)


def split_train_val(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split; both sizes floored to multiples of 100 as in the authors' code."""
    n = len(y)
    n_train, n_val = ae_split_sizes(n, val_fraction)
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
    first_epoch: int = 0  # the epoch training (re)started at: > 0 after a resume
    model: Autoencoder | None = None  # the trained model, with the restored best weights


@contextmanager
def torch_threads(n: int):
    """Use n torch threads inside the block (0: leave as is). Scoped, because torch's setting also
    moves the OpenMP pool that scikit-learn uses, and with it the float rounding of later steps."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_autoencoder(
    kind: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    d: int,
    cfg: AutoencoderConfig,
    seed: int,
    checkpoint_dir: Path | None = None,
    extra_callbacks: Sequence[Callback] = (),
) -> FitResult:
    """Train a DAE or VAE of bottleneck d and project train and test sets.

    Fit time covers the train/validation split and training, as the paper's timing does. With
    `checkpoint_dir`, the whole training state is saved there (last.ckpt, atomically) at the end of
    every epoch and a later call resumes from it, bit for bit as if never interrupted on CPU; an
    unreadable checkpoint is discarded and the fit starts over. `extra_callbacks` are added to the
    trainer's (tests use one to kill a fit mid-training).
    """
    with torch_threads(cfg.num_threads):
        clock = FitClock()
        L.seed_everything(seed, workers=False, verbose=False)
        x_tr, x_va = split_train_val(x_train, y_train, cfg.val_fraction, seed)
        device = torch.device("cuda" if cfg.accelerator in ("gpu", "cuda") and torch.cuda.is_available() else "cpu")
        t_tr, t_va = torch.from_numpy(x_tr).to(device), torch.from_numpy(x_va).to(device)
        model = MODELS[kind](x_train.shape[1], d, cfg.lr)
        restore = RestoreBestWeights(MIN_DELTA[kind])
        callbacks = [
            EarlyStopping(monitor="val_loss", min_delta=MIN_DELTA[kind], patience=cfg.patience),
            restore,
            clock,
            ResumeState(),
            *extra_callbacks,
        ]
        if checkpoint_dir is not None:
            callbacks.append(EpochCheckpoint(checkpoint_dir / CHECKPOINT_NAME, clock))
        trainer = L.Trainer(
            accelerator="gpu" if device.type == "cuda" else "cpu",
            devices=1,
            max_epochs=cfg.max_epochs,
            callbacks=callbacks,
            plugins=[AtomicCheckpointIO()],
            logger=False,
            enable_checkpointing=checkpoint_dir is not None,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            deterministic=device.type == "cpu",
        )
        train = TensorBatches(t_tr, cfg.batch_size, shuffle=True, seed=seed, epoch=lambda: trainer.current_epoch)
        val = TensorBatches(t_va, cfg.batch_size, shuffle=False, seed=seed)
        trainer.fit(
            model, train_dataloaders=train, val_dataloaders=val, ckpt_path=_resumable(checkpoint_dir), weights_only=True
        )
        return FitResult(
            z_train=project(model, x_train, device),
            z_test=project(model, x_test, device),
            fit_seconds=clock.elapsed(),
            epochs=trainer.current_epoch,
            best_epoch=restore.best_epoch,
            best_val_loss=restore.best,
            first_epoch=clock.first_epoch,
            model=model,
        )


def _resumable(checkpoint_dir: Path | None) -> Path | None:
    """last.ckpt when it exists and loads; a damaged or foreign one is removed, and so are the
    temporary files of a write that a crash cut short (they never carry the checkpoint's name)."""
    if checkpoint_dir is None:
        return None
    for leftover in checkpoint_dir.glob(f".{CHECKPOINT_NAME}.*.tmp"):
        leftover.unlink(missing_ok=True)
    path = checkpoint_dir / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        load_checkpoint(path)
    except Exception as exc:  # truncated, foreign, or holding more than tensors and plain values
        logging.getLogger(__name__).warning("discarding unreadable checkpoint %s (%s)", path, exc)
        path.unlink()
        return None
    logging.getLogger(__name__).info("resuming from %s", path)
    return path


@torch.no_grad()
def project(model: Autoencoder, x: np.ndarray, device: torch.device, batch: int = 10000) -> np.ndarray:
    model.eval().to(device)
    parts = [model.project(torch.from_numpy(x[i : i + batch]).to(device)).cpu() for i in range(0, len(x), batch)]
    return torch.cat(parts).numpy().astype(np.float64)
