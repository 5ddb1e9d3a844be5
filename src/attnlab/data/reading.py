"""Reading users' tables: a CSV file's encoding and separator, numbers with a decimal comma, time columns
with mixed offsets or day-first dates, and the regularity of the time stamps.

Every problem is a :class:`~attnlab.errors.UserError` whose one line names the problem and the fix; pandas'
own warnings never reach the user. Rows are numbered as the protocol does (0-based data rows), with the file
line beside them.
"""

from __future__ import annotations

import codecs
import logging
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from attnlab.errors import UserError
from attnlab.paths import readable_file

log = logging.getLogger(__name__)

SEPARATORS = (",", ";", "\t", "|")
DECIMALS = (".", ",")
_COMMA_NUMBER = re.compile(r"^[+-]?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?([eE][+-]?\d+)?$")  # 1.234,5 or 0,5403 or 12
_SNIFF_BYTES = 1 << 16


def row_label(i: int) -> str:
    """A data row for messages: its 0-based index (the protocol's numbering) and its line in the file."""
    return f"row {i} (file line {i + 2})"


@contextmanager
def quiet_pandas() -> Iterator[None]:
    """Silence pandas' warnings (date-format inference, dtype guesses): the reader reports problems itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _check_encoding(path: Path, head: bytes) -> None:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UserError(f"{path} is UTF-16 text; re-encode it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8 "
                        f"{path.name} > {path.stem}-utf8{path.suffix}, or save it as 'CSV UTF-8')")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not just a character cut by the sniffing window
            raise UserError(
                f"{path} is not UTF-8 (byte 0x{head[err.start]:02x} at byte {err.start + 1}; it looks like Latin-1 or "
                f"Windows-1252); re-encode it as UTF-8 (e.g. iconv -f latin1 -t utf-8 {path.name} > "
                f"{path.stem}-utf8{path.suffix})"
            ) from None


def sniff_separator(header: str) -> str:
    """The separator of a CSV from its header line: the one of ``, ; TAB |`` that splits it into the most fields
    (a comma when none does)."""
    counts = {sep: header.count(sep) for sep in SEPARATORS}
    best = max(SEPARATORS, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def read_text_table(path: str | Path, flag: str = "--csv") -> pd.DataFrame:
    """Read a delimited text file into a DataFrame of strings (missing cells NaN), every check done first.

    The separator is found from the header line (``,``, ``;``, tab or ``|``; a non-comma one is logged).

    Raises:
        UserError: a missing, unreadable or empty file, UTF-16 or non-UTF-8 text, rows with more fields than
            the header, or a header without data rows.
    """
    path = readable_file(path, "CSV file", flag)
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if not head.strip():
        raise UserError(f"{path} is empty; pass a CSV file with a header row and data rows")
    _check_encoding(path, head)
    header = head.decode("utf-8", errors="ignore").lstrip("\ufeff").splitlines()[0]
    sep = sniff_separator(header)
    if sep != ",":
        log.info("reading %s as %s-separated", path.name, {"\t": "tab", ";": "';'", "|": "'|'"}[sep])
    try:
        with quiet_pandas():
            frame = pd.read_csv(path, dtype=str, sep=sep, skipinitialspace=True, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not a readable CSV file ({str(err).strip().splitlines()[0]}); pass a "
                        "comma-separated file with one header row and as many fields on every line") from None
    if not isinstance(frame.index, pd.RangeIndex):  # pandas made the extra first field of every row an index
        raise UserError(f"{path}: every data line has more fields than the header row ({len(frame.columns)}); "
                        "pass a comma-separated file with as many fields on every line as in the header")
    frame.columns = [str(c).strip() for c in frame.columns]
    filled = np.flatnonzero(frame.notna().any(axis=1).to_numpy())
    trailing = len(frame) - (int(filled[-1]) + 1 if len(filled) else 0)
    if trailing:  # ",,," lines at the end (a spreadsheet's export) hold no data; earlier ones keep their row numbers
        log.info("%s: dropped %d empty row(s) at its end (every cell empty)", path.name, trailing)
        frame = frame.iloc[:len(frame) - trailing]
    if len(frame) == 0:
        raise UserError(f"{path} has a header but no data rows")
    return frame


def to_numbers(raw: pd.Series, decimal: str = ".") -> np.ndarray:
    """A column of strings as float64 (missing and unparsable cells NaN). With ``decimal=","``, ``1.234,5``
    reads as 1234.5."""
    text = raw
    if decimal == ",":
        text = raw.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    return pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def looks_decimal_comma(raw: pd.Series) -> bool:
    """True if the column's non-missing cells are numbers written with a decimal comma (``0,5403``) and at least
    one of them has one (a column of plain integers is not)."""
    cells = raw.dropna().astype(str).str.strip()
    cells = cells[cells != ""]
    return bool(len(cells)) and bool(cells.str.contains(",").any()) and bool(cells.str.match(_COMMA_NUMBER).all())


# ---------------------------------------------------------------------------------------------- time stamps


def parse_datetimes(raw: pd.Series, path: Path, column: str) -> pd.DatetimeIndex:
    """Parse a time column into naive datetimes.

    The format is inferred from the first value (fast); dates that only parse day-first (``13/01/2020``) are
    read day-first; stamps with UTC offsets lose them as :func:`naive_times` says (local dates for daily and
    coarser data, else UTC).

    Raises:
        UserError: an empty cell or a value that is not a date (row and value named).
    """
    missing = raw.isna().to_numpy()
    if missing.any():
        first = int(np.flatnonzero(missing)[0])
        raise UserError(f"{path}: column {column!r} has {int(missing.sum())} empty time stamp(s), the first at "
                        f"{row_label(first)}; every row needs a time stamp")
    text = raw.astype(str).str.strip()
    parsed, local = None, None
    with quiet_pandas():
        for kwargs in ({}, {"dayfirst": True}, {"format": "mixed"}, {"format": "mixed", "dayfirst": True}):
            wall = None
            try:
                candidate = pd.to_datetime(text, errors="coerce", **kwargs)
            except (ValueError, TypeError):  # different offsets: the instants in UTC, and each stamp's wall clock
                candidate = pd.to_datetime(text, errors="coerce", utc=True, **kwargs)
                wall = candidate.dt.tz_localize(None) + _utc_offsets(text)
            if not candidate.isna().any() and _increasing(candidate):
                parsed, local = candidate, wall
                if kwargs.get("dayfirst"):
                    log.info("read the dates of %s day-first (e.g. %s)", path.name, text.iloc[-1])
                break
            if parsed is None:
                parsed, local = candidate, wall
    assert parsed is not None
    bad = parsed.isna().to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise UserError(f"{path}: cannot parse {text.iloc[first]!r} in column {column!r} at {row_label(first)} as a "
                        "date; use ISO dates such as 2016-07-01 00:00:00, or name the time column with --date-col")
    if getattr(parsed.dt, "tz", None) is not None:
        return naive_times(pd.DatetimeIndex(parsed), path.name,
                           None if local is None else pd.DatetimeIndex(local))
    return pd.DatetimeIndex(parsed)


def _utc_offsets(text: pd.Series) -> pd.TimedeltaIndex:
    """Each stamp's UTC offset (``+02:00``, ``-0530``, ``Z``; none is 0) as a timedelta."""
    parts = text.str.extract(r"([+-])(\d{2}):?(\d{2})$")
    sign = np.where(parts[0] == "-", -1, 1)
    minutes = sign * (pd.to_numeric(parts[1]).fillna(0) * 60 + pd.to_numeric(parts[2]).fillna(0)).to_numpy()
    return pd.to_timedelta(minutes, unit="min")


def naive_times(stamps: pd.DatetimeIndex, name: str, local: pd.DatetimeIndex | None = None) -> pd.DatetimeIndex:
    """Time stamps with a zone (or UTC offsets) as naive datetimes, on the clock where they are regular.

    When every stamp is at the same local time of day (daily, weekly, monthly data), they keep their local
    dates and times, so that summer time does not move a day's stamp to 23:00 of the day before. Otherwise
    (hours, minutes) they are converted to UTC, where a day of summer-time change has no missing or repeated
    hour. ``local``: the wall-clock times of stamps that had different offsets (``stamps`` are then in UTC).
    """
    mixed = local is not None
    if local is None:
        local = stamps.tz_localize(None)
    time_of_day = np.asarray(local - local.normalize())
    if len(local) and (time_of_day == time_of_day[0]).all():
        if (stamps.tz_convert("UTC").tz_localize(None) != local).any():
            log.info("time stamps of %s have %s, each at the same local time of day: kept as local dates and "
                     "times", name, "different UTC offsets" if mixed else "a time zone")
        return pd.DatetimeIndex(local)
    utc = stamps.tz_convert("UTC").tz_localize(None)
    if (utc != local).any():
        log.info("time stamps of %s have %s: converted to UTC", name,
                 "different UTC offsets" if mixed else "a time zone")
    return utc


def _increasing(stamps: pd.Series) -> bool:
    values = stamps.to_numpy()
    return bool(len(values) < 2 or (values[1:] >= values[:-1]).all())


def check_order(index: pd.Index, path: Path, column: str, what: str = "") -> None:
    """Time stamps must be unique and increasing.

    Raises:
        UserError: a duplicated stamp (named, with its row) or one that goes back in time.
    """
    steps = np.diff(np.asarray(index.values)).astype(np.int64)  # the sign and zero are what matter
    where = f"{path}{what}"
    if (steps == 0).any():
        first = int(np.flatnonzero(steps == 0)[0]) + 1
        raise UserError(f"{where}: time stamp {index[first]} is duplicated at {row_label(first)}; remove or merge "
                        "the duplicate rows")
    if (steps < 0).any():
        first = int(np.flatnonzero(steps < 0)[0]) + 1
        raise UserError(f"{where}: time stamps are not increasing: {row_label(first)} ({index[first]}) comes after "
                        f"{index[first - 1]}; sort the file by {column!r}")


def infer_freq(index: pd.DatetimeIndex) -> str | None:
    """pandas' offset alias of a regular index (``"h"``, ``"D"``, ``"W-SUN"``, ``"MS"``…), None if irregular."""
    if len(index) < 3:
        return None
    with quiet_pandas():
        try:  # pandas >= 3 returns an offset under this option (and warns without it)
            with pd.option_context("future.infer_freq_returns_offset", True):
                inferred = pd.infer_freq(index)
        except KeyError:  # older pandas: no such option, a string
            inferred = pd.infer_freq(index)
    return None if inferred is None else pd.tseries.frequencies.to_offset(inferred).freqstr


def regular_index(index: pd.DatetimeIndex, freq: str | None, what: str) -> tuple[pd.DatetimeIndex, str]:
    """The regular grid a series lives on, and its frequency.

    Without ``freq`` the stamps must already be regular (their frequency is inferred). With ``freq`` (a pandas
    alias such as ``h``, ``D``, ``W``, ``MS``) the grid runs from the first to the last stamp at that frequency;
    missing stamps become rows to fill.

    Raises:
        UserError: irregular stamps without ``freq`` (the first gap named, with the fix), an unknown ``freq``, or
            stamps that are not on its grid.
    """
    if freq is None:
        inferred = infer_freq(index)
        if inferred is not None:
            return index, inferred
        if len(index) < 3:
            raise UserError(f"{what} has {len(index)} time stamp(s), too few to infer their frequency; pass --freq")
        steps = np.diff(index.values)  # timedelta64, in the index's own unit
        step = usual_step(steps)
        usual = pd.Timedelta(step)
        first = int(np.flatnonzero(steps != step)[0])
        raise UserError(
            f"{what}: time stamps are not regular: {index[first]} is followed by {index[first + 1]} (row "
            f"{first + 1}), the usual step is {usual}; pass --freq (e.g. --freq {_alias(usual)}) with --fill ffill "
            "or --fill interpolate to insert the missing rows, or fix the file"
        )
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
    except ValueError:
        raise UserError(f"--freq {freq!r} is not a pandas frequency; use e.g. h (hourly), D, W, MS (monthly), "
                        "QS, YS") from None
    grid = pd.date_range(index[0], index[-1], freq=offset)
    off_grid = index.difference(grid)
    if len(off_grid):
        stamp = off_grid[0]
        raise UserError(f"{what}: time stamp {stamp} is not on the --freq {freq} grid{_why_off(offset, stamp)}; "
                        f"{_own_freq_hint(index)}")
    refuse_invented_rows(what, freq, len(grid) - len(index), len(index), "time stamps",
                         lambda: _own_freq_hint(index))
    return grid, offset.freqstr


def refuse_invented_rows(what: str, freq: str, added: int, kept: int, unit: str, fix: Callable[[], str]) -> None:
    """Refuse a ``--freq`` whose grid would add more rows (``added``) to a series than it has (``kept``): most of
    the result would be invented by the fill. ``fix()`` gives the message's fix."""
    if added > kept:
        raise UserError(f"{what}: --freq {freq} would add {added:,} {unit} to its {kept:,} "
                        f"({100 * added / (added + kept):.0f} % of the rows invented); {fix()}")


def _why_off(offset: pd.DateOffset, stamp: pd.Timestamp) -> str:
    """Why ``stamp`` misses the grid of a weekly ``offset``: its weekday (``" (weeks ending on Sunday; 2015-01-01
    is a Thursday)"``); empty for other offsets."""
    weekday = getattr(offset, "weekday", None)
    if not isinstance(offset, pd.offsets.Week) or weekday is None or stamp.weekday() == weekday:
        return ""
    day = pd.Timestamp("2024-01-01") + pd.Timedelta(days=int(weekday))  # 2024-01-01 is a Monday
    return f" (weeks ending on {day.day_name()}; {stamp.date()} is a {stamp.day_name()})"


def usual_step(steps: np.ndarray) -> Any:
    """The most common of ``steps`` (the differences of a series' time stamps; the smallest on a tie)."""
    kinds, counts = np.unique(steps, return_counts=True)
    return kinds[counts.argmax()]


def _own_freq_hint(index: pd.DatetimeIndex) -> str:
    """The fix for stamps off a ``--freq`` grid: the series' own frequency, inferred (or its usual step)."""
    own = infer_freq(index)
    if own is not None:
        return f"pass --freq {own}, the series' own frequency, or leave --freq out"
    if len(index) < 2:
        return "pass the series' own frequency with --freq"
    usual = pd.Timedelta(usual_step(np.diff(index.values)))
    return f"pass the series' own frequency with --freq (its usual step is {usual}: --freq {_alias(usual)})"


def _alias(step: pd.Timedelta) -> str:
    """A pandas alias for a fixed step (``h``, ``15min``, ``D``, ``7D``…), for messages."""
    seconds = step.total_seconds()
    for unit, size in (("D", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return unit if n == 1 else f"{n}{unit}"
    return f"{step.value}ns"
