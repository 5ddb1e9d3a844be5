"""Panels of time series: many series of different lengths and start times (or one series with several
channels), with covariates, stored once.

Values of all series are concatenated, one row per (series, time step), with per-series row offsets; windows
are read through an index over (series, origin) (:mod:`attnlab.data.windows`), so no window is ever
materialised and memory follows the stored data.

Two layouts reach the same :class:`Panel`:

* **long**: one row per (series id, time), a target column, any covariate columns (NeuralForecast's
  ``unique_id, ds, y``);
* **wide**: a time column and numeric columns, one series whose channels are the columns (the long-horizon
  benchmarks' CSVs, e.g. ETTh1).

The time column holds datetimes or integer periods (a year, a step counter). Each series' time stamps must be
unique, increasing and regular at the panel's frequency; missing stamps become rows to fill only when the user
names the frequency (``freq``) and a ``fill``. Covariates come in three kinds: **historical** (known up to the
forecast origin), **future-known** (known for the horizon too: calendar, prices) and **static** (one value per
series).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from attnlab.data.columns import (
    FILLS,
    ID_COLUMNS,
    choose_columns,
    fill_series,
    long_id_column,
    no_numbers,
    numeric_block,
)
from attnlab.data.readers import read_frame
from attnlab.data.reading import (
    check_order,
    quiet_pandas,
    regular_index,
    row_label,
)
from attnlab.data.times import (
    TimeKind,
    calendar_features,
    calendar_names,
    common_freq,
    concat_times,
    find_time_column,
    int_freq,
    parse_times,
    time_range,
)
from attnlab.errors import UserError

log = logging.getLogger(__name__)



@dataclass
class Panel:
    """Series stored once: values concatenated over series, row offsets per series.

    Attributes:
        ids: the S series ids.
        time_kind: ``"datetime"`` or ``"int"`` (integer periods).
        freq: the frequency: a pandas alias for datetimes (``"h"``, ``"D"``, ``"W-SUN"``…), the step as text
            for integer periods (``"1"``).
        starts: the first time stamp of each series (S,): ``pd.Timestamp`` or int.
        offsets: (S + 1,) int64 row offsets: series s is rows ``offsets[s] : offsets[s + 1]``.
        target: (N, C) float64 target channels.
        target_names: the C target names.
        hist: (N, Ch) float64 historical covariates.
        hist_names: their names.
        futr: (N, Cf) float64 future-known covariates.
        futr_names: their names.
        static: (S, Cs) float64 static covariates.
        static_names: their names.
        source: where the data came from (a path or ``"DataFrame"``), for messages.
        layout: ``"long"`` or ``"wide"``.
    """

    ids: tuple[str, ...]
    time_kind: TimeKind
    freq: str
    starts: list[Any]
    offsets: np.ndarray
    target: np.ndarray
    target_names: tuple[str, ...]
    hist: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    hist_names: tuple[str, ...] = ()
    futr: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    futr_names: tuple[str, ...] = ()
    static: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    static_names: tuple[str, ...] = ()
    source: str = "DataFrame"
    layout: str = "long"

    def __post_init__(self) -> None:
        n = int(self.offsets[-1])
        if len(self.hist) == 0:
            self.hist = np.empty((n, 0))
        if len(self.futr) == 0:
            self.futr = np.empty((n, 0))
        if len(self.static) == 0:
            self.static = np.empty((len(self.ids), 0))

    @property
    def n_series(self) -> int:
        return len(self.ids)

    @property
    def n_channels(self) -> int:
        return self.target.shape[1]

    @property
    def lengths(self) -> np.ndarray:
        """(S,) rows of each series."""
        return np.diff(self.offsets)

    def rows(self, s: int) -> slice:
        """The rows of series ``s``."""
        return slice(int(self.offsets[s]), int(self.offsets[s + 1]))

    def times(self, s: int, start: int = 0, stop: int | None = None) -> pd.Index:
        """Time stamps of steps ``start .. stop`` of series ``s`` (``stop`` may run past its end: the future)."""
        stop = int(self.lengths[s]) if stop is None else stop
        return time_range(self.starts[s], self.freq, self.time_kind, start, stop)

    def future_times(self, steps: int) -> pd.Index:
        """The time stamps of the ``steps`` steps after the end of every series, concatenated (S · steps,)."""
        return concat_times([self.times(s, int(self.lengths[s]), int(self.lengths[s]) + steps)
                             for s in range(self.n_series)])

    def select(self, keep: np.ndarray) -> Panel:
        """The panel of the series where ``keep`` (S,) bool is true. A panel mapped from a store
        (:mod:`attnlab.data.store`) gives one mapped from a store of the kept series, written a chunk at a time."""
        from attnlab.data.store import select_store, store_of

        keep = np.asarray(keep, dtype=bool)
        if store_of(self) is not None:
            return select_store(self, keep)
        idx = np.flatnonzero(keep)
        rows = np.repeat(keep, self.lengths)
        offsets = np.concatenate([[0], np.cumsum(self.lengths[idx])]).astype(np.int64)
        return replace(self, ids=tuple(self.ids[s] for s in idx), starts=[self.starts[s] for s in idx],
                       offsets=offsets, target=self.target[rows], hist=self.hist[rows], futr=self.futr[rows],
                       static=self.static[idx])

    def truncate(self, keep_last: int) -> Panel:
        """The panel without the last ``keep_last`` steps of every series (a backtest's history), in memory."""
        if keep_last <= 0:
            return self
        lengths = self.lengths - keep_last
        if (lengths < 1).any():
            raise ValueError("truncate would leave a series empty")
        position = np.arange(int(self.offsets[-1])) - np.repeat(self.offsets[:-1], self.lengths)
        rows = position < np.repeat(lengths, self.lengths)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return replace(self, offsets=offsets, target=self.target[rows], hist=self.hist[rows], futr=self.futr[rows])

    def to_frame(self, id_col: str = "unique_id", time_col: str = "ds") -> pd.DataFrame:
        """The long table: id, time, targets, historical and future covariates."""
        frames = []
        for s in range(self.n_series):
            rows = self.rows(s)
            data = {id_col: self.ids[s], time_col: self.times(s)}
            for k, name in enumerate(self.target_names):
                data[name] = self.target[rows, k]
            for k, name in enumerate(self.hist_names):
                data[name] = self.hist[rows, k]
            for k, name in enumerate(self.futr_names):
                data[name] = self.futr[rows, k]
            frames.append(pd.DataFrame(data))
        return pd.concat(frames, ignore_index=True)


def panel_from_frame(
    frame: pd.DataFrame,
    where: str = "DataFrame",
    *,
    id_col: str | None = None,
    time_col: str | None = None,
    target: Sequence[str] = (),
    inputs: Sequence[str] = (),
    exclude: Sequence[str] = (),
    futr: Sequence[str] = (),
    freq: str | None = None,
    fill: str = "none",
    decimal: str = ".",
    calendar: Sequence[str] = (),
) -> Panel:
    """Read a long table into a :class:`Panel` (see :func:`choose_columns` for the columns' parts).

    Each series is sorted by time and checked: unique, regular stamps at one frequency for the whole panel (the
    one inferred per series, or ``freq``); missing stamps and cells are filled only by ``fill``.

    Raises:
        UserError: every problem of the table, in one line naming the series and the fix.
    """
    if fill not in FILLS:
        raise UserError(f"unknown fill {fill!r}; choose one of: {', '.join(FILLS)}")
    if len(frame) == 0:
        raise UserError(f"{where} has no data rows")
    columns = choose_columns(frame, where, id_col=id_col, time_col=time_col, target=target, inputs=inputs,
                             exclude=exclude, futr=futr)
    with quiet_pandas():
        times, kind = parse_times(frame[columns.time_col], where, columns.time_col)
    values = numeric_block(frame, [*columns.targets, *columns.hist, *columns.futr], where, decimal,
                           targets=columns.targets)
    raw_ids = frame[columns.id_col]
    if raw_ids.isna().any():
        raise UserError(f"{where}: column {columns.id_col!r} has empty ids (the first at row "
                        f"{int(np.flatnonzero(raw_ids.isna().to_numpy())[0])}); every row needs a series id")
    ids = raw_ids.astype(str).to_numpy()
    order = np.lexsort((np.asarray(times.asi8 if kind == "datetime" else times), ids))
    sorted_ids = ids[order]
    cuts = np.flatnonzero(sorted_ids[1:] != sorted_ids[:-1]) + 1
    parts = zip(np.split(sorted_ids, cuts), np.split(order, cuts), strict=True)
    groups = [(str(part[0]), rows) for part, rows in parts]
    freqs, chunks, starts, names = [], [], [], []
    width = len(columns.targets) + len(columns.hist) + len(columns.futr)
    for series_id, rows in groups:
        what = f"{where}, series {series_id!r}"
        stamps = times[rows]
        repeated = np.flatnonzero(np.diff(np.asarray(stamps)).astype(np.int64) == 0)
        if len(repeated):  # named by its row in the table (the series' rows are sorted, and may be interleaved)
            i = int(repeated[0]) + 1
            raise UserError(f"{what}: time stamp {stamps[i]} is duplicated at {row_label(int(rows[i]))}; remove or "
                            "merge the duplicate rows")
        check_order(pd.Index(stamps), Path(what), columns.time_col)
        if kind == "datetime":
            grid, series_freq = regular_index(pd.DatetimeIndex(stamps), freq, what)
            block = values[rows]
            if len(grid) != len(stamps):
                block = pd.DataFrame(block, index=pd.DatetimeIndex(stamps)).reindex(grid).to_numpy(np.float64)
            starts.append(grid[0])
        else:
            arr = np.asarray(stamps, dtype=np.int64)
            series_freq = int_freq(arr, what, freq)
            step = int(series_freq)
            full = np.arange(arr[0], arr[-1] + 1, step)
            block = values[rows]
            if len(full) != len(arr):
                block = pd.DataFrame(block, index=arr).reindex(full).to_numpy(np.float64)
            starts.append(int(arr[0]))
        names.append(series_id)
        freqs.append(series_freq)
        chunks.append(fill_series(block.reshape(-1, width), fill, what,
                                  [*columns.targets, *columns.hist, *columns.futr]))
    common = common_freq(freqs, names, where)
    data = np.concatenate(chunks)
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in chunks])]).astype(np.int64)
    nt, nh = len(columns.targets), len(columns.hist)
    panel = Panel(ids=tuple(names), time_kind=kind, freq=common, starts=starts, offsets=offsets,
                  target=data[:, :nt], target_names=columns.targets, hist=data[:, nt:nt + nh],
                  hist_names=columns.hist, futr=data[:, nt + nh:], futr_names=columns.futr, source=where,
                  layout="long")
    return add_calendar(panel, calendar) if calendar else panel


def load_panel(
    source: str | Path | pd.DataFrame,
    *,
    id_col: str | None = None,
    time_col: str | None = None,
    target: Sequence[str] = (),
    inputs: Sequence[str] = (),
    exclude: Sequence[str] = (),
    futr: Sequence[str] = (),
    freq: str | None = None,
    fill: str = "none",
    decimal: str = ".",
    calendar: Sequence[str] = (),
    static: str | Path | pd.DataFrame | None = None,
) -> Panel:
    """A CSV or Parquet path, or a DataFrame, as a :class:`Panel`: long if it has a series id column (``id_col``,
    or ``unique_id``, ``id``, …), else wide (one series, its numeric columns the channels; see
    :func:`attnlab.data.timeseries.read_table`). Calendar features become future-known covariates; ``static`` is
    a table of one row per series id.

    Raises:
        UserError: every problem of the data, in one line naming the fix.
    """
    from attnlab.data.timeseries import read_table, table_to_panel

    if not isinstance(source, pd.DataFrame) and Path(source).suffix.lower() in (".parquet", ".pq"):
        from attnlab.data.store import load_parquet_panel, parquet_schema_frame
        from attnlab.paths import readable_file

        readable_file(Path(source), "Parquet file", "--csv")
        try:
            schema = parquet_schema_frame(Path(source))
        except ImportError:
            raise UserError(f"reading {Path(source).name} needs pyarrow: pip install pyarrow (or pass a CSV)") from None
        except Exception as err:  # pyarrow's errors for a file that is not Parquet
            raise UserError(f"{source} is not a Parquet file ({str(err).splitlines()[0][:120]}); pass a Parquet or "
                            "CSV file") from None
        if id_col is not None or long_id_column(schema) is not None:  # long: streamed into a memory-mapped store
            panel = load_parquet_panel(source, id_col=id_col, time_col=time_col, target=target, inputs=inputs,
                                       exclude=exclude, futr=futr, freq=freq, fill=fill, decimal=decimal,
                                       calendar=calendar)
            if static is not None:
                static_frame = static if isinstance(static, pd.DataFrame) else read_frame(static, "--static-csv")
                panel = static_from_frame(panel, static_frame, "DataFrame" if isinstance(static, pd.DataFrame)
                                          else str(static), id_col)
            return panel
    frame = source if isinstance(source, pd.DataFrame) else read_frame(source)
    where = "DataFrame" if isinstance(source, pd.DataFrame) else str(source)
    if id_col is not None or long_id_column(frame) is not None:
        panel = panel_from_frame(frame, where, id_col=id_col, time_col=time_col, target=target, inputs=inputs,
                                 exclude=exclude, futr=futr, freq=freq, fill=fill, decimal=decimal)
    else:
        table = read_table(frame if isinstance(source, pd.DataFrame) else source, time_col, fill, freq, decimal)
        panel = table_to_panel(table, inputs, exclude, futr)
        if target:
            missing = [t for t in target if t not in panel.target_names]
            text = [t for t in missing if t in frame.columns and t not in (*exclude, *futr)]
            if text:  # a column of the file, but not one of numbers
                raise no_numbers(frame, text[0], where)
            if missing:
                raise UserError(f"unknown target column(s) {', '.join(map(repr, missing))} in {where}; available: "
                                f"{', '.join(panel.target_names)} (or --all)")
    if calendar:
        panel = add_calendar(panel, calendar)
    if static is not None:
        static_frame = static if isinstance(static, pd.DataFrame) else read_frame(static, "--static-csv")
        panel = static_from_frame(panel, static_frame, "DataFrame" if isinstance(static, pd.DataFrame) else str(static),
                                  id_col)
    return panel


def future_covariates(
    source: str | Path | pd.DataFrame,
    columns: Sequence[str],
    *,
    id_col: str | None = None,
    time_col: str | None = None,
    freq: str | None = None,
    calendar: Sequence[str] = (),
) -> Panel:
    """Future-known covariates for the horizon (a long table: series id, time, ``columns``) as a panel whose
    ``futr`` holds them (and the calendar features of its time stamps); no target.

    Raises:
        UserError: a missing column (named), missing values, irregular time stamps.
    """
    frame = source if isinstance(source, pd.DataFrame) else read_frame(source, "--futr-csv")
    where = "the future covariates" if isinstance(source, pd.DataFrame) else str(source)
    id_col = id_col or long_id_column(frame)
    time = find_time_column(frame, time_col, where)
    missing = [c for c in [id_col or "unique_id", *columns] if c not in frame.columns]
    if missing:
        raise UserError(f"{where} lacks the column(s) {', '.join(map(repr, missing))} (the model takes the "
                        f"future-known covariates {', '.join(columns) or '(calendar only)'})")
    holder = frame[[id_col, time, *columns]].copy()
    given = numeric_block(holder, list(columns), where, ".")
    if np.isnan(given).any():
        row, column = (int(i[0]) for i in np.nonzero(np.isnan(given)))
        raise UserError(f"{where}: column {columns[column]!r} has no value at {row_label(row)}; give every step of "
                        "the horizon a value")
    # The placeholder target numbers the given rows: a row added for a missing time stamp repeats its neighbour's.
    holder["__target__"] = np.arange(len(holder), dtype=np.float64)
    panel = panel_from_frame(holder, where, id_col=id_col, time_col=time, target=("__target__",), futr=columns,
                             freq=freq, fill="ffill")
    for s in range(panel.n_series):
        added = np.flatnonzero(np.diff(panel.target[panel.rows(s), 0]) == 0)
        if len(added):
            stamp = panel.times(s, int(added[0]) + 1, int(added[0]) + 2)[0]
            raise UserError(f"the future covariates of series {panel.ids[s]!r} lack {stamp} (they must cover every "
                            f"step of the horizon); column(s) {', '.join(columns)}")
    return add_calendar(panel, calendar) if calendar else panel


def add_calendar(panel: Panel, names: Sequence[str]) -> Panel:
    """The panel with calendar features of its time stamps added as future-known covariates."""
    if panel.time_kind != "datetime":
        raise UserError("calendar features need datetime time stamps; this data has integer periods")
    blocks = [calendar_features(panel.times(s), names) for s in range(panel.n_series)]
    return replace(panel, futr=np.concatenate([panel.futr, np.concatenate(blocks)], axis=1),
                   futr_names=panel.futr_names + calendar_names(names))


def static_from_frame(panel: Panel, frame: pd.DataFrame, where: str, id_col: str | None = None) -> Panel:
    """Attach static covariates (one row per series id, numeric columns) to ``panel``.

    Raises:
        UserError: no id column, an id that is not in the panel, a duplicated id, a series without a row, a
            non-numeric or missing cell.
    """
    id_col = id_col or next((name for name in ID_COLUMNS if name in frame.columns), None)
    if id_col is None or id_col not in frame.columns:
        raise UserError(f"{where} has no id column (looked for {id_col or ', '.join(ID_COLUMNS)}); the static "
                        "covariates need one row per series id")
    ids = frame[id_col].astype(str)
    dup = ids[ids.duplicated()]
    if len(dup):
        raise UserError(f"{where}: series id {dup.iloc[0]!r} appears {int((ids == dup.iloc[0]).sum())} times; give "
                        "one row per series")
    unknown = sorted(set(ids) - set(panel.ids))  # sets built once: a panel may hold 10^5-10^6 series
    if unknown:
        raise UserError(f"{where}: id(s) {', '.join(map(repr, unknown[:3]))} are not series of the data")
    given = set(ids)
    missing = [s for s in panel.ids if s not in given]
    if missing:
        raise UserError(f"{where} has no row for series {', '.join(map(repr, missing[:3]))}"
                        + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""))
    names = [c for c in frame.columns if c != id_col]
    block = numeric_block(frame, names, where, ".")
    if np.isnan(block).any():
        raise UserError(f"{where} has missing static values; give every series a value for every column")
    order = {series: i for i, series in enumerate(ids)}
    return replace(panel, static=block[[order[s] for s in panel.ids]], static_names=tuple(names))
