"""Wide time-series tables: a time column and numeric columns, one series whose channels are the columns.

:func:`read_table` reads and validates such a table from a CSV or Parquet path or a DataFrame; every problem a
user's file can have is found here, before anything is trained or written, and raised as a
:class:`~attnlab.errors.UserError` whose one line names the problem and the fix. :func:`table_to_panel` makes
it the one-series :class:`~attnlab.data.panel.Panel` the forecasting code reads (the long-horizon benchmarks'
"M" setting: every column a channel, input (B, L, C), forecast (B, H, C)).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from attnlab.data.panel import Panel
from attnlab.data.readers import read_frame
from attnlab.data.reading import (
    DECIMALS,
    check_order,
    looks_decimal_comma,
    quiet_pandas,
    regular_index,
    row_label,
    to_numbers,
)
from attnlab.data.times import TimeKind, find_time_column, int_freq, parse_times
from attnlab.errors import UserError

log = logging.getLogger(__name__)

FILLS = ("none", "ffill", "interpolate")


@dataclass
class Table:
    """A validated wide table: regular, increasing, unique time stamps and finite numeric columns.

    Attributes:
        path: the file read (``DataFrame`` for a frame).
        timestamps: (N,) increasing, unique, regular at ``freq``: datetimes or integer periods.
        values: (N, C) float64, no NaN (after ``fill``).
        columns: the C numeric column names, in file order.
        freq: the time stamps' frequency (a pandas alias such as ``"h"``, or the step of integer periods).
        time_kind: ``"datetime"`` or ``"int"``.
        date_col: the time column's name.
    """

    path: Path
    timestamps: pd.Index
    values: np.ndarray
    columns: tuple[str, ...]
    freq: str = ""
    time_kind: TimeKind = "datetime"
    date_col: str = "date"


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
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):  # a DataFrame's numbers
            columns.append(name)
            arrays.append(raw.to_numpy(dtype=np.float64, na_value=np.nan))
            continue
        raw = raw.astype(object).where(raw.notna(), None).astype("string")
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


def read_table(source: str | Path | pd.DataFrame, date_col: str | None = None, fill: str = "none",
               freq: str | None = None, decimal: str = ".") -> Table:
    """Read and validate a wide table of one series on a regular clock.

    Numeric columns are those with at least one numeric cell; columns with none (labels, notes) are
    ignored with a log message. The time column (``date_col``, else the first of ``ds``, ``date``, ``time``,
    …, else a pandas index written by ``to_csv``) holds datetimes or integer periods (a year, a step counter).
    The time stamps must be unique, increasing and regular: without ``freq`` their frequency is inferred, and
    a gap is an error naming ``--freq``; with ``freq``, missing stamps become rows to fill. Missing cells
    (empty, ``NaN``, ``NA``, or a missing stamp's row) are an error unless ``fill`` is ``"ffill"`` (carry the
    last value forward; leading gaps take the first value) or ``"interpolate"`` (linear in row order;
    leading/trailing gaps take the nearest value).

    Args:
        source: a CSV file (separated by ``,``, ``;``, tabs or ``|``; found from the header), a Parquet file,
            or a DataFrame.
        date_col: name of the time column (None: found as above).
        fill: ``"none"``, ``"ffill"`` or ``"interpolate"``.
        freq: the series' frequency (pandas alias: ``h``, ``D``, ``W``, ``MS`` …, or a whole step for integer
            periods); None = inferred.
        decimal: the decimal mark of the numbers, ``"."`` or ``","``.

    Raises:
        UserError: missing, unreadable or badly encoded file, no time column, unparsable / duplicated / unsorted
            / irregular time stamps, no numeric column, a non-numeric or non-finite cell, decimal commas without
            ``decimal=","``, missing cells without ``fill``.
    """
    if fill not in FILLS:
        raise UserError(f"unknown fill {fill!r}; choose one of: {', '.join(FILLS)}")
    if decimal not in DECIMALS:
        raise UserError(f"--decimal {decimal!r} must be '.' or ','")
    if isinstance(source, pd.DataFrame):
        frame, path = source, Path("DataFrame")
        if _has_time_index(source):  # a pandas time series: its DatetimeIndex is the time column
            frame = source.reset_index()
            date_col = date_col or frame.columns[0]
    else:
        frame, path = read_frame(source), Path(source)
    if len(frame) == 0:
        raise UserError(f"{path} has a header but no data rows")
    date_col = find_time_column(frame, date_col, str(path))
    with quiet_pandas():
        timestamps, kind = parse_times(frame[date_col], str(path), date_col)
    check_order(timestamps, path, date_col)
    columns, values = numeric_columns(frame, {date_col}, path, decimal)
    if not columns:
        raise UserError(f"{path} has no numeric column besides {date_col!r}; nothing to forecast")
    if kind == "datetime":
        grid, freq = regular_index(pd.DatetimeIndex(timestamps), freq, str(path))
    else:
        stamps = np.asarray(timestamps, dtype=np.int64)
        freq = int_freq(stamps, str(path), freq)
        grid = pd.Index(np.arange(stamps[0], stamps[-1] + 1, int(freq)))
    if len(grid) != len(timestamps):
        log.info("%s: %d missing time stamp(s) added on the %s grid", path.name, len(grid) - len(timestamps), freq)
        values = pd.DataFrame(values, index=timestamps).reindex(grid).to_numpy(dtype=np.float64)
    values = fill_missing(values, columns, fill, str(path))
    return Table(path, grid, values, tuple(columns), freq, kind, date_col)


def _has_time_index(frame: pd.DataFrame) -> bool:
    return isinstance(frame.index, pd.DatetimeIndex)


def table_to_panel(table: Table, inputs: Sequence[str] = (), exclude: Sequence[str] = (),
                   futr: Sequence[str] = ()) -> Panel:
    """The table as a one-series :class:`Panel`: its numeric columns in ``inputs`` (default all), minus
    ``exclude`` and the future-known covariates ``futr``, are the target channels.

    Raises:
        UserError: a named column that is not a numeric column of the table, or no channel left.
    """
    named = [*inputs, *exclude, *futr]
    unknown = [name for name in dict.fromkeys(named) if name not in table.columns]
    if unknown:
        raise UserError(f"{table.path} has no numeric column(s) {', '.join(map(repr, unknown))} (numeric columns: "
                        f"{', '.join(table.columns)})")
    channels = [c for c in table.columns if (not inputs or c in inputs) and c not in exclude and c not in futr]
    if not channels:
        raise UserError(f"{table.path}: no column is left to forecast after --inputs/--exclude")
    index = [table.columns.index(c) for c in channels]
    futr_index = [table.columns.index(c) for c in futr]
    start = table.timestamps[0] if table.time_kind == "datetime" else int(table.timestamps[0])
    return Panel(ids=(table.path.stem if table.path.name != "DataFrame" else "series",), time_kind=table.time_kind,
                 freq=table.freq, starts=[start], offsets=np.array([0, len(table.values)], dtype=np.int64),
                 target=table.values[:, index], target_names=tuple(channels), futr=table.values[:, futr_index],
                 futr_names=tuple(futr), source=str(table.path), layout="wide")


def parse_targets(target: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"OT"``, ``"OT,HUFL"``, ``["OT", "HUFL,LULL"]`` or None → a tuple of names (empty = all channels)."""
    if target is None:
        return ()
    items = [target] if isinstance(target, str) else list(target)
    names = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
    return tuple(dict.fromkeys(names))  # drop duplicates, keep order


