"""Realistic synthetic panels for scale benchmarks: many hourly series, written to Parquet a block at a time.

Each series (think of an energy meter or a store's hourly sales) is

    y_t = level · (1 + daily_t + weekly_t + uplift · promo_t) + trend_t + noise_t

* ``level`` log-normal (scales differ by orders of magnitude between series, as in real panels);
* ``daily``: two harmonics of the 24-step cycle (amplitude 15-45 % of the level), ``weekly``: the 168-step
  cycle (0-15 %), each with its own phase;
* ``trend``: a straight line with a per-series slope (up to ±30 % of the level over the longest series);
* ``noise``: AR(1) (coefficient 0.6) with a per-series scale (5-15 % of the level);
* ``promo``: a **future-known covariate**, 0/1, on in runs of a few hours (about 6 % of the hours), lifting
  the series by 20-60 % of its level while on.

Lengths are ragged: each series' length is uniform in ``[min_length, length]`` and every series ends at the
same hour (later series start later, as meters installed over time). Rows are written sorted by series, then
time: ``unique_id`` (text, dictionary-encoded), ``ds`` (hourly timestamps), ``y`` (float64), ``promo`` (int8).

The data are a function of the seed and the series index only: series ``i`` is the same whatever the number of
series generated, because the random streams are drawn per block of :data:`BLOCK` series from
``SeedSequence([seed, block])``. Memory stays at one block (``BLOCK × length`` values) whatever the size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BLOCK = 1000  # series per random stream (and per generated block)
SEASON = 24
WEEK = 168
START = np.datetime64("2024-01-01T00:00", "ns")
HOUR_NS = 3_600_000_000_000
AR = 0.6  # AR(1) coefficient of the noise
PROMO_START = 0.012  # chance that a promotion starts at a given hour
PROMO_HOURS = (2, 9)  # promotions last 2..8 hours


@dataclass
class GeneratedPanel:
    """What :func:`generate_panel` wrote.

    Attributes:
        path: the Parquet file.
        n_series: number of series.
        rows: rows written (the sum of the series' lengths).
        length: the longest series.
        min_length: the shortest length allowed.
        seed: the seed.
        season: steps per daily cycle (24).
        file_bytes: size of the Parquet file.
    """

    path: Path
    n_series: int
    rows: int
    length: int
    min_length: int
    seed: int
    season: int
    file_bytes: int


def series_block(seed: int, block: int, n: int, length: int, min_length: int) -> dict[str, np.ndarray]:
    """Series ``block·BLOCK .. block·BLOCK + n − 1``: ``lengths`` (n,), and ``y`` (n, length) float64 and
    ``promo`` (n, length) int8, each series' values at the **end** of its row (the first ``length − lengths[i]``
    entries are unused): all series end at the same hour. A whole block is drawn and its first ``n`` kept, so a
    series does not depend on how many are generated."""
    out = _full_block(seed, block, length, min_length)
    return {key: value[:n] for key, value in out.items()}


def _full_block(seed: int, block: int, length: int, min_length: int) -> dict[str, np.ndarray]:
    n = BLOCK
    rng = np.random.default_rng(np.random.SeedSequence([seed, block]))
    lengths = rng.integers(min_length, length + 1, size=n)
    level = np.exp(rng.normal(4.0, 1.0, size=n))[:, None]  # median ~55, from ~7 to ~400 at ±2 sigma
    t = np.arange(length, dtype=np.float64)[None, :]  # hour index on the common clock (0 = the longest's start)
    daily_amp = rng.uniform(0.15, 0.45, size=(n, 1))
    phase = rng.uniform(0, 2 * math.pi, size=(n, 3))
    daily = daily_amp * (np.sin(2 * math.pi * t / SEASON + phase[:, :1])
                         + 0.4 * np.sin(4 * math.pi * t / SEASON + phase[:, 1:2]))
    weekly = rng.uniform(0.0, 0.15, size=(n, 1)) * np.sin(2 * math.pi * t / WEEK + phase[:, 2:3])
    slope = rng.uniform(-0.3, 0.3, size=(n, 1))
    trend = level * slope * (t - (length - 1)) / length
    sigma = rng.uniform(0.05, 0.15, size=(n, 1)) * level
    shocks = rng.standard_normal((n, length)) * sigma * math.sqrt(1 - AR * AR)
    noise = np.empty_like(shocks)
    noise[:, 0] = shocks[:, 0] / math.sqrt(1 - AR * AR)
    for k in range(1, length):
        noise[:, k] = AR * noise[:, k - 1] + shocks[:, k]
    starts = rng.random((n, length)) < PROMO_START
    spans = rng.integers(*PROMO_HOURS, size=(n, length))
    promo = np.zeros((n, length), dtype=np.int8)
    for span in range(PROMO_HOURS[0], PROMO_HOURS[1]):
        begins = starts & (spans == span)
        for lag in range(span):
            promo[:, lag:] |= begins[:, : length - lag]
    uplift = rng.uniform(0.2, 0.6, size=(n, 1))
    y = level * (1.0 + daily + weekly + uplift * promo) + trend + noise
    return {"lengths": lengths, "y": y, "promo": promo}


def generate_panel(path: str | Path, n_series: int, length: int, *, seed: int = 0, min_length: int | None = None,
                   row_group_rows: int = 1 << 20) -> GeneratedPanel:
    """Write ``n_series`` hourly series of at most ``length`` steps to the Parquet file ``path`` (see the module
    docstring for the model). ``min_length`` defaults to 80 % of ``length``.

    Raises:
        ValueError: sizes out of range (fewer than 1 series, ``min_length`` under 3 or over ``length``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    min_length = math.ceil(0.8 * length) if min_length is None else min_length
    if n_series < 1:
        raise ValueError(f"n_series must be at least 1, got {n_series}")
    if not 3 <= min_length <= length:
        raise ValueError(f"need 3 <= min_length <= length, got min_length={min_length}, length={length}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("unique_id", pa.dictionary(pa.int32(), pa.string())), ("ds", pa.timestamp("ns")),
                        ("y", pa.float64()), ("promo", pa.int8())])
    width = len(str(n_series - 1))
    rows = 0
    tmp = path.with_name(path.name + ".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for block in range(math.ceil(n_series / BLOCK)):
            first = block * BLOCK
            n = min(BLOCK, n_series - first)
            part = series_block(seed, block, n, length, min_length)
            lengths = part["lengths"]
            keep = np.arange(length)[None, :] >= (length - lengths)[:, None]  # (n, length): each series' tail
            hours = np.broadcast_to(np.arange(length, dtype=np.int64), (n, length))[keep]
            ids = pa.array([f"s{i:0{width}d}" for i in range(first, first + n)])
            table = pa.table({
                "unique_id": pa.DictionaryArray.from_arrays(pa.array(np.repeat(np.arange(n, dtype=np.int32), lengths)),
                                                            ids),
                "ds": pa.array(START + hours * HOUR_NS, type=pa.timestamp("ns")),
                "y": pa.array(part["y"][keep]),
                "promo": pa.array(part["promo"][keep]),
            }, schema=schema)
            writer.write_table(table, row_group_size=row_group_rows)
            rows += int(lengths.sum())
    tmp.replace(path)
    return GeneratedPanel(path, n_series, rows, length, min_length, seed, SEASON, path.stat().st_size)
