"""The contract between a task (experiment) and the one training engine (:mod:`attnlab.train`).

An experiment says what data is, what the loss is, which held-out metrics to report and which
figures to draw. It never owns a training loop: :func:`attnlab.train.fit` does, for every task.

Configuration is typed dataclasses, resolved from defaults plus ``key=value`` overrides and saved
next to every run:

* ``TrainConfig``  — optimiser, schedule, budget, seed, Lightning pass-through (engine-owned);
* ``Experiment.Config`` — the task's data options (sizes, noise, …);
* ``ModelSpec.config`` — the model's hyper-parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a model with neither)."""
    first = next(chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if first is None else first.device


@dataclass
class TrainConfig:
    """How to train, for any task. Every field can be overridden as ``key=value`` on the CLI."""

    max_epochs: int = 20
    max_steps: int | None = None  # optimiser steps at most (None = no limit besides max_epochs)
    # A safety cap on the run's wall-clock seconds, evaluation included (None = off): training stops early
    # enough to leave evaluation its time. Budgets are max_epochs / max_steps, so results do not depend on load.
    max_time_s: float | None = None
    batch_size: int = 64
    # A smaller data set gets a smaller batch, so an epoch still makes this many steps: batch_size is lowered to
    # (training examples) // min_steps_per_epoch where that is smaller (None = batch_size as given).
    min_steps_per_epoch: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"  # adamw | adam | sgd
    scheduler: str = "cosine"  # cosine | step (x lr_gamma every epoch after lr_hold_epochs) | halving | none
    lr_gamma: float = 0.5  # scheduler=step: the lr's factor from one epoch to the next
    lr_hold_epochs: int = 0  # scheduler=step: epochs 0..lr_hold_epochs run at the full lr
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    patience: int | None = None  # early stopping on the experiment's monitor metric (None = off)
    seed: int = 0
    # torch's intra-op threads: fixed, because the thread count changes a float sum's order and so the last
    # bits of every result. Raise it on a bigger machine for speed.
    threads: int = 2
    num_workers: int = 0
    # Passed straight to lightning.Trainer, so the same command runs on GPUs and with DDP.
    accelerator: str = "cpu"
    devices: str = "1"
    strategy: str = "auto"
    precision: str = "32-true"
    num_nodes: int = 1


@dataclass
class DataSplits:
    """Train / validation / test datasets of one task, and how to collate them into batches."""

    train: Dataset
    val: Dataset
    test: Dataset
    collate_fn: Callable[[list[Any]], Any] | None = None


@dataclass
class ModelSpec:
    """A model of a task: a factory from its config dataclass to a forward-only ``nn.Module``."""

    factory: Callable[[Any], nn.Module]
    config: type  # dataclass of hyper-parameters with defaults
    summary: str  # one line for `attnlab list`
    train_overrides: dict[str, Any] = field(default_factory=dict)  # per-model TrainConfig defaults


@dataclass
class AttentionMap:
    """The weights of one attention layer for one example, with what its axes mean.

    Attributes:
        layer: the layer's qualified name in the model (e.g. ``"decoder.layers.0.cross_attn"``).
        kind: ``"self"``, ``"cross"`` or ``"pooling"``.
        weights: (H, Q, K) float32 — one row per query, summing to 1 over keys (H = 1 for single-head).
        query_labels: Q labels (tokens, time stamps, patch indices, …).
        key_labels: K labels.
    """

    layer: str
    kind: str
    weights: Tensor
    query_labels: list[str]
    key_labels: list[str]


@dataclass
class AttentionSample:
    """One held-out example whose attention a report shows: a title and one map per attention layer."""

    title: str
    maps: list[AttentionMap]


class Experiment:
    """Base class of a task. Subclasses set the class attributes and implement the methods.

    Class attributes:
        name: registry name (``attnlab fit NAME``).
        summary: one line for ``attnlab list``.
        Config: dataclass of the task's data options.
        models: model name -> :class:`ModelSpec`.
        default_model: the model ``attnlab fit NAME`` uses without ``--model``.
        train_defaults: TrainConfig field overrides that suit this task (budget, lr, …).
        monitor: the validation metric to select the best checkpoint and stop early on, and its mode.
        headline: the test metric that summary tables show (default: the monitor's metric).
        in_demo: whether ``attnlab demo`` trains it (tasks that read a user's file set False).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    Config: ClassVar[type]
    models: ClassVar[dict[str, ModelSpec]]
    default_model: ClassVar[str]
    train_defaults: ClassVar[dict[str, Any]] = {}
    monitor: ClassVar[tuple[str, str]] = ("val_loss", "min")
    headline: ClassVar[str | None] = None  # the test metric tables show first (default: the monitor's)
    in_demo: ClassVar[bool] = True  # `attnlab demo` trains it (False for tasks that need the user's data file)

    def __init__(self, config: Any) -> None:
        self.config = config

    def data(self, seed: int) -> DataSplits:
        """Build the three splits (deterministic for a given seed)."""
        raise NotImplementedError

    def complete_model_config(self, model_config: Any) -> Any:
        """Fill sizes the model needs from the data (input length, channels, …) into its resolved config.

        Called by :func:`attnlab.train.fit` before the model is built; the result is what ``config.json``
        saves, so :func:`attnlab.train.load_model` rebuilds the same model. Default: unchanged.
        """
        return model_config

    def prepare_model(self, model: nn.Module, data: DataSplits) -> None:
        """Set what the model computes from the data rather than learns by gradient descent (a closed-form
        least-squares map, a memory of training windows, …) before training starts.

        Called by :func:`attnlab.train.fit` once the model and the splits exist and before anything is
        written to the run folder, so a :class:`~attnlab.errors.UserError` raised here leaves no run
        behind. What it sets must live in the model's state dict to be saved with the run. Default: nothing.
        """

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """The training objective on one batch (a scalar)."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """Held-out metrics of one batch, each a scalar mean over the batch; the engine averages
        them over the split weighted by batch size. Always includes ``loss``."""
        return {"loss": self.loss(model, batch)}

    def batch_size_of(self, batch: Any) -> int:
        """Number of examples in a batch (used to weight metric averages)."""
        first = batch[0] if isinstance(batch, (tuple, list)) else batch
        return int(first.shape[0])

    def figures(self, model: nn.Module, data: DataSplits, out_dir: Path, history: list[dict[str, float]]) -> list[Path]:
        """Draw the task's figures (PNG) into ``out_dir`` after training; return their paths.
        ``history`` holds one dict of logged metrics per epoch (train_loss, val_loss, …)."""
        return []

    def save_artifacts(self, model: nn.Module, data: DataSplits, run_dir: Path) -> None:
        """Write files a run needs beside its weights (vocabularies, scaler statistics, forecasts …) into
        ``run_dir``; called once after training with the best model. Default: nothing."""

    def result_warnings(self, val_metrics: dict[str, float]) -> list[str]:
        """One line for each sign, in the best epoch's validation metrics, that the model has not learned the
        task (e.g. a translator's BLEU below 1), naming what to raise. Default: none."""
        return []

    def attention_samples(self, model: nn.Module, data: DataSplits, limit: int = 4) -> list[AttentionSample]:
        """Attention of up to ``limit`` held-out examples, with labelled axes, for the run report.

        Tasks override this to label axes with their tokens, time stamps or patch indices. The
        engine saves what it returns in the run folder (``attention.safetensors`` + ``attention.json``).
        An empty list means the model has no attention to show.
        """
        return []
