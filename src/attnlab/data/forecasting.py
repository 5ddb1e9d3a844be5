"""A panel split for forecasting: per-series borders, the windows of each split, per-series scaling.

Splits (per series, on its own rows; every window of every split is used, stride 1):

* ``ett``: rows 0–8639 train, 8640–11519 validation, 11520–14399 test (the published ETT protocol);
* ``ratio``: the first 70 % of the rows train, the last 20 % test, the rows between validation (``ratios``);
* ``last``: the last ``test_size`` steps are the test, the ``val_size`` steps before them validation (both
  default to the horizon: one validation and one test window per series, the M4 protocol).

Validation and test windows take their input from the rows before their border, so their first window has full
context. A fourth set, ``recent``, holds the last :data:`RECENT_WINDOWS` non-overlapping training windows of each
series (the last one ends at the validation border): the model's error on them sets the width of each series'
prediction intervals (:mod:`attnlab.experiments.forecast_scores`). Each series is standardised with the mean and
(population) standard deviation of its own training rows. A series too short for a training window or for its
validation and test windows is left out (counted in the log); none left is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from attnlab.data.panel import Panel
from attnlab.data.windows import PanelWindows, WindowSet
from attnlab.errors import UserError

log = logging.getLogger(__name__)

SPLITS = ("ett", "ratio", "last")
SPLIT_NAMES = ("train", "val", "test")
ETT_BORDERS = (8640, 11520, 14400)
DEFAULT_RATIOS = (0.7, 0.1, 0.2)
RECENT_WINDOWS = 3  # training windows, a horizon apart, whose error sizes a series' intervals


def count_windows(rows: int, input_len: int, horizon: int) -> int:
    """Windows of stride 1 in ``rows`` rows (input included): ``rows − input_len − horizon + 1`` (0 if fewer)."""
    return max(0, rows - input_len - horizon + 1)


MIN_VAL_WINDOWS = 100  # validation windows a `last` split aims for by default (early stopping, conformal intervals)


def default_val_size(lengths: np.ndarray, split: str, input_len: int, horizon: int, test_size: int) -> int:
    """The validation steps per series of a ``last`` split when none are given: the horizon, so one window per
    series (the M4 protocol) when the panel has at least :data:`MIN_VAL_WINDOWS` series; for fewer series, enough
    steps for ``MIN_VAL_WINDOWS`` windows in all (at most 3 more horizons), so that early stopping and the
    conformal intervals see more than a handful of errors. The longer validation part is kept only if it leaves
    as many series with a training window as the horizon alone does."""
    if split != "last":
        return horizon
    extra = min(-(-MIN_VAL_WINDOWS // len(lengths)) - 1, 3 * horizon)

    def trainable(val_size: int) -> int:
        return int((lengths - test_size - val_size >= input_len + horizon).sum())

    return horizon + extra if extra > 0 and trainable(horizon + extra) == trainable(horizon) else horizon


def borders(length: int, split: str, ratios: Sequence[float], val_size: int, test_size: int) -> tuple[int, int, int]:
    """``(b1, b2, b3)``: train rows ``[0, b1)``, validation ``[b1, b2)``, test ``[b2, b3)`` of a series.

    Raises:
        UserError: an unknown split, ratios that are not three positive numbers summing to 1.
    """
    if split == "ett":
        return ETT_BORDERS
    if split == "ratio":
        ratios = tuple(float(r) for r in ratios)
        if len(ratios) != 3 or min(ratios) <= 0 or abs(sum(ratios) - 1.0) > 1e-6:
            raise UserError(f"--ratios must be three positive numbers summing to 1 (train,val,test), got "
                            f"{','.join(f'{r:g}' for r in ratios)}; for example --ratios 0.7,0.1,0.2")
        return int(length * ratios[0]), length - int(length * ratios[2]), length
    if split == "last":
        return length - test_size - val_size, length - test_size, length
    raise UserError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")


@dataclass
class ForecastData:
    """A panel split and scaled for forecasting.

    Attributes:
        panel: the series.
        input_len: L, input steps per window.
        horizon: H, forecast steps per window.
        season: steps per seasonal cycle (seasonal naive and MASE use it).
        split: ``ett``, ``ratio`` or ``last``.
        borders: (S, 3) int64 ``b1, b2, b3`` of each series.
        windows: split name (``train``, ``val``, ``test``, and ``recent``: the last :data:`RECENT_WINDOWS`
            training windows of each series, a horizon apart) -> its :class:`WindowSet`.
        target_index: the scored channels (indices into the panel's targets).
        mean, std: (S, C) float64 per-series statistics of the training rows of the targets.
        cov_mean, cov_std: (S, Ch + Cf) per-series statistics of the historical and future covariates.
        static_mean, static_std: (Cs,) statistics of the static covariates over the series.
        mase_scale: (S, C) float64 mean absolute seasonal difference of each series' training rows (the MASE
            denominator; the lag-1 difference when a series is shorter than two seasons).
        static_standard: (S, Cs) float32 standardised static covariates.
        skipped: ids of the series left out (too short).

    The panel's rows are kept as they are (in memory, or memory-mapped from a store): batches are standardised
    as they are gathered (:class:`attnlab.data.windows.PanelWindows`), so no standardised copy of the data is
    ever made. :attr:`tensors` makes one, for the small data that wants it whole.
    """

    panel: Panel
    input_len: int
    horizon: int
    season: int
    split: str
    borders: np.ndarray
    windows: dict[str, WindowSet]
    target_index: tuple[int, ...]
    mean: np.ndarray
    std: np.ndarray
    cov_mean: np.ndarray
    cov_std: np.ndarray
    static_mean: np.ndarray
    static_std: np.ndarray
    mase_scale: np.ndarray
    static_standard: np.ndarray
    skipped: tuple[str, ...] = ()

    @property
    def n_channels(self) -> int:
        return self.panel.n_channels

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self.panel.target_names[i] for i in self.target_index)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.panel.target_names

    def dataset(self, split: str) -> PanelWindows:
        """The windows of ``split`` (``"train"``, ``"val"`` or ``"test"``), standardised as they are gathered."""
        p = self.panel
        return PanelWindows(p.target, p.hist, p.futr, self.static_standard, p.offsets, self.windows[split],
                            self.input_len, self.horizon, scales=(self.mean, self.std, self.cov_mean, self.cov_std))

    @property
    def tensors(self) -> dict[str, Tensor]:
        """Standardised float32 ``target`` (N, C), ``hist`` (N, Ch), ``futr`` (N, Cf), ``static`` (S, Cs) of every
        row: a copy of the whole panel (for small data; training never builds it)."""
        p = self.panel
        series = np.repeat(np.arange(p.n_series), p.lengths)
        nh = p.hist.shape[1]

        def standard(values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> Tensor:
            out = (np.asarray(values, dtype=np.float64) - mean[series]) / std[series]
            return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))

        return {"target": standard(p.target, self.mean, self.std),
                "hist": standard(p.hist, self.cov_mean[:, :nh], self.cov_std[:, :nh]),
                "futr": standard(p.futr, self.cov_mean[:, nh:], self.cov_std[:, nh:]),
                "static": torch.from_numpy(self.static_standard)}

    def n_windows(self, split: str) -> int:
        return len(self.windows[split])

    def locate(self, split: str, indices: Any) -> tuple[np.ndarray, np.ndarray]:
        """Series and origins of windows ``indices`` of ``split``."""
        return self.windows[split].locate(indices)

    def original(self, values: np.ndarray | Tensor, series: np.ndarray, channels: Sequence[int] | None = None
                 ) -> np.ndarray:
        """(B, ..., C') standardised target values of windows of ``series`` (B,) back in original units."""
        array = values.detach().cpu().double().numpy() if isinstance(values, Tensor) else np.asarray(values)
        idx = slice(None) if channels is None else list(channels)
        shape = (len(series),) + (1,) * (array.ndim - 2) + (-1,)
        return array * self.std[series][:, idx].reshape(shape) + self.mean[series][:, idx].reshape(shape)

    def truth(self, series: np.ndarray, origin: np.ndarray) -> np.ndarray:
        """(B, H, C) original-unit target values of the forecast steps of windows (series, origin)."""
        rows = self.panel.offsets[series][:, None] + origin[:, None] + np.arange(self.horizon)
        return np.asarray(self.panel.target[rows], dtype=np.float64)  # a stored panel keeps float32: scores in float64

    def history(self, s: int, stop: int) -> np.ndarray:
        """(stop, C) original-unit target rows ``0 .. stop − 1`` of series ``s``."""
        return np.asarray(self.panel.target[self.panel.offsets[s]: self.panel.offsets[s] + stop], dtype=np.float64)


STATS_ROWS = 1 << 18  # rows per chunk of the statistics pass: bounded memory whatever the panel's size


def _segment_reduce(ufunc: np.ufunc, block: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """``ufunc.reduce`` of rows ``start[i] .. stop[i] − 1`` of ``block`` (R, K) for each i, without a loop over
    segments; rows of an empty segment are garbage (the caller masks them)."""
    padded = np.concatenate([block, np.zeros((1, block.shape[1]), dtype=block.dtype)])  # stop may equal R
    index = np.stack([start, stop], axis=1).ravel()
    return ufunc.reduceat(padded, np.minimum(index, len(block)), axis=0)[::2]


@dataclass
class SeriesStats:
    """Per-series statistics of the training rows: mean, population std (1 where a series is constant: flat)."""

    mean: np.ndarray
    std: np.ndarray
    flat: np.ndarray


def series_stats(values: np.ndarray, offsets: np.ndarray, train_rows: np.ndarray) -> SeriesStats:
    """Mean and population standard deviation (ddof 0, as sklearn's StandardScaler, what the published tables
    use) of the first ``train_rows[s]`` rows of each series of ``values`` (N, K), in one pass over the data a
    chunk of series at a time (float64 within a chunk, two passes over it: mean, then squared deviations).
    ``flat`` (S, K) marks a column whose training rows are all equal (or absent): its std is set to 1."""
    S, K = len(offsets) - 1, values.shape[1]
    mean, std, flat = np.zeros((S, K)), np.ones((S, K)), np.ones((S, K), dtype=bool)
    if K == 0:
        return SeriesStats(mean, std, flat)
    for a, b in _chunks(offsets):
        lo = int(offsets[a])
        block = np.asarray(values[lo: int(offsets[b])], dtype=np.float64)
        start = offsets[a:b] - lo
        count = train_rows[a:b]
        stop = start + count
        has = count > 0
        m = _segment_reduce(np.add, block, start, stop) / np.maximum(count, 1)[:, None]
        deviation = block - np.repeat(m, np.diff(offsets[a: b + 1]), axis=0)
        v = _segment_reduce(np.add, deviation * deviation, start, stop) / np.maximum(count, 1)[:, None]
        constant = _segment_reduce(np.maximum, block, start, stop) == _segment_reduce(np.minimum, block, start, stop)
        f = constant | ~np.isfinite(v) | ~has[:, None]
        mean[a:b] = np.where(has[:, None], m, 0.0)
        std[a:b] = np.where(f, 1.0, np.sqrt(v))
        flat[a:b] = f
    return SeriesStats(mean, std, flat)


def mase_scales(values: np.ndarray, offsets: np.ndarray, train_rows: np.ndarray, season: int) -> np.ndarray:
    """(S, C) MASE denominators of each series' training rows (see :func:`mase_denominator`), a chunk of series
    at a time."""
    S, C = len(offsets) - 1, values.shape[1]
    out = np.ones((S, C))
    for a, b in _chunks(offsets):
        lo = int(offsets[a])
        block = np.asarray(values[lo: int(offsets[b])], dtype=np.float64)
        start = offsets[a:b] - lo
        count = train_rows[a:b]
        lag = np.where(count > season, season, 1)
        result = np.ones((b - a, C))
        for step in sorted(set(lag.tolist())):
            diff = np.zeros_like(block)
            diff[step:] = np.abs(block[step:] - block[:-step])
            mine = (lag == step) & (count > step)
            sums = _segment_reduce(np.add, diff, start + step, start + count)
            scale = sums / np.maximum(count - step, 1)[:, None]
            result[mine] = np.where(scale[mine] > 0, scale[mine], 1.0)
        out[a:b] = result
    return out


def _chunks(offsets: np.ndarray, rows: int | None = None) -> list[tuple[int, int]]:
    """Consecutive ranges of series ``[a, b)`` of about ``rows`` rows each (at least one series)."""
    rows = STATS_ROWS if rows is None else rows
    S = len(offsets) - 1
    out, a = [], 0
    while a < S:
        b = max(a + 1, int(np.searchsorted(offsets, offsets[a] + rows, side="right")) - 1)
        b = min(b, S)
        out.append((a, b))
        a = b
    return out


def _edges(lengths: np.ndarray, split: str, ratios: Sequence[float], val_size: int, test_size: int) -> np.ndarray:
    """(S, 3) :func:`borders` of every series, without a loop over series."""
    borders(int(lengths.max()) if len(lengths) else 1, split, ratios, val_size, test_size)  # the option checks
    n = np.asarray(lengths, dtype=np.int64)
    if split == "ett":
        return np.tile(np.asarray(ETT_BORDERS, dtype=np.int64), (len(n), 1))
    if split == "ratio":
        r = tuple(float(x) for x in ratios)
        first = np.array([int(k * r[0]) for k in n.tolist()], dtype=np.int64)  # exactly borders()'s rounding
        last = np.array([k - int(k * r[2]) for k in n.tolist()], dtype=np.int64)
        return np.stack([first, last, n], axis=1)
    return np.stack([n - test_size - val_size, n - test_size, n], axis=1)


def prepare_forecast(
    panel: Panel,
    *,
    input_len: int,
    horizon: int,
    season: int = 1,
    split: str = "ratio",
    ratios: Sequence[float] = DEFAULT_RATIOS,
    target: Sequence[str] = (),
    val_size: int | None = None,
    test_size: int | None = None,
    train_stride: int = 1,
    train_history: int = 0,
) -> ForecastData:
    """Split, window and standardise a panel (see the module docstring).

    Args:
        panel: the series.
        input_len: L, input steps per window.
        horizon: H, forecast steps per window.
        season: steps per seasonal cycle.
        split: ``ett``, ``ratio`` or ``last``.
        ratios: train, validation, test fractions of a ``ratio`` split.
        target: the scored target channels (default: all).
        val_size: steps of each series held out for validation by a ``last`` split (default:
            :func:`default_val_size`).
        test_size: steps of each series held out for testing by a ``last`` split (default: the horizon).
        train_stride: steps between the origins of training windows (the newest origin is always one).
        train_history: training windows' origins lie in the last ``train_history`` training steps of each series
            (0 = all).

    Raises:
        UserError: non-positive sizes, an unknown target, no series long enough, a constant channel of a single
            (wide) series over its training rows.
    """
    if input_len < 1:
        raise UserError(f"--input-len must be at least 1 step, got {input_len}")
    if horizon < 1:
        raise UserError(f"--horizon must be at least 1 step, got {horizon}")
    if season < 1:
        raise UserError(f"--season must be at least 1 step, got {season}")
    test_size = horizon if test_size is None else test_size
    if val_size is None:
        val_size = default_val_size(panel.lengths, split, input_len, horizon, test_size)
    if split == "last" and (val_size < horizon or 0 < test_size < horizon):
        raise UserError(f"val_size ({val_size}) and test_size ({test_size}) must be at least the horizon ({horizon}) "
                        "(test_size 0: no test part, every step before validation trains)")
    unknown = [name for name in target if name not in panel.target_names]
    if unknown:
        raise UserError(f"unknown target column(s) {', '.join(map(repr, unknown))}; available: "
                        f"{', '.join(panel.target_names)} (or --all)")
    target_index = tuple(panel.target_names.index(t) for t in target) or tuple(range(panel.n_channels))
    lengths = panel.lengths
    if split == "ett" and panel.n_series == 1 and lengths[0] < ETT_BORDERS[2]:
        raise UserError(f"--split ett needs at least {ETT_BORDERS[2]} rows (12/4/4 months of hourly data), the data "
                        f"has {lengths[0]}; use --split ratio for other series")
    edges = _edges(lengths, split, ratios, val_size, test_size)
    L, H = input_len, horizon
    train_n = edges[:, 0] - H - L + 1
    val_first = np.maximum(edges[:, 0], L)
    val_n = edges[:, 1] - H - val_first + 1
    test_first = np.maximum(edges[:, 1], L)
    test_n = edges[:, 2] - H - test_first + 1
    needs_test = not (split == "last" and test_size == 0)
    usable = (train_n > 0) & (val_n > 0) & ((test_n > 0) | (not needs_test)) & (edges[:, 0] > 0)
    if not usable.any():
        if panel.n_series == 1 and split != "last":  # a last split's parts are not fractions: the message below
            _explain_single(edges[0], L, H)
        raise UserError(f"no series of {panel.source} is long enough: each needs input_len + horizon = {L + H} "
                        f"training rows and its validation and test parts (the longest has {int(lengths.max())} rows); "
                        "use a shorter --input-len or --horizon")
    skipped = tuple(panel.ids[s] for s in np.flatnonzero(~usable))
    if skipped:
        log.info("left out %d of %d series too short for a training, validation and test window (e.g. %s)",
                 len(skipped), panel.n_series, skipped[0])
        panel = panel.select(usable)
        edges, train_n, val_first, val_n = edges[usable], train_n[usable], val_first[usable], val_n[usable]
        test_first, test_n = test_first[usable], test_n[usable]
    # Strided training windows end at each series' last training origin, so the newest window is always used;
    # with a history limit, only the origins within the last `train_history` training steps.
    train_count = (train_n - 1) // train_stride + 1
    if train_history:
        train_count = np.minimum(train_count, (train_history - 1) // train_stride + 1)
    train_first = L + train_n - 1 - (train_count - 1) * train_stride
    recent_count = np.minimum(RECENT_WINDOWS, (train_n - 1) // H + 1)  # whatever the stride and history limit
    windows = {"train": WindowSet(train_first, train_count, train_stride),
               "val": WindowSet(val_first, val_n),
               "test": WindowSet(test_first, test_n),
               "recent": WindowSet(L + train_n - 1 - (recent_count - 1) * H, recent_count, H)}
    train_rows = edges[:, 0]
    target_stats = series_stats(panel.target, panel.offsets, train_rows)
    if panel.n_series == 1 and target_stats.flat.any():
        column = panel.target_names[int(np.flatnonzero(target_stats.flat[0])[0])]
        raise UserError(f"column {column!r} is constant over the {int(train_rows[0])} train rows (std 0), so it "
                        "cannot be standardised; remove it from the CSV (or choose a split whose train rows vary)")
    flat_series = int(target_stats.flat.any(axis=1).sum())
    if flat_series:
        log.info("%d series are constant over their training rows: scaled by 1", flat_series)
    hist_stats = series_stats(panel.hist, panel.offsets, train_rows)
    futr_stats = series_stats(panel.futr, panel.offsets, train_rows)
    cov_mean = np.concatenate([hist_stats.mean, futr_stats.mean], axis=1)
    cov_std = np.concatenate([hist_stats.std, futr_stats.std], axis=1)
    scale = mase_scales(panel.target, panel.offsets, train_rows, season)
    if panel.static.shape[1]:
        static_mean, static_std = panel.static.mean(axis=0), panel.static.std(axis=0)
        static_std = np.where((static_std > 0) & np.isfinite(static_std), static_std, 1.0)
    else:
        static_mean, static_std = np.zeros(0), np.ones(0)
    static = np.ascontiguousarray((panel.static - static_mean) / static_std, dtype=np.float32)
    return ForecastData(panel, input_len, horizon, season, split, edges, windows, target_index, target_stats.mean,
                        target_stats.std, cov_mean, cov_std, static_mean, static_std, scale, static, skipped)


def mase_denominator(train: np.ndarray, season: int) -> np.ndarray:
    """(C,) mean absolute seasonal difference of (T, C) training values (lag 1 when T <= season); 1 where it is
    0 (a constant series)."""
    lag = season if len(train) > season else 1
    if len(train) <= lag:
        return np.ones(train.shape[1])
    scale = np.abs(train[lag:] - train[:-lag]).mean(axis=0)
    return np.where(scale > 0, scale, 1.0)


def _explain_single(edge: np.ndarray, L: int, H: int) -> None:
    b1, b2, b3 = (int(b) for b in edge)
    need = L + H
    for name, rows, context in (("train", b1, 0), ("val", b2 - max(0, b1 - L), min(L, b1)),
                                ("test", b3 - max(0, b2 - L), min(L, b2))):
        if rows < need:
            with_context = f" (with {context} rows of context before it)" if name != "train" else ""
            raise UserError(f"the {name} split has {rows} rows{with_context}, but a window needs input_len + horizon "
                            f"= {need}; use a shorter --input-len or --horizon, other --ratios, or a longer CSV")
