"""The one training engine: any registered experiment, any of its models, one Lightning module.

Public API:

* :func:`fit` — train, test the best checkpoint, write the run folder; returns a :class:`RunResult`.
* :func:`load_model` — rebuild a run's model from ``config.json`` + ``model.safetensors`` (no pickle).
* :func:`load_result` — read a finished run folder back into a :class:`RunResult`.
* :func:`resolve` / :class:`RunConfig` — typed configuration from defaults and ``key=value`` overrides.
* :class:`TaskModule` — the Lightning module that owns steps, optimiser, schedule and metric logging.
"""

from attnlab.train.config import RunConfig, resolve
from attnlab.train.engine import RunResult, fit, load_result
from attnlab.train.module import TaskModule
from attnlab.train.weights import load_model, read_config

__all__ = ["RunConfig", "RunResult", "TaskModule", "fit", "load_model", "load_result", "read_config", "resolve"]
