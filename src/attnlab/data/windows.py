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

    Args:
        target: (N, C) float32 standardised target rows of every series.
        hist: (N, Ch) float32 historical covariates.
        futr: (N, Cf) float32 future-known covariates.
        static: (S, Cs) float32 static covariates.
        offsets: (S + 1,) int64 row offsets of the series.
        windows: the split's :class:`WindowSet`.
        input_len: L.
        horizon: H.
    """

    def __init__(self, target: Tensor, hist: Tensor, futr: Tensor, static: Tensor, offsets: np.ndarray,
                 windows: WindowSet, input_len: int, horizon: int) -> None:
        self.target, self.hist, self.futr, self.static = target, hist, futr, static
        self.offsets = torch.as_tensor(offsets, dtype=torch.long)
        self.windows = windows
        self.input_len, self.horizon = input_len, horizon
        self._span = torch.arange(input_len + horizon)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> ForecastBatch:
        if not 0 <= i < len(self):
            raise IndexError(f"window {i} out of range [0, {len(self)})")
        return self.__getitems__([i])

    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> ForecastBatch:
        series, origin = self.windows.locate(indices)
        s = torch.as_tensor(series, dtype=torch.long)
        o = torch.as_tensor(origin, dtype=torch.long)
        rows = (self.offsets[s] + o - self.input_len)[:, None] + self._span  # (B, L + H)
        L = self.input_len
        values = self.target[rows]  # (B, L + H, C)
        return ForecastBatch(
            x=values[:, :L], y=values[:, L:], series=s, origin=o,
            hist=self.hist[rows[:, :L]], futr=self.futr[rows], static=self.static[s],
        )

    def batch(self, indices: Sequence[int] | np.ndarray) -> ForecastBatch:
        """Windows ``indices`` at once (the same as ``__getitems__``)."""
        return self.__getitems__(indices)


def keep_batch(batch: ForecastBatch) -> ForecastBatch:
    """The DataLoader's collate function for :class:`PanelWindows`: the batch is already gathered."""
    return batch
