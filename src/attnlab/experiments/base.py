"""The contract between a task (experiment) and the one training engine (:mod:`attnlab.train`).

An experiment says what data is, what the loss is, which held-out metrics to report and which
figures to draw. It never owns a training loop: :func:`attnlab.train.fit` does, for every task.

Configuration is typed dataclasses, resolved from defaults plus ``key=value`` overrides and saved
next to every run:

* :class:`~attnlab.train.config.TrainConfig` — optimiser, schedule, budget, seed, Lightning pass-through;
* ``ExperimentSpec.Config`` — the task's data options (sizes, noise, …);
* ``ModelSpec.config`` — the model's hyper-parameters.

The three are declared, with the table of models, in :mod:`attnlab.catalog` (no torch needed to read them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from attnlab.nn.maps import AttentionSample

if TYPE_CHECKING:
    from attnlab.registry import ExperimentSpec


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a model with neither)."""
    first = next(chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if first is None else first.device


# batches(split, batch_size, seed) -> the batches of a split as lists of example indices, or None (see DataSplits)
Batches = Callable[[str, int, int], Sequence[Sequence[int]] | None]


@dataclass
class DataSplits:
    """Train / validation / test datasets of one task, and how to make batches of them.

    Attributes:
        train, val, test: the datasets.
        collate_fn: a list of examples -> one batch (None = torch's default collation).
        batches: which examples go together, for a task whose batches are not any ``batch_size`` examples (e.g.
            sentences of similar length). ``batches(split, batch_size, seed)``, ``split`` being ``"train"``,
            ``"val"`` or ``"test"``, returns the split's batches as lists of example indices that hold every
            example exactly once, or None for the usual batches of that split. The engine keeps its guarantees
            for them: the batch order is shuffled every training epoch from ``(seed, epoch)`` (a resumed run sees
            the same batches), batches are shared out among DDP processes, and evaluation sees each batch, so
            each example, once over all processes (:class:`~attnlab.train.module.BatchShardSampler`).
            None = the usual batches for every split.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    collate_fn: Callable[[list[Any]], Any] | None = None
    batches: Batches | None = None


class Experiment:
    """Base class of a task. Subclasses set :attr:`spec` and implement the methods.

    Class attributes:
        spec: the task's catalogue entry (:class:`~attnlab.registry.ExperimentSpec`: name, data options,
            models, training defaults, monitor), declared in a torch-free module of :mod:`attnlab.catalog`.
            A subclass also gets the entry's fields as class attributes (``Sine.Config``, ``Sine.models``,
            ``Sine.monitor``, …), so a task class can be used wherever its spec is.
    """

    spec: ClassVar[ExperimentSpec]
    name: ClassVar[str]
    summary: ClassVar[str]
    Config: ClassVar[type]
    models: ClassVar[dict[str, Any]]
    default_model: ClassVar[str]
    train_defaults: ClassVar[dict[str, Any]]
    monitor: ClassVar[tuple[str, str]]
    headline: ClassVar[str | None]
    metric_notes: ClassVar[dict[str, str]]
    in_demo: ClassVar[bool]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "spec" in cls.__dict__:
            cls.bind_spec(cls.__dict__["spec"])

    @classmethod
    def bind_spec(cls, spec: ExperimentSpec) -> None:
        """Make ``spec`` this task's entry and copy its fields onto the class (``cls.Config``, ``cls.models``,
        …). Called for a subclass that sets ``spec``, and by :func:`attnlab.register_experiment` for a spec
        whose ``task`` is a class."""
        cls.spec = spec
        for key in ("name", "summary", "Config", "models", "default_model", "train_defaults", "monitor", "headline",
                    "metric_notes", "in_demo"):
            setattr(cls, key, getattr(spec, key))

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

    def summarize(self, model: nn.Module, data: DataSplits, run_dir: Path) -> tuple[dict[str, float], list[str]]:
        """Test metrics that need the whole test set at once (prediction intervals, baselines on the same
        windows, …), computed after the test pass with the best model on the CPU; returns the metrics to add to
        the run's test metrics and one-line warnings. May write files into ``run_dir``. Default: none."""
        return {}, []

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
