"""Forecast a CSV: the Python API behind ``attnlab forecast`` and ``attnlab predict``.

* :func:`load_data` — read, validate, split and standardise a CSV once (reuse it for many fits).
* :func:`forecast` — train one model on it through :func:`attnlab.train.fit`, test every window, write the run
  folder (plus ``forecasts.csv`` and ``scaler.json``); returns a :class:`ForecastResult`.
* :func:`predict` — forecast the next horizon after the last row of a CSV with a finished run.
"""

from attnlab.forecast.api import FORECASTS_FILE, SCALER_FILE, ForecastResult, forecast, load_data, predict

__all__ = ["FORECASTS_FILE", "SCALER_FILE", "ForecastResult", "forecast", "load_data", "predict"]
