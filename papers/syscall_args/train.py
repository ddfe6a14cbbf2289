"""Train one (model, task, argument setting) with Lightning and report its accuracy.

LM: predict each next syscall name. MLM: a `mask_rate` share of positions is chosen; 80% of those get
the [MASK] name and, 80% of the time, all their arguments zeroed; 10% a random name; 10% stay. Adam 1e-3;
validation accuracy every `eval_every` updates; stop after `patience` validations without a gain above
`min_delta`; the best validation checkpoint is the one tested.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, Timer
from torch import nn

from papers.syscall_args.config import TrainConfig
from papers.syscall_args.model import CALL
from shared.fit_record import TrainClock, read_finished, write_finished
from shared.progress import bars_enabled
from shared.traces.tokens import PAD

IGNORE = -100


def mask_batch(x: torch.Tensor, rate: float, n_names: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked input, targets with IGNORE where not chosen), by the 80/10/10 rule."""
    chosen = torch.rand(x.shape[:2], generator=g) < rate
    y = torch.where(chosen, x[..., CALL], torch.full_like(x[..., CALL], IGNORE))
    roll = torch.rand(x.shape[:2], generator=g)
    masked = x.clone()
    to_mask = chosen & (roll < 0.8)
    to_random = chosen & (roll >= 0.8) & (roll < 0.9)
    masked[..., CALL] = torch.where(to_mask, torch.full_like(y, PAD), masked[..., CALL])
    random_names = torch.randint(5, max(n_names, 6), x.shape[:2], generator=g)
    masked[..., CALL] = torch.where(to_random, random_names, masked[..., CALL])
    zero_args = to_mask & (torch.rand(x.shape[:2], generator=g) < 0.8)
    masked[..., CALL + 1 :] = masked[..., CALL + 1 :] * (~zero_args).unsqueeze(-1)
    return masked, y


def inputs_targets(x: torch.Tensor, task: str, rate: float, n_names: int, g: torch.Generator):
    if task == "lm":
        return x[:, :-1], x[:, 1:, CALL]
    return mask_batch(x, rate, n_names, g)


HISTORY = "val_history"  # checkpoint key: (update, validation accuracy) so far


class LitModel(TrainClock, L.LightningModule):
    """Training seconds and the validation curve stay the whole training's across a resume."""

    def __init__(self, model: nn.Module, task: str, cfg: TrainConfig, n_names: int, seed: int):
        super().__init__()
        self.model, self.task, self.cfg, self.n_names = model, task, cfg, n_names
        self.g = torch.Generator().manual_seed(seed)
        self.val_history: list[tuple[int, float]] = []

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[HISTORY] = list(self.val_history)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.val_history = [(int(u), float(a)) for u, a in checkpoint.get(HISTORY, [])]

    def _step(self, x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inp, y = inputs_targets(x.cpu(), self.task, self.cfg.mask_rate, self.n_names, g)
        inp, y = inp.to(self.device), y.to(self.device)
        logits = self.model(inp)
        loss = F.cross_entropy(logits.transpose(1, 2), y, ignore_index=IGNORE)
        valid = y != IGNORE
        correct = ((logits.argmax(-1) == y) & valid).sum()
        return loss, correct, valid.sum()

    def training_step(self, batch: torch.Tensor, _idx: int) -> torch.Tensor:
        loss, _, _ = self._step(batch, self.g)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = [0, 0]
        self._val_g = torch.Generator().manual_seed(1234)  # the same masks at every validation

    def validation_step(self, batch: torch.Tensor, _idx: int) -> None:
        _, correct, total = self._step(batch, self._val_g)
        self._val[0] += int(correct)
        self._val[1] += int(total)

    def on_validation_epoch_end(self) -> None:
        acc = self._val[0] / max(self._val[1], 1)
        self.val_history.append((int(self.global_step), float(acc)))
        self.log("val_acc", acc, prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)


@torch.no_grad()
def window_hits(
    model: nn.Module, x: np.ndarray, task: str, cfg: TrainConfig, n_names: int, batch: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """(correct, scored) next (LM) or masked (MLM) name predictions per window of `x` (fixed masks, seed
    4321): per window, so that an interval can resample the test windows."""
    model.eval()
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(4321)
    correct, total = [], []
    for i in range(0, len(x), batch):
        inp, y = inputs_targets(torch.from_numpy(x[i : i + batch]), task, cfg.mask_rate, n_names, g)
        logits = model(inp.to(device))
        valid = y.to(device) != IGNORE
        correct.append(((logits.argmax(-1) == y.to(device)) & valid).sum(-1).cpu().numpy())
        total.append(valid.sum(-1).cpu().numpy())
    if not correct:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(correct).astype(np.int64), np.concatenate(total).astype(np.int64)


def accuracy(model: nn.Module, x: np.ndarray, task: str, cfg: TrainConfig, n_names: int, batch: int = 128) -> float:
    """Accuracy of next (LM) or masked (MLM) name prediction over windows `x` (fixed masks, seed 4321)."""
    correct, total = window_hits(model, x, task, cfg, n_names, batch)
    return int(correct.sum()) / max(int(total.sum()), 1)


# Why a fit stopped: its update budget, early stopping, the wall-clock cap, or max_epochs.
STOPS = ("budget", "early_stopping", "time_cap", "max_epochs")


@dataclass
class Fit:
    updates: int
    seconds: float
    best_val_acc: float
    test_acc: float
    parameters: int
    stopped: str = "budget"
    test_correct: np.ndarray | None = None  # per test window: correct predictions
    test_total: np.ndarray | None = None  # per test window: scored predictions
    val_updates: np.ndarray | None = None  # the validation curve: updates ...
    val_curve: np.ndarray | None = None  # ... and the validation accuracy there

    def __eq__(self, other: object) -> bool:  # arrays compare element-wise
        if not isinstance(other, Fit):
            return NotImplemented
        a, b = asdict(self), asdict(other)
        arrays = ("test_correct", "test_total", "val_updates", "val_curve")
        same = {k: v for k, v in a.items() if k not in arrays} == {k: v for k, v in b.items() if k not in arrays}
        return same and all(np.array_equal(a[k], b[k]) for k in arrays)


def _stop_reason(trainer: L.Trainer, budget: int, stopper: EarlyStopping | None, timer: Timer | None) -> str:
    if budget > 0 and trainer.global_step >= budget:
        return "budget"
    if stopper is not None and stopper.wait_count >= stopper.patience:
        return "early_stopping"
    if timer is not None and (left := timer.time_remaining()) is not None and left <= 0:
        return "time_cap"
    return "max_epochs"


def _tested(fit_: Fit, model: nn.Module, windows: dict, task: str, cfg: TrainConfig, n_names: int) -> Fit:
    correct, total = window_hits(model, windows["test_id"].x, task, cfg, n_names)
    fit_.test_correct, fit_.test_total = correct, total
    fit_.test_acc = int(correct.sum()) / max(int(total.sum()), 1)
    fit_.parameters = sum(p.numel() for p in model.parameters())
    return fit_


def fit(
    model: nn.Module, experiment: str, windows: dict, cfg: TrainConfig, n_names: int, seed: int, ckpt_dir: Path
) -> Fit:
    """Train to the experiment's update budget (or until early stopping, the wall-clock cap or max_epochs,
    whichever comes first: `Fit.stopped` says which), then test the best validation checkpoint. A rerun
    after the training finished reads its measurements (wall time included) and best weights back; one
    after an interruption resumes from the last checkpoint, its clock included, so `seconds` is the whole
    training's either way."""
    task = experiment.split("_")[1]
    train_cfg = {k: v for k, v in asdict(cfg).items() if k != "workers"}  # how many run side by side: not this run
    identity = {"experiment": experiment, "seed": seed, "cfg": train_cfg, "n_names": n_names,
                **{f"{s}_windows": len(w.x) for s, w in windows.items()}}  # fmt: skip
    if (done := read_finished(ckpt_dir, identity)) is not None:
        saved, best = done
        if best:
            state = torch.load(ckpt_dir / best, map_location="cpu", weights_only=True)["state_dict"]
            LitModel(model, task, cfg, n_names, seed).load_state_dict(state)
        model.to("cpu")
        record = Fit(saved["updates"], saved["seconds"], saved["best_val_acc"], float("nan"), 0,
                     saved.get("stopped", "budget"))  # fmt: skip
        _set_curve(record, saved.get("val_history", []))
        return _tested(record, model, windows, task, cfg, n_names)
    L.seed_everything(seed, workers=True, verbose=False)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    batch = cfg.batch_size[task]
    train_x = torch.from_numpy(windows["train"].x)
    loader = torch.utils.data.DataLoader(
        train_x, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(seed), drop_last=False
    )
    valid = torch.utils.data.DataLoader(torch.from_numpy(windows["valid_id"].x), batch_size=batch)
    budget = cfg.max_updates.get(experiment, -1)
    ckpt = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_acc", mode="max", save_last=True)
    callbacks: list[Callback] = [ckpt]
    stopper = timer = None
    if cfg.patience:  # 0: no early stopping, every run trains to its budget
        stopper = EarlyStopping("val_acc", min_delta=cfg.min_delta, patience=cfg.patience, mode="max")
        callbacks.append(stopper)
    if cfg.max_seconds:
        timer = Timer(duration=timedelta(seconds=cfg.max_seconds), interval="step")
        callbacks.append(timer)
    # validation every eval_every updates counted over the whole training (check_val_every_n_epoch=None),
    # so an interval longer than an epoch is one
    trainer = L.Trainer(
        max_epochs=cfg.max_epochs, max_steps=budget, val_check_interval=cfg.eval_every[task],
        check_val_every_n_epoch=None, num_sanity_val_steps=0, accelerator=cfg.accelerator, devices=cfg.devices,
        strategy=cfg.strategy, precision=cfg.precision, callbacks=callbacks, logger=False,
        enable_progress_bar=bars_enabled(), enable_model_summary=False, deterministic=True, default_root_dir=ckpt_dir,
    )  # fmt: skip
    lit = LitModel(model, task, cfg, n_names, seed)
    last = ckpt_dir / "last.ckpt"
    lit.start_clock()
    trainer.fit(lit, loader, valid, ckpt_path=str(last) if last.is_file() else None)
    seconds = lit.train_seconds()
    stopped = _stop_reason(trainer, budget, stopper, timer)
    if ckpt.best_model_path:
        lit.load_state_dict(torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)["state_dict"])
    model.to("cpu")
    best_val_acc = float(ckpt.best_model_score) if ckpt.best_model_score is not None else float("nan")
    if trainer.is_global_zero:
        best = Path(ckpt.best_model_path).name if ckpt.best_model_path else None
        record = {"updates": trainer.global_step, "seconds": seconds, "best_val_acc": best_val_acc, "stopped": stopped,
                  "val_history": lit.val_history}  # fmt: skip
        write_finished(ckpt_dir, identity, record, best)
    result = Fit(trainer.global_step, seconds, best_val_acc, float("nan"), 0, stopped)
    _set_curve(result, lit.val_history)
    return _tested(result, model, windows, task, cfg, n_names)


def _set_curve(result: Fit, history: list) -> None:
    result.val_updates = np.array([int(u) for u, _ in history], dtype=np.int64)
    result.val_curve = np.array([float(a) for _, a in history], dtype=np.float64)
