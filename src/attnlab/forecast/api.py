"""Forecasting in Python, pandas first: fit models on a DataFrame, predict the future, backtest, save, load.

:class:`Forecaster` follows the conventions forecasting users know (NeuralForecast's): a long DataFrame of
``unique_id, ds, y`` (and covariate columns), forecasts in columns named after each model, interval bounds in
``<model>-lo-95`` / ``<model>-hi-95``, ``fit`` / ``predict`` / ``cross_validation``. Every model is trained by
the one engine (:func:`attnlab.train.fit`) as a run folder, so each has its report, metrics and attention.

:func:`forecast` and :func:`predict` are what ``attnlab forecast`` and ``attnlab predict`` call: one model on
one data file, tested on every test window; the future after the file's last step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import safetensors.torch
import torch

from attnlab import registry
from attnlab.catalog.forecast import DEFAULT_FORECAST_WINDOWS, ForecastConfig
from attnlab.console import run_footer
from attnlab.data.forecasting import ForecastData, mase_denominator
from attnlab.data.panel import Panel, future_covariates, load_panel
from attnlab.data.times import calendar_features, calendar_names, season_of
from attnlab.errors import UserError
from attnlab.experiments.forecast import (
    FORECASTS_FILE,
    SERIES_FILE,
    STATS_FILE,
    Forecast,
    split_data,
)
from attnlab.experiments.forecast_scores import INTERVALS_FILE
from attnlab.train.config import TrainConfig, convert, field_types, not_a, parse_overrides
from attnlab.train.engine import DEFAULT_RUNS_ROOT, fit, prepare_run
from attnlab.train.result import RunResult
from attnlab.train.weights import CONFIG_FILE, load_model, read_config

log = logging.getLogger(__name__)

# Data options of ForecastConfig that forecast() and the CLI set from their own arguments, not as overrides.
_FLAGS = {"csv": "--csv", "id_col": "--id-col", "date_col": "--date-col", "target": "--target/--all",
          "inputs": "--inputs", "exclude": "--exclude", "futr_cols": "--futr-cols", "static_csv": "--static-csv",
          "calendar": "--calendar", "split": "--split", "ratios": "--ratios", "input_len": "--input-len",
          "horizon": "--horizon", "season": "--season", "val_size": "--val-size", "fill": "--fill", "freq": "--freq",
          "decimal": "--decimal", "levels": "--levels", "forecast_windows": "--forecast-windows"}


@dataclass
class ForecastResult:
    """What :func:`forecast` produced.

    Attributes:
        run: the engine's :class:`~attnlab.train.RunResult` (metrics, params, seconds, run folder, …).
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
        """Test metrics: ``mse``, ``mae`` (standardised), ``mse_orig``, ``mae_orig``, ``mase``, ``smape``, and
        per interval level ``coverage_<level>``, ``width_<level>``, ``msis_<level>``."""
        return self.run.metrics


def _check_overrides(overrides: Mapping[str, Any]) -> None:
    for key in overrides:
        prefix, dot, rest = key.partition(".")
        name = rest if dot and prefix in ("data", "experiment") else key
        if name in _FLAGS:
            raise UserError(f"set {name} with {_FLAGS[name]} (or the {name}= argument of forecast()), "
                            f"not as the override {key!r}")


def _data_overrides(overrides: dict[str, Any], model_config: type) -> dict[str, Any]:
    """Move the data options among ``overrides`` (``data.loss=mae``, or an unprefixed key only the data config
    has) out of them, converted to their field types."""
    types = field_types(ForecastConfig)
    others = set(field_types(TrainConfig)) | set(field_types(model_config))
    moved = {}
    for key in list(overrides):
        prefix, dot, rest = key.partition(".")
        name = rest if dot and prefix in ("data", "experiment") else key
        if name in types and (dot and prefix in ("data", "experiment") or (not dot and name not in others)):
            value = overrides.pop(key)
            try:
                moved[name] = convert(value, types[name])
            except ValueError:
                raise UserError(f"bad value for {key}: {not_a(value, types[name])}") from None
    return moved


def data_config(**options: Any) -> ForecastConfig:
    """A :class:`ForecastConfig` from keyword options; a UserError for an impossible one."""
    try:
        return ForecastConfig(**options)
    except ValueError as err:
        raise UserError(str(err)) from None


def forecast(
    csv: str | Path | pd.DataFrame | Panel,
    model: str = "linear",
    overrides: Mapping[str, Any] | Iterable[str] = (),
    *,
    run_dir: str | Path | None = None,
    runs_root: str | Path = DEFAULT_RUNS_ROOT,
    progress: bool = True,
    figures: bool = True,
    keep_checkpoints: bool = False,
    **options: Any,
) -> ForecastResult:
    """Train ``model`` on ``csv`` (a CSV or Parquet path, or a DataFrame), test it on every test window, write
    the run folder.

    Everything about the input is checked before the run folder is created, so a bad file or option leaves
    nothing behind.

    Args:
        csv: the data (long or wide; see :mod:`attnlab.data.panel`), or a panel already read (its reading
            options are then the ones it was read with).
        model: a forecast model name (``attnlab list forecast``).
        overrides: ``key=value`` items or a mapping for the train config and the model config (as
            ``attnlab fit``); the data options have their own keyword arguments.
        run_dir: the run folder (default ``runs_root/forecast-<model>-<timestamp>``).
        runs_root: where default run folders go.
        progress: show the progress bar.
        figures: draw the figures (forecast vs actual with intervals, attention).
        keep_checkpoints: keep ``checkpoints/last.ckpt`` once the run completes (see :func:`attnlab.train.fit`).
        **options: data options, the fields of :class:`attnlab.catalog.forecast.ForecastConfig` (``id_col``,
            ``date_col``, ``target``, ``inputs``, ``exclude``, ``futr_cols``, ``static_csv``, ``calendar``,
            ``split``, ``ratios``, ``input_len``, ``horizon``, ``season``, ``fill``, ``freq``, ``decimal``,
            ``loss``, ``levels``, ``intervals``, ``forecast_windows`` and the figure options).

    Returns:
        A :class:`ForecastResult`.

    Raises:
        UserError: a bad file, option, model name or override, in one line.
    """
    model_name, model_spec = registry.get_model(Forecast.spec, model)
    user = parse_overrides(overrides)
    _check_overrides(user)
    options = {**_data_overrides(user, model_spec.config), **options}
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(ForecastConfig)})
    if unknown:
        raise TypeError(f"forecast() got unknown data option(s) {unknown}")
    options.setdefault("forecast_windows", DEFAULT_FORECAST_WINDOWS)
    source = csv.source if isinstance(csv, Panel) else "" if isinstance(csv, pd.DataFrame) else str(csv)
    config = data_config(csv=source if source != "DataFrame" else "", **options)
    panel = csv if isinstance(csv, Panel) else load_panel(
        csv, id_col=config.id_col, time_col=config.date_col, target=config.target, inputs=config.inputs,
        exclude=config.exclude, futr=config.futr_cols, freq=config.freq, fill=config.fill, decimal=config.decimal,
        calendar=config.calendar, static=config.static_csv or None)
    data = split_data(panel, config)
    task = Forecast(config, data)
    run = prepare_run("forecast", model_name, user, task=task, run_dir=run_dir, runs_root=runs_root)
    result = fit(run, progress=progress, figures=figures, keep_checkpoints=keep_checkpoints)
    path = result.run_dir / FORECASTS_FILE
    return ForecastResult(result, data, path if path.is_file() else None, data.n_windows("test"))


# ---------------------------------------------------------------------------------------------- the future


@dataclass
class SavedSeries:
    """What a forecast run knows of its series besides its weights (``series.json`` +
    ``series_stats.safetensors`` + ``intervals.json``)."""

    info: dict[str, Any]
    stats: dict[str, np.ndarray]
    intervals: dict[str, Any]

    @classmethod
    def read(cls, run_dir: Path) -> SavedSeries:
        path = run_dir / SERIES_FILE
        if not path.is_file():
            raise UserError(f"{path} not found; the run did not finish or is not a forecast run (retrain it with "
                            "`attnlab forecast`)")
        try:
            info = json.loads(path.read_text())
            stats = {k: v.numpy() for k, v in safetensors.torch.load_file(str(run_dir / STATS_FILE)).items()}
            needed = {"mean", "std", "cov_mean", "cov_std", "static_mean", "static_std", "mase_scale"}
            missing = needed - set(stats)
            if missing:
                raise KeyError(sorted(missing)[0])
            for key in ("ids", "targets", "input_len", "horizon", "freq", "time_kind"):
                info[key]  # noqa: B018 (a KeyError names a damaged file)
        except (ValueError, KeyError, TypeError, OSError, safetensors.SafetensorError) as err:
            what = f"missing {err}" if isinstance(err, KeyError) else type(err).__name__
            raise UserError(f"{run_dir} holds a damaged {SERIES_FILE} or {STATS_FILE} ({what}); retrain the run "
                            "with `attnlab forecast`") from None
        intervals_path = run_dir / INTERVALS_FILE
        try:
            intervals = json.loads(intervals_path.read_text()) if intervals_path.is_file() else {}
        except (ValueError, OSError) as err:
            raise UserError(f"{intervals_path} is damaged ({type(err).__name__}); retrain the run with `attnlab "
                            "forecast`") from None
        return cls(info, stats, intervals)


@dataclass
class FutureInputs:
    """The model inputs of every series' last window, standardised as the run was trained, and the scales to
    bring its forecasts back: x (S, L, C); ``extra``: the covariates the model takes; ``mean``, ``std``,
    ``scale`` (S, C) (the last: each series' interval scale, which the intervals' calibration multiplies)."""

    x: torch.Tensor
    extra: dict[str, torch.Tensor]
    mean: np.ndarray
    std: np.ndarray
    scale: np.ndarray


def future_inputs(saved: SavedSeries, accepts: frozenset[str], panel: Panel, futr: Panel | None,
                  calendar: Sequence[str] = ()) -> FutureInputs:
    """Standardise the last ``input_len`` steps of every series of ``panel`` (and the covariates the model takes)
    with the run's statistics; a series the run has not seen, with its own history. ``calendar``: the run's
    calendar features, computed for the horizon's time stamps when they are its only future covariates."""
    info, stats = saved.info, saved.stats
    panel = as_trained(panel, info)
    L, H = int(info["input_len"]), int(info["horizon"])
    missing = [t for t in info["targets"] if t not in panel.target_names]
    if missing:
        raise UserError(f"{panel.source} lacks the target column(s) {', '.join(missing)} that the run was trained "
                        f"on (it needs {', '.join(info['targets'])})")
    order = [panel.target_names.index(t) for t in info["targets"]]
    known = {s: i for i, s in enumerate(info["ids"])}
    nh, nf, ns = len(info.get("hist", [])), len(info.get("futr", [])), len(info.get("static", []))
    season = int(info.get("season", 1))
    # What the intervals are multiples of: the run's interval scale of each series it trained on (runs saved before
    # it existed: the MASE scale); a new series' MASE scale times the run's median ratio of the two.
    interval_scale = stats.get("interval_scale", stats["mase_scale"])
    ratio = np.median(interval_scale / _nonzero(stats["mase_scale"]), axis=0)  # (C,)
    x, hist, futr_rows, static, mean, std, scale = [], [], [], [], [], [], []
    for s in range(panel.n_series):
        rows = panel.rows(s)
        values = panel.target[rows][:, order]  # (T, C)
        if len(values) < L:
            raise UserError(f"series {panel.ids[s]!r} has {len(values)} steps but the model needs the last "
                            f"input_len = {L}")
        i = known.get(panel.ids[s])
        covariates = np.concatenate([panel.hist[rows], panel.futr[rows]], axis=1)  # (T, Ch + Cf)
        if i is not None:
            m, sd, sc = stats["mean"][i], stats["std"][i], interval_scale[i]
            cm, cs = stats["cov_mean"][i], stats["cov_std"][i]
        else:  # a series the run has not seen: its own history sets the scale
            m, sd, sc = values.mean(axis=0), _nonzero(values.std(axis=0)), mase_denominator(values, season) * ratio
            cm, cs = covariates.mean(axis=0), _nonzero(covariates.std(axis=0))
        x.append((values[-L:] - m) / sd)
        mean.append(m)
        std.append(sd)
        scale.append(sc)
        if nh and "hist" in accepts:
            hist.append((panel.hist[rows][-L:] - cm[:nh]) / cs[:nh])
        if nf and "futr" in accepts:
            futr_rows.append((_future_rows(panel, futr, s, L, H, info["futr"], calendar) - cm[nh:]) / cs[nh:])
        if ns and "static" in accepts:
            static.append((panel.static[s] - stats["static_mean"]) / stats["static_std"])
    extra = {k: torch.as_tensor(np.stack(v), dtype=torch.float32)
             for k, v in (("hist", hist), ("futr", futr_rows), ("static", static)) if v}
    return FutureInputs(torch.as_tensor(np.stack(x), dtype=torch.float32), extra, np.stack(mean), np.stack(std),
                        np.stack(scale))


def forecast_future(run_dir: Path, panel: Panel, futr: Panel | None = None, levels: Sequence[float] | None = None,
                    label: str | None = None) -> pd.DataFrame:
    """The next ``horizon`` steps of every series of ``panel`` forecast by the run's model.

    A series the run trained on is scaled with its training statistics; a new series with its own history.
    Future-known covariates for the horizon come from ``futr`` (a panel of the same series holding at least the
    ``horizon`` steps after each history; missing ones are an error naming the column). Intervals: the run's
    intervals at ``levels`` (default: the run's): its conformal multipliers, or its quantile heads moved by their
    validation corrections.

    Args:
        run_dir: a forecast run folder.
        panel: the histories to continue.
        futr: future-known covariates for the horizon.
        levels: interval levels in percent (default: the run's).
        label: the forecast column's name when one target is scored (default: the model's name for a target
            ``y``, else the target's name); with several targets, columns are ``<label>:<target>``.

    Returns:
        A long DataFrame ``unique_id, ds``, the forecast column(s) and ``<col>-lo-<level>`` / ``<col>-hi-<level>``.
    """
    saved = SavedSeries.read(run_dir)
    model, config = load_model(run_dir)
    info = saved.info
    panel = as_trained(panel, info)
    H = int(info["horizon"])
    inputs = future_inputs(saved, type(config.model_config).COVARIATES, panel, futr, config.experiment_config.calendar)
    with torch.no_grad():
        out = model(inputs.x, **inputs.extra).double().numpy()  # (S, H, C[, Q])
    quantile = out.ndim == 4
    point = (out[..., 0] if quantile else out) * inputs.std[:, None] + inputs.mean[:, None]  # (S, H, C)
    scored = [info["targets"].index(t) for t in info.get("scored", info["targets"])]
    columns = {k: (label or (config.model if info["targets"][k] == "y" else info["targets"][k])) if len(scored) == 1
               else (f"{label}:{info['targets'][k]}" if label else info["targets"][k]) for k in scored}
    rows_out: dict[str, Any] = {
        "unique_id": np.repeat(list(panel.ids), H),
        "ds": panel.future_times(H),
    }
    trained_levels = list(saved.intervals.get("levels", []))
    levels = trained_levels if levels is None else list(levels)
    calibration = saved.intervals.get("corrections" if quantile else "multipliers", {})
    for level in levels:
        if level not in trained_levels or (not quantile and f"{level:g}" not in calibration):
            raise UserError(f"the run has no {level:g} % interval; it was trained with levels {trained_levels} "
                            f"(retrain with --levels {level:g})")
    for k in scored:
        rows_out[columns[k]] = point[..., k].ravel()
        for level in levels:
            # (H,) multiples of each series' MASE scale: the half-width, or (quantile heads) how far each bound
            # moves out; runs saved before quantile bounds were calibrated have none
            m = calibration.get(f"{level:g}")
            width = 0.0 if m is None else np.asarray(m)[:, scored.index(k)][None] * inputs.scale[:, None, k]  # (S, H)
            if quantile:
                j = trained_levels.index(level)
                lo = out[..., k, 1 + 2 * j] * inputs.std[:, None, k] + inputs.mean[:, None, k] - width
                hi = out[..., k, 2 + 2 * j] * inputs.std[:, None, k] + inputs.mean[:, None, k] + width
            else:
                lo, hi = point[..., k] - width, point[..., k] + width
            rows_out[f"{columns[k]}-lo-{level:g}"] = lo.ravel()
            rows_out[f"{columns[k]}-hi-{level:g}"] = hi.ravel()
    if not np.isfinite(point).all():
        log.warning("the forecast holds non-finite values (%d of %d)", int((~np.isfinite(point)).sum()), point.size)
    return pd.DataFrame(rows_out)


def as_trained(panel: Panel, info: Mapping[str, Any]) -> Panel:
    """``panel`` with the run's series id when both are one wide series: a wide file's one series is named after
    the file, so the same series under another file name (a copy with new rows) is still the one the run trained
    on, scaled with its saved statistics rather than as a new series."""
    ids = list(info["ids"])
    if panel.layout == "wide" and info.get("layout") == "wide" and len(ids) == 1 and list(panel.ids) != ids:
        return dataclasses.replace(panel, ids=(ids[0],))
    return panel


def _nonzero(std: np.ndarray) -> np.ndarray:
    return np.where(std > 0, std, 1.0)


def _future_rows(panel: Panel, futr: Panel | None, s: int, L: int, H: int, names: Sequence[str],
                 calendar: Sequence[str] = ()) -> np.ndarray:
    """(L + H, Cf) future-known covariates of series ``s``: its last L steps, then H steps from ``futr`` (or, when
    the calendar features are the only ones, computed from the horizon's time stamps)."""
    past = panel.futr[panel.rows(s)][-L:]
    if futr is None and calendar and tuple(names) == calendar_names(calendar):
        n = int(panel.lengths[s])
        return np.concatenate([past, calendar_features(panel.times(s, n, n + H), calendar)])
    if futr is None:
        raise UserError(f"the model takes future-known covariates ({', '.join(names)}); pass their values for the "
                        "horizon with --futr-csv (Python: futr_df=)")
    if panel.ids[s] not in futr.ids:
        raise UserError(f"the future covariates have no rows for series {panel.ids[s]!r}")
    f = futr.ids.index(panel.ids[s])
    wanted = panel.times(s, int(panel.lengths[s]), int(panel.lengths[s]) + H)
    have = futr.times(f)
    position = have.get_indexer(wanted)
    if (position < 0).any():
        first = wanted[int(np.flatnonzero(position < 0)[0])]
        raise UserError(f"the future covariates of series {panel.ids[s]!r} lack {first} (they must cover the "
                        f"{H} steps after its history); column(s) {', '.join(names)}")
    ahead = futr.futr[futr.rows(f)][position]
    return np.concatenate([past, ahead])


def predict(
    run: str | Path, csv: str | Path | pd.DataFrame, *, out: str | Path | None = None, fill: str | None = None,
    futr: str | Path | pd.DataFrame | None = None, overwrite: bool = False, levels: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Forecast the ``horizon`` steps after the end of every series of ``csv`` with the model of run ``run``.

    Args:
        run: a run folder written by :func:`forecast` (or ``attnlab fit forecast``).
        csv: the series to continue (the run's layout, columns and frequency; extra columns are ignored).
        out: also write the forecast there as CSV; never the input file, an existing file only with
            ``overwrite``.
        fill: how to fill missing cells (default: the run's setting).
        futr: future-known covariates for the horizon (long: ``unique_id, ds`` + the columns).
        overwrite: replace ``out`` if it exists.
        levels: interval levels (default: the run's).

    Returns:
        A DataFrame ``unique_id, ds``, one column per scored target, and the interval bounds.

    Raises:
        UserError: not a forecast run, a damaged run file, a bad CSV (the same checks as training), missing
            columns, too few steps, irregular time stamps, missing future covariates, an ``out`` that is the input
            or exists.
    """
    run_dir = Path(run)
    if out is not None and not isinstance(csv, pd.DataFrame):
        check_output(Path(out), Path(csv), overwrite)
    if not (run_dir / CONFIG_FILE).is_file():
        raise UserError(f"{run_dir} is not a run folder (no {CONFIG_FILE}); pass the folder `attnlab forecast` printed")
    config = read_config(run_dir)
    if config.experiment != Forecast.spec.name:
        raise UserError(f"{run_dir} is a run of {config.experiment!r}, not a forecast; pass a forecast run folder")
    c = config.experiment_config
    saved = SavedSeries.read(run_dir)
    try:
        panel = load_panel(csv, id_col=c.id_col, time_col=c.date_col, target=c.target, inputs=c.inputs,
                           exclude=c.exclude, futr=c.futr_cols,
                           freq=saved.info["freq"] if saved.info["time_kind"] == "datetime" else None,
                           fill=c.fill if fill is None else fill, decimal=c.decimal, calendar=c.calendar,
                           static=c.static_csv or None)
        future = None
        if futr is not None:
            future = future_covariates(futr, c.futr_cols, id_col=c.id_col, time_col=c.date_col, calendar=c.calendar,
                                       freq=saved.info["freq"] if saved.info["time_kind"] == "datetime" else None)
    except UserError as error:
        raise _for_predict(error, c, saved.info["freq"], csv) from None
    frame = forecast_future(run_dir, panel, future, levels)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False, float_format="%.6g")
    return frame


# The options of `attnlab predict`; a data error that names another one gets a fix predict's user can make.
PREDICT_FLAGS = ("--run", "--csv", "--futr-csv", "--out", "--overwrite", "--fill", "--levels")


def _for_predict(error: UserError, c: ForecastConfig, freq: str, csv: str | Path | pd.DataFrame) -> UserError:
    """A data error of predict whose fix names an option of ``attnlab forecast`` (``--date-col``, ``--freq``…),
    which predict does not take (it reads the run's settings), with a fix for predict: the data the run expects,
    or a new run on this data."""
    import re

    text = str(error)
    if not set(re.findall(r"--[a-z][a-z-]*", text)) - set(PREDICT_FLAGS):
        return error
    problem, _, fix = text.rpartition("; ") if "; " in text else (text, "", "")
    problem = problem.replace(f"--freq {freq} grid", f"run's {freq} grid")
    retrain = ("train a run on this data with `attnlab forecast`" if isinstance(csv, pd.DataFrame)
               else f"train a run on this file with `attnlab forecast --csv {Path(csv).name}`")
    if "--date-col" in fix:
        where = f"column {c.date_col!r}" if c.date_col else "a column named ds, date, time, timestamp or datetime"
        hint = f"the run reads its time stamps from {where}: give the file that column, or {retrain}"
    elif "--freq" in text:
        own = re.search(r"pass --freq (\S+), the series' own frequency", fix)
        hint = (f"the run forecasts steps of {freq}" + (f", this data's are {own.group(1)}" if own else "")
                + f": pass data at the run's frequency (--fill ffill or interpolate adds missing stamps), or {retrain}")
    else:
        hint = f"pass data with the columns the run was trained on, or {retrain}"
    return UserError(f"{problem}; {hint}")


def check_output(out: Path, source: Path, overwrite: bool) -> None:
    """Refuse an output path that is the input file, a folder, or (without ``overwrite``) an existing file."""
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise UserError(f"--out {out} is the input CSV; write the forecast to another file")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; pass a file name such as {out / 'forecast.csv'}")
    if out.exists() and not overwrite:
        raise UserError(f"--out {out} exists; choose another file, or pass --overwrite to replace it")


def format_metrics(result: ForecastResult) -> list[str]:
    """The lines ``attnlab forecast`` prints: setting, run folder, a table of test metrics, the baselines beside
    the model, interval scores, and the run's footer (how it stopped, warnings, the report last)."""
    d, r = result.data, result.run
    m = r.metrics
    targets = "all" if len(d.targets) == d.n_channels else ",".join(d.targets)
    where = Path(d.panel.source).name
    baselines_path = r.run_dir / "baselines.json"
    baselines = json.loads(baselines_path.read_text()).get("baselines", {}) if baselines_path.is_file() else {}
    rows = [(f"{r.model} (standardised)", m, ("mse", "mae", "mase", "smape")),
            (f"{r.model} (original)", m, ("mse_orig", "mae_orig"))]
    rows += [(name, values, ("mse", "mae", "mase", "smape")) for name, values in baselines.items()
             if name != "seasonal naive"]
    width = max(24, *(len(name) + 2 for name, _, _ in rows))
    lines = [
        f"forecast/{r.model}: {where}  {d.panel.n_series} series  split {d.split}  input {d.input_len}  "
        f"horizon {d.horizon}  season {d.season}  channels {d.n_channels}  targets {targets}",
        f"  run folder: {r.run_dir}",
        f"  params {r.params:,}   train {r.train_seconds:.1f} s   test windows {result.test_windows}",
        f"  {'test':<{width}}{'MSE':>10}{'MAE':>10}{'MASE':>10}{'sMAPE':>10}",
    ]
    lines += [f"  {name:<{width}}" + "".join(_cell(values, key) for key in keys) for name, values, keys in rows]
    for key in sorted(k for k in m if k.startswith("coverage_")):
        level = key.removeprefix("coverage_")
        width, msis = m.get(f"width_{level}", math.nan), m.get(f"msis_{level}", math.nan)
        lines.append(f"  {level} % interval: coverage {m[key]:.3f}, mean width {width:.4g}, MSIS {msis:.4g}")
    if result.forecasts_csv is not None:
        lines.append(f"  forecasts: {result.forecasts_csv}")
    return lines + run_footer(r)


def _cell(metrics: Mapping[str, float], name: str) -> str:
    value = metrics.get(name, math.nan)
    return f"{value:>10.4f}" if abs(value) < 1e4 or math.isnan(value) else f"{value:>10.4g}"


__all__ = ["ForecastResult", "forecast", "forecast_future", "format_metrics", "predict", "season_of"]
