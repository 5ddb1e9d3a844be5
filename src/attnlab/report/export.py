"""``attnlab attention RUN --out FILE``: a run's saved attention as one tidy table (CSV or Parquet).

One row per sample × layer × head × query × key, columns :data:`~attnlab.report.attention.TABLE_COLUMNS`:
``sample`` (from 1), ``sample_title``, ``layer`` (its role, as the report names it), ``layer_name`` (the
module path), ``kind``, ``head`` (from 1), ``query`` / ``key`` (positions from 0) with ``query_label`` /
``key_label``, and ``weight`` (written with 9 significant digits: it reads back as the saved float32).

The command never overwrites a file it did not write: an existing ``--out`` must be a previous export
(same columns), else it is an error.
"""

from __future__ import annotations

import csv
import importlib.util
import os
from pathlib import Path

from attnlab.errors import UserError
from attnlab.nn.maps import AttentionSample
from attnlab.report.attention import TABLE_COLUMNS, attention_rows, read_attention
from attnlab.report.contents import CONFIG_FILE
from attnlab.report.files import checked_path

FORMATS = (".csv", ".parquet")


def export_attention(run_dir: str | Path, out: str | Path) -> tuple[Path, int]:
    """Write the saved attention of ``run_dir`` as a tidy table to ``out`` (``.csv`` or ``.parquet``).

    Args:
        run_dir: a run folder written by ``attnlab fit`` (or ``forecast`` / ``translate fit``).
        out: the table to write; an existing file is replaced only if it is a previous export.

    Returns:
        ``(path, rows)``: the file written and its number of rows.

    Raises:
        UserError: not a run folder, no saved attention (or a model without attention), an unsupported or
            unusable output path, or Parquet without pyarrow.
    """
    run_dir, out = Path(run_dir), Path(out)
    _check_output(out)
    if not run_dir.is_dir() or not checked_path(run_dir, CONFIG_FILE).is_file():
        raise UserError(f"{run_dir} is not a run folder (no {CONFIG_FILE}); pass a folder written by `attnlab fit`")
    saved = read_attention(run_dir)
    if not saved.samples:
        raise UserError(f"{run_dir} saved no attention to export: {saved.note or 'no samples in attention.json'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    try:
        rows = _write_parquet(saved.samples, part) if out.suffix == ".parquet" else _write_csv(saved.samples, part)
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
    return out, rows


def _check_output(out: Path) -> None:
    """A UserError unless ``out`` is a new ``.csv`` / ``.parquet`` file or a previous export."""
    if out.suffix not in FORMATS:
        raise UserError(f"--out {out}: the table is written as .csv or .parquet; name the file accordingly")
    if out.suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise UserError("writing Parquet needs pyarrow: `pip install pyarrow`, or use --out FILE.csv")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name, e.g. {out / 'attention.csv'}")
    if (out.exists() or out.is_symlink()) and not _is_previous_export(out):
        raise UserError(f"--out {out} exists and is not an attention table written by `attnlab attention`; "
                        "choose another file (attnlab does not overwrite it)")


def _is_previous_export(path: Path) -> bool:
    """True if ``path`` is a regular file holding a table with exactly the export's columns."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        if path.suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as f:
                return tuple(next(csv.reader(f), [])) == TABLE_COLUMNS
        import pyarrow.parquet as pq

        return tuple(pq.read_schema(path).names) == TABLE_COLUMNS
    except (OSError, UnicodeDecodeError, csv.Error, ValueError):  # pyarrow's ArrowInvalid is a ValueError
        return False


def _write_csv(samples: list[AttentionSample], path: Path) -> int:
    count = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(TABLE_COLUMNS)
        for row in attention_rows(samples):
            writer.writerow((*row[:-1], f"{row[-1]:.9g}"))
            count += 1
    return count


def _write_parquet(samples: list[AttentionSample], path: Path) -> int:
    import pandas as pd

    frame = pd.DataFrame.from_records(list(attention_rows(samples)), columns=list(TABLE_COLUMNS))
    frame["weight"] = frame["weight"].astype("float32")
    frame.to_parquet(path, index=False)
    return len(frame)
