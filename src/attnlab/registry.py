"""Experiments and their models, looked up by name: one table for the CLI, the demo and benchmarks."""

from __future__ import annotations

import importlib

from attnlab.errors import UserError
from attnlab.experiments.base import Experiment, ModelSpec

# Modules that define experiments (each registers its classes with @register_experiment on import).
EXPERIMENT_MODULES: tuple[str, ...] = (
    "attnlab.experiments.sine",
    "attnlab.experiments.count",
    "attnlab.experiments.squares",
    "attnlab.experiments.kernel_regression",
    "attnlab.experiments.digits_vit",
    "attnlab.experiments.translate",
    "attnlab.experiments.forecast",
)

_EXPERIMENTS: dict[str, type[Experiment]] = {}
_loaded = False


def register_experiment(cls: type[Experiment]) -> type[Experiment]:
    """Class decorator: make an :class:`Experiment` available by its ``name``."""
    if cls.name in _EXPERIMENTS and _EXPERIMENTS[cls.name] is not cls:
        raise ValueError(f"experiment name {cls.name!r} is registered twice")
    if cls.default_model not in cls.models:
        raise ValueError(f"{cls.__name__}.default_model {cls.default_model!r} is not in its models")
    _EXPERIMENTS[cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if not _loaded:
        for module in EXPERIMENT_MODULES:
            importlib.import_module(module)
        _loaded = True


def experiments() -> dict[str, type[Experiment]]:
    """All registered experiments, by name, in registration order."""
    _load()
    return dict(_EXPERIMENTS)


def get_experiment(name: str) -> type[Experiment]:
    """The experiment called ``name``; a UserError lists the valid names otherwise."""
    table = experiments()
    if name not in table:
        raise UserError(f"unknown experiment {name!r}; choose one of: {', '.join(table)}")
    return table[name]


def get_model(experiment: type[Experiment], name: str | None) -> tuple[str, ModelSpec]:
    """The model ``name`` of an experiment (its default if None); a UserError lists the valid names."""
    name = experiment.default_model if name is None else name
    if name not in experiment.models:
        raise UserError(
            f"unknown model {name!r} for experiment {experiment.name!r}; choose one of: {', '.join(experiment.models)}"
        )
    return name, experiment.models[name]
