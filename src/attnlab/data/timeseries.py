"""Multivariate time series from a CSV: read, validate, split chronologically, standardise, window.

The protocol is the one long-horizon forecasting papers use on ETT (see ``../shared/data/README.md``):

* **Splits** are chronological. ``split="ett"``: rows 0–8639 train, 8640–11519 validation, 11520–14399 test
  (12/4/4 months of hourly rows; later rows are unused). ``split="ratio"``: the first ``int(n·r_train)`` rows
  train, the last ``int(n·r_test)`` rows test, the rows between validation (default 0.7/0.1/0.2).
* **Context**: validation and test windows start ``input_len`` rows before their border, so their first
  window has full context and every row of the split is forecast at least once.
* **Windows**: stride 1; a split of R rows (context included) has ``R − input_len − horizon + 1`` windows,
  and every one is used, in evaluation too (no ``drop_last``).
* **Standardisation**: each column with the mean and (population) standard deviation of the **train rows
  only**; the :class:`Scaler` is kept so forecasts can be mapped back to original units.

Channels: models see **all** numeric columns as input, shape (B, input_len, C), and forecast all of them,
(B, horizon, C). ``targets`` only selects which channels are scored (loss and metrics) and written as
forecasts; with no target (the default) every channel is a target — the ETT "M" setting.

Every problem a user's file can have is found here, before anything is trained or written, and raised as
a :class:`~attnlab.errors.UserError` whose one line names the problem and the fix.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from attnlab.catalog.forecast import DEFAULT_RATIOS
from attnlab.data.reading import (
    DECIMALS,
    check_order,
    looks_decimal_comma,
    parse_datetimes,
    read_text_table,
    regular_index,
    row_label,
    to_numbers,
)
from attnlab.errors import UserError

log = logging.getLogger(__name__)

SPLITS = ("ett", "ratio")
FILLS = ("none", "ffill", "interpolate")
SPLIT_NAMES = ("train", "val", "test")
# The ETT standard: 12 months train, 4 months validation, 4 months test, of hourly rows.
ETT_BORDERS = (8640, 11520, 14400)


# ---------------------------------------------------------------------------------------------- scaler


@dataclass
class Scaler:
    """Per-column standardisation ``(x − mean) / std`` with train-row statistics.

    Attributes:
        columns: the C column names, in channel order.
        mean: (C,) float64 means of the train rows.
        std: (C,) float64 population standard deviations of the train rows (all > 0).
    """

    columns: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, columns: Sequence[str], train_values: np.ndarray) -> Scaler:
        """Statistics of ``train_values`` (N, C); a UserError names a constant column."""
        mean = train_values.mean(axis=0)
        std = train_values.std(axis=0)  # ddof=0, as sklearn's StandardScaler (what the published tables use)
        for name, s in zip(columns, std, strict=True):
            if not s > 0 or not math.isfinite(s):
                raise UserError(
                    f"column {name!r} is constant over the {len(train_values)} train rows (std 0), so it cannot be "
                    "standardised; remove it from the CSV (or choose a split whose train rows vary)"
                )
        return cls(tuple(columns), mean, std)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """(..., C) original units → standardised."""
        return (values - self.mean) / self.std

    def inverse(self, values: np.ndarray | Tensor, channels: Sequence[int] | None = None) -> np.ndarray:
        """(..., C') standardised → original units; ``channels`` = the C' channel indices (default: all)."""
        idx = slice(None) if channels is None else list(channels)
        array = values.detach().cpu().double().numpy() if isinstance(values, Tensor) else np.asarray(values)
        return array * self.std[idx] + self.mean[idx]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"columns": [...], "mean": [...], "std": [...]}``."""
        return {"columns": list(self.columns), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaler:
        return cls(tuple(data["columns"]), np.asarray(data["mean"], dtype=np.float64),
                   np.asarray(data["std"], dtype=np.float64))


# ---------------------------------------------------------------------------------------------- reading


@dataclass
class Table:
    """A validated CSV: regular, increasing, unique time stamps and finite numeric columns.

    Attributes:
        path: the file read.
        timestamps: (N,) increasing, unique, regular at ``freq``.
        values: (N, C) float64, no NaN (after ``fill``).
        columns: the C numeric column names, in file order.
        freq: the time stamps' frequency (a pandas alias such as ``"h"``).
    """

    path: Path
    timestamps: pd.DatetimeIndex
    values: np.ndarray
    columns: tuple[str, ...]
    freq: str = ""


def numeric_columns(frame: pd.DataFrame, skip: set[str], path: Path, decimal: str = ".") -> tuple[list[str],
                                                                                                  np.ndarray]:
    """The numeric columns of ``frame`` (all but ``skip``) as (N, C) float64, NaN where a cell is missing.

    A column with no numeric cell (labels, notes) is left out with a log line. A column of numbers written with
    a decimal comma is an error naming ``--decimal ,`` (unless that is the ``decimal`` in use); any other cell
    that is not a number is an error naming its row.
    """
    columns: list[str] = []
    arrays: list[np.ndarray] = []
    ignored: list[str] = []
    for name in frame.columns:
        if name in skip:
            continue
        raw = frame[name]
        missing = raw.isna().to_numpy()
        numbers = to_numbers(raw, decimal)
        if decimal == "." and looks_decimal_comma(raw):
            example = raw.dropna().astype(str).str.strip()
            example = example[example.str.contains(",")].iloc[0]
            raise UserError(f"{path}: column {name!r} holds numbers written with a decimal comma ({example!r}); pass "
                            "--decimal , to read them (or save the file with '.' as the decimal mark)")
        if np.isnan(numbers).all():
            ignored.append(name)
            continue
        bad = (np.isnan(numbers) & ~missing) | np.isinf(numbers)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise UserError(
                f"{path}: column {name!r} has a non-numeric value {raw.iloc[first]!r} at {row_label(first)}"
                + (f" and {int(bad.sum()) - 1} more" if bad.sum() > 1 else "")
                + "; fix the cell(s) or remove the column"
            )
        columns.append(name)
        arrays.append(numbers)
    if ignored:
        log.info("ignoring column(s) of %s without numbers: %s", path.name, ", ".join(ignored))
    values = np.stack(arrays, axis=1) if arrays else np.empty((len(frame), 0))  # (N, C)
    return columns, values


def fill_missing(values: np.ndarray, columns: list[str] | tuple[str, ...], fill: str, what: str,
                 labels: pd.Index | None = None) -> np.ndarray:
    """Fill NaN cells of (N, C) ``values`` by ``fill``: ``ffill`` (last value forward, leading gaps take the first
    value) or ``interpolate`` (linear in row order, ends take the nearest value).

    Raises:
        UserError: NaN cells with ``fill="none"`` (counted per column, the first named), or a column with no value.
    """
    holes = np.isnan(values)
    if not holes.any():
        return values
    empty = [columns[c] for c in np.flatnonzero(holes.all(axis=0))]
    if empty:
        raise UserError(f"{what}: column(s) {', '.join(map(repr, empty))} hold no value at all; remove them")
    if fill == "none":
        parts = []
        for c in np.flatnonzero(holes.any(axis=0)):
            rows = np.flatnonzero(holes[:, c])
            at = f"{labels[rows[0]]}" if labels is not None else row_label(int(rows[0]))
            parts.append(f"{columns[c]}: {len(rows)} from {at}")
        raise UserError(f"{what} has {int(holes.sum())} missing value(s) ({'; '.join(parts)}); fill them with "
                        "--fill ffill or --fill interpolate, or fix the file")
    frame = pd.DataFrame(values)
    frame = frame.ffill().bfill() if fill == "ffill" else frame.interpolate(method="linear", limit_direction="both")
    log.info("filled %d missing value(s) of %s with %s", int(holes.sum()), what, fill)
    return frame.to_numpy(dtype=np.float64)


def read_table(path: str | Path, date_col: str = "date", fill: str = "none", freq: str | None = None,
               decimal: str = ".") -> Table:
    """Read and validate a CSV of a multivariate series on a regular clock.

    Numeric columns are those with at least one numeric cell; columns with none (labels, notes) are
    ignored with a log message. The time stamps must be unique, increasing and regular: without ``freq`` their
    frequency is inferred, and a gap is an error naming ``--freq``; with ``freq``, missing stamps become rows
    to fill. Missing cells (empty, ``NaN``, ``NA``, or a missing stamp's row) are an error unless ``fill`` is
    ``"ffill"`` (carry the last value forward; leading gaps take the first value) or ``"interpolate"``
    (linear in row order; leading/trailing gaps take the nearest value).

    Args:
        path: the CSV file (separated by ``,``, ``;``, tabs or ``|``; found from the header).
        date_col: name of the time stamp column.
        fill: ``"none"``, ``"ffill"`` or ``"interpolate"``.
        freq: the series' frequency (pandas alias: ``h``, ``D``, ``W``, ``MS`` …); None = inferred.
        decimal: the decimal mark of the numbers, ``"."`` or ``","``.

    Raises:
        UserError: missing, unreadable or badly encoded file, no date column, unparsable / duplicated / unsorted
            / irregular time stamps, no numeric column, a non-numeric or non-finite cell, decimal commas without
            ``decimal=","``, missing cells without ``fill``.
    """
    if fill not in FILLS:
        raise UserError(f"unknown fill {fill!r}; choose one of: {', '.join(FILLS)}")
    if decimal not in DECIMALS:
        raise UserError(f"--decimal {decimal!r} must be '.' or ','")
    frame = read_text_table(path)
    path = Path(path)
    if date_col not in frame.columns:
        raise UserError(
            f"{path} has no column {date_col!r} (columns: {', '.join(frame.columns)}); "
            "name its time column with --date-col"
        )
    timestamps = parse_datetimes(frame[date_col], path, date_col)
    check_order(timestamps, path, date_col)
    columns, values = numeric_columns(frame, {date_col}, path, decimal)
    if not columns:
        raise UserError(f"{path} has no numeric column besides {date_col!r}; nothing to forecast")
    grid, freq = regular_index(timestamps, freq, str(path))
    if len(grid) != len(timestamps):
        log.info("%s: %d missing time stamp(s) added on the %s grid", path.name, len(grid) - len(timestamps), freq)
        values = pd.DataFrame(values, index=timestamps).reindex(grid).to_numpy(dtype=np.float64)
    values = fill_missing(values, columns, fill, str(path))
    return Table(path, grid, values, tuple(columns), freq)


# ---------------------------------------------------------------------------------------------- splits


def split_borders(
    n_rows: int, split: str, input_len: int, ratios: Sequence[float] = DEFAULT_RATIOS
) -> dict[str, tuple[int, int]]:
    """Row ranges ``[start, end)`` of the three splits, context rows included.

    Train is ``[0, b1)``; validation ``[b1 − input_len, b2)``; test ``[b2 − input_len, b3)``, where
    ``(b1, b2, b3)`` are the ETT borders (8640, 11520, 14400) or, for a ratio split, ``b1 = int(n·r_train)``,
    ``b3 = n``, ``b2 = n − int(n·r_test)``.

    Raises:
        UserError: unknown split, ratios that are not three positive numbers summing to 1, a CSV too short
            for the ETT split.
    """
    if split == "ett":
        if n_rows < ETT_BORDERS[2]:
            raise UserError(
                f"--split ett needs at least {ETT_BORDERS[2]} rows (12/4/4 months of hourly data), the CSV has "
                f"{n_rows}; use --split ratio for other series"
            )
        b1, b2, b3 = ETT_BORDERS
    elif split == "ratio":
        ratios = tuple(float(r) for r in ratios)
        if len(ratios) != 3 or min(ratios) <= 0 or abs(sum(ratios) - 1.0) > 1e-6:
            raise UserError(
                f"--ratios must be three positive numbers summing to 1 (train,val,test), got "
                f"{','.join(f'{r:g}' for r in ratios)}; for example --ratios 0.7,0.1,0.2"
            )
        n_train, n_test = int(n_rows * ratios[0]), int(n_rows * ratios[2])
        b1, b2, b3 = n_train, n_rows - n_test, n_rows
    else:
        raise UserError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    return {"train": (0, b1), "val": (max(0, b1 - input_len), b2), "test": (max(0, b2 - input_len), b3)}


def count_windows(rows: int, input_len: int, horizon: int) -> int:
    """Windows of stride 1 in ``rows`` rows: ``rows − input_len − horizon + 1`` (0 if negative)."""
    return max(0, rows - input_len - horizon + 1)


class WindowDataset(Dataset):
    """Stride-1 windows of one split, sliced as views of a single (R, C) float32 tensor.

    Item ``i`` is ``(x, y)``: x = rows ``i .. i+L−1`` (L, C), y = rows ``i+L .. i+L+H−1`` (H, C), both
    standardised. Nothing is copied per window; the default collate stacks a batch into (B, L, C), (B, H, C).

    Args:
        series: (R, C) standardised rows of the split (context rows included).
        input_len: L.
        horizon: H.
    """

    def __init__(self, series: Tensor, input_len: int, horizon: int) -> None:
        self.series = series
        self.input_len = input_len
        self.horizon = horizon
        self._len = count_windows(series.shape[0], input_len, horizon)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if not 0 <= i < self._len:
            raise IndexError(f"window {i} out of range [0, {self._len})")
        mid = i + self.input_len
        return self.series[i:mid], self.series[mid : mid + self.horizon]  # (L, C), (H, C)

    def batch(self, indices: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        """Windows ``indices`` at once: x (B, L, C), y (B, H, C) (one gather, for evaluation loops)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        span = torch.arange(self.input_len + self.horizon)
        rows = self.series[idx[:, None] + span]  # (B, L + H, C)
        return rows[:, : self.input_len], rows[:, self.input_len :]


# ---------------------------------------------------------------------------------------------- the data


@dataclass
class ForecastData:
    """A validated, split and standardised series, ready to window.

    Attributes:
        table: the validated CSV (timestamps, raw values, column names).
        targets: names of the scored channels (all columns when none were chosen).
        target_index: their channel indices.
        split: ``"ett"`` or ``"ratio"``.
        ratios: the ratio split's fractions (kept for the record).
        input_len: L, rows of context per window.
        horizon: H, rows forecast per window.
        borders: split name → row range ``[start, end)``, context included.
        scaler: the train-row statistics.
        standardised: split name → (R, C) float32 tensor of the split's standardised rows.
        fill: how missing cells were filled.
        date_col: the time stamp column's name.
        requested: the target names asked for (empty = all channels).
        freq: the frequency asked for (None = inferred; the table's own is ``table.freq``).
        decimal: the decimal mark the numbers were read with.
    """

    table: Table
    targets: tuple[str, ...]
    target_index: tuple[int, ...]
    split: str
    ratios: tuple[float, float, float]
    input_len: int
    horizon: int
    borders: dict[str, tuple[int, int]]
    scaler: Scaler
    standardised: dict[str, Tensor] = field(repr=False)
    fill: str = "none"
    date_col: str = "date"
    requested: tuple[str, ...] = ()
    freq: str | None = None
    decimal: str = "."

    @property
    def columns(self) -> tuple[str, ...]:
        return self.table.columns

    @property
    def n_channels(self) -> int:
        return len(self.table.columns)

    def dataset(self, split: str) -> WindowDataset:
        """The windows of ``split`` (``"train"``, ``"val"`` or ``"test"``)."""
        return WindowDataset(self.standardised[split], self.input_len, self.horizon)

    def windows(self, split: str) -> int:
        """Number of windows of ``split``."""
        start, end = self.borders[split]
        return count_windows(end - start, self.input_len, self.horizon)

    def window_rows(self, split: str, i: int) -> tuple[int, int, int]:
        """Absolute CSV rows of window ``i``: ``(input start, forecast start, forecast end)`` — input rows
        ``[a, b)``, forecast rows ``[b, c)``."""
        a = self.borders[split][0] + i
        return a, a + self.input_len, a + self.input_len + self.horizon

    def options(self) -> dict[str, Any]:
        """The options this data was loaded with, as :func:`load_forecast_data` takes them."""
        return {"csv": str(self.table.path), "date_col": self.date_col, "target": self.requested,
                "split": self.split, "ratios": self.ratios, "input_len": self.input_len, "horizon": self.horizon,
                "fill": self.fill, "freq": self.freq, "decimal": self.decimal}


def parse_targets(target: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"OT"``, ``"OT,HUFL"``, ``["OT", "HUFL,LULL"]`` or None → a tuple of names (empty = all channels)."""
    if target is None:
        return ()
    items = [target] if isinstance(target, str) else list(target)
    names = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
    return tuple(dict.fromkeys(names))  # drop duplicates, keep order


def check_sizes(input_len: int, horizon: int) -> None:
    """UserError unless both sizes are positive."""
    if input_len <= 0:
        raise UserError(f"--input-len must be at least 1 row, got {input_len}")
    if horizon <= 0:
        raise UserError(f"--horizon must be at least 1 row, got {horizon}")


def prepare(
    table: Table,
    target: str | Sequence[str] | None = None,
    split: str = "ratio",
    ratios: Sequence[float] = DEFAULT_RATIOS,
    input_len: int = 336,
    horizon: int = 96,
    date_col: str = "date",
    fill: str = "none",
) -> ForecastData:
    """Split, check and standardise a validated :class:`Table` (see the module docstring for the protocol).

    Raises:
        UserError: non-positive sizes, unknown target column, bad split/ratios, a split with fewer rows than
            ``input_len + horizon``, a constant column over the train rows.
    """
    check_sizes(input_len, horizon)
    requested = parse_targets(target)
    unknown = [name for name in requested if name not in table.columns]
    if unknown:
        raise UserError(
            f"unknown target column(s) {', '.join(map(repr, unknown))} in {table.path}; "
            f"available: {', '.join(table.columns)} (or --all)"
        )
    targets = requested or table.columns
    target_index = tuple(table.columns.index(name) for name in targets)
    borders = split_borders(len(table.values), split, input_len, ratios)
    need = input_len + horizon
    previous_end = {"train": 0, "val": borders["train"][1], "test": borders["val"][1]}
    for name in SPLIT_NAMES:
        start, end = borders[name]
        rows = end - start
        if rows < need:
            context = "" if name == "train" else f" (with {previous_end[name] - start} rows of context before it)"
            raise UserError(
                f"the {name} split has {rows} rows{context}, but a window needs input_len + horizon = {need}; "
                "use a shorter --input-len or --horizon, other --ratios, or a longer CSV"
            )
    train_start, train_end = borders["train"]
    scaler = Scaler.fit(table.columns, table.values[train_start:train_end])
    scaled = scaler.transform(table.values)  # (N, C) float64
    standardised = {
        name: torch.from_numpy(np.ascontiguousarray(scaled[start:end], dtype=np.float32))
        for name, (start, end) in borders.items()
    }
    ratio_tuple = tuple(float(r) for r in ratios)
    return ForecastData(
        table=table,
        targets=tuple(targets),
        target_index=target_index,
        split=split,
        ratios=ratio_tuple,  # type: ignore[arg-type]
        input_len=input_len,
        horizon=horizon,
        borders=borders,
        scaler=scaler,
        standardised=standardised,
        fill=fill,
        date_col=date_col,
        requested=requested,
    )


def load_forecast_data(
    csv: str | Path,
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
    """Read, validate, split and standardise ``csv``: :func:`read_table` then :func:`prepare`.

    Cheap checks (sizes, split name) run before the file is read. Every failure is a one-line UserError.
    """
    check_sizes(input_len, horizon)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    table = read_table(csv, date_col, fill, freq, decimal)
    data = prepare(table, target, split, ratios, input_len, horizon, date_col, fill)
    return dataclasses.replace(data, freq=freq, decimal=decimal)
