"""``forecast``: forecast a panel of series (or one multivariate series) H steps ahead from the last L.

The data is a :class:`~attnlab.data.panel.Panel` (long: many series with covariates; wide: one series whose
channels are the CSV's columns), split and standardised per series by :mod:`attnlab.data.forecasting`
(``ett``, ``ratio`` or ``last`` split, every window used). Every model sees x (B, L, C) and forecasts
(B, H, C); models that declare covariates (their config's ``COVARIATES``) also get the historical (B, L, Ch),
future-known (B, L + H, Cf) and static (B, Cs) covariates. Global: one model for every series.

Loss: MSE (``loss=mse``, the long-horizon protocol) or MAE (``loss=mae``) over the target channels on the
standardised scale; models with quantile heads (``intervals=quantile``) are trained with the pinball loss.
Metrics (means over every window of the split and every target value): ``mse``, ``mae`` (standardised, the
published tables' scale), ``mse_orig``, ``mae_orig`` (original units), ``mase`` (errors over the series' mean
absolute seasonal difference in training) and ``smape`` (symmetric MAPE, 0–200). Best epoch and early stopping
on ``val_mse``.

After the test pass, :meth:`Forecast.summarize` adds what needs every test window at once: prediction intervals
(split-conformal from the validation residuals, or the quantile heads) with their coverage, width and MSIS; the
naive, seasonal naive and ridge baselines; the error per horizon step. The run folder gets ``series.json`` +
``series_stats.safetensors`` (what ``attnlab predict`` needs besides the weights), ``intervals.json``,
``forecasts.csv`` (a sample of test windows in original units, ``--forecast-windows all`` for every one),
``horizon_errors.csv`` and ``baselines.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import safetensors.torch
import torch
from torch import Tensor, nn

from attnlab.catalog.forecast import SPEC, ForecastConfig, ForecastSizes
from attnlab.data.forecasting import ForecastData, prepare_forecast
from attnlab.data.panel import concat_times, default_input_len, load_panel, season_of
from attnlab.data.windows import ForecastBatch, PanelWindows, keep_batch
from attnlab.errors import UserError
from attnlab.experiments.base import DataSplits, Experiment, model_device
from attnlab.metrics import interval_scores, point_scores
from attnlab.models.capabilities import ClosedFormFit, LabelsQueries, LabelsTokens, PatchModel
from attnlab.nn.maps import AttentionMap, AttentionSample, record_maps
from attnlab.report.files import write_baselines

log = logging.getLogger(__name__)

TIME_FORMAT = "%Y-%m-%d %H:%M"
DATE_FORMAT = "%Y-%m-%d"  # labels of daily, weekly, … data: every stamp at midnight, no time of day to show
SERIES_FILE = "series.json"
STATS_FILE = "series_stats.safetensors"
INTERVALS_FILE = "intervals.json"
FORECASTS_FILE = "forecasts.csv"
HORIZON_FILE = "horizon_errors.csv"
EVAL_BATCH = 256
SCORE_CHUNK = 8192  # test windows per chunk of the whole-split scores (their temporaries stay small)


# ------------------------------------------------------------------------------------------ data from options


def load_data(config: ForecastConfig) -> ForecastData:
    """Read ``config.csv`` and split it as the options say (see :class:`attnlab.catalog.forecast.ForecastConfig`)."""
    if not config.csv:
        raise UserError("no data given; pass --csv FILE (or csv=FILE with `attnlab fit forecast`)")
    panel = load_panel(config.csv, id_col=config.id_col, time_col=config.date_col, target=config.target,
                       inputs=config.inputs, exclude=config.exclude, futr=config.futr_cols, freq=config.freq,
                       fill=config.fill, decimal=config.decimal, calendar=config.calendar,
                       static=config.static_csv or None)
    return split_data(panel, config)


def split_data(panel: Any, config: ForecastConfig) -> ForecastData:
    """Split and scale a panel as ``config`` says: its season, horizon, input length and split, found from the
    data where the options leave them unset."""
    season = config.season or season_of(panel.freq, panel.time_kind)
    split = resolve_split(config.split, panel.layout)
    horizon = config.horizon
    if horizon is None:
        if split != "ett":
            raise UserError(f"pass --horizon H, the steps to forecast (the data is {describe_freq(panel)}, so one "
                            f"season is {season} steps; e.g. --horizon {season})")
        horizon = 96
    input_len = config.input_len or default_input_len(horizon, season)
    return prepare_forecast(panel, input_len=input_len, horizon=horizon, season=season, split=split,
                            ratios=config.ratios, target=config.target if panel.layout == "wide" else (),
                            val_size=config.val_size, test_size=config.test_size, train_stride=config.train_stride)


def resolve_split(split: str, layout: str) -> str:
    """``auto``: ``last`` for a panel (one validation and one test window per series), ``ratio`` for one series."""
    return ("last" if layout == "long" else "ratio") if split == "auto" else split


def describe_freq(panel: Any) -> str:
    return f"integer periods of step {panel.freq}" if panel.time_kind == "int" else f"at frequency {panel.freq}"


# ------------------------------------------------------------------------------------------ helpers


def spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)``, first and last included (fewer if n < k)."""
    if n <= 0 or k <= 0:
        return []
    if k == 1 or n == 1:
        return [n // 2]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def resolve_window(index: int, n: int, key: str) -> int:
    """``index`` as a test window in ``range(n)`` (negative counts from the end); a UserError naming ``key``
    and the valid range otherwise."""
    if not -n <= index < n:
        raise UserError(f"{key}={index} is out of range: the test split has {n} windows (0 to {n - 1}, or -{n} "
                        "to -1 from the end)")
    return index % n


def format_times(stamps: Any, fmt: str = TIME_FORMAT) -> list[str]:
    """Time stamps as short text labels (integer periods as numbers)."""
    return [t.strftime(fmt) if hasattr(t, "strftime") else str(t) for t in stamps]


def label_format(timestamps: pd.Index) -> str:
    """:data:`DATE_FORMAT` when every stamp is at midnight (daily or coarser data), else :data:`TIME_FORMAT`."""
    if not isinstance(timestamps, pd.DatetimeIndex):
        return TIME_FORMAT
    return DATE_FORMAT if bool((timestamps == timestamps.normalize()).all()) else TIME_FORMAT


def _labels(labels: list[str] | None, n: int, timestamps: list[str]) -> list[str]:
    """Axis labels of n tokens: the model's ``labels`` if there are n of them, the time stamps if there are n of
    them, else ``token i``."""
    if labels is not None and len(labels) == n:
        return labels
    if n == len(timestamps):
        return list(timestamps)
    return [f"token {i}" for i in range(n)]


def attention_maps(model: nn.Module, call: Any, timestamps: list[str], channels: tuple[str, ...]) -> list[AttentionMap]:
    """Attention of ``model`` on one window as labelled maps; [] for a model without attention.

    ``call()`` runs the model on the window. A channel-independent model runs its layers on C series per
    window: a recorded batch of C rows gives one map per channel (layer name suffixed with ``[channel]``).
    Query labels come from the model's ``query_labels(timestamps)``, key labels from
    ``token_labels(timestamps)`` when it has them.
    """
    _, recorded = record_maps(model, call)
    maps = []
    for name, weights in recorded.items():  # (N, H, Q, K): N = 1 window, or its C channels
        n, _, q, k = weights.shape
        keys = list(model.token_labels(timestamps)) if isinstance(model, LabelsTokens) else None
        queries = list(model.query_labels(timestamps)) if isinstance(model, LabelsQueries) else None
        key_labels = _labels(keys, k, timestamps)
        query_labels = _labels(queries, q, timestamps) if q != k else key_labels
        for row in range(n):
            suffix = f" [{channels[row]}]" if n == len(channels) and n > 1 else (f" [row {row}]" if n > 1 else "")
            maps.append(AttentionMap(name + suffix, recorded.kinds[name], weights[row], query_labels, key_labels))
    return maps


def maps_of_channels(maps: list[AttentionMap], columns: Sequence[str], drawn: Sequence[str]) -> list[AttentionMap]:
    """The maps a figure of the ``drawn`` channels shows: maps shared by all channels as they are, then those of
    a channel-independent model (layer names ending in ``[channel]``) for the drawn channels only, channel by
    channel with its layers in order."""
    def channel(amap: AttentionMap) -> str | None:
        return next((c for c in columns if amap.layer.endswith(f" [{c}]")), None)

    shared = [m for m in maps if channel(m) is None]
    return shared + [m for name in drawn for m in maps if channel(m) == name]


def quantile_levels(levels: Sequence[float]) -> tuple[float, ...]:
    """The quantiles a model with quantile heads predicts for interval ``levels`` (percent): the median, then
    each level's lower and upper quantile."""
    qs = [0.5]
    for level in levels:
        alpha = (100 - level) / 200
        qs += [alpha, 1 - alpha]
    return tuple(qs)


# ------------------------------------------------------------------------------------------ the experiment


class Forecast(Experiment):
    """Global forecasting of a panel (see the module docstring).

    Args:
        config: the data options (:class:`attnlab.catalog.forecast.ForecastConfig`).
        data: the split data, when the caller already holds it (the Python API); else read from ``config.csv``.
    """

    spec = SPEC

    def __init__(self, config: ForecastConfig, data: ForecastData | None = None) -> None:
        super().__init__(config)
        self._data = data
        self.model_config: ForecastSizes | None = None
        self._multipliers: dict[float, np.ndarray] | None = None

    @property
    def series(self) -> ForecastData:
        """The loaded, split and scaled data (read once)."""
        if self._data is None:
            self._data = load_data(self.config)
        return self._data

    def labels(self, stamps: pd.Index) -> list[str]:
        """Text labels of time stamps of this data, at its resolution (no "00:00" on daily or weekly data)."""
        return format_times(stamps, label_format(stamps))

    # ------------------------------------------------------------------ model

    @property
    def quantiles(self) -> tuple[float, ...]:
        c = self.config
        return quantile_levels(c.levels) if c.levels and c.intervals == "quantile" else ()

    def complete_model_config(self, model_config: Any) -> Any:
        """Fill the sizes from the data (``seq_len``, ``pred_len``, ``n_channels``, covariate widths, quantiles);
        a UserError if the user set one to a different value, or if the data has covariates of a kind the model
        does not take."""
        if not isinstance(model_config, ForecastSizes):
            raise ValueError(f"{type(model_config).__name__} must inherit attnlab.catalog.forecast.ForecastSizes")
        d = self.series
        kinds = {"hist": d.panel.hist.shape[1], "futr": d.panel.futr.shape[1], "static": d.panel.static.shape[1]}
        accepts = type(model_config).COVARIATES
        refused = [kind for kind, width in kinds.items() if width and kind not in accepts]
        if refused:
            names = {"hist": "historical", "futr": "future-known", "static": "static"}
            takers = [name for name, spec in SPEC.models.items() if set(refused) <= spec.config.COVARIATES]
            raise UserError(f"{type(model_config).__name__.removesuffix('Config')} takes no "
                            f"{' or '.join(names[k] for k in refused)} covariates, and the data has some; choose a "
                            f"model that does ({', '.join(takers) or 'none'}) or leave them out (--exclude)")
        if self.quantiles and not type(model_config).QUANTILES:
            raise UserError(f"intervals=quantile needs a model with quantile heads "
                            f"({', '.join(n for n, s in SPEC.models.items() if s.config.QUANTILES)}); use "
                            "intervals=conformal for this one")
        sizes = {"seq_len": d.input_len, "pred_len": d.horizon, "n_channels": d.n_channels,
                 "n_hist": kinds["hist"], "n_futr": kinds["futr"], "n_static": kinds["static"],
                 "season": d.season, "quantiles": self.quantiles}
        origin = {"seq_len": "--input-len", "pred_len": "--horizon", "n_channels": "the data's target channels"}
        for key, value in sizes.items():
            current = getattr(model_config, key)
            if key in origin and current is not None and current != value:
                raise UserError(
                    f"model.{key}={current} conflicts with the data ({key} = {value} from {origin[key]}); "
                    f"leave model.{key} unset: it is filled from the data"
                )
        self.model_config = dataclasses.replace(model_config, **sizes)
        return self.model_config

    def prepare_model(self, model: nn.Module, data: DataSplits) -> None:
        """Closed-form models (``ridge``, ``retrieval``) solve their maps on the training windows and pick their
        settings on the validation windows."""
        if not isinstance(model, ClosedFormFit):
            return
        d = self.series
        memory = d.tensors["target"][: int(d.borders[0, 0])] if d.panel.n_series == 1 else None  # (R, C)
        try:
            chosen = model.fit_closed_form(windows_of(data.train), windows_of(data.val), memory)
        except ValueError as error:  # settings the data cannot support (e.g. a memory too large)
            raise UserError(str(error)) from None
        log.info("closed-form fit on %d training windows: %s", len(data.train),
                 ", ".join(f"{k} {v:.4g}" for k, v in chosen.items()))
        if hasattr(model, "memory_labels") and memory is not None:  # keys labelled by their last input step
            first = d.input_len - 1
            model.memory_labels = self.labels(d.panel.times(0, first, first + model.memory_windows))

    def data(self, seed: int) -> DataSplits:
        """Train / val / test windows (deterministic; the seed only shuffles training batches). The figure
        options are checked here too, against the data, before the engine creates the run folder."""
        d = self.series
        self.drawn_windows(), self.drawn_channels(), self.attention_window()  # a bad figure option: UserError now
        return DataSplits(d.dataset("train"), d.dataset("val"), d.dataset("test"), collate_fn=keep_batch)

    def batch_size_of(self, batch: ForecastBatch) -> int:
        return len(batch)

    def forward(self, model: nn.Module, batch: ForecastBatch) -> Tensor:
        """Run the model on a batch with the covariates it takes: (B, H, C), or (B, H, C, Q) with quantile
        heads."""
        accepts = type(self.model_config).COVARIATES if self.model_config is not None else frozenset()
        extra = {kind: getattr(batch, kind) for kind in ("hist", "futr", "static") if kind in accepts}
        return model(batch.x, **extra)

    def point(self, output: Tensor) -> Tensor:
        """The point forecast of a model output: the median of quantile heads (B, H, C, Q), else the output."""
        return output[..., 0] if self.quantiles else output

    def _targets(self, values: Tensor) -> Tensor:
        d = self.series
        if len(d.target_index) == d.n_channels:
            return values
        return values.index_select(2, torch.as_tensor(d.target_index, device=values.device))  # (B, H, T, ...)

    def loss(self, model: nn.Module, batch: ForecastBatch) -> Tensor:
        """MSE or MAE (``loss``) over the target channels on the standardised scale; the pinball loss over the
        quantiles for quantile heads."""
        output, truth = self._targets(self.forward(model, batch)), self._targets(batch.y)
        if self.quantiles:
            q = torch.as_tensor(self.quantiles, dtype=output.dtype, device=output.device)  # (Q,)
            error = truth.unsqueeze(-1) - output  # (B, H, T, Q)
            return torch.maximum(q * error, (q - 1) * error).mean()
        error = output - truth  # (B, H, T)
        return error.abs().mean() if self.config.loss == "mae" else error.pow(2).mean()

    def evaluate(self, model: nn.Module, batch: ForecastBatch) -> dict[str, Tensor]:
        """``mse``, ``mae`` (standardised), ``mse_orig``, ``mae_orig`` (original units), ``mase`` and ``smape``
        over the target values of the batch. Every window holds H × targets values, so the engine's
        batch-size-weighted mean of these batch means is the exact mean over the split."""
        d = self.series
        prediction = self._targets(self.point(self.forward(model, batch)))  # (B, H, T)
        truth = self._targets(batch.y)
        error = prediction - truth
        idx = list(d.target_index)
        series = batch.series.cpu().numpy()
        std = torch.as_tensor(d.std[series][:, idx], dtype=error.dtype, device=error.device)[:, None]  # (B, 1, T)
        mean = torch.as_tensor(d.mean[series][:, idx], dtype=error.dtype, device=error.device)[:, None]
        scale = torch.as_tensor(d.mase_scale[series][:, idx], dtype=error.dtype, device=error.device)[:, None]
        error_orig = error * std  # (B, H, T), original units
        y_orig, f_orig = truth * std + mean, prediction * std + mean
        mse = error.pow(2).mean()
        loss = self.loss(model, batch) if self.quantiles or self.config.loss != "mse" else mse
        return {"loss": loss, "mse": mse, "mae": error.abs().mean(), "mse_orig": error_orig.pow(2).mean(),
                "mae_orig": error_orig.abs().mean(), "mase": (error_orig.abs() / scale).mean(),
                "smape": smape(y_orig, f_orig).mean()}

    # ------------------------------------------------------------------ whole-split predictions

    def predicted(self, model: nn.Module, split: str, indices: Any = None) -> Iterator[tuple[np.ndarray, Tensor]]:
        """Model outputs of windows ``indices`` of ``split`` (default: all), a batch at a time: (window indices,
        standardised output (b, H, C[, Q]) on the CPU), without gradients."""
        model.eval()
        dataset = self.series.dataset(split)
        indices = np.arange(len(dataset)) if indices is None else np.asarray(indices)
        device = model_device(model)
        for start in range(0, len(indices), EVAL_BATCH):
            chunk = indices[start:start + EVAL_BATCH]
            batch = dataset.batch(chunk)
            batch = dataclasses.replace(batch, **{f.name: getattr(batch, f.name).to(device)
                                                  for f in dataclasses.fields(batch)})
            with torch.no_grad():
                yield chunk, self.forward(model, batch).float().cpu()

    def forecasts(self, model: nn.Module, split: str, indices: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Original-unit forecasts of windows of ``split``: (window indices (N,), forecasts (N, H, C[, Q]))."""
        d = self.series
        windows = np.arange(d.n_windows(split)) if indices is None else np.asarray(indices, dtype=np.int64)
        if not len(windows):
            return np.empty(0, dtype=np.int64), np.empty((0, d.horizon, d.n_channels))
        values: np.ndarray | None = None  # filled a batch at a time: one array, no list of chunks to join
        done = 0
        for chunk, out in self.predicted(model, split, windows):
            series, _ = d.locate(split, chunk)
            part = d.original(out if out.dim() == 3 else out.permute(0, 1, 3, 2), series)
            if values is None:
                values = np.empty((len(windows), *part.shape[1:]), dtype=part.dtype)
            values[done: done + len(part)] = part
            done += len(part)
        assert values is not None
        if values.ndim == 4:  # (N, H, Q, C) -> (N, H, C, Q)
            values = values.transpose(0, 1, 3, 2)
        return windows, values

    def window_mse(self, model: nn.Module, split: str = "test") -> Tensor:
        """MSE of each window of ``split`` over its target channels, standardised scale: (N,) float32. Every window
        holds H × targets values, so the mean of this vector is the split's MSE, and the mean of a slice is the
        MSE of those windows alone (e.g. the first ones, which a loader that drops an incomplete last batch
        scores)."""
        errors = []
        for chunk, out in self.predicted(model, split):
            truth = self.series.dataset(split).batch(chunk).y
            errors.append((self._targets(self.point(out)) - self._targets(truth)).pow(2).mean(dim=(1, 2)))  # (b,)
        return torch.cat(errors) if errors else torch.empty(0)

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
                if not self.quantiles:
                    self.conformal_multipliers(model)
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
        ``series``, channels ``idx`` (scored channels): from the quantile heads, or split-conformal (the
        validation windows' absolute errors over each series' MASE scale, their quantile per horizon step)."""
        c, d = self.config, self.series
        if not c.levels:
            return {}
        if forecast.ndim == 4:  # quantile heads: median, then each level's lower and upper quantile
            return {level: (forecast[..., idx, 1 + 2 * k], forecast[..., idx, 2 + 2 * k])
                    for k, level in enumerate(c.levels)}
        multipliers = self.conformal_multipliers(model)
        columns = [d.target_index.index(i) for i in idx]
        point = forecast[..., idx]
        scale = d.mase_scale[series][:, idx][:, None]  # (N, 1, K)
        return {level: (point - m[:, columns] * scale, point + m[:, columns] * scale)
                for level, m in multipliers.items()}

    def interval_record(self) -> dict[str, Any]:
        """What ``intervals.json`` holds: the method, the levels and (conformal) the multipliers (H, T) of each
        series' MASE scale."""
        c = self.config
        record: dict[str, Any] = {"method": "quantile" if self.quantiles else "conformal", "levels": list(c.levels)}
        if not self.quantiles and self._multipliers is not None:
            record["multipliers"] = {f"{level:g}": m.tolist() for level, m in self._multipliers.items()}
        return record

    def interval_warnings(self) -> list[str]:
        """One line per conformal level that the validation windows are too few to calibrate: with n windows a
        level above n / (n + 1) has no finite split-conformal interval, and the bound used (the largest validation
        error) covers more than the level asks."""
        if self.quantiles:
            return []
        n = self.series.n_windows("val")
        return [f"the {level:g} % interval rests on {n} validation windows, too few for that level (split conformal "
                f"needs at least {math.ceil(level / (100 - level))}): it is the largest validation error and wider "
                "than the level needs; hold out more steps per series (--val-size) or ask for a lower level"
                for level in self.config.levels if math.ceil((n + 1) * level / 100) > n]

    def conformal_multipliers(self, model: nn.Module) -> dict[float, np.ndarray]:
        """Per level, the (H, T) multiplier of each series' MASE scale that covers that share of the validation
        windows' absolute errors at each horizon step (split conformal, with the finite-sample correction);
        computed once per run."""
        if self._multipliers is not None:
            return self._multipliers
        d = self.series
        idx = list(d.target_index)
        windows, forecast = self.forecasts(model, "val")
        series, origin = d.locate("val", windows)
        point = forecast[..., 0] if forecast.ndim == 4 else forecast
        residual = np.abs(d.truth(series, origin) - point)[..., idx] / d.mase_scale[series][:, None, idx]  # (N, H, T)
        n = len(residual)
        ranked = np.sort(residual, axis=0)
        self._multipliers = {}
        for level in self.config.levels:  # the ceil((n + 1) · level)-th smallest error (the largest if beyond n)
            k = min(n, math.ceil(round((n + 1) * level / 100, 9)))
            self._multipliers[level] = ranked[k - 1]  # (H, T)
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

    # ------------------------------------------------------------------ run folder

    def save_artifacts(self, model: nn.Module, data: DataSplits, run_dir: Path) -> None:
        """Called by the engine after training: ``series.json`` + ``series_stats.safetensors`` (what ``predict``
        needs besides the weights) and ``forecasts.csv`` (a sample of test windows in original units)."""
        write_series(Path(run_dir), self.series)
        if self.config.forecast_windows != 0:
            self.write_forecasts(model, Path(run_dir) / FORECASTS_FILE, self.config.forecast_windows)

    def write_forecasts(self, model: nn.Module, path: Path, max_windows: int | None = None) -> Path:
        """The forecasts of test windows (all, or ``max_windows`` spread over the split) in original units: one
        row per window and step with ``window, unique_id, origin, step, ds`` and, per target channel,
        ``<name>_forecast``, ``<name>_actual`` and, per interval level, ``<name>_lo_<level>``,
        ``<name>_hi_<level>``."""
        d = self.series
        n = d.n_windows("test")
        chosen = np.arange(n) if max_windows is None or max_windows >= n else np.asarray(spread(n, max_windows))
        windows, forecast = self.forecasts(model, "test", chosen)
        series, origin = d.locate("test", windows)
        H, idx = d.horizon, list(d.target_index)
        point = forecast[..., 0] if forecast.ndim == 4 else forecast
        truth = d.truth(series, origin)
        frame: dict[str, Any] = {
            "window": np.repeat(windows, H),
            "unique_id": np.repeat([d.panel.ids[s] for s in series], H),
            "origin": np.repeat([d.panel.times(s, o - 1, o)[0] for s, o in zip(series, origin, strict=True)], H),
            "step": np.tile(np.arange(1, H + 1), len(windows)),
            "ds": concat_times([d.panel.times(s, o, o + H) for s, o in zip(series, origin, strict=True)]),
        }
        bounds = self.intervals(model, forecast, series, idx)
        for k in idx:
            name = d.columns[k]
            frame[f"{name}_forecast"] = point[..., k].ravel()
            frame[f"{name}_actual"] = truth[..., k].ravel()
            for level, (lower, upper) in bounds.items():
                frame[f"{name}_lo_{level:g}"] = lower[..., idx.index(k)].ravel()
                frame[f"{name}_hi_{level:g}"] = upper[..., idx.index(k)].ravel()
        pd.DataFrame(frame).to_csv(path, index=False, float_format="%.6g")
        return path

    # ------------------------------------------------------------------ figures and attention

    def drawn_windows(self) -> list[int]:
        """The test windows the forecast figure draws: ``plot_window`` (checked, negatives resolved, repeats
        dropped) or ``plot_windows`` of them spread over the split."""
        c, n = self.config, self.series.n_windows("test")
        if not c.plot_window:
            return spread(n, c.plot_windows)
        return list(dict.fromkeys(resolve_window(i, n, "plot_window") for i in c.plot_window))

    def drawn_channels(self) -> list[int]:
        """Channel indices the figures draw: ``plot_channel`` (each a target channel) or the first 4 targets."""
        d, chosen = self.series, self.config.plot_channel
        if not chosen:
            return list(d.target_index[:4])
        for name in chosen:
            if name not in d.targets:
                raise UserError(f"plot_channel {name!r} is not a target channel of {d.panel.source}; choose from "
                                f"{', '.join(d.targets)} (the model is scored, and its forecasts written, only "
                                "for the targets)")
        return [d.columns.index(name) for name in dict.fromkeys(chosen)]

    def attention_window(self) -> int | None:
        """The test window of the attention figure: ``attention_window`` (checked) or the middle drawn window
        (None if none is drawn)."""
        c = self.config
        if c.attention_window is not None:
            return resolve_window(c.attention_window, self.series.n_windows("test"), "attention_window")
        drawn = self.drawn_windows()
        return drawn[len(drawn) // 2] if drawn else None

    def _window(self, i: int) -> tuple[int, int, ForecastBatch]:
        d = self.series
        series, origin = d.locate("test", [i])
        return int(series[0]), int(origin[0]), d.dataset("test").batch([i])

    def _maps_of(self, model: nn.Module, i: int) -> tuple[list[AttentionMap], pd.Index]:
        d = self.series
        s, o, batch = self._window(i)
        device = model_device(model)
        batch = dataclasses.replace(batch, **{f.name: getattr(batch, f.name).to(device)
                                              for f in dataclasses.fields(batch)})
        times = d.panel.times(s, o - d.input_len, o)
        return attention_maps(model, lambda: self.forward(model, batch), self.labels(times), d.columns), times

    def attention_samples(self, model: nn.Module, data: DataSplits, limit: int = 4) -> list[AttentionSample]:
        """Attention of ``limit`` test windows: the attention figure's window first (``attention_window``, by
        default the middle drawn window), then windows spread over the test split; axes labelled with the input
        time stamps (or the model's token labels, e.g. patch spans); [] for models without attention."""
        d = self.series
        focus = self.attention_window()
        chosen = [] if focus is None else [focus]
        samples = []
        for i in list(dict.fromkeys(chosen + spread(d.n_windows("test"), limit)))[:limit]:
            maps, times = self._maps_of(model, i)
            if not maps:
                return []
            first, last = self.labels(times[[0, -1]])
            s, _, _ = self._window(i)
            name = f"{d.panel.ids[s]}, " if d.panel.n_series > 1 else ""
            samples.append(AttentionSample(f"test window {i}: {name}input {first} .. {last}", maps,
                                           in_figures=i == focus))
        return samples

    def figures(self, model: nn.Module, data: DataSplits, out_dir: Path, history: list[dict[str, float]]) -> list[Path]:
        """``forecast.png``: forecast vs actual (original units, time on x, the prediction intervals as bands) of
        the drawn channels for the drawn test windows; for attention models ``forecast_attention.png``: the
        attention over the input of ``attention_window`` (default the middle drawn window)."""
        from attnlab.viz.forecast import plot_attention_over_input, plot_forecasts
        from attnlab.viz.heatmaps import save_figure

        d = self.series
        windows, channels, focus = self.drawn_windows(), self.drawn_channels(), self.attention_window()
        names = [d.columns[c] for c in channels]
        paths: list[Path] = []
        if windows:
            _, forecast = self.forecasts(model, "test", windows)
            series, origin = d.locate("test", windows)
            point = forecast[..., 0] if forecast.ndim == 4 else forecast
            bands = self.intervals(model, forecast, series, channels) if self.config.levels else {}
            widest = max(bands) if bands else None
            fig = plot_forecasts(
                times=[d.panel.times(s, o - d.input_len, o + d.horizon) for s, o in zip(series, origin, strict=True)],
                actual=[d.history(s, o + d.horizon)[o - d.input_len:][:, channels]
                        for s, o in zip(series, origin, strict=True)],
                forecast=[f[:, channels] for f in point],
                input_len=d.input_len,
                channel_names=names,
                titles=[f"test window {i}" + (f" ({d.panel.ids[s]})" if d.panel.n_series > 1 else "")
                        for i, s in zip(windows, series, strict=True)],
                bands=None if widest is None else [(lo, hi) for lo, hi in zip(*bands[widest], strict=True)],
                band_label=None if widest is None else f"{widest:g} % interval",
            )
            paths.append(save_figure(fig, out_dir / "forecast.png"))
        if focus is None:
            return paths
        maps, times = self._maps_of(model, focus)
        maps = maps_of_channels(maps, d.columns, names)
        if maps:
            s, o, _ = self._window(focus)
            spans = model.patch_spans() if isinstance(model, PatchModel) else None
            fig = plot_attention_over_input(
                times, d.history(s, o)[o - d.input_len:][:, channels], names, maps,
                title=f"attention on test window {focus}", key_spans=spans,
            )
            paths.append(save_figure(fig, out_dir / "forecast_attention.png"))
        return paths


# ------------------------------------------------------------------------------------------ scores and files


def smape(truth: Tensor, forecast: Tensor) -> Tensor:
    """Symmetric MAPE of each value, 200 |y − ŷ| / (|y| + |ŷ|) (0 where both are 0)."""
    denominator = truth.abs() + forecast.abs()
    return torch.where(denominator > 0, 200 * (truth - forecast).abs() / denominator.clamp_min(1e-12),
                       torch.zeros_like(denominator))


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
        self.sums["smape"] += smape(torch.as_tensor(truth), torch.as_tensor(forecast)).numpy().sum(axis=(0, 2))
        self.count += truth.shape[0] * truth.shape[2]

    def write(self, path: Path) -> Path:
        count = max(1, self.count)
        rows = {"step": np.arange(1, len(self.sums["mae"]) + 1), "mae": self.sums["mae"] / count,
                "rmse": np.sqrt(self.sums["mse"] / count), "mase": self.sums["mase"] / count,
                "smape": self.sums["smape"] / count}
        pd.DataFrame(rows).to_csv(path, index=False, float_format="%.6g")
        return path


def write_series(run_dir: Path, d: ForecastData) -> None:
    """``series.json`` (ids, clock, channels, covariates, sizes) and ``series_stats.safetensors`` (per-series
    scaling statistics and MASE scales): what a run needs besides its weights to forecast its series again."""
    p = d.panel
    payload = {
        "ids": list(p.ids), "time_kind": p.time_kind, "freq": p.freq,
        "starts": [str(s) for s in p.starts], "lengths": p.lengths.tolist(), "layout": p.layout,
        "targets": list(p.target_names), "scored": list(d.targets), "hist": list(p.hist_names),
        "futr": list(p.futr_names), "static": list(p.static_names), "input_len": d.input_len,
        "horizon": d.horizon, "season": d.season, "split": d.split,
        "windows": {name: len(w) for name, w in d.windows.items()},
    }
    (run_dir / SERIES_FILE).write_text(json.dumps(payload, indent=1) + "\n")
    tensors = {"mean": d.mean, "std": d.std, "cov_mean": d.cov_mean, "cov_std": d.cov_std,
               "static_mean": d.static_mean, "static_std": d.static_std, "mase_scale": d.mase_scale}
    safetensors.torch.save_file({k: torch.as_tensor(np.ascontiguousarray(v), dtype=torch.float64)
                                 for k, v in tensors.items()}, str(run_dir / STATS_FILE))


def windows_of(dataset: PanelWindows) -> Any:
    """A function giving every window of ``dataset`` as (x, y) batches: what closed-form fits take."""
    return lambda: ((batch.x, batch.y) for batch in dataset_batches(dataset))


def dataset_batches(dataset: PanelWindows, size: int = EVAL_BATCH) -> Iterator[ForecastBatch]:
    """Every window of ``dataset`` in order, ``size`` at a time."""
    for start in range(0, len(dataset), size):
        yield dataset.batch(np.arange(start, min(len(dataset), start + size)))
