"""Reading panel files: a CSV or Parquet file into a DataFrame, and the M4 competition's files into the long
format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from attnlab.data.reading import read_text_table
from attnlab.errors import UserError


def read_frame(path: str | Path, flag: str = "--csv") -> pd.DataFrame:
    """A CSV (every check of :func:`attnlab.data.reading.read_text_table`) or a Parquet file as a DataFrame."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        from attnlab.paths import readable_file

        readable_file(path, "Parquet file", flag)
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise UserError(f"reading {path.name} needs pyarrow: pip install pyarrow (or pass a CSV)") from None
        try:
            return pq.read_table(path).to_pandas()
        except Exception as err:  # pyarrow's errors for a file that is not Parquet
            raise UserError(f"{path} is not a Parquet file ({str(err).splitlines()[0][:120]}); pass a Parquet or "
                            "CSV file") from None
    return read_text_table(path, flag)


# ---------------------------------------------------------------------------------------------- M4


M4_GROUPS = {  # group -> (horizon, MASE period, Naive2 sMAPE, Naive2 MASE)
    "Yearly": (6, 1, 16.342, 3.974), "Quarterly": (8, 4, 11.012, 1.371), "Monthly": (18, 12, 14.427, 1.063),
    "Weekly": (13, 1, 9.161, 2.777), "Daily": (14, 1, 3.045, 3.278), "Hourly": (48, 24, 18.383, 2.395),
}


def read_m4(folder: str | Path, group: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The M4 competition's ``<Group>-train.csv`` and ``<Group>-test.csv`` (one series a row, ragged, no time
    stamps) as long tables ``unique_id, ds, y`` with integer periods; the test periods continue the train's.

    Raises:
        UserError: an unknown group, missing files, ids that differ between the two files, a test row whose
            length is not the group's horizon.
    """
    if group not in M4_GROUPS:
        raise UserError(f"unknown M4 group {group!r}; choose one of: {', '.join(M4_GROUPS)}")
    folder = Path(folder)
    horizon = M4_GROUPS[group][0]
    frames = []
    for part in ("train", "test"):
        path = folder / f"{group}-{part}.csv"
        frame = read_text_table(path, "--data")
        ids = frame.iloc[:, 0].astype(str)
        values = frame.iloc[:, 1:].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        frames.append((ids, values, path))
    (train_ids, train, train_path), (test_ids, test, test_path) = frames
    if list(train_ids) != list(test_ids):
        raise UserError(f"{train_path} and {test_path} list different series ids; pass files of the same group")
    long = []
    for i, series in enumerate(train_ids):
        history = train[i][~np.isnan(train[i])]
        future = test[i][~np.isnan(test[i])]
        if len(future) != horizon:
            raise UserError(f"{test_path}: series {series!r} has {len(future)} test values, the {group} horizon "
                            f"is {horizon}")
        long.append(pd.DataFrame({"unique_id": series, "ds": np.arange(len(history) + horizon),
                                  "y": np.concatenate([history, future]), "part": ["train"] * len(history)
                                  + ["test"] * horizon}))
    table = pd.concat(long, ignore_index=True)
    return table[table.part == "train"].drop(columns="part"), table[table.part == "test"].drop(columns="part")
