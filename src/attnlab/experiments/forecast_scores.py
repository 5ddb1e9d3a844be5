"""The test scores of the ``forecast`` experiment that need every test window: prediction intervals (split
conformal from the validation residuals, or the quantile heads) with their coverage, width and MSIS; the naive,
seasonal naive and closed-form ridge baselines; the error per horizon step. Windows are forecast and scored a chunk
at a time (:data:`SCORE_CHUNK`), so a panel of 10^5 series never holds an array per test window and step.

:class:`ForecastScoring` holds them as methods of :class:`attnlab.experiments.forecast.Forecast`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from attnlab.catalog.forecast import ForecastConfig
from attnlab.data.forecasting import RECENT_WINDOWS, ForecastData
from attnlab.data.windows import ForecastBatch, PanelWindows
from attnlab.experiments.base import DataSplits
from attnlab.metrics import ZERO_TOL, interval_scores, point_scores
from attnlab.report.files import write_baselines

INTERVALS_FILE = "intervals.json"
HORIZON_FILE = "horizon_errors.csv"
EVAL_BATCH = 256
# Each series' intervals are multiples of its recent error plus this share of its MASE scale (:meth:`interval_scale`).
# Chosen on M4 Hourly's validation split (docs/notes/m4.md; `bench m4 --validation`: 95 % MSIS 8.61 → 7.81).
SCALE_FLOOR = 0.1
SCALE_NOTE = (f"each series' mean absolute error on its last {RECENT_WINDOWS} training windows, a horizon apart, "
              f"+ {SCALE_FLOOR:g} × its MASE scale")
SCORE_CHUNK = 1024  # test windows per chunk of the whole-split scores: 8192 held ~13 MiB of temporaries at once


def conformal_quantile(scores: np.ndarray, level: float) -> np.ndarray:
    """Split conformal's quantile of the n scores along axis 0 of ``scores`` (n, ...): the ⌈(n + 1)·level⌉-th
    smallest (level in percent), the largest when that is beyond n. Shape ``scores.shape[1:]``."""
    n = len(scores)
    k = min(n, math.ceil(round((n + 1) * level / 100, 9)))
    return np.sort(scores, axis=0)[k - 1]


class ForecastScoring:
    """Intervals, baselines and the whole-split test scores of a forecasting task.

    A mixin of :class:`attnlab.experiments.forecast.Forecast`: it uses the task's ``config``
    (:class:`ForecastConfig`), ``series`` (:class:`ForecastData`), ``quantiles`` (the quantile heads' levels, empty
    for point models), ``forecasts(model, split, indices)`` (windows and their forecasts in original units) and
    keeps the intervals' calibration (:meth:`calibrate`) in ``_multipliers`` and each series' interval scale
    (:meth:`interval_scale`) in ``_interval_scale``.
    """

    config: ForecastConfig
    series: ForecastData
    quantiles: tuple[float, ...]
    _multipliers: dict[float, np.ndarray] | None
    _interval_scale: np.ndarray | None

    def summarize(self, model: nn.Module, data: DataSplits, run_dir: Path) -> tuple[dict[str, float], list[str]]:
        """Test metrics that need every window at once, written beside the run: prediction intervals (coverage,
        width, MSIS per level), the error per horizon step, and the baselines (naive, seasonal naive, ridge).
        Returns the metrics to add to the run's test metrics and warnings (the model losing to seasonal naive).

        The test windows are forecast and scored :data:`SCORE_CHUNK` at a time (every score is a mean over windows,
        combined over the chunks), so a panel of 10^5 series never holds an array per test window and step."""
        d = self.series
        n = d.n_windows("test")
        if n == 0:  # fitted on every step (the Python API's fit): nothing to score, but
            if self.config.levels:  # predict still needs the intervals calibrated on the validation windows
                self.calibrate(model)
                (run_dir / INTERVALS_FILE).write_text(json.dumps(self.interval_record(), indent=1) + "\n")
            return {}, []
        idx = list(d.target_index)
        ridge = self._fit_ridge()
        means = ChunkMeans()
        horizon = HorizonSums(d.horizon)
        levels: list[float] = []
        for start in range(0, n, SCORE_CHUNK):
            windows, forecast = self.forecasts(model, "test", np.arange(start, min(n, start + SCORE_CHUNK)))
            series, origin = d.locate("test", windows)
            truth = d.truth(series, origin)[..., idx]  # (b, H, T)
            point = (forecast[..., 0] if forecast.ndim == 4 else forecast)[..., idx]
            scale = d.mase_scale[series][:, idx]  # (b, T)
            for level, (lower, upper) in self.intervals(model, forecast, series, idx).items():
                means.add(f"interval {level:g}", interval_scores(truth, lower, upper, level, scale), len(windows))
                levels = list(dict.fromkeys([*levels, level]))
            horizon.add(truth, point, scale)
            means.add("model", window_scores(d, truth, point, series, idx, scale), len(windows))
            for name, values in self.baseline_forecasts(windows, series, origin, idx, truth.shape, ridge):
                means.add(name, window_scores(d, truth, values, series, idx, scale), len(windows))
        metrics = {f"{key}_{level:g}": value for level in levels
                   for key, value in means.result(f"interval {level:g}").items()}
        horizon.write(run_dir / HORIZON_FILE)
        m = d.season
        baselines = {name: means.result(name) for name in means.names() if name != "model"
                     and not name.startswith("interval ")}
        baselines["seasonal naive"] = baselines[f"seasonal naive (season {m})"]
        write_baselines(run_dir, baselines)
        if levels:
            (run_dir / INTERVALS_FILE).write_text(json.dumps(self.interval_record(), indent=1) + "\n")
        warnings = self.interval_warnings() if levels else []
        model_scores = means.result("model")
        naive = baselines.get("seasonal naive")
        if naive is not None and model_scores["mase"] > naive["mase"]:
            warnings.append(f"the model loses to the seasonal naive forecast on the test windows (MASE "
                            f"{model_scores['mase']:.4g} against {naive['mase']:.4g}, season {d.season})")
        return metrics, warnings

    def intervals(self, model: nn.Module, forecast: np.ndarray, series: np.ndarray, idx: list[int]
                  ) -> dict[float, tuple[np.ndarray, np.ndarray]]:
        """Lower and upper bounds (N, H, K) of each level for ``forecast`` (N, H, C[, Q]) of windows of
        ``series``, channels ``idx`` (scored channels), calibrated on the validation windows (:meth:`calibrate`):
        split conformal, the point forecast ± a multiple of each series' interval scale (:meth:`interval_scale`);
        or, for quantile heads, conformalized quantile regression, each level's two quantiles moved out (or in) by
        a multiple of it."""
        c, d = self.config, self.series
        if not c.levels:
            return {}
        calibration = self.calibrate(model)
        columns = [d.target_index.index(i) for i in idx]
        scale = self.interval_scale(model)[series][:, idx][:, None]  # (N, 1, K)
        if forecast.ndim == 4:  # quantile heads: median, then each level's lower and upper quantile
            return {level: (forecast[..., idx, 1 + 2 * k] - calibration[level][:, columns] * scale,
                            forecast[..., idx, 2 + 2 * k] + calibration[level][:, columns] * scale)
                    for k, level in enumerate(c.levels)}
        point = forecast[..., idx]
        return {level: (point - m[:, columns] * scale, point + m[:, columns] * scale)
                for level, m in calibration.items()}

    def interval_record(self) -> dict[str, Any]:
        """What ``intervals.json`` holds: the method, the levels, what the width is a multiple of, and per level
        the (H, T) multipliers of each series' interval scale (conformal: the half-width; quantile heads: how far
        each bound moves out)."""
        c = self.config
        record: dict[str, Any] = {"method": "quantile" if self.quantiles else "conformal", "levels": list(c.levels),
                                  "scale": SCALE_NOTE}
        if self._multipliers is not None:
            key = "corrections" if self.quantiles else "multipliers"
            record[key] = {f"{level:g}": m.tolist() for level, m in self._multipliers.items()}
        return record

    def interval_warnings(self) -> list[str]:
        """One line per level that the validation windows are too few to calibrate: with n windows a level above
        n / (n + 1) has no finite split-conformal interval, and the bound used (the largest validation error)
        covers more than the level asks."""
        n = self.series.n_windows("val")
        return [f"the {level:g} % interval rests on {n} validation windows, too few for that level (split conformal "
                f"needs at least {math.ceil(level / (100 - level))}): it is the largest validation error and wider "
                "than the level needs; hold out more steps per series (--val-size) or ask for a lower level"
                for level in self.config.levels if math.ceil((n + 1) * level / 100) > n]

    def interval_scale(self, model: nn.Module) -> np.ndarray:
        """(S, C) what each series' intervals are a multiple of, in original units: the model's mean absolute
        error on the series' ``recent`` windows (its last :data:`~attnlab.data.forecasting.RECENT_WINDOWS`
        training windows, a horizon apart), plus :data:`SCALE_FLOOR` times its MASE scale (a series the model
        fits exactly still gets an interval). A series the model forecasts worse than others of its level gets
        wider intervals; one MASE scale for all would give every series the same width in its own units (locally
        weighted split conformal, Lei et al. 2018). Computed once per run."""
        if self._interval_scale is not None:
            return self._interval_scale
        d = self.series
        windows, forecast = self.forecasts(model, "recent")
        series, origin = d.locate("recent", windows)
        point = forecast[..., 0] if forecast.ndim == 4 else forecast  # (N, H, C)
        error = np.abs(d.truth(series, origin) - point).mean(axis=1)  # (N, C)
        total = np.zeros(d.mase_scale.shape)
        np.add.at(total, series, error)
        count = np.bincount(series, minlength=len(total))[:, None]  # every kept series has a training window
        self._interval_scale = total / np.maximum(count, 1) + SCALE_FLOOR * d.mase_scale
        return self._interval_scale

    def calibrate(self, model: nn.Module) -> dict[float, np.ndarray]:
        """Per level, an (H, T) multiple of each series' interval scale (:meth:`interval_scale`) that makes the
        intervals cover that share of the validation windows at each horizon step, with split conformal's
        finite-sample correction (the ⌈(n + 1)·level⌉-th smallest of n scores); computed once per run.

        Point forecasts: the score is the absolute error, the multiple the interval's half-width. Quantile heads
        (conformalized quantile regression, Romano et al. 2019): the score is how far the truth lies outside the
        level's two quantiles, max(lower − y, y − upper) (negative inside), the multiple how far both move out."""
        if self._multipliers is not None:
            return self._multipliers
        d = self.series
        idx = list(d.target_index)
        windows, forecast = self.forecasts(model, "val")
        series, origin = d.locate("val", windows)
        truth = d.truth(series, origin)[..., idx]  # (N, H, T)
        scale = self.interval_scale(model)[series][:, None, idx]  # (N, 1, T)
        self._multipliers = {}
        for j, level in enumerate(self.config.levels):
            if forecast.ndim == 4:
                lower, upper = forecast[..., idx, 1 + 2 * j], forecast[..., idx, 2 + 2 * j]
                scores = np.maximum(lower - truth, truth - upper) / scale  # (N, H, T)
            else:
                scores = np.abs(truth - forecast[..., idx]) / scale
            self._multipliers[level] = conformal_quantile(scores, level)  # (H, T)
        return self._multipliers

    def baseline_forecasts(self, windows: np.ndarray, series: np.ndarray, origin: np.ndarray, idx: list[int],
                            shape: tuple[int, ...], ridge: nn.Module | None) -> Iterator[tuple[str, np.ndarray]]:
        """Forecasts of test windows ``windows`` (of ``series`` at ``origin``) that learn nothing or little, one
        at a time, in original units (b, H, T): the last value, the value one season before (seasonal naive),
        and the closed-form ridge map ``ridge`` (when it could be solved)."""
        d = self.series
        H, m = d.horizon, d.season
        offsets = d.panel.offsets[series][:, None]
        target = d.panel.target
        last = np.asarray(target[offsets[:, 0] + origin - 1][:, None, idx], dtype=np.float64)  # (b, 1, T)
        yield "naive (last value)", np.broadcast_to(last, shape)
        lag = np.where(origin >= m, m, 1)[:, None]  # a window with less than a season of history: the last value
        lag_rows = offsets + origin[:, None] - lag + (np.arange(H) % lag)  # (b, H): the last season, repeated
        yield f"seasonal naive (season {m})", np.asarray(target[lag_rows][..., idx], dtype=np.float64)
        if ridge is not None:
            test = d.dataset("test")
            out = np.empty((len(windows), H, d.n_channels))
            with torch.no_grad():
                for start in range(0, len(windows), EVAL_BATCH):  # batches of inputs (b, L, C), not the whole chunk
                    batch = test.batch(windows[start: start + EVAL_BATCH])
                    out[start: start + len(batch)] = d.original(ridge(batch.x), batch.series.numpy())
            yield "ridge (closed form)", out[..., idx]

    def _fit_ridge(self) -> nn.Module | None:
        """The closed-form ridge map fitted on the training windows (its strength chosen on the validation
        windows), or None if the system is singular (e.g. too few windows)."""
        from attnlab.models.retrieval import RidgeLinear

        d = self.series
        ridge = RidgeLinear(d.input_len, d.horizon)
        try:
            ridge.fit(windows_of(d.dataset("train")), windows_of(d.dataset("val")))
        except RuntimeError:
            return None
        return ridge


def smape(truth: Tensor, forecast: Tensor, scale: Tensor | float = 0.0) -> Tensor:
    """Symmetric MAPE of each value, 200 |y − ŷ| / (|y| + |ŷ|); 0 where both are 0, that is where |y| + |ŷ| <=
    ``ZERO_TOL`` · ``scale`` (each value's series' MASE scale, broadcast to ``truth``; see
    :func:`attnlab.metrics.smape_values`)."""
    denominator = truth.abs() + forecast.abs()
    return torch.where(denominator > ZERO_TOL * torch.as_tensor(scale, dtype=denominator.dtype),
                       200 * (truth - forecast).abs() / denominator.clamp_min(1e-12), torch.zeros_like(denominator))


def _std_scores(d: ForecastData, truth: np.ndarray, forecast: np.ndarray, series: np.ndarray, idx: list[int]
                ) -> dict[str, float]:
    std = d.std[series][:, None, idx]  # (N, 1, T)
    error = (forecast - truth) / std
    return {"mse": float(np.mean(error ** 2)), "mae": float(np.mean(np.abs(error))),
            "mse_orig": float(np.mean((forecast - truth) ** 2)), "mae_orig": float(np.mean(np.abs(forecast - truth)))}


def window_scores(d: ForecastData, truth: np.ndarray, forecast: np.ndarray, series: np.ndarray, idx: list[int],
                  scale: np.ndarray) -> dict[str, float]:
    """:func:`~attnlab.metrics.point_scores` and the standardised scores of (b, H, T) forecasts of windows
    of ``series``: means over those windows."""
    return {**point_scores(truth, forecast, scale), **_std_scores(d, truth, forecast, series, idx)}


class ChunkMeans:
    """Means over every window of a split from the means of chunks of windows, weighted by their windows (every
    window holds H × T values, so the result is the mean over the whole split); a root mean square (``rmse_*``)
    is combined as its square."""

    def __init__(self) -> None:
        self._sums: dict[str, dict[str, float]] = {}
        self._counts: dict[str, int] = {}

    def add(self, name: str, scores: dict[str, float], windows: int) -> None:
        sums = self._sums.setdefault(name, {})
        for key, value in scores.items():
            sums[key] = sums.get(key, 0.0) + (value ** 2 if key.startswith("rmse") else value) * windows
        self._counts[name] = self._counts.get(name, 0) + windows

    def names(self) -> list[str]:
        return list(self._sums)

    def result(self, name: str) -> dict[str, float]:
        count = self._counts[name]
        return {key: math.sqrt(value / count) if key.startswith("rmse") else value / count
                for key, value in self._sums[name].items()}


class HorizonSums:
    """Sums per horizon step of the absolute, squared, scaled and symmetric errors of test windows, added a chunk
    at a time; :meth:`write` makes ``horizon_errors.csv`` (MAE, RMSE, MASE, sMAPE of each step over every window
    and target)."""

    def __init__(self, horizon: int) -> None:
        self.sums = {name: np.zeros(horizon) for name in ("mae", "mse", "mase", "smape")}
        self.count = 0

    def add(self, truth: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> None:
        error = forecast - truth  # (b, H, T)
        self.sums["mae"] += np.abs(error).sum(axis=(0, 2))
        self.sums["mse"] += (error ** 2).sum(axis=(0, 2))
        self.sums["mase"] += (np.abs(error) / scale[:, None]).sum(axis=(0, 2))
        self.sums["smape"] += smape(torch.as_tensor(truth), torch.as_tensor(forecast),
                                    torch.as_tensor(scale[:, None])).numpy().sum(axis=(0, 2))
        self.count += truth.shape[0] * truth.shape[2]

    def write(self, path: Path) -> Path:
        count = max(1, self.count)
        rows = {"step": np.arange(1, len(self.sums["mae"]) + 1), "mae": self.sums["mae"] / count,
                "rmse": np.sqrt(self.sums["mse"] / count), "mase": self.sums["mase"] / count,
                "smape": self.sums["smape"] / count}
        pd.DataFrame(rows).to_csv(path, index=False, float_format="%.6g")
        return path


class WindowBatches:
    """Called, every window of a dataset as (x, y) batches: what closed-form fits take. ``len()`` is the number of
    windows, so a fit that needs it does not make a pass to count them."""

    def __init__(self, dataset: PanelWindows) -> None:
        self.dataset = dataset

    def __call__(self) -> Iterator[tuple[Any, Any]]:
        return ((batch.x, batch.y) for batch in dataset_batches(self.dataset))

    def __len__(self) -> int:
        return len(self.dataset)


def windows_of(dataset: PanelWindows) -> WindowBatches:
    """Every window of ``dataset`` as (x, y) batches, on each call (:class:`WindowBatches`)."""
    return WindowBatches(dataset)


def dataset_batches(dataset: PanelWindows, size: int = EVAL_BATCH) -> Iterator[ForecastBatch]:
    """Every window of ``dataset`` in order, ``size`` at a time."""
    for start in range(0, len(dataset), size):
        yield dataset.batch(np.arange(start, min(len(dataset), start + size)))
