"""Forecast a CSV: the Python API behind ``attnlab forecast`` and ``attnlab predict``.

* :func:`load_data` — read, validate, split and standardise a CSV once (reuse it for many fits).
* :func:`forecast` — train one model on it through :func:`attnlab.train.fit`, test every window, write the run
  folder (plus ``forecasts.csv`` and ``scaler.json``); returns a :class:`ForecastResult`.
* :func:`predict` — forecast the next horizon after the last row of a CSV with a finished run.

Imported on first use, so that ``attnlab forecast --help`` does not load torch or pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {name: "attnlab.forecast.api" for name in
         ("FORECASTS_FILE", "SCALER_FILE", "ForecastResult", "forecast", "load_data", "predict")}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
