"""Panels stored once, on disk, as memory-mapped float32 arrays: what lets a panel of 10⁵–10⁶ series train in
memory bounded by the data.

A long Parquet file is read **column by column and batch by batch** with pyarrow (never as one pandas frame)
into a *store*: a folder of ``.npy`` files, ``target`` (N, C), ``hist`` (N, Ch), ``futr`` (N, Cf) float32,
``offsets`` (S + 1,) and ``starts`` (S,) int64, and ``panel.json`` (ids, clock, column names). The panel is
then opened with every array memory-mapped (``np.load(mmap_mode="c")``): the operating system keeps the pages
a process touches in its page cache, shared by every process that maps the same file (the DDP ranks, the data
loader workers), so the data is held once per machine, and a process holds only the pages of the windows it
reads.

The streaming reader needs what a clean file has: the rows of each series together, in time order, at one
regular step (a fixed step: hours, minutes, days…), no missing values. Any other file (unsorted rows, gaps
to fill, missing cells, text columns, calendar-month steps) is read by the in-memory reader of
:mod:`attnlab.data.panel`, with all its checks and fills, and then written to a store the same way (a log line
says why). Series are ordered by id, as the in-memory reader orders them, so a CSV and a Parquet file of the
same data give the same panel (the stored values in float32).

Stores are cached under ``$ATTNLAB_CACHE`` (default ``~/.cache/attnlab``) in ``panels/<key>/``, the key a
hash of the file's path, size, modification time and the reading options: a second run (or the other DDP
ranks, or a second node's process) opens the store without reading the file again. A store is written into a
temporary folder and renamed into place, so processes that build it at the same time never see half of one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from attnlab.data.columns import Columns, choose_columns
from attnlab.data.panel import Panel
from attnlab.data.times import calendar_features, calendar_names
from attnlab.errors import UserError

log = logging.getLogger(__name__)

STORE_VERSION = 1
CACHE_ENV = "ATTNLAB_CACHE"
META = "panel.json"
ARRAYS = ("target", "hist", "futr", "offsets", "starts")
BATCH_ROWS = 1 << 18  # rows per Parquet batch read: a few MB of columns at a time
COPY_ROWS = 1 << 22  # rows per chunk when copying between stores


class NotStreamable(Exception):
    """The file needs the in-memory reader (the message says why)."""


# ---------------------------------------------------------------------------------------------- where


def cache_root() -> Path:
    """Where stores are kept: ``$ATTNLAB_CACHE``, else ``$XDG_CACHE_HOME/attnlab``, else ``~/.cache/attnlab``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "attnlab"


def store_key(path: Path, options: dict[str, Any]) -> str:
    """A key naming the store of ``path`` read with ``options``: changes with the file (size, modification time)
    and with every reading option."""
    stat = path.stat()
    identity = {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "options": options, "version": STORE_VERSION}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:20]


def store_of(panel: Panel) -> Path | None:
    """The store folder a panel's arrays are mapped from (None for a panel in memory)."""
    target = panel.target
    while target is not None and not isinstance(target, np.memmap):
        target = target.base if isinstance(target, np.ndarray) else None
    filename = getattr(target, "filename", None)
    return Path(filename).parent if filename else None


def store_bytes(folder: Path) -> int:
    """Bytes of a store's arrays (what the panel holds: values, offsets and starts)."""
    return sum((folder / f"{name}.npy").stat().st_size for name in ARRAYS)


# ---------------------------------------------------------------------------------------------- open and write


def _load(path: Path) -> np.ndarray:
    """A stored array, memory-mapped copy-on-write (writable for torch, never written back); an empty array
    (a panel without covariates) in memory, since an empty file cannot be mapped."""
    array = np.load(path, mmap_mode="c")
    return np.zeros(array.shape, dtype=array.dtype) if array.size == 0 else array


def open_store(folder: str | Path) -> Panel:
    """The panel of a store, its arrays memory-mapped.

    Raises:
        UserError: a folder that is not a store of this version.
    """
    folder = Path(folder)
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        raise UserError(f"{folder} is not a panel store (no readable {META}); delete it and read the data again") \
            from None
    if meta.get("version") != STORE_VERSION:
        raise UserError(f"{folder} is a panel store of another version ({meta.get('version')}); delete it")
    arrays = {name: _load(folder / f"{name}.npy") for name in ARRAYS}
    offsets = np.asarray(arrays["offsets"], dtype=np.int64)
    if meta["time_kind"] == "datetime":
        starts: list[Any] = list(pd.DatetimeIndex(np.asarray(arrays["starts"]).view("datetime64[ns]")))
    else:
        starts = [int(s) for s in arrays["starts"]]
    return Panel(ids=tuple(meta["ids"]), time_kind=meta["time_kind"], freq=meta["freq"], starts=starts,
                 offsets=offsets, target=arrays["target"], target_names=tuple(meta["target_names"]),
                 hist=arrays["hist"], hist_names=tuple(meta["hist_names"]), futr=arrays["futr"],
                 futr_names=tuple(meta["futr_names"]), source=meta["source"], layout="long")


def _starts_int64(panel: Panel) -> np.ndarray:
    if panel.time_kind == "datetime":
        return pd.DatetimeIndex(panel.starts).as_unit("ns").asi8.astype(np.int64)
    return np.asarray([int(s) for s in panel.starts], dtype=np.int64)


def _write_meta(folder: Path, panel_like: dict[str, Any]) -> None:
    (folder / META).write_text(json.dumps({"version": STORE_VERSION, **panel_like}) + "\n")


def _meta_of(panel: Panel, ids: Sequence[str] | None = None) -> dict[str, Any]:
    return {"ids": list(panel.ids if ids is None else ids), "time_kind": panel.time_kind, "freq": panel.freq,
            "target_names": list(panel.target_names), "hist_names": list(panel.hist_names),
            "futr_names": list(panel.futr_names), "source": panel.source}


def _publish(tmp: Path, folder: Path) -> Path:
    """Move a finished store into place; if another process got there first, keep theirs."""
    try:
        os.replace(tmp, folder) if not folder.exists() else shutil.rmtree(tmp)
    except OSError:  # the folder appeared (and is not empty) between the check and the rename
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _tmp_folder(folder: Path) -> Path:
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def write_store(panel: Panel, folder: str | Path, rows: np.ndarray | None = None) -> Path:
    """Write ``panel`` (in memory or mapped) as a store in ``folder`` (or, with ``rows`` (S,) bool, the panel of
    the series kept), copying ``COPY_ROWS`` rows at a time so a mapped panel is never held whole. Static
    covariates are not stored (they are small; the caller keeps them).

    Returns:
        ``folder``.
    """
    folder = Path(folder)
    keep = np.ones(panel.n_series, dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    index = np.flatnonzero(keep)
    lengths = panel.lengths[index]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tmp = _tmp_folder(folder)
    n = int(offsets[-1])
    for name in ("target", "hist", "futr"):
        source = getattr(panel, name)
        out = np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=np.float32, shape=(n, source.shape[1]))
        if source.shape[1] and n:
            _copy_series(source, panel.offsets, index, out)
        out.flush()
        del out
    np.save(tmp / "offsets.npy", offsets)
    np.save(tmp / "starts.npy", _starts_int64(panel)[index])
    _write_meta(tmp, _meta_of(panel, [panel.ids[s] for s in index]))
    return _publish(tmp, folder)


def _copy_series(source: np.ndarray, offsets: np.ndarray, index: np.ndarray, out: np.ndarray) -> None:
    """Rows of series ``index`` of ``source`` (in that order) into ``out``, a bounded chunk at a time."""
    lengths = offsets[index + 1] - offsets[index]
    done, s = 0, 0
    while s < len(index):
        stop = s + max(1, int(np.searchsorted(np.cumsum(lengths[s:]), COPY_ROWS, side="right")))
        chunk = index[s:stop]
        rows = _series_rows(offsets, chunk)
        out[done: done + len(rows)] = source[rows]
        done += len(rows)
        s = stop


def _series_rows(offsets: np.ndarray, series: np.ndarray) -> np.ndarray:
    """The row indices of ``series`` (in that order), concatenated, without a loop over series."""
    lengths = offsets[series + 1] - offsets[series]
    first = np.repeat(offsets[series] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return first + np.arange(int(lengths.sum()))


def select_store(panel: Panel, keep: np.ndarray) -> Panel:
    """The panel of the series where ``keep`` is true, for a panel mapped from a store: written once as a store
    beside it (``select-<hash>``), so the rows are copied a chunk at a time and never held in memory."""
    parent = store_of(panel)
    if parent is None:
        raise ValueError("select_store needs a panel mapped from a store")
    keep = np.asarray(keep, dtype=bool)
    folder = parent / f"select-{hashlib.sha256(np.packbits(keep).tobytes()).hexdigest()[:16]}"
    if not (folder / META).is_file():
        write_store(panel, folder, keep)
    selected = open_store(folder)
    if panel.static.shape[1]:
        from dataclasses import replace

        selected = replace(selected, static=panel.static[keep], static_names=panel.static_names)
    return selected


# ---------------------------------------------------------------------------------------------- Parquet


def parquet_schema_frame(path: Path) -> pd.DataFrame:
    """An empty frame with the Parquet file's columns and types (what the column checks read)."""
    import pyarrow.parquet as pq

    return pq.read_schema(path).empty_table().to_pandas()


def load_parquet_panel(path: str | Path, *, id_col: str | None = None, time_col: str | None = None,
                       target: Sequence[str] = (), inputs: Sequence[str] = (), exclude: Sequence[str] = (),
                       futr: Sequence[str] = (), freq: str | None = None, fill: str = "none", decimal: str = ".",
                       calendar: Sequence[str] = ()) -> Panel:
    """A long Parquet file as a store-backed panel (see the module docstring): opened from the cache when this
    file was already read with these options, else streamed into a store (or read in memory and stored, for a
    file the streaming reader cannot take).

    Raises:
        UserError: every problem of the file, as :func:`attnlab.data.panel.load_panel` reports it.
    """
    from attnlab.data.panel import add_calendar, panel_from_frame
    from attnlab.data.readers import read_frame

    path = Path(path)
    where = str(path)
    options = {"id_col": id_col, "time_col": time_col, "target": list(target), "inputs": list(inputs),
               "exclude": list(exclude), "futr": list(futr), "freq": freq, "fill": fill, "decimal": decimal,
               "calendar": list(calendar)}
    folder = cache_root() / "panels" / store_key(path, options)
    if (folder / META).is_file():
        log.info("panel store of %s: %s", path.name, folder)
        return open_store(folder)
    columns = choose_columns(parquet_schema_frame(path), where, id_col=id_col, time_col=time_col, target=target,
                             inputs=inputs, exclude=exclude, futr=futr)
    tmp = _tmp_folder(folder)
    try:
        _stream_parquet(path, tmp, columns, freq, tuple(calendar), where)
    except NotStreamable as reason:
        shutil.rmtree(tmp, ignore_errors=True)
        log.warning("reading %s in memory (%s); the streaming reader takes rows grouped by series, in time order, at "
                    "one regular step, without missing values", path.name, reason)
        panel = panel_from_frame(read_frame(path), where, id_col=id_col, time_col=time_col, target=target,
                                 inputs=inputs, exclude=exclude, futr=futr, freq=freq, fill=fill, decimal=decimal)
        if calendar:
            panel = add_calendar(panel, calendar)
        write_store(panel, folder)
        del panel
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    else:
        _publish(tmp, folder)
    log.info("panel store of %s: %s (%.1f MB)", path.name, folder, store_bytes(folder) / 1e6)
    return open_store(folder)


def _arrow_numbers(column: Any, name: str) -> np.ndarray:
    """A numeric Arrow column as float64 numpy (nulls as NaN)."""
    import pyarrow as pa

    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
            or pa.types.is_boolean(column.type)):
        raise NotStreamable(f"column {name!r} is {column.type}, not numbers")
    return column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False) if column.null_count == 0 else \
        column.cast(pa.float64()).to_numpy(zero_copy_only=False)


def _arrow_times(column: Any, kind: str) -> np.ndarray:
    """Time stamps as int64: nanoseconds since the epoch (naive ones; zoned ones are read in memory) or integer
    periods."""
    import pyarrow as pa

    if column.null_count:
        raise NotStreamable("empty time stamps")
    if kind == "datetime":
        if pa.types.is_timestamp(column.type) and column.type.tz is not None:
            raise NotStreamable("time stamps with a time zone")  # local dates or UTC: reading.naive_times decides
        if pa.types.is_date(column.type):
            column = column.cast(pa.timestamp("ns"))
        elif column.type.unit != "ns":
            column = column.cast(pa.timestamp("ns", column.type.tz))
        return column.cast(pa.int64()).to_numpy()
    return column.to_numpy().astype(np.int64)


def _time_kind(arrow_type: Any) -> str:
    import pyarrow as pa

    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "datetime"
    if pa.types.is_integer(arrow_type):
        return "int"
    raise NotStreamable(f"the time column is {arrow_type}, not timestamps or integer periods")


def _ids_and_labels(column: Any) -> tuple[np.ndarray, Any]:
    """(codes (n,) int64 equal for equal ids within the batch, a function code position -> id text)."""
    import pyarrow as pa

    if column.null_count:
        raise NotStreamable("empty series ids")
    if pa.types.is_dictionary(column.type):
        codes = column.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        dictionary = column.dictionary

        def labels(positions: np.ndarray) -> list[str]:
            return [str(v) for v in dictionary.take(codes[positions]).to_pylist()]
        return codes, labels
    if pa.types.is_integer(column.type):
        values = column.to_numpy().astype(np.int64)
        return values, lambda positions: [str(v) for v in values[positions]]
    raise NotStreamable(f"the id column is {column.type}")


def _fixed_step(offset: Any) -> int | None:
    """Nanoseconds of a fixed-length pandas offset (hours, minutes, seconds, days), None for calendar ones."""
    if isinstance(offset, pd.offsets.Tick):
        return int(offset.nanos)
    if type(offset).__name__ == "Day":
        return int(offset.n) * 86_400_000_000_000
    return None


def _stream_parquet(path: Path, out: Path, columns: Columns, freq: str | None, calendar: tuple[str, ...],
                    where: str) -> None:
    """Read ``path`` batch by batch into the store folder ``out`` (see the module docstring).

    Raises:
        NotStreamable: the file needs the in-memory reader.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    id_type = schema.field(columns.id_col).type
    dictionary = [columns.id_col] if pa.types.is_string(id_type) or pa.types.is_large_string(id_type) else []
    kind = _time_kind(schema.field(columns.time_col).type)
    if calendar and kind != "datetime":
        raise NotStreamable("calendar features of integer periods")
    values = [*columns.targets, *columns.hist, *columns.futr]
    nt, nh, nf = len(columns.targets), len(columns.hist), len(columns.futr)
    # One row group at a time, without pre-buffering or reader threads: read so, pyarrow's memory stays at about a
    # batch; one reader over the whole file keeps buffers that grow with the file (~20 MB per million rows).
    file = pq.ParquetFile(path, read_dictionary=dictionary, pre_buffer=False)
    n = file.metadata.num_rows
    if n == 0:
        raise NotStreamable("no rows")
    arrays = {
        "target": np.lib.format.open_memmap(out / "target.npy", mode="w+", dtype=np.float32, shape=(n, nt)),
        "hist": np.lib.format.open_memmap(out / "hist.npy", mode="w+", dtype=np.float32, shape=(n, nh)),
        "futr": np.lib.format.open_memmap(out / "futr.npy", mode="w+", dtype=np.float32,
                                          shape=(n, nf + 2 * len(calendar))),
    }
    ids: list[str] = []
    seen: set[str] = set()
    first_rows: list[int] = []  # global row of each series' first row
    starts: list[int] = []
    head: list[int] = []  # the first series' first stamps (for the frequency's name)
    step: int | None = None
    head_open = True
    last_id, last_time, row = None, 0, 0
    batches = (batch for group in range(file.metadata.num_row_groups)
               for batch in file.iter_batches(batch_size=BATCH_ROWS, row_groups=[group], use_threads=False,
                                              columns=[columns.id_col, columns.time_col, *values]))
    for batch in batches:
        size = batch.num_rows
        if size == 0:
            continue
        codes, labels = _ids_and_labels(batch.column(0))
        times = _arrow_times(batch.column(1), kind)
        new = np.empty(size, dtype=bool)
        new[1:] = codes[1:] != codes[:-1]
        new[0] = labels(np.array([0]))[0] != last_id
        run_starts = np.flatnonzero(new)
        for label in labels(run_starts):
            if label in seen:
                raise NotStreamable(f"the rows of series {label!r} are not together")
            seen.add(label)
            ids.append(label)
        first_rows += (run_starts + row).tolist()
        starts += times[run_starts].tolist()
        steps = np.empty(size, dtype=np.int64)
        steps[1:] = np.diff(times)
        steps[0] = times[0] - last_time
        within = steps[~new]
        if len(within):
            if step is None:
                step = int(within[0])
            if step <= 0 or (within != step).any():
                raise NotStreamable("the time stamps are not at one regular step in time order")
        if head_open:  # the first series' first stamps name the frequency
            bounds = run_starts[run_starts > 0] if row == 0 else (np.array([0]) if new[0] else run_starts)
            end = int(bounds[0]) if len(bounds) else size
            head += times[:end][: 64 - len(head)].tolist()
            head_open = end == size and len(head) < 64
        block = np.empty((size, len(values)), dtype=np.float64)
        for k, name in enumerate(values):
            block[:, k] = _arrow_numbers(batch.column(2 + k), name)
        if not np.isfinite(block).all():
            raise NotStreamable("missing or infinite values")
        arrays["target"][row: row + size] = block[:, :nt]
        arrays["hist"][row: row + size] = block[:, nt: nt + nh]
        arrays["futr"][row: row + size, :nf] = block[:, nt + nh:]
        if calendar:
            arrays["futr"][row: row + size, nf:] = calendar_features(pd.DatetimeIndex(times.view("datetime64[ns]")),
                                                                     calendar)
        last_id, last_time = ids[-1], int(times[-1])
        row += size
    if row != n:
        raise NotStreamable(f"read {row} rows of {n}")
    offsets = np.append(np.asarray(first_rows, dtype=np.int64), n)
    lengths = np.diff(offsets)
    if lengths.min() < 3:
        raise NotStreamable(f"series {ids[int(lengths.argmin())]!r} has {int(lengths.min())} rows")
    freq_name = _freq_name(kind, step, head, freq)
    for array in arrays.values():
        array.flush()
    order = sorted(range(len(ids)), key=ids.__getitem__)
    if order != list(range(len(ids))):  # the in-memory reader orders series by id: so does the store
        _reorder(out, arrays, offsets, np.asarray(order))
        ids = [ids[i] for i in order]
        starts = [starts[i] for i in order]
        offsets = np.concatenate([[0], np.cumsum(lengths[order])]).astype(np.int64)
    del arrays
    np.save(out / "offsets.npy", offsets)
    np.save(out / "starts.npy", np.asarray(starts, dtype=np.int64))
    _write_meta(out, {"ids": ids, "time_kind": kind, "freq": freq_name, "target_names": list(columns.targets),
                      "hist_names": list(columns.hist),
                      "futr_names": list(columns.futr) + list(calendar_names(calendar)), "source": where})


def _freq_name(kind: str, step: int | None, head: list[int], freq: str | None) -> str:
    """The panel's frequency as the in-memory reader names it, or NotStreamable where it would differ."""
    from attnlab.data.reading import infer_freq

    if step is None:
        raise NotStreamable("no series has two rows")
    if kind == "int":
        if freq is not None and freq.strip() != str(step):
            raise NotStreamable("--freq differs from the data's step")
        return str(step)
    if freq is not None:
        try:
            offset = pd.tseries.frequencies.to_offset(freq)
        except ValueError:
            raise NotStreamable(f"--freq {freq!r}") from None
    else:
        inferred = infer_freq(pd.DatetimeIndex(np.asarray(head, dtype=np.int64).view("datetime64[ns]")))
        if inferred is None:
            raise NotStreamable("no frequency inferred")
        offset = pd.tseries.frequencies.to_offset(inferred)
    if _fixed_step(offset) != step:
        raise NotStreamable(f"the frequency {offset.freqstr} is not a fixed step of {step} ns")
    return offset.freqstr if freq is not None else str(inferred)


def _reorder(out: Path, arrays: dict[str, np.ndarray], offsets: np.ndarray, order: np.ndarray) -> None:
    """Rewrite the store's arrays with the series in ``order``, a chunk at a time."""
    for name, array in arrays.items():
        if array.shape[1] == 0:
            continue
        sorted_path = out / f"{name}.sorted.npy"
        target = np.lib.format.open_memmap(sorted_path, mode="w+", dtype=np.float32, shape=array.shape)
        _copy_series(array, offsets, order, target)
        target.flush()
        del target
        os.replace(sorted_path, out / f"{name}.npy")
