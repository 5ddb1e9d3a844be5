"""The one training engine: any registered experiment, any of its models, one Lightning module.

Public API (imported on first use, so that ``import attnlab.train.config`` stays free of torch):

* :func:`prepare_run` — resolve, check and build a :class:`Run` (config, task, model, data), writing nothing.
* :func:`fit` — train a run (or prepare one from names), test the best epoch's weights, write the run folder;
  returns a :class:`RunResult`.
* :func:`load_model` — rebuild a run's model from ``config.json`` + ``model.safetensors`` (no pickle).
* :func:`load_result` — read a finished run folder back into a :class:`RunResult`.
* :func:`resolve` / :class:`RunConfig` / :class:`TrainConfig` — typed configuration from defaults and
  ``key=value`` overrides.
* :class:`TaskModule` — the Lightning module that owns steps, optimiser, schedule and metric logging.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "RunConfig": "attnlab.train.config",
    "TrainConfig": "attnlab.train.config",
    "resolve": "attnlab.train.config",
    "Run": "attnlab.train.engine",
    "RunResult": "attnlab.train.result",
    "prepare_run": "attnlab.train.engine",
    "fit": "attnlab.train.engine",
    "load_result": "attnlab.train.result",
    "TaskModule": "attnlab.train.module",
    "load_model": "attnlab.train.weights",
    "read_config": "attnlab.train.weights",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
