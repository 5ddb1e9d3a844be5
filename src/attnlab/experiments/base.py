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

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

BASELINES_FILE = "baselines.json"  # test metrics of simple reference predictors, written by a task's save_artifacts


def write_baselines(run_dir: Path, baselines: Mapping[str, Mapping[str, float]]) -> Path:
    """Write ``baselines.json``: the test metrics of simple reference predictors (repeat the last value,
    predict the majority class, …), which the run report shows beside the model's.

    Args:
        run_dir: the run folder.
        baselines: baseline description -> {metric name -> test value}, same names as ``evaluate`` returns.

    Returns:
        The path written.
    """
    data = {"split": "test", "baselines": {name: {k: float(v) for k, v in metrics.items() if math.isfinite(v)}
                                           for name, metrics in baselines.items()}}
    path = Path(run_dir) / BASELINES_FILE
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return path


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a model with neither)."""
    first = next(chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if first is None else first.device


@dataclass
class TrainConfig:
    """How to train, for any task. Every field can be overridden as ``key=value`` on the CLI."""

    max_epochs: int = 20
    max_time_s: float | None = 60.0  # wall-clock budget for fitting (None = no limit)
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
        full_shape: (Q, K) of the whole map when the saved weights are its top-left corner (a run keeps its
            saved attention under a byte budget); None when nothing was cropped.
    """

    layer: str
    kind: str
    weights: Tensor
    query_labels: list[str]
    key_labels: list[str]
    full_shape: tuple[int, int] | None = None


@dataclass
class AttentionSample:
    """One held-out example whose attention a report shows: a title and one map per attention layer.

    Attributes:
        title: what the example is (``"test series 3 (first 80 steps)"``).
        maps: one map per attention layer, in the model's order.
        in_figures: the task's figures draw this example; the report's explorer opens on the first such sample.
    """

    title: str
    maps: list[AttentionMap]
    in_figures: bool = False


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
        metric_notes: test metric -> one phrase saying what it measures and on which scale (standardised or
            original units, one-step or free-running, …); the run report prints it beside the value.
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
    metric_notes: ClassVar[dict[str, str]] = {}  # test metric -> what it measures, on which scale (for the report)
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

    def attention_samples(self, model: nn.Module, data: DataSplits, limit: int = 4) -> list[AttentionSample]:
        """Attention of up to ``limit`` held-out examples, with labelled axes, for the run report.

        Tasks override this to label axes with their tokens, time stamps or patch indices. The
        engine saves what it returns in the run folder (``attention.safetensors`` + ``attention.json``).
        An empty list means the model has no attention to show.
        """
        return []
