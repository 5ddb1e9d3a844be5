"""``forecast``: forecast a panel of series (or one multivariate series) H steps ahead from the last L.

The data is a :class:`~attnlab.data.panel.Panel` (long: many series with covariates; wide: one series whose
channels are the CSV's columns), split and standardised per series by :mod:`attnlab.data.forecasting`
(``ett``, ``ratio`` or ``last`` split, every window used). Every model sees x (B, L, C) and forecasts
(B, H, C); models that declare covariates (their config's ``COVARIATES``) also get the historical (B, L, Ch),
future-known (B, L + H, Cf) and static (B, Cs) covariates. Global: one model for every series.

Loss: MSE (``loss=mse``, the long-horizon protocol) or MAE (``loss=mae``) over the target channels on the
standardised scale, MASE (``loss=mase``) or sMAPE (``loss=smape``); models with quantile heads
(``intervals=quantile``) are trained with the pinball loss.
Metrics (means over every window of the split and every target value): ``mse``, ``mae`` (standardised, the
published tables' scale), ``mse_orig``, ``mae_orig`` (original units), ``mase`` (errors over the series' mean
absolute seasonal difference in training) and ``smape`` (symmetric MAPE, 0–200). Best epoch and early stopping
on ``val_loss``, the validation value of the training objective (``val_mse`` for ``loss=mse``).

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
from attnlab.data.panel import load_panel
from attnlab.data.times import concat_times, default_input_len, season_of
from attnlab.data.windows import ForecastBatch, keep_batch
from attnlab.errors import UserError
from attnlab.experiments.base import DataSplits, Experiment, model_device
from attnlab.experiments.forecast_scores import EVAL_BATCH, ForecastScoring, smape, windows_of
from attnlab.models.capabilities import ClosedFormFit, LabelsQueries, LabelsTokens, PatchModel
from attnlab.nn.maps import AttentionMap, AttentionSample, record_maps

log = logging.getLogger(__name__)

TIME_FORMAT = "%Y-%m-%d %H:%M"
DATE_FORMAT = "%Y-%m-%d"  # labels of daily, weekly, … data: every stamp at midnight, no time of day to show
SERIES_FILE = "series.json"
STATS_FILE = "series_stats.safetensors"
FORECASTS_FILE = "forecasts.csv"


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
                            val_size=config.val_size, test_size=config.test_size, train_stride=config.train_stride,
                            train_history=config.train_history)


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


class Forecast(ForecastScoring, Experiment):
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
        self._interval_scale: np.ndarray | None = None

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
        if d.panel.n_series > 1 and not type(model_config).PANELS:
            raise UserError(f"{type(model_config).__name__.removesuffix('Config')} fits one series (a wide CSV), and "
                            f"the data has {d.panel.n_series}; choose a model for many series "
                            f"({', '.join(n for n, s in SPEC.models.items() if s.config.PANELS)})")
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

    def _series_stats(self, batch: ForecastBatch, like: Tensor, *names: str) -> list[Tensor]:
        """Per-series statistics (``std``, ``mean``, ``mase_scale``) of the batch's windows over the target
        channels, each (B, 1, T), with ``like``'s dtype and device."""
        d, series = self.series, batch.series.cpu().numpy()
        idx = list(d.target_index)
        return [torch.as_tensor(getattr(d, name)[series][:, idx], dtype=like.dtype, device=like.device)[:, None]
                for name in names]

    def loss(self, model: nn.Module, batch: ForecastBatch) -> Tensor:
        """The training objective (``loss``) over the target channels: MSE or MAE on the standardised scale,
        MASE (the absolute error over each series' MASE scale) or sMAPE (in original units); the pinball loss
        over the quantiles for quantile heads."""
        return self._objective(self._targets(self.forward(model, batch)), batch)

    def _objective(self, output: Tensor, batch: ForecastBatch) -> Tensor:
        """:meth:`loss` of the model's ``output`` over the target channels (B, H, T[, Q])."""
        truth = self._targets(batch.y)  # (B, H, T)
        if self.quantiles:
            q = torch.as_tensor(self.quantiles, dtype=output.dtype, device=output.device)  # (Q,)
            error = truth.unsqueeze(-1) - output  # (B, H, T, Q)
            return torch.maximum(q * error, (q - 1) * error).mean()
        error = output - truth  # (B, H, T)
        kind = self.config.loss
        if kind == "mase":
            std, scale = self._series_stats(batch, error, "std", "mase_scale")  # (B, 1, T) each
            return (error.abs() * (std / scale)).mean()
        if kind == "smape":
            std, mean = self._series_stats(batch, error, "std", "mean")
            return smape(truth * std + mean, output * std + mean).mean()
        return error.abs().mean() if kind == "mae" else error.pow(2).mean()

    def evaluate(self, model: nn.Module, batch: ForecastBatch) -> dict[str, Tensor]:
        """``mse``, ``mae`` (standardised), ``mse_orig``, ``mae_orig`` (original units), ``mase`` and ``smape``
        over the target values of the batch. Every window holds H × targets values, so the engine's
        batch-size-weighted mean of these batch means is the exact mean over the split."""
        output = self._targets(self.forward(model, batch))  # (B, H, T[, Q])
        prediction, truth = self.point(output), self._targets(batch.y)  # (B, H, T) each
        error = prediction - truth
        std, mean, scale = self._series_stats(batch, error, "std", "mean", "mase_scale")  # (B, 1, T) each
        error_orig = error * std  # (B, H, T), original units
        y_orig, f_orig = truth * std + mean, prediction * std + mean
        mse = error.pow(2).mean()
        loss = self._objective(output, batch) if self.quantiles or self.config.loss != "mse" else mse
        return {"loss": loss, "mse": mse, "mae": error.abs().mean(), "mse_orig": error_orig.pow(2).mean(),
                "mae_orig": error_orig.abs().mean(), "mase": (error_orig.abs() / scale).mean(),
                "smape": smape(y_orig, f_orig, scale).mean()}

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

    # ------------------------------------------------------------------ run folder

    def save_artifacts(self, model: nn.Module, data: DataSplits, run_dir: Path) -> None:
        """Called by the engine after training: ``series.json`` + ``series_stats.safetensors`` (what ``predict``
        needs besides the weights, with each series' interval scale when the run has intervals) and
        ``forecasts.csv`` (a sample of test windows in original units)."""
        write_series(Path(run_dir), self.series, self.interval_scale(model) if self.config.levels else None)
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


# ------------------------------------------------------------------------------------------ files


def write_series(run_dir: Path, d: ForecastData, interval_scale: np.ndarray | None = None) -> None:
    """``series.json`` (ids, clock, channels, covariates, sizes) and ``series_stats.safetensors`` (per-series
    scaling statistics, MASE scales and, given, the (S, C) ``interval_scale`` the intervals are multiples of):
    what a run needs besides its weights to forecast its series again."""
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
    if interval_scale is not None:
        tensors["interval_scale"] = interval_scale
    safetensors.torch.save_file({k: torch.as_tensor(np.ascontiguousarray(v), dtype=torch.float64)
                                 for k, v in tensors.items()}, str(run_dir / STATS_FILE))
