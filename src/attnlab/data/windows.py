"""Windows over a panel: an index over (series, origin) and batches gathered on the fly.

A window of series ``s`` at origin ``t`` (the step of its first forecast value) is its input rows
``t − L .. t − 1`` and its forecast rows ``t .. t + H − 1``. A split is, for every series, an arithmetic run of
origins (first origin, count, stride): the index is that per-series description plus a cumulative count, so it
costs O(series), not O(windows); window ``i`` is found by a binary search. A batch is one gather from the stored
arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


@dataclass
class WindowSet:
    """The windows of one split.

    Attributes:
        first: (S,) the first origin of each series (an index into the series).
        count: (S,) windows of each series (0 = none).
        stride: steps between consecutive origins of a series.
    """

    first: np.ndarray
    count: np.ndarray
    stride: int = 1

    def __post_init__(self) -> None:
        self.first = np.asarray(self.first, dtype=np.int64)
        self.count = np.maximum(np.asarray(self.count, dtype=np.int64), 0)
        self.cumulative = np.concatenate([[0], np.cumsum(self.count)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.cumulative[-1])

    def locate(self, index: np.ndarray | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Window indices (B,) -> their series (B,) and origins (B,)."""
        index = np.asarray(index, dtype=np.int64)
        series = np.searchsorted(self.cumulative, index, side="right") - 1
        return series, self.first[series] + (index - self.cumulative[series]) * self.stride

    def last_of_each(self) -> np.ndarray:
        """The index of each series' last window (series without windows left out)."""
        return self.cumulative[1:][self.count > 0] - 1


@dataclass
class ForecastBatch:
    """A batch of windows, standardised per series (see :class:`PanelWindows`).

    Attributes:
        x: (B, L, C) the target channels over the input steps.
        y: (B, H, C) the target channels over the forecast steps.
        series: (B,) series index of each window.
        origin: (B,) its origin within the series.
        hist: (B, L, Ch) historical covariates over the input steps (Ch may be 0).
        futr: (B, L + H, Cf) future-known covariates over input and forecast steps (Cf may be 0).
        static: (B, Cs) static covariates (Cs may be 0).
    """

    x: Tensor
    y: Tensor
    series: Tensor
    origin: Tensor
    hist: Tensor
    futr: Tensor
    static: Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])


class PanelWindows(Dataset):
    """The windows of one split of a panel, gathered a batch at a time (``__getitems__``: one gather per batch,
    nothing copied per window).

    The stored rows may be raw (the panel's own values, in memory or memory-mapped from a store: then each
    batch is standardised as it is gathered, with the per-series statistics ``scales``) or already standardised
    (``scales`` None). Standardising a batch computes ``(value − mean) / std`` in float64 and rounds to float32,
    the same numbers as standardising every row up front, without a second copy of the data.

    Pickling (a ``spawn`` or ``forkserver`` data-loader worker) sends a memory-mapped array as its file name, so
    a worker maps the store instead of receiving a copy.

    Args:
        target: (N, C) target rows of every series (numpy or torch).
        hist: (N, Ch) historical covariates.
        futr: (N, Cf) future-known covariates.
        static: (S, Cs) static covariates, standardised.
        offsets: (S + 1,) int64 row offsets of the series.
        windows: the split's :class:`WindowSet`.
        input_len: L.
        horizon: H.
        scales: ``(mean, std, cov_mean, cov_std)``: (S, C) target and (S, Ch + Cf) covariate statistics that
            standardise raw rows; None when the rows are standardised already.
    """

    def __init__(self, target: Any, hist: Any, futr: Any, static: Any, offsets: np.ndarray, windows: WindowSet,
                 input_len: int, horizon: int, scales: tuple[np.ndarray, ...] | None = None) -> None:
        self.target, self.hist, self.futr = _numpy(target), _numpy(hist), _numpy(futr)
        self.static = torch.as_tensor(_numpy(static), dtype=torch.float32)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.windows = windows
        self.input_len, self.horizon = input_len, horizon
        self.scales = None if scales is None else tuple(np.asarray(a, dtype=np.float64) for a in scales)
        self._span = np.arange(input_len + horizon)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> ForecastBatch:
        if not 0 <= i < len(self):
            raise IndexError(f"window {i} out of range [0, {len(self)})")
        return self.__getitems__([i])

    def _standard(self, values: np.ndarray, series: np.ndarray, which: str) -> Tensor:
        """Gathered rows (B, T, K) standardised with the series' statistics, as float32."""
        if self.scales is not None and values.shape[-1]:
            mean, std, cov_mean, cov_std = self.scales
            nh = self.hist.shape[1]
            m, s = {"target": (mean, std), "hist": (cov_mean[:, :nh], cov_std[:, :nh]),
                    "futr": (cov_mean[:, nh:], cov_std[:, nh:])}[which]
            values = (values - m[series][:, None]) / s[series][:, None]
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))

    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> ForecastBatch:
        series, origin = self.windows.locate(indices)
        rows = (self.offsets[series] + origin - self.input_len)[:, None] + self._span  # (B, L + H)
        L = self.input_len
        values = self._standard(self.target[rows], series, "target")  # (B, L + H, C)
        s = torch.from_numpy(series)
        return ForecastBatch(
            x=values[:, :L], y=values[:, L:], series=s, origin=torch.from_numpy(origin),
            hist=self._standard(self.hist[rows[:, :L]], series, "hist"),
            futr=self._standard(self.futr[rows], series, "futr"), static=self.static[s],
        )

    def batch(self, indices: Sequence[int] | np.ndarray) -> ForecastBatch:
        """Windows ``indices`` at once (the same as ``__getitems__``)."""
        return self.__getitems__(indices)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in ("target", "hist", "futr"):
            array = state[name]
            if isinstance(array, np.memmap) and getattr(array, "filename", None) \
                    and array.shape == np.load(array.filename, mmap_mode="r").shape:  # the whole file, not a view
                state[name] = _Mapped(array.filename)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in ("target", "hist", "futr"):
            if isinstance(state[name], _Mapped):
                state[name] = np.load(state[name].filename, mmap_mode="c")
        self.__dict__.update(state)


@dataclass
class _Mapped:
    """A memory-mapped array sent to another process by its file name."""

    filename: str


def _numpy(array: Any) -> np.ndarray:
    """A torch tensor as the numpy array sharing its memory; numpy arrays (memory-mapped ones too) as they are."""
    return array.detach().cpu().numpy() if isinstance(array, Tensor) else array


def keep_batch(batch: ForecastBatch) -> ForecastBatch:
    """The DataLoader's collate function for :class:`PanelWindows`: the batch is already gathered."""
    return batch
