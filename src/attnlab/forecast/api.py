"""``forecast`` and ``predict``: one call = data loaded once + fit + test metrics + forecasts written.

Run folder of :func:`forecast`: what :func:`attnlab.train.fit` writes for every run (config.json, metrics.json,
model.safetensors, checkpoints/, logs/, figures/, attention, report) plus, from
:meth:`attnlab.experiments.forecast.Forecast.save_artifacts`::

    scaler.json     train-row mean/std per column, target channels, time-stamp frequency, split borders:
                    with config.json and model.safetensors, all `attnlab predict` needs
    forecasts.csv   one row per test window and forecast step: window, origin (last input time stamp),
                    step, timestamp, then <target>_forecast and <target>_actual per target, original units
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from attnlab import registry
from attnlab.catalog.forecast import DEFAULT_FORECAST_WINDOWS
from attnlab.console import run_footer
from attnlab.data.timeseries import (
    DEFAULT_RATIOS,
    ForecastData,
    Scaler,
    load_forecast_data,
    read_table,
)
from attnlab.errors import UserError
from attnlab.experiments.forecast import FORECASTS_FILE, SCALER_FILE, Forecast, cached_load, remember
from attnlab.train.config import parse_overrides
from attnlab.train.engine import DEFAULT_RUNS_ROOT, RunResult, fit
from attnlab.train.weights import CONFIG_FILE, load_model, read_config

log = logging.getLogger(__name__)

# Data options set by forecast()'s own arguments (or the data object), not by key=value overrides.
DATA_OPTIONS = ("csv", "date_col", "target", "split", "ratios", "input_len", "horizon", "fill", "freq", "decimal")
_FLAGS = {"csv": "--csv", "date_col": "--date-col", "target": "--target/--all", "split": "--split",
          "ratios": "--ratios", "input_len": "--input-len", "horizon": "--horizon", "fill": "--fill",
          "freq": "--freq", "decimal": "--decimal", "forecast_windows": "--forecast-windows"}


@dataclass
class ForecastResult:
    """What :func:`forecast` produced.

    Attributes:
        run: the engine's :class:`~attnlab.train.RunResult` (metrics, params, train seconds, run folder, …).
        data: the data it trained on.
        forecasts_csv: the forecasts file (None if none was asked for).
        test_windows: number of test windows evaluated (all of them).
    """

    run: RunResult
    data: ForecastData
    forecasts_csv: Path | None
    test_windows: int

    @property
    def run_dir(self) -> Path:
        return self.run.run_dir

    @property
    def metrics(self) -> dict[str, float]:
        """Test metrics: ``mse``, ``mae`` (standardised), ``mse_orig``, ``mae_orig`` (original units)."""
        return self.run.metrics


def load_data(
    csv: str | Path,
    *,
    date_col: str = "date",
    target: str | Sequence[str] | None = None,
    split: str = "ratio",
    ratios: Sequence[float] = DEFAULT_RATIOS,
    input_len: int = 336,
    horizon: int = 96,
    fill: str = "none",
    freq: str | None = None,
    decimal: str = ".",
) -> ForecastData:
    """Read, validate, split and standardise ``csv`` (see :mod:`attnlab.data.timeseries`); pass the result
    to :func:`forecast` as ``data=`` to fit several models without reading the file again.

    Raises:
        UserError: any problem of the file or the options, in one line.
    """
    data = load_forecast_data(Path(csv).expanduser().resolve(), date_col, target, split, tuple(ratios), input_len,
                              horizon, fill, freq, decimal)
    remember(data)
    return data


def _check_overrides(overrides: Mapping[str, Any]) -> None:
    for key in overrides:
        prefix, dot, rest = key.partition(".")
        name = rest if dot and prefix in ("data", "experiment") else key
        if name in _FLAGS:
            raise UserError(f"set {name} with {_FLAGS[name]} (or the {name}= argument of forecast()), "
                            f"not as the override {key!r}")


def forecast(
    csv: str | Path | None = None,
    model: str = "linear",
    overrides: Mapping[str, Any] | Iterable[str] = (),
    *,
    data: ForecastData | None = None,
    date_col: str = "date",
    target: str | Sequence[str] | None = None,
    split: str = "ratio",
    ratios: Sequence[float] = DEFAULT_RATIOS,
    input_len: int = 336,
    horizon: int = 96,
    fill: str = "none",
    freq: str | None = None,
    decimal: str = ".",
    run_dir: str | Path | None = None,
    runs_root: str | Path = DEFAULT_RUNS_ROOT,
    progress: bool = True,
    figures: bool = True,
    forecast_windows: int | None = DEFAULT_FORECAST_WINDOWS,
    keep_checkpoints: bool = False,
) -> ForecastResult:
    """Train ``model`` to forecast ``csv`` (or ``data``), test it on every test window, write the run folder.

    Everything about the input is checked before the run folder is created, so a bad file or option leaves
    nothing behind.

    Args:
        csv: the CSV (ignored when ``data`` is given).
        model: a forecast model name (``attnlab list forecast``).
        overrides: ``key=value`` items or a mapping for the train config and the model config (as
            ``attnlab fit``); the data options have their own arguments.
        data: an already-loaded :func:`load_data` result: its options replace ``date_col`` … ``fill``.
        date_col, target, split, ratios, input_len, horizon, fill, freq, decimal: the data options (see
            :func:`load_data`).
        run_dir: the run folder (default ``runs_root/forecast-<model>-<timestamp>``).
        runs_root: where default run folders go.
        progress: show the progress bar.
        figures: draw the figures (forecast vs actual, attention).
        forecast_windows: how many test windows to write to ``forecasts.csv``, spread evenly over the test
            split (default 100, enough for the figures and the report): None = every window, 0 = no file.
        keep_checkpoints: keep ``checkpoints/last.ckpt`` once the run completes (see :func:`attnlab.train.fit`).

    Returns:
        A :class:`ForecastResult`.

    Raises:
        UserError: a bad file, option, model name or override, in one line.
    """
    model_name, _ = registry.get_model(Forecast.spec, model)
    if forecast_windows is not None and forecast_windows < 0:
        raise UserError(f"forecast_windows must be >= 0 or None (all), got {forecast_windows}")
    user = parse_overrides(overrides)
    _check_overrides(user)
    if data is None:
        if csv is None:
            raise UserError("no CSV given; pass --csv FILE")
        data = load_data(csv, date_col=date_col, target=target, split=split, ratios=ratios, input_len=input_len,
                         horizon=horizon, fill=fill, freq=freq, decimal=decimal)
    else:
        remember(data)
    options = data.options()
    merged: dict[str, Any] = {f"data.{key}": options[key] for key in DATA_OPTIONS}
    merged["data.forecast_windows"] = forecast_windows
    merged.update(user)
    # The experiment writes scaler.json and forecasts.csv into the run folder (Forecast.save_artifacts).
    result = fit("forecast", model_name, merged, run_dir=run_dir, runs_root=runs_root, progress=progress,
                 figures=figures, keep_checkpoints=keep_checkpoints)
    path = result.run_dir / FORECASTS_FILE
    return ForecastResult(result, data, path if path.is_file() else None, data.windows("test"))


def _scaler_of(run_dir: Path, config: Any) -> tuple[Scaler, list[str], str | None]:
    """The run's scaler, targets and frequency: from scaler.json, or (a run made by `attnlab fit forecast`)
    recomputed from the training CSV named in config.json."""
    path = run_dir / SCALER_FILE
    if path.is_file():
        try:
            payload = json.loads(path.read_text())
            return Scaler.from_dict(payload), [str(t) for t in payload["targets"]], payload.get("frequency")
        except (ValueError, KeyError, TypeError) as err:
            what = f"missing {err}" if isinstance(err, KeyError) else type(err).__name__
            raise UserError(f"{path} is damaged ({what}); retrain the run with `attnlab forecast`") from None
    c = config.experiment_config
    if not Path(c.csv).is_file():
        raise UserError(f"{path} not found and the training CSV {c.csv} is gone; retrain with `attnlab forecast`")
    data = cached_load(csv=c.csv, date_col=c.date_col, target=c.target, split=c.split, ratios=c.ratios,
                       input_len=c.input_len, horizon=c.horizon, fill=c.fill, freq=c.freq, decimal=c.decimal)
    return data.scaler, list(data.targets), None


def predict(
    run: str | Path, csv: str | Path, *, out: str | Path | None = None, fill: str | None = None,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Forecast the ``horizon`` steps after the last row of ``csv`` with the model of run folder ``run``.

    The last ``input_len`` rows are standardised with the run's saved train statistics; the forecast time
    stamps continue the series' frequency (the one the run was trained at; the CSV must be regular at it).

    Args:
        run: a run folder written by :func:`forecast` (or ``attnlab fit forecast``).
        csv: a CSV with the run's date column and all its numeric columns (extra columns are ignored).
        out: also write the forecast there as CSV; never the input CSV, and an existing file only with
            ``overwrite``.
        fill: how to fill missing cells (default: the run's setting).
        overwrite: replace ``out`` if it exists.

    Returns:
        A DataFrame: the date column, then one column per target channel, original units.

    Raises:
        UserError: not a forecast run, a damaged run file, a bad CSV (the same checks as training), missing
            columns, fewer rows than ``input_len``, irregular time stamps, an ``out`` that is the input or exists.
    """
    run_dir = Path(run)
    if out is not None:
        check_output(Path(out), Path(csv), overwrite)
    if not (run_dir / CONFIG_FILE).is_file():
        raise UserError(f"{run_dir} is not a run folder (no {CONFIG_FILE}); pass the folder `attnlab forecast` printed")
    config = read_config(run_dir)
    if config.experiment != Forecast.spec.name:
        raise UserError(f"{run_dir} is a run of {config.experiment!r}, not a forecast; pass a forecast run folder")
    c = config.experiment_config
    scaler, targets, freq = _scaler_of(run_dir, config)
    table = read_table(csv, c.date_col, c.fill if fill is None else fill, freq or c.freq, c.decimal)
    missing = [name for name in scaler.columns if name not in table.columns]
    if missing:
        raise UserError(
            f"{table.path} lacks column(s) {', '.join(missing)} that the run was trained on "
            f"(it needs {', '.join(scaler.columns)})"
        )
    extra = [name for name in table.columns if name not in scaler.columns]
    if extra:
        log.info("ignoring column(s) the run was not trained on: %s", ", ".join(extra))
    L, H = c.input_len, c.horizon
    if len(table.values) < L:
        raise UserError(f"{table.path} has {len(table.values)} rows but the model needs the last input_len = {L}")
    order = [table.columns.index(name) for name in scaler.columns]
    x = scaler.transform(table.values[-L:][:, order])  # (L, C) standardised
    model, _ = load_model(run_dir)
    with torch.no_grad():
        y = model(torch.as_tensor(x, dtype=torch.float32).unsqueeze(0))[0]  # (H, C)
    index = [scaler.columns.index(name) for name in targets]
    values = scaler.inverse(y[:, index], index)  # (H, T) original units
    future = pd.date_range(table.timestamps[-1], periods=H + 1, freq=table.freq)[1:]
    frame = pd.DataFrame({c.date_col: future, **{name: values[:, k] for k, name in enumerate(targets)}})
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False, float_format="%.6g")
    if not np.isfinite(values).all():
        log.warning("the forecast holds non-finite values (%d of %d)", int((~np.isfinite(values)).sum()),
                    values.size)
    return frame


def check_output(out: Path, source: Path, overwrite: bool) -> None:
    """Refuse an output path that is the input file, a folder, or (without ``overwrite``) an existing file."""
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise UserError(f"--out {out} is the input CSV; write the forecast to another file")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; pass a file name such as {out / 'forecast.csv'}")
    if out.exists() and not overwrite:
        raise UserError(f"--out {out} exists; choose another file, or pass --overwrite to replace it")


def format_metrics(result: ForecastResult) -> list[str]:
    """The lines ``attnlab forecast`` prints: setting, run folder, a table of test metrics."""
    d, r = result.data, result.run
    m = r.metrics
    targets = "all" if len(d.targets) == d.n_channels else ",".join(d.targets)

    def cell(name: str) -> str:
        value = m.get(name, math.nan)
        return f"{value:>12.4f}" if abs(value) < 1e4 else f"{value:>12.4g}"

    lines = [
        f"forecast/{r.model}: {d.table.path.name}  split {d.split}  input {d.input_len}  horizon {d.horizon}  "
        f"channels {d.n_channels}  targets {targets}",
        f"  run folder: {r.run_dir}",
        f"  params {r.params:,}   train {r.train_seconds:.1f} s   "
        f"test windows {result.test_windows}",
        f"  {'test':<14}{'MSE':>12}{'MAE':>12}",
        f"  {'standardised':<14}{cell('mse')}{cell('mae')}",
        f"  {'original':<14}{cell('mse_orig')}{cell('mae_orig')}",
    ]
    if result.forecasts_csv is not None:
        lines.append(f"  forecasts: {result.forecasts_csv}")
    return lines + run_footer(r)
