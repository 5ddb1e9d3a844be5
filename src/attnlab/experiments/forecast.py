"""``forecast``: multivariate long-horizon forecasting of any CSV, under the ETT protocol.

The data is a CSV read by :mod:`attnlab.data.timeseries`: split chronologically (``split=ett`` or
``ratio``), standardised with train-row statistics, cut into stride-1 windows of ``input_len`` rows
followed by ``horizon`` rows. Every model sees all C numeric channels, x (B, L, C), and forecasts all
of them, (B, H, C); the ``target`` channels (default: all) are the ones scored and written out.

Loss: MSE over the target channels on the standardised scale. Metrics (exact means over every window of
the split and every target value): ``mse``, ``mae`` (standardised, the published tables' scale) and
``mse_orig``, ``mae_orig`` (original units). Best checkpoint and early stopping on ``val_mse``.

The model sizes (``seq_len``, ``pred_len``, ``n_channels``) are filled into the model config from the data
by :meth:`Forecast.complete_model_config`; setting one to another value is a UserError.

After training, the run folder also gets ``scaler.json`` (train statistics, targets, frequency: what
``attnlab predict`` needs besides the weights), ``forecasts.csv`` (every test window's forecast in original
units) and ``baselines.json`` (the test metrics of repeating the last input value and of predicting the
training mean, for the report). Use it through :func:`attnlab.forecast.forecast` / ``attnlab forecast``;
``attnlab fit forecast csv=FILE ...`` trains the same way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from attnlab.catalog.forecast import SPEC, ForecastSizes
from attnlab.data.timeseries import ForecastData, load_forecast_data
from attnlab.errors import UserError
from attnlab.experiments.base import (
    AttentionMap,
    AttentionSample,
    DataSplits,
    Experiment,
    model_device,
    write_baselines,
)
from attnlab.nn.attention import Attention
from attnlab.nn.mha import MultiHeadAttention
from attnlab.nn.record import record_attention

log = logging.getLogger(__name__)

TIME_FORMAT = "%Y-%m-%d %H:%M"
DATE_FORMAT = "%Y-%m-%d"  # labels of daily, weekly, … data: every stamp at midnight, no time of day to show
SCALER_FILE = "scaler.json"
FORECASTS_FILE = "forecasts.csv"

# ------------------------------------------------------------------------------------------ loaded data cache
# Loading a CSV is cheap but a benchmark fits many models on the same data: keep the last few loads, keyed
# by the options and the file's identity (a changed file is read again).
_CACHE: OrderedDict[tuple, ForecastData] = OrderedDict()
_CACHE_SIZE = 4


def _key(options: dict[str, Any]) -> tuple:
    path = Path(options["csv"]).expanduser().resolve()
    try:
        stat = path.stat()
        identity: tuple = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        identity = ()
    return (str(path), identity, options["date_col"], tuple(options["target"]), options["split"],
            tuple(float(r) for r in options["ratios"]), int(options["input_len"]), int(options["horizon"]),
            options["fill"], options["freq"], options["decimal"])


def remember(data: ForecastData) -> None:
    """Make an already-loaded :class:`ForecastData` the one experiments with the same options use."""
    _CACHE[_key(data.options())] = data
    _CACHE.move_to_end(_key(data.options()))
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)


def cached_load(**options: Any) -> ForecastData:
    """:func:`load_forecast_data` with the options, reusing a remembered load of the same unchanged file."""
    key = _key(options)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    data = load_forecast_data(**options)
    remember(data)
    return data


# ------------------------------------------------------------------------------------------ helpers


def predicted_batches(model: nn.Module, data: ForecastData, split: str, indices: Any,
                      batch_size: int = 256) -> Iterator[tuple[Tensor, Tensor]]:
    """Standardised forecasts and truth of windows ``indices`` of ``split``, a batch at a time: pairs of
    (b, H, C) float32 tensors on the CPU, without gradients."""
    model.eval()
    device = model_device(model)
    dataset = data.dataset(split)
    indices = torch.as_tensor(indices, dtype=torch.long)
    for start in range(0, len(indices), batch_size):
        x, y = dataset.batch(indices[start : start + batch_size])  # (b, L, C), (b, H, C)
        with torch.no_grad():
            prediction = model(x.to(device)).float().cpu()  # (b, H, C)
        yield prediction, y.float()


def predict_windows(model: nn.Module, data: ForecastData, split: str, indices: Any, batch_size: int = 256) -> Tensor:
    """Standardised forecasts of windows ``indices`` of ``split``: (N, H, C) float32 on the CPU."""
    out = [prediction for prediction, _ in predicted_batches(model, data, split, indices, batch_size)]
    return torch.cat(out) if out else torch.empty(0, data.horizon, data.n_channels)


def window_mse(model: nn.Module, data: ForecastData, split: str = "test") -> Tensor:
    """MSE of each window of ``split`` over its target channels, standardised scale: (N,) float32.

    Every window holds H × targets values, so the mean of this vector is the split's MSE, and the mean of a
    slice is the MSE of those windows alone (e.g. the first ones, which a loader that drops an incomplete
    last batch scores).
    """
    targets = list(data.target_index)
    errors = [(prediction - truth)[..., targets].pow(2).mean(dim=(1, 2))  # (b,)
              for prediction, truth in predicted_batches(model, data, split, range(data.windows(split)))]
    return torch.cat(errors) if errors else torch.empty(0)


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
    """Time stamps as short text labels (``fmt``: :data:`TIME_FORMAT`, or :func:`label_format` of the data)."""
    return [t.strftime(fmt) for t in stamps]


def label_format(timestamps: pd.DatetimeIndex) -> str:
    """:data:`DATE_FORMAT` when every stamp is at midnight (daily or coarser data), else :data:`TIME_FORMAT`."""
    return DATE_FORMAT if bool((timestamps == timestamps.normalize()).all()) else TIME_FORMAT


def _labels(model: nn.Module, method: str, n: int, timestamps: list[str]) -> list[str]:
    """Axis labels of n tokens: the model's ``method(timestamps)`` if it gives n, the time stamps if there are
    n of them, else ``token i``."""
    fn = getattr(model, method, None)
    if fn is not None:
        labels = list(fn(timestamps))
        if len(labels) == n:
            return labels
    if n == len(timestamps):
        return list(timestamps)
    return [f"token {i}" for i in range(n)]


def attention_maps(model: nn.Module, x: Tensor, timestamps: list[str], channels: tuple[str, ...]) -> list[AttentionMap]:
    """Attention of ``model`` on one window x (1, L, C) as labelled maps; [] for a model without attention.

    A channel-independent model runs its layers on C series per window: a recorded batch of C rows gives
    one map per channel (layer name suffixed with ``[channel]``). Query labels come from the model's
    ``query_labels(timestamps)``, key labels from ``token_labels(timestamps)`` when it has them.
    """
    if not any(isinstance(m, (Attention, MultiHeadAttention)) for m in model.modules()):
        return []
    model.eval()
    with torch.no_grad(), record_attention(model) as record:
        model(x)
    maps = []
    for name, calls in record.items():
        weights = calls[-1].float().cpu()  # (N, H, Q, K) multi-head, (N, Q, K) single
        if weights.dim() == 3:
            weights = weights.unsqueeze(1)  # (N, 1, Q, K)
        n, _, q, k = weights.shape
        module = model.get_submodule(name) if name in dict(model.named_modules()) else None
        kind = "pooling" if isinstance(module, Attention) else ("cross" if "cross" in name or q != k else "self")
        key_labels = _labels(model, "token_labels", k, timestamps)
        query_labels = _labels(model, "query_labels", q, timestamps) if q != k else key_labels
        for row in range(n):
            suffix = f" [{channels[row]}]" if n == len(channels) and n > 1 else (f" [row {row}]" if n > 1 else "")
            maps.append(AttentionMap(name + suffix, kind, weights[row], query_labels, key_labels))
    return maps


def maps_of_channels(maps: list[AttentionMap], columns: Sequence[str], drawn: Sequence[str]) -> list[AttentionMap]:
    """The maps a figure of the ``drawn`` channels shows: maps shared by all channels as they are, then those of
    a channel-independent model (layer names ending in ``[channel]``) for the drawn channels only, channel by
    channel with its layers in order."""
    def channel(amap: AttentionMap) -> str | None:
        return next((c for c in columns if amap.layer.endswith(f" [{c}]")), None)

    shared = [m for m in maps if channel(m) is None]
    return shared + [m for name in drawn for m in maps if channel(m) == name]


# ------------------------------------------------------------------------------------------ the experiment


class Forecast(Experiment):
    """Multivariate forecasting of a CSV under the ETT protocol (see the module docstring)."""

    spec = SPEC



    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._data: ForecastData | None = None

    @property
    def series(self) -> ForecastData:
        """The loaded, validated data (read once; a remembered load of the same file is reused)."""
        if self._data is None:
            c = self.config
            if not c.csv:
                raise UserError("no CSV given; pass --csv FILE (or csv=FILE with `attnlab fit forecast`)")
            self._data = cached_load(csv=c.csv, date_col=c.date_col, target=c.target, split=c.split,
                                     ratios=c.ratios, input_len=c.input_len, horizon=c.horizon, fill=c.fill,
                                     freq=c.freq, decimal=c.decimal)
        return self._data

    def labels(self, stamps: pd.DatetimeIndex) -> list[str]:
        """Text labels of time stamps of this CSV, at its resolution (no "00:00" on daily or weekly data)."""
        return format_times(stamps, label_format(self.series.table.timestamps))

    def complete_model_config(self, model_config: Any) -> Any:
        """Fill ``seq_len``, ``pred_len`` and ``n_channels`` from the data; a UserError if the user set one
        to a different value."""
        if not isinstance(model_config, ForecastSizes):
            raise ValueError(f"{type(model_config).__name__} must inherit attnlab.catalog.forecast.ForecastSizes")
        data = self.series
        sizes = {"seq_len": data.input_len, "pred_len": data.horizon, "n_channels": data.n_channels}
        origin = {"seq_len": "--input-len", "pred_len": "--horizon", "n_channels": "the CSV's numeric columns"}
        for key, value in sizes.items():
            current = getattr(model_config, key)
            if current is not None and current != value:
                raise UserError(
                    f"model.{key}={current} conflicts with the data ({key} = {value} from {origin[key]}); "
                    f"leave model.{key} unset: it is filled from the data"
                )
        return dataclasses.replace(model_config, **sizes)

    def prepare_model(self, model: nn.Module, data: DataSplits) -> None:
        """Closed-form models (``ridge``, ``retrieval``) solve their maps on the training windows and pick their
        settings on the validation windows; the retrieval model's keys get the training windows' time stamps."""
        fit = getattr(model, "fit_closed_form", None)
        if fit is None:
            return
        d = self.series
        try:
            chosen = fit(data.train.series, data.val.series)
        except ValueError as error:  # settings the data cannot support (e.g. a memory too large)
            raise UserError(str(error)) from None
        log.info("closed-form fit on %d training windows: %s", d.windows("train"),
                 ", ".join(f"{k} {v:.4g}" for k, v in chosen.items()))
        if hasattr(model, "memory_labels"):
            first = d.window_rows("train", 0)[1] - 1  # last input row of training window 0
            model.memory_labels = self.labels(d.table.timestamps[first : first + d.windows("train")])

    def data(self, seed: int) -> DataSplits:
        """Train / val / test windows (deterministic; the seed only shuffles training batches). The figure
        options are checked here too, against the data, before the engine creates the run folder."""
        d = self.series
        self.drawn_windows(), self.drawn_channels(), self.attention_window()  # a bad figure option: UserError now
        return DataSplits(d.dataset("train"), d.dataset("val"), d.dataset("test"))

    def drawn_windows(self) -> list[int]:
        """The test windows the forecast figure draws: ``plot_window`` (checked, negatives resolved, repeats
        dropped) or ``plot_windows`` of them spread over the split."""
        c, n = self.config, self.series.windows("test")
        if not c.plot_window:
            return spread(n, c.plot_windows)
        return list(dict.fromkeys(resolve_window(i, n, "plot_window") for i in c.plot_window))

    def drawn_channels(self) -> list[int]:
        """Column indices of the channels the figures draw: ``plot_channel`` (each a target channel) or the
        first 4 targets."""
        d, chosen = self.series, self.config.plot_channel
        if not chosen:
            return list(d.target_index[:4])
        for name in chosen:
            if name not in d.targets:
                raise UserError(f"plot_channel {name!r} is not a target channel of {d.table.path.name}; choose from "
                                f"{', '.join(d.targets)} (the model is scored, and its forecasts written, only "
                                "for the targets)")
        return [d.columns.index(name) for name in dict.fromkeys(chosen)]

    def attention_window(self) -> int | None:
        """The test window of the attention figure: ``attention_window`` (checked) or the middle drawn window
        (None if none is drawn)."""
        c = self.config
        if c.attention_window is not None:
            return resolve_window(c.attention_window, self.series.windows("test"), "attention_window")
        drawn = self.drawn_windows()
        return drawn[len(drawn) // 2] if drawn else None

    def _targets(self, prediction: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        d = self.series
        if len(d.target_index) == d.n_channels:
            return prediction, y
        idx = torch.as_tensor(d.target_index, device=prediction.device)
        return prediction.index_select(-1, idx), y.index_select(-1, idx)  # (B, H, T)

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """MSE over the target channels, standardised scale."""
        x, y = batch  # (B, L, C), (B, H, C)
        prediction, truth = self._targets(model(x), y)
        return (prediction - truth).pow(2).mean()

    def evaluate(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """``mse``, ``mae`` (standardised) and ``mse_orig``, ``mae_orig`` (original units) over the target
        values of the batch. Every window holds H × targets values, so the engine's batch-size-weighted mean
        of these batch means is the exact mean over all values of the split."""
        x, y = batch
        prediction, truth = self._targets(model(x), y)
        error = prediction - truth  # (B, H, T)
        std = torch.as_tensor(self.series.scaler.std[list(self.series.target_index)], dtype=error.dtype,
                              device=error.device)
        error_orig = error * std  # (B, H, T), original units
        mse = error.pow(2).mean()
        return {"loss": mse, "mse": mse, "mae": error.abs().mean(), "mse_orig": error_orig.pow(2).mean(),
                "mae_orig": error_orig.abs().mean()}

    def save_artifacts(self, model: nn.Module, data: DataSplits, run_dir: Path) -> None:
        """Called by the engine after training: write ``scaler.json`` (what ``predict`` needs besides the
        weights) and ``forecasts.csv`` (test forecasts in original units; see :func:`write_forecasts`)."""
        write_scaler(Path(run_dir) / SCALER_FILE, self.series)
        if self.config.forecast_windows != 0:
            write_forecasts(model, self.series, Path(run_dir) / FORECASTS_FILE, self.config.forecast_windows)
        write_baselines(run_dir, self.baselines())

    def baselines(self, chunk: int = 512) -> dict[str, dict[str, float]]:
        """Test metrics (same names and scales as :meth:`evaluate`) of two forecasts that learn nothing:
        repeating each window's last input value over the horizon, and the training mean (0 on the
        standardised scale)."""
        d = self.series
        std = torch.as_tensor(d.scaler.std[list(d.target_index)], dtype=torch.float64)
        sums = {name: torch.zeros(4, dtype=torch.float64) for name in ("repeat the last value", "the training mean")}
        n = d.windows("test")
        for start in range(0, n, chunk):
            x, y = d.dataset("test").batch(range(start, min(n, start + chunk)))  # (B, L, C), (B, H, C)
            guesses = {"repeat the last value": x[:, -1:].expand_as(y), "the training mean": torch.zeros_like(y)}
            for name, guess in guesses.items():
                error = torch.sub(*self._targets(guess, y)).double()  # (B, H, T)
                sums[name] += torch.stack([error.pow(2).sum(), error.abs().sum(), (error * std).pow(2).sum(),
                                           (error * std).abs().sum()])
        count = n * d.horizon * len(d.target_index)
        return {name: dict(zip(("mse", "mae", "mse_orig", "mae_orig"), (total / count).tolist(), strict=True))
                for name, total in sums.items()}

    def attention_samples(self, model: nn.Module, data: DataSplits, limit: int = 4) -> list[AttentionSample]:
        """Attention of ``limit`` test windows: the attention figure's window first (``attention_window``, by
        default the middle drawn window), then windows spread over the test split; axes labelled with the input
        time stamps (or the model's token labels, e.g. patch spans); [] for models without attention."""
        d = self.series
        focus = self.attention_window()
        chosen = [] if focus is None else [focus]
        samples = []
        for i in list(dict.fromkeys(chosen + spread(d.windows("test"), limit)))[:limit]:
            a, b, _ = d.window_rows("test", i)
            x, _ = d.dataset("test").batch([i])  # (1, L, C)
            maps = attention_maps(model, x.to(model_device(model)), self.labels(d.table.timestamps[a:b]), d.columns)
            if not maps:
                return []
            first, last = self.labels(d.table.timestamps[[a, b - 1]])
            samples.append(AttentionSample(f"test window {i}: input {first} .. {last}", maps, in_figures=i == focus))
        return samples

    def figures(self, model: nn.Module, data: DataSplits, out_dir: Path, history: list[dict[str, float]]) -> list[Path]:
        """``forecast.png``: forecast vs actual (original units, time stamps on x) of the drawn channels
        (``plot_channel``, default the first 4 targets) for the drawn test windows (``plot_window``, default
        ``plot_windows`` spread over the split); for attention models ``forecast_attention.png``: the
        attention over the input of ``attention_window`` (default the middle drawn window)."""
        from attnlab.viz.forecast import plot_attention_over_input, plot_forecasts
        from attnlab.viz.heatmaps import save_figure

        d = self.series
        windows, channels, focus = self.drawn_windows(), self.drawn_channels(), self.attention_window()
        names = [d.columns[c] for c in channels]
        paths: list[Path] = []
        if windows:
            forecast = d.scaler.inverse(predict_windows(model, d, "test", windows), None)  # (W, H, C) original
            rows = [d.window_rows("test", i) for i in windows]
            fig = plot_forecasts(
                times=[d.table.timestamps[a:c] for a, _, c in rows],
                actual=[d.table.values[a:c][:, channels] for a, _, c in rows],
                forecast=[f[:, channels] for f in forecast],
                input_len=d.input_len,
                channel_names=names,
                titles=[f"test window {i}" for i in windows],
            )
            paths.append(save_figure(fig, out_dir / "forecast.png"))
        if focus is None:
            return paths
        a, b, _ = d.window_rows("test", focus)
        x, _ = d.dataset("test").batch([focus])  # (1, L, C)
        maps = attention_maps(model, x.to(model_device(model)), self.labels(d.table.timestamps[a:b]), d.columns)
        maps = maps_of_channels(maps, d.columns, names)
        if maps:
            spans = model.patch_spans() if hasattr(model, "patch_spans") else None
            fig = plot_attention_over_input(
                d.table.timestamps[a:b], d.table.values[a:b][:, channels], names, maps,
                title=f"attention on test window {focus}", key_spans=spans,
            )
            paths.append(save_figure(fig, out_dir / "forecast_attention.png"))
        return paths


def write_scaler(path: Path, data: ForecastData) -> Path:
    """``scaler.json``: the scaler, target channels, time-stamp frequency (null if irregular), borders."""
    freq = data.table.freq
    payload = {
        **data.scaler.to_dict(),
        "targets": list(data.targets),
        "date_col": data.date_col,
        "frequency": freq,
        "borders": {name: list(rows) for name, rows in data.borders.items()},
        "windows": {name: data.windows(name) for name in data.borders},
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def write_forecasts(model: nn.Module, data: ForecastData, path: Path, max_windows: int | None = None) -> Path:
    """Write the forecasts of the test windows (all, or ``max_windows`` spread over the split) in original
    units: one row per window and step with ``window, origin, step, timestamp`` and, per target channel,
    ``<name>_forecast`` and ``<name>_actual``."""
    n = data.windows("test")
    windows = np.arange(n) if max_windows is None or max_windows >= n else np.asarray(spread(n, max_windows))
    targets = list(data.target_index)
    H = data.horizon
    start = data.borders["test"][0] + data.input_len
    rows = start + windows[:, None] + np.arange(H)  # (N, H) absolute CSV rows of the forecast steps
    frame: dict[str, Any] = {
        "window": np.repeat(windows, H),
        "origin": np.repeat(data.table.timestamps[start + windows - 1], H),
        "step": np.tile(np.arange(1, H + 1), len(windows)),
        "timestamp": data.table.timestamps[rows.ravel()],
    }
    chunks = []
    for first in range(0, len(windows), 512):  # bounded memory for long horizons
        chunk = windows[first : first + 512]
        chunks.append(data.scaler.inverse(predict_windows(model, data, "test", chunk)[..., targets], targets))
    predicted = np.concatenate(chunks) if chunks else np.empty((0, H, len(targets)))  # (N, H, T)
    actual = data.table.values[rows][..., targets]  # (N, H, T)
    for k, name in enumerate(data.targets):
        frame[f"{name}_forecast"] = predicted[..., k].ravel()
        frame[f"{name}_actual"] = actual[..., k].ravel()
    pd.DataFrame(frame).to_csv(path, index=False, float_format="%.6g")
    return path
