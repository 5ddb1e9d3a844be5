"""Time stamps of panels: parsing a time column (datetimes or integer periods), regular steps, the season of a
frequency, time ranges and calendar features."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from attnlab.data.reading import naive_times, parse_datetimes, refuse_invented_rows, usual_step
from attnlab.errors import UserError

log = logging.getLogger(__name__)

TimeKind = Literal["datetime", "int"]
# Default time column names, tried in this order when the user names none.
TIME_COLUMNS = ("ds", "date", "time", "timestamp", "datetime")
CALENDAR = ("hour", "dayofweek", "day", "month", "dayofyear", "weekofyear")
# Season (steps per cycle) by frequency family.
SEASONS = {"min": 60, "h": 24, "D": 7, "B": 5, "W": 52, "M": 12, "Q": 4, "Y": 1, "s": 60}



def time_range(start: Any, freq: str, kind: TimeKind, begin: int, stop: int) -> pd.Index:
    """Steps ``begin .. stop - 1`` of a series that starts at ``start`` with frequency ``freq``."""
    if kind == "int":
        step = int(freq)
        return pd.Index(np.arange(begin, stop, dtype=np.int64) * step + int(start), name=None)
    grid = pd.date_range(start, periods=stop, freq=freq)
    return grid[begin:stop]


def concat_times(parts: Sequence[pd.Index]) -> pd.Index:
    """Time indexes joined into one, keeping their kind (datetimes stay datetimes)."""
    if not parts:
        return pd.Index([])
    return parts[0].append(list(parts[1:])) if len(parts) > 1 else parts[0]


def season_of(freq: str, kind: TimeKind) -> int:
    """Steps per seasonal cycle of a frequency: hourly 24, daily 7, business days 5, weekly 52, monthly 12,
    quarterly 4, else 1 (integer periods: 1)."""
    if kind == "int":
        return 1
    offset = pd.tseries.frequencies.to_offset(freq)
    code = offset.rule_code  # ("name" is deprecated in pandas 3)
    base = code.split("-")[0].rstrip("SE") or code
    if len(base) > 1 and base[0] == "B" and base[1:] in SEASONS:  # business month, quarter, year ends and starts
        base = base[1:]
    if offset.n != 1:  # e.g. 15min, 2h: no standard season
        return 96 if base == "min" and offset.n == 15 else 1
    return SEASONS.get(base, SEASONS.get(base[:1], 1))


def default_input_len(horizon: int, season: int) -> int:
    """The default input length: at least three horizons and two seasons, rounded up to whole seasons."""
    need = max(3 * horizon, 2 * season)
    return season * -(-need // season)


def calendar_features(times: pd.Index, names: Sequence[str]) -> np.ndarray:
    """(T, 2·F) sine and cosine of each calendar feature's position in its cycle (hour of day, day of week…)."""
    if not isinstance(times, pd.DatetimeIndex):
        raise UserError("calendar features need datetime time stamps; this data has integer periods")
    columns = []
    for name in names:
        if name not in CALENDAR:
            raise UserError(f"unknown calendar feature {name!r}; choose from {', '.join(CALENDAR)}")
        value, period = {
            "hour": (times.hour, 24), "dayofweek": (times.day_of_week, 7), "day": (times.day - 1, 31),
            "month": (times.month - 1, 12), "dayofyear": (times.day_of_year - 1, 366),
            "weekofyear": (times.isocalendar().week.to_numpy() - 1, 53),
        }[name]
        angle = 2 * np.pi * np.asarray(value, dtype=np.float64) / period
        columns += [np.sin(angle), np.cos(angle)]
    return np.stack(columns, axis=1) if columns else np.empty((len(times), 0))


def calendar_names(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"{name}_{part}" for name in names for part in ("sin", "cos"))



def _pandas_index_column(frame: pd.DataFrame) -> str | None:
    """The column pandas' ``to_csv`` writes for its index (empty header, read back as ``Unnamed: 0``)."""
    first = frame.columns[0] if len(frame.columns) else None
    return first if first is not None and (first == "" or str(first).startswith("Unnamed: 0")) else None


def find_time_column(frame: pd.DataFrame, time_col: str | None, where: str) -> str:
    """The time column: the one named, else the first of ``ds``, ``date``, ``time`` …, else a pandas index
    written by ``to_csv`` (an unnamed first column)."""
    if time_col is not None:
        if time_col not in frame.columns:
            raise UserError(f"{where} has no column {time_col!r} (columns: {', '.join(map(str, frame.columns))}); "
                            "name its time column with --date-col")
        return time_col
    for name in TIME_COLUMNS:
        if name in frame.columns:
            return name
    index = _pandas_index_column(frame)
    if index is not None:
        log.info("using the unnamed first column of %s (a pandas index) as the time column", where)
        return index
    raise UserError(f"{where} has no time column (looked for {', '.join(TIME_COLUMNS)}; columns: "
                    f"{', '.join(map(str, frame.columns))}); name it with --date-col{_time_column_hint(frame)}")


# Column names that often hold the time but are not taken without --date-col: a `year` or `month` column may as
# well be a covariate of data whose time column has another name.
_TIME_WORDS = ("year", "period", "quarter", "month", "week", "day", "hour", "minute", "step", "date", "time")


def _time_column_hint(frame: pd.DataFrame) -> str:
    """`` (e.g. --date-col year)`` for the first column whose name holds a time word (``Year``, ``period``,
    ``order_date``; not ``holiday`` or ``Datum``), else nothing."""
    for column in map(str, frame.columns):
        if set(re.split(r"[^a-z0-9]+", column.strip().lower())) & set(_TIME_WORDS):
            quoted = column if column.replace("_", "").isalnum() else repr(column)
            return f" (e.g. --date-col {quoted})"
    return ""


def parse_times(raw: pd.Series, where: str, column: str) -> tuple[pd.Index, TimeKind]:
    """A time column as datetimes or integer periods (whole numbers, also written ``1700.0``)."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        stamps = pd.DatetimeIndex(raw)
        if stamps.tz is not None:
            stamps = naive_times(stamps, where)
        if stamps.isna().any():
            first = int(np.flatnonzero(stamps.isna())[0])
            raise UserError(f"{where}: column {column!r} has empty time stamps (the first at row {first}); every row "
                            "needs a time stamp")
        return stamps, "datetime"
    numbers = pd.to_numeric(raw, errors="coerce")
    if not numbers.isna().any() and np.all(np.mod(numbers.to_numpy(dtype=np.float64), 1) == 0):
        return pd.Index(numbers.to_numpy(dtype=np.float64).astype(np.int64)), "int"
    text_numbers = pd.to_numeric(raw.astype(str), errors="coerce")
    if text_numbers.notna().any() and text_numbers.isna().any():
        first = int(np.flatnonzero(text_numbers.isna().to_numpy())[0])
        raise UserError(f"{where}: column {column!r} mixes integer periods and dates ({raw.iloc[first]!r}); use "
                        "one kind of time stamp")
    return parse_datetimes(raw, Path(where), column), "datetime"


def int_freq(stamps: np.ndarray, where: str, freq: str | None) -> str:
    steps = np.diff(stamps)
    if freq is not None:
        try:
            step = int(freq)
        except ValueError:
            raise UserError(f"--freq {freq!r}: the time stamps are integer periods, so the frequency is a whole "
                            "step, e.g. --freq 1") from None
        if step < 1 or ((stamps - stamps[0]) % step).any():
            raise UserError(f"{where}: the periods are not multiples of --freq {freq} from {stamps[0]}")
        def usual() -> str:
            own = int(usual_step(steps))
            return f"the usual step is {own}: pass --freq {own}, or leave --freq out"

        added = (int(stamps[-1]) - int(stamps[0])) // step + 1 - len(stamps)
        refuse_invented_rows(where, freq, added, len(stamps), "periods", usual)
        return str(step)
    if len(steps) == 0:
        return "1"
    step = int(usual_step(steps))
    if (steps != step).any():
        first = int(np.flatnonzero(steps != step)[0])
        raise UserError(f"{where}: periods are not regular: {stamps[first]} is followed by {stamps[first + 1]}, the "
                        f"usual step is {step}; pass --freq {step} with --fill ffill or --fill interpolate to insert "
                        "the missing rows, or fix the data")
    return str(step)


def common_freq(freqs: list[str], ids: list[str], where: str) -> str:
    kinds = sorted(set(freqs))
    if len(kinds) > 1:
        first = next(i for i, f in enumerate(freqs) if f != freqs[0])
        raise UserError(f"{where}: series {ids[0]!r} is at frequency {freqs[0]} but {ids[first]!r} at {freqs[first]}; "
                        "pass --freq to put every series on one clock (with --fill for the rows it adds)")
    return kinds[0]
