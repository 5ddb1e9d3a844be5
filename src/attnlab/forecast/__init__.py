"""Forecast your own data, pandas first: the Python API behind ``attnlab forecast``, ``predict`` and ``backtest``.

* :class:`Forecaster` — several models on a long DataFrame (``unique_id, ds, y``): ``fit``, ``predict``,
  ``cross_validation``, ``save`` / ``load``, ``attention``.
* :func:`forecast` — train one model on a file or DataFrame, test every window beside the baselines, write the run
  folder; returns a :class:`ForecastResult`.
* :func:`predict` / :func:`forecast_future` — the next horizon of every series with a finished run.
* :func:`load_panel`, :func:`read_m4` — read data into the panel the models train on.

Imported on first use, so that ``attnlab forecast --help`` does not load torch or pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {**{name: "attnlab.forecast.api" for name in ("ForecastResult", "forecast", "forecast_future", "predict")},
         "Forecaster": "attnlab.forecast.forecaster", "read_m4": "attnlab.data.panel",
         "load_panel": "attnlab.data.panel"}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
