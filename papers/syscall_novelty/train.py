"""Train one language model on normal requests with Lightning (the paper's rules: Adam 1e-3, label
smoothing 0.1, warm-up with inverse-sqrt decay, lr x 0.1 after `lr_patience` validations without
improvement, stop after `stop_patience`, best validation loss kept). DDP and mixed precision come from
the config at full scale; resuming from the last checkpoint is automatic."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, Timer
from torch import nn

from papers.syscall_novelty.config import TrainConfig
from papers.syscall_novelty.data import BatchDataset, Split
from shared.fit_record import TrainClock, read_finished, write_finished
from shared.progress import bars_enabled
from shared.traces.tokens import PAD

log = logging.getLogger(__name__)


def lm_loss(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    return F.cross_entropy(logits.transpose(1, 2), y, ignore_index=PAD, label_smoothing=label_smoothing)


def warmup_factor(step: int, warmup: int) -> float:
    """Linear warm-up to 1 over `warmup` steps, then inverse-sqrt decay (1 at the end of warm-up)."""
    if warmup <= 0:
        return 1.0
    step = step + 1
    return min(step / warmup, math.sqrt(warmup / step))


class LitLM(TrainClock, L.LightningModule):
    """tokens/s stays the whole training's across a resume (TrainClock)."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, kind: str):
        super().__init__()
        self.model, self.cfg, self.kind = model, cfg, kind

    def training_step(self, batch: dict, _idx: int) -> torch.Tensor:
        loss = lm_loss(self.model(batch["x"]), batch["y"], self.cfg.label_smoothing)
        self.tokens_seen += int((batch["y"] != PAD).sum())
        self.log("train_loss", loss, prog_bar=True, batch_size=batch["y"].shape[0])
        return loss

    def validation_step(self, batch: dict, _idx: int) -> None:
        loss = lm_loss(self.model(batch["x"]), batch["y"], self.cfg.label_smoothing)
        self.log("val_loss", loss, prog_bar=True, sync_dist=True, batch_size=batch["y"].shape[0])

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)
        warmup = self.cfg.warmup.get(self.kind, 0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_factor(s, warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class PlateauDecay(Callback):
    """lr x 0.1 once validation loss has not improved for more than `patience` validations."""

    def __init__(self, patience: int, factor: float = 0.1):
        self.patience, self.factor = patience, factor
        self.best, self.bad = math.inf, 0

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        loss = trainer.callback_metrics.get("val_loss")
        if loss is None or trainer.sanity_checking:
            return
        if float(loss) < self.best:
            self.best, self.bad = float(loss), 0
            return
        self.bad += 1
        if self.bad > self.patience:
            for config in trainer.lr_scheduler_configs:
                config.scheduler.base_lrs = [lr * self.factor for lr in config.scheduler.base_lrs]
            log.info("validation loss flat for %d checks: lr x %.1f", self.bad, self.factor)
            self.bad = 0

    def state_dict(self) -> dict:
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad = state["best"], state["bad"]


class ReshuffleBatches(Callback):
    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        trainer.train_dataloader.dataset.set_epoch(trainer.current_epoch)


@dataclass
class TrainResult:
    updates: int
    seconds: float
    tokens: int
    best_val_loss: float
    stopped_by: str


def train(
    model: nn.Module, kind: str, train_split: Split, valid_split: Split, cfg: TrainConfig, seed: int, ckpt_dir: Path
) -> TrainResult:
    """Fit `model` in place (best validation weights loaded at the end). A rerun after the training
    finished (the run stopped while scoring, say) reads its result and best weights back instead of
    fitting again; one after an interruption resumes from the last checkpoint, its clock included."""
    identity = {"kind": kind, "seed": seed, "cfg": asdict(cfg), "train": len(train_split), "valid": len(valid_split)}
    if (done := read_finished(ckpt_dir, identity)) is not None:
        record, best = done
        if best:
            state = torch.load(ckpt_dir / best, map_location="cpu", weights_only=True)["state_dict"]
            LitLM(model, cfg, kind).load_state_dict(state)
        log.info("%s seed %d: training had finished; its result and best weights are read back", kind, seed)
        return TrainResult(**record)
    L.seed_everything(seed, workers=True, verbose=False)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    train_ds = BatchDataset(train_split, cfg.batch_size, shuffle=True, seed=seed)
    valid_ds = BatchDataset(valid_split, cfg.eval_batch_size, shuffle=False)
    loader = lambda ds: torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False)  # noqa: E731
    eval_every = min(cfg.eval_every, len(train_ds))
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss", save_last=True)
    callbacks: list[Callback] = [
        checkpoint,
        PlateauDecay(cfg.lr_patience),
        EarlyStopping(monitor="val_loss", patience=cfg.stop_patience, mode="min"),
        ReshuffleBatches(),
    ]
    if cfg.max_minutes:
        callbacks.append(Timer(duration=timedelta(minutes=cfg.max_minutes), interval="step"))
    trainer = L.Trainer(
        max_steps=cfg.max_updates,
        max_epochs=-1,
        val_check_interval=eval_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        gradient_clip_val=cfg.grad_clip.get(kind),
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        precision=cfg.precision,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=bars_enabled(),
        enable_model_summary=False,
        deterministic=True,
        default_root_dir=ckpt_dir,
    )
    lit = LitLM(model, cfg, kind)
    last = ckpt_dir / "last.ckpt"
    lit.start_clock()
    trainer.fit(lit, loader(train_ds), loader(valid_ds), ckpt_path=str(last) if last.is_file() else None)
    seconds = lit.train_seconds()
    if checkpoint.best_model_path:
        state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        lit.load_state_dict(state)
    if trainer.global_step >= cfg.max_updates:
        stopped = "max_updates"
    elif any(isinstance(c, EarlyStopping) and c.stopped_epoch for c in callbacks):
        stopped = "early stopping"
    else:
        stopped = "time limit" if cfg.max_minutes else "done"
    best = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else float("nan")
    result = TrainResult(trainer.global_step, seconds, lit.tokens_seen, best, stopped)
    if trainer.is_global_zero:
        best_name = Path(checkpoint.best_model_path).name if checkpoint.best_model_path else None
        write_finished(ckpt_dir, identity, asdict(result), best_name)
    return result
