"""The engine's callbacks and verdicts: the best weights kept as they come, one resumable checkpoint, the
optional wall-clock cap; how training stopped, and one-line warnings about an under-trained model.

A run's budget is work — ``max_epochs`` (and optionally ``max_steps``) with early stopping — so the same
command gives the same model on a quiet or a busy machine. ``max_time_s`` is only a safety cap: when set,
:class:`TimeCap` stops training early enough that validation and the test pass still fit inside it, and
the run says so (``stopped_by: "time"`` in ``metrics.json`` and a warning line).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import safetensors.torch
import torch
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping

# Relative change of the monitored validation metric over the last epoch above which a fit that ran out
# of budget (not stopped early) is called "still improving steeply".
STEEP = 0.05
# Evaluation is timed on a few batches before training starts; its estimate is padded by this factor.
EVAL_SAFETY = 1.25

STOPPED_BY = ("max_epochs", "max_steps", "early_stopping", "time", "no_training")


class BestWeights(Checkpoint):
    """Keep the weights of the best validation epoch in memory and, on rank 0, in ``path`` (safetensors).

    Replaces a second full Lightning checkpoint: the best epoch costs one weights file, not weights plus
    optimiser state. Runs after the module's ``on_train_epoch_end`` (Lightning calls checkpoint callbacks
    last), so the epoch's validation metrics are known. Its score and epoch are saved in ``last.ckpt``;
    a resumed fit reads the weights back from ``path``.

    Args:
        monitor: validation metric name as logged (``"val_mse"``).
        mode: ``"min"`` or ``"max"``.
        path: the weights file rank 0 writes at every improvement (None: memory only).
        metadata: safetensors metadata of that file.
    """

    def __init__(self, monitor: str, mode: str, path: Path | None, metadata: dict[str, str] | None = None) -> None:
        self.monitor, self.mode, self.path = monitor, mode, path
        self.metadata = dict(metadata or {})
        self.best_score: float | None = None
        self.best_epoch: int | None = None  # 1-based, as in the history
        self.best_val: dict[str, float] = {}  # the module's validation means at the best epoch
        self.best_state: dict[str, torch.Tensor] | None = None

    def _better(self, score: float) -> bool:
        if not math.isfinite(score):
            return False
        if self.best_score is None:
            return True
        return score < self.best_score if self.mode == "min" else score > self.best_score

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or trainer.sanity_checking:
            return
        score = float(value)
        if not self._better(score):
            return
        self.best_score, self.best_epoch = score, trainer.current_epoch + 1
        self.best_val = dict(getattr(pl_module, "val_metrics", {}))
        model = pl_module.model  # type: ignore[attr-defined]
        self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if self.path is not None and trainer.is_global_zero:
            write_weights_atomic(model, self.path, self.metadata)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A resumed fit: the score came back from last.ckpt, the weights from the file written at that epoch.
        if self.best_score is not None and self.best_state is None and self.path is not None and self.path.is_file():
            self.best_state = safetensors.torch.load_file(str(self.path))

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "best_val": self.best_val}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict.get("best_score")
        self.best_epoch = state_dict.get("best_epoch")
        self.best_val = dict(state_dict.get("best_val") or {})


class LastCheckpoint(Checkpoint):
    """Write one resumable Lightning checkpoint (weights, optimiser, loops, callbacks) at the end of every
    training epoch, over the previous one, through a temporary file so a kill mid-write keeps the old one.

    Args:
        path: the checkpoint file (``checkpoints/last.ckpt``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(tmp, weights_only=False)  # every rank calls it; rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, self.path)


def write_weights_atomic(model: torch.nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """Write ``model``'s state dict as safetensors to ``path`` through a temporary file, so a kill mid-write
    never leaves a truncated weights file."""
    tmp = path.with_name(path.name + ".tmp")
    safetensors.torch.save_model(model, str(tmp), metadata=metadata)
    os.replace(tmp, path)


class TimeCap(L.Callback):
    """Stop training so that the run, evaluation included, ends within ``limit_s`` of ``started``.

    Before training, Lightning's sanity check runs a few validation batches: their time per batch, times
    the validation and test batches still to run (padded by ``EVAL_SAFETY``), is the evaluation's reserve.
    After every training batch the callback stops training once the elapsed time plus one more batch plus
    the reserve would pass the limit. Lightning then runs one last validation and the epoch ends.

    Args:
        limit_s: the cap in seconds.
        started: ``time.perf_counter()`` when the run began.
        eval_batches: the number of validation and test batches (validation runs again after stopping).
    """

    def __init__(self, limit_s: float, started: float, eval_batches: int) -> None:
        self.limit_s, self.started, self.eval_batches = limit_s, started, eval_batches
        self.fired = False
        self._eval_batch_s: float | None = None
        self._sanity_start: float | None = None
        self._batch_start: float | None = None
        self._train_batch_s = 0.0

    def reserve_s(self) -> float:
        """Seconds kept for evaluation: measured on the sanity batches, else half a training batch each."""
        per_batch = self._eval_batch_s if self._eval_batch_s is not None else 0.5 * self._train_batch_s
        return EVAL_SAFETY * per_batch * self.eval_batches

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sanity_start = time.perf_counter()

    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        batches = sum(int(n) for n in trainer.num_sanity_val_batches) if self._sanity_start is not None else 0
        if batches:
            self._eval_batch_s = (time.perf_counter() - self._sanity_start) / batches

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.perf_counter()
        if self._batch_start is not None:
            self._train_batch_s = max(self._train_batch_s * 0.9, now - self._batch_start)  # a slow recent batch wins
        if now - self.started + self._train_batch_s + self.reserve_s() >= self.limit_s and not trainer.should_stop:
            trainer.should_stop = True
            self.fired = True


def stopped_by(trained: bool, time_cap: TimeCap | None, early: EarlyStopping | None, trainer: L.Trainer) -> str:
    """Why training ended: one of :data:`STOPPED_BY`."""
    if not trained:
        return "no_training"
    if time_cap is not None and time_cap.fired:
        return "time"
    if early is not None and early.stopped_epoch > 0:
        return "early_stopping"
    if trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps:
        return "max_steps"
    return "max_epochs"


def training_warnings(
    history: list[dict[str, float]],
    monitor: tuple[str, str],
    stop: str,
    steps: int,
    steps_per_epoch: int,
    train: Any,
) -> list[str]:
    """One line per sign that the model is under-trained, each naming what to raise.

    Args:
        history: one dict per finished epoch (``val_<metric>`` entries).
        monitor: ``(validation metric, "min"|"max")``.
        stop: how training ended (:func:`stopped_by`).
        steps: optimiser steps taken (over this run and the runs it resumed).
        steps_per_epoch: optimiser steps of one full epoch.
        train: the run's :class:`~attnlab.experiments.base.TrainConfig` (budget, warm-up, time cap).
    """
    if stop in ("no_training", "early_stopping"):
        return []
    warnings: list[str] = []
    if stop == "time":
        cause = f"max_time_s={train.max_time_s:g}"
        warnings.append(f"the time cap {cause} stopped training after {len(history)} epoch(s), {steps} steps "
                        f"(max_epochs={train.max_epochs}): the result depends on the machine's speed and load; raise "
                        "max_time_s or set it to none")
        remedy = "max_time_s"
    else:
        cause = f"{stop}={getattr(train, stop)}"
        remedy = stop
    if steps < train.warmup_steps:
        warnings.append(f"training ended inside the learning-rate warm-up (step {steps} of warmup_steps="
                        f"{train.warmup_steps}, stopped by {cause}): raise {remedy}, or lower warmup_steps")
    if steps < steps_per_epoch:
        warnings.append(f"training stopped after {steps} of the {steps_per_epoch} steps of one epoch (stopped by "
                        f"{cause}): raise {remedy}")
    name, mode = monitor
    values = [entry[name] for entry in history if name in entry and math.isfinite(entry[name])]
    if len(values) >= 2 and values[-2] != 0:
        change = (values[-1] - values[-2]) / abs(values[-2])
        gain = -change if mode == "min" else change
        if gain > STEEP:
            warnings.append(f"validation {name.removeprefix('val_')} was still improving steeply at the last epoch "
                            f"({100 * gain:.0f} % better than the epoch before; stopped by {cause}): raise {remedy}")
    return warnings
