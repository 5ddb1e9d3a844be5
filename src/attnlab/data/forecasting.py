"""A panel split for forecasting: per-series borders, the windows of each split, per-series scaling.

Splits (per series, on its own rows; every window of every split is used, stride 1):

* ``ett``: rows 0–8639 train, 8640–11519 validation, 11520–14399 test (the published ETT protocol);
* ``ratio``: the first 70 % of the rows train, the last 20 % test, the rows between validation (``ratios``);
* ``last``: the last ``test_size`` steps are the test, the ``val_size`` steps before them validation (both
  default to the horizon: one validation and one test window per series, the M4 protocol).

Validation and test windows take their input from the rows before their border, so their first window has full
context. Each series is standardised with the mean and (population) standard deviation of its own training
rows. A series too short for a training window or for its validation and test windows is left out (counted
in the log); none left is an error.
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
        windows: split name -> its :class:`WindowSet`.
        target_index: the scored channels (indices into the panel's targets).
        mean, std: (S, C) float64 per-series statistics of the training rows of the targets.
        cov_mean, cov_std: (S, Ch + Cf) per-series statistics of the historical and future covariates.
        static_mean, static_std: (Cs,) statistics of the static covariates over the series.
        mase_scale: (S, C) float64 mean absolute seasonal difference of each series' training rows (the MASE
            denominator; the lag-1 difference when a series is shorter than two seasons).
        tensors: standardised float32 ``target`` (N, C), ``hist`` (N, Ch), ``futr`` (N, Cf), ``static`` (S, Cs).
        skipped: ids of the series left out (too short).
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
    tensors: dict[str, Tensor]
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
        """The windows of ``split`` (``"train"``, ``"val"`` or ``"test"``)."""
        t = self.tensors
        return PanelWindows(t["target"], t["hist"], t["futr"], t["static"], self.panel.offsets, self.windows[split],
                            self.input_len, self.horizon)

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
        return self.panel.target[rows]

    def history(self, s: int, stop: int) -> np.ndarray:
        """(stop, C) original-unit target rows ``0 .. stop − 1`` of series ``s``."""
        return self.panel.target[self.panel.offsets[s]: self.panel.offsets[s] + stop]


def _stats(values: np.ndarray, constant_ok: bool) -> tuple[np.ndarray, np.ndarray, bool]:
    mean = values.mean(axis=0)
    std = values.std(axis=0)  # ddof=0, as sklearn's StandardScaler (what the published tables use)
    flat = ~(std > 0) | ~np.isfinite(std)
    if flat.any() and constant_ok:
        std = np.where(flat, 1.0, std)
    return mean, std, bool(flat.any())


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
    edges = np.array([borders(int(n), split, ratios, val_size, test_size) for n in lengths], dtype=np.int64)
    L, H = input_len, horizon
    train_n = edges[:, 0] - H - L + 1
    val_first = np.maximum(edges[:, 0], L)
    val_n = edges[:, 1] - H - val_first + 1
    test_first = np.maximum(edges[:, 1], L)
    test_n = edges[:, 2] - H - test_first + 1
    needs_test = not (split == "last" and test_size == 0)
    usable = (train_n > 0) & (val_n > 0) & ((test_n > 0) | (not needs_test)) & (edges[:, 0] > 0)
    if not usable.any():
        if panel.n_series == 1:
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
    # Strided training windows end at each series' last training origin, so the newest window is always used.
    train_first = np.full(len(edges), L) + (train_n - 1) % train_stride
    windows = {"train": WindowSet(train_first, (train_n - 1) // train_stride + 1, train_stride),
               "val": WindowSet(val_first, val_n),
               "test": WindowSet(test_first, test_n)}
    S, C = panel.n_series, panel.n_channels
    covariates = np.concatenate([panel.hist, panel.futr], axis=1)
    mean, std = np.empty((S, C)), np.empty((S, C))
    cov_mean, cov_std = np.zeros((S, covariates.shape[1])), np.ones((S, covariates.shape[1]))
    scale = np.empty((S, C))
    flat_series = 0
    for s in range(S):
        rows = slice(int(panel.offsets[s]), int(panel.offsets[s] + edges[s, 0]))
        train_values = panel.target[rows]
        mean[s], std[s], flat = _stats(train_values, constant_ok=panel.n_series > 1)
        if flat and panel.n_series == 1:
            column = panel.target_names[int(np.flatnonzero(~(train_values.std(axis=0) > 0))[0])]
            raise UserError(f"column {column!r} is constant over the {len(train_values)} train rows (std 0), so it "
                            "cannot be standardised; remove it from the CSV (or choose a split whose train rows vary)")
        flat_series += flat
        if covariates.shape[1]:
            cov_mean[s], cov_std[s], _ = _stats(covariates[rows], constant_ok=True)
        scale[s] = mase_denominator(train_values, season)
    if flat_series:
        log.info("%d series are constant over their training rows: scaled by 1", flat_series)
    static_mean, static_std, _ = _stats(panel.static, constant_ok=True) if panel.static.shape[1] else \
        (np.zeros(0), np.ones(0), False)
    row_series = np.repeat(np.arange(S), panel.lengths)
    standard = (panel.target - mean[row_series]) / std[row_series]  # float64, then float32 (as the protocol)
    cov = (covariates - cov_mean[row_series]) / cov_std[row_series]
    nh = panel.hist.shape[1]
    tensors = {
        "target": torch.from_numpy(np.ascontiguousarray(standard, dtype=np.float32)),
        "hist": torch.from_numpy(np.ascontiguousarray(cov[:, :nh], dtype=np.float32)),
        "futr": torch.from_numpy(np.ascontiguousarray(cov[:, nh:], dtype=np.float32)),
        "static": torch.from_numpy(np.ascontiguousarray((panel.static - static_mean) / static_std, dtype=np.float32)),
    }
    return ForecastData(panel, input_len, horizon, season, split, edges, windows, target_index, mean, std, cov_mean,
                        cov_std, static_mean, static_std, scale, tensors, skipped)


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
