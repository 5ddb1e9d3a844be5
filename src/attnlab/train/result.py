"""What a run produced: :class:`RunResult`, written to and read back from the run folder's ``metrics.json``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from attnlab import registry
from attnlab.errors import UserError
from attnlab.train.config import RunConfig
from attnlab.train.weights import METRICS_FILE, read_config


@dataclass
class RunResult:
    """What one :func:`fit` produced.

    Attributes:
        run_dir: the run folder.
        experiment: experiment name.
        model: model name.
        metrics: held-out test metrics of the best model, by the names :meth:`Experiment.evaluate` returns.
        val_metrics: validation metrics of the best model, same names.
        params: number of parameters of the model.
        train_seconds: wall-clock seconds of training (including earlier runs it resumed).
        epochs: finished training epochs.
        steps: optimiser steps taken (over this run and the runs it resumed).
        stopped_by: why training ended: ``max_epochs``, ``max_steps``, ``early_stopping``, ``time`` (the
            ``max_time_s`` cap) or ``no_training``.
        warnings: one line per sign of under-training (and a time cap that evaluation overran), each naming
            what to raise; empty when none.
        figures: paths of the figures drawn.
        history: one dict per epoch (``epoch``, ``train_loss``, ``val_<metric>``, ``lr``).
        epoch_times: wall-clock seconds of each epoch of this fit (not of the runs it resumed): ``train`` (its
            batches) and ``val`` (its validation pass), on rank 0.
        monitor: ``(validation metric, "min"|"max")`` that chose the best checkpoint.
        config: the resolved configuration.
    """

    run_dir: Path
    experiment: str
    model: str
    metrics: dict[str, float]
    val_metrics: dict[str, float]
    params: int
    train_seconds: float
    epochs: int
    steps: int = 0
    stopped_by: str = "max_epochs"
    warnings: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    epoch_times: list[dict[str, float]] = field(default_factory=list)
    monitor: tuple[str, str] = ("val_loss", "min")
    config: RunConfig | None = None

    @property
    def metric(self) -> tuple[str, float]:
        """The headline test metric: the experiment's ``headline``, else its monitor metric
        (``val_acc`` -> ``("acc", test acc)``)."""
        name = registry.get_experiment(self.experiment).headline or self.monitor[0].removeprefix("val_")
        return name, self.metrics.get(name, math.nan)



def write_metrics(result: RunResult, trainable: int) -> None:
    """Write ``metrics.json`` of a finished run (``trainable``: its number of trainable parameters)."""
    data = {
        "experiment": result.experiment,
        "model": result.model,
        "monitor": list(result.monitor),
        "test": result.metrics,
        "val": result.val_metrics,
        "params": result.params,
        "trainable_params": trainable,
        "train_seconds": result.train_seconds,
        "epochs": result.epochs,
        "steps": result.steps,
        "stopped_by": result.stopped_by,
        "warnings": result.warnings,
        "figures": [
            str(p.relative_to(result.run_dir)) if p.is_relative_to(result.run_dir) else str(p) for p in result.figures
        ],
        "history": result.history,
        "epoch_times": result.epoch_times,
    }
    (result.run_dir / METRICS_FILE).write_text(json.dumps(data, indent=2, allow_nan=True) + "\n")


def load_result(run_dir: str | Path) -> RunResult:
    """Read a finished run folder back into a :class:`RunResult` (no training, no pickle)."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS_FILE
    if not path.is_file():
        raise UserError(f"{path} not found; the run did not finish")
    data = json.loads(path.read_text())
    return RunResult(
        run_dir=run_dir,
        experiment=data["experiment"],
        model=data["model"],
        metrics={k: float(v) for k, v in data["test"].items()},
        val_metrics={k: float(v) for k, v in data["val"].items()},
        params=int(data["params"]),
        train_seconds=float(data["train_seconds"]),
        epochs=int(data["epochs"]),
        steps=int(data.get("steps", 0)),
        stopped_by=str(data.get("stopped_by", "max_epochs")),
        warnings=[str(w) for w in data.get("warnings", [])],
        figures=[run_dir / p for p in data.get("figures", [])],
        history=list(data.get("history", [])),
        epoch_times=list(data.get("epoch_times", [])),
        monitor=tuple(data.get("monitor", ("val_loss", "min"))),  # type: ignore[arg-type]
        config=read_config(run_dir),
    )
