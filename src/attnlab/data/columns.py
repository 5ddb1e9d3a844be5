"""The columns of a panel's frame: which are the id, target and covariate columns, and their values read as
numbers (decimal commas named, missing values filled only on request)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from attnlab.data.reading import looks_decimal_comma, to_numbers
from attnlab.data.times import find_time_column
from attnlab.errors import UserError

log = logging.getLogger(__name__)

FILLS = ("none", "ffill", "interpolate")
# Default id column names, tried in this order when the user names none.
ID_COLUMNS = ("unique_id", "id", "series", "series_id")


def numeric_block(frame: pd.DataFrame, columns: Sequence[str], where: str, decimal: str,
                  targets: Sequence[str] = ()) -> np.ndarray:
    """(N, K) float64 of ``columns``; NaN where a cell is missing. A cell that is not a number is an error naming
    it (and a fix: for one of the ``targets``, which cannot be left out, filling the emptied cell); decimal commas
    name ``--decimal ,``."""
    out = np.empty((len(frame), len(columns)))
    for k, name in enumerate(columns):
        raw = frame[name]
        if raw.dtype == object or pd.api.types.is_string_dtype(raw):
            if decimal == "." and looks_decimal_comma(raw):
                raise UserError(f"{where}: column {name!r} holds numbers written with a decimal comma; pass "
                                "--decimal , to read them")
            values = to_numbers(raw.astype("string").astype(object).where(raw.notna(), None), decimal)
            bad = np.isnan(values) & raw.notna().to_numpy()
        else:
            values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad = np.zeros(len(values), dtype=bool)
        bad |= np.isinf(values)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            fix = ("fix the cell, or empty it and pass --fill ffill or --fill interpolate" if name in targets
                   else "fix the cell or leave the column out with --exclude")
            raise UserError(f"{where}: column {name!r} has a non-numeric value {raw.iloc[first]!r} at row {first}; "
                            f"{fix}")
        out[:, k] = values
    return out


def fill_series(values: np.ndarray, fill: str, where: str, names: Sequence[str]) -> np.ndarray:
    """Fill the NaN cells of one series' (T, K) values by ``fill`` (``none`` makes them an error)."""
    holes = np.isnan(values)
    if not holes.any():
        return values
    empty = [names[c] for c in np.flatnonzero(holes.all(axis=0))]
    if empty:
        raise UserError(f"{where}: column(s) {', '.join(map(repr, empty))} hold no value at all; leave them out "
                        "(--exclude) or fix the data")
    if fill == "none":
        column = int(np.flatnonzero(holes.any(axis=0))[0])
        raise UserError(f"{where} has {int(holes.sum())} missing value(s) (the first in {names[column]!r} at step "
                        f"{int(np.flatnonzero(holes[:, column])[0])}); fill them with --fill ffill or --fill "
                        "interpolate, or fix the data")
    frame = pd.DataFrame(values)
    frame = frame.ffill().bfill() if fill == "ffill" else frame.interpolate(method="linear", limit_direction="both")
    return frame.to_numpy(dtype=np.float64)


def long_id_column(frame: pd.DataFrame) -> str | None:
    """The series id column of a long table (``unique_id``, ``id``, ``series``, ``series_id``), None if none."""
    return next((name for name in ID_COLUMNS if name in frame.columns), None)


@dataclass
class Columns:
    """Which columns play which part."""

    id_col: str
    time_col: str
    targets: tuple[str, ...]
    hist: tuple[str, ...]
    futr: tuple[str, ...]


def choose_columns(
    frame: pd.DataFrame,
    where: str,
    *,
    id_col: str | None,
    time_col: str | None,
    target: Sequence[str] = (),
    inputs: Sequence[str] = (),
    exclude: Sequence[str] = (),
    futr: Sequence[str] = (),
) -> Columns:
    """Name the columns' parts.

    The long layout: ``id_col`` names the series (found as ``unique_id``, ``id``, … when not given); the targets
    are ``target`` (default ``y``, else the one numeric column); the other numeric columns in ``inputs``
    (default: all) are covariates, future-known if named in ``futr``, else historical.

    Raises:
        UserError: a named column that does not exist, an excluded target, a target that is also a covariate.
    """
    time = find_time_column(frame, time_col, where)
    id_col = id_col or long_id_column(frame)
    if id_col is None:
        raise UserError(f"{where} has no series id column (looked for {', '.join(ID_COLUMNS)}); name it with --id-col")
    if id_col not in frame.columns:
        raise UserError(f"{where} has no id column {id_col!r} (columns: {', '.join(map(str, frame.columns))}); "
                        "name it with --id-col, or leave --id-col out for a single series")
    named = [*target, *inputs, *exclude, *futr]
    missing = [name for name in dict.fromkeys(named) if name not in frame.columns]
    if missing:
        raise UserError(f"{where} has no column(s) {', '.join(map(repr, missing))} (columns: "
                        f"{', '.join(map(str, frame.columns))})")
    used = {time, id_col}
    candidates = [c for c in frame.columns if c not in used and c not in exclude]
    if inputs:  # the covariates to use; the target (named, or the default y) is always read
        candidates = [c for c in candidates if c in inputs or c in target or c in futr or (not target and c == "y")]
    bad_target = [t for t in target if t in exclude]
    if bad_target:
        raise UserError(f"target column(s) {', '.join(map(repr, bad_target))} cannot be excluded")
    clash = [t for t in target if t in futr]
    if clash:
        raise UserError(f"column(s) {', '.join(map(repr, clash))} cannot be both a target and a future covariate")
    numeric = [c for c in candidates if _is_numeric(frame[c])]
    dropped = [c for c in candidates if c not in numeric and c not in target and c not in futr]
    if dropped:
        log.info("ignoring column(s) of %s without numbers: %s", Path(where).name, ", ".join(map(str, dropped)))
    if target:
        targets = tuple(target)
    elif "y" in numeric:
        targets = ("y",)
    elif "y" in candidates:  # the default target is there but holds no numbers: not another column in its place
        raise no_numbers(frame, "y", where)
    elif len([c for c in numeric if c not in futr]) == 1:
        targets = (next(c for c in numeric if c not in futr),)
    else:
        raise UserError(f"{where}: which column is the target? pass --target COL (numeric columns: "
                        f"{', '.join(map(str, numeric))})")
    covariates = [c for c in numeric if c not in targets]
    return Columns(id_col, time, targets, tuple(c for c in covariates if c not in futr),
                   tuple(c for c in covariates if c in futr))


def no_numbers(frame: pd.DataFrame, name: str, where: str) -> UserError:
    """The error for a target column ``name`` of ``frame`` in which no cell is a number."""
    cells = frame[name].dropna()
    example = f" (e.g. {cells.iloc[0]!r})" if len(cells) else ""
    return UserError(f"{where}: the target column {name!r} holds no numbers{example}; fix its cells, or name a "
                     "numeric target column with --target")


def _is_numeric(raw: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(raw):
        return True
    text = raw.dropna().astype(str).str.strip()
    return bool(len(text)) and (pd.to_numeric(text, errors="coerce").notna().any() or looks_decimal_comma(raw))
