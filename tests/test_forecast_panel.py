"""Panels of series (attnlab.data.panel, attnlab.data.windows, attnlab.data.forecasting): long and wide data from
CSV, Parquet and DataFrames, datetimes and integer periods, per-series frequency checks, covariates, the window
index over (series, origin), per-series scaling, short series, frequency-aware defaults and the M4 loader."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from attnlab.catalog.forecast import ForecastConfig
from attnlab.data.forecasting import mase_denominator, prepare_forecast
from attnlab.data.panel import Panel, future_covariates, load_panel, static_from_frame
from attnlab.data.readers import M4_GROUPS, read_m4
from attnlab.data.times import calendar_features, default_input_len, season_of
from attnlab.data.windows import PanelWindows, WindowSet
from attnlab.errors import UserError
from attnlab.experiments.forecast import Forecast, split_data

SERIES = (("s0", 60, "2021-01-01 00:00"), ("s1", 80, "2021-01-02 05:00"), ("s2", 70, "2021-01-01 00:00"))


def panel_frame(series=SERIES, freq: str = "h", seed: int = 0) -> pd.DataFrame:
    """A long table ``unique_id, ds, y``: series of different lengths and start times, a daily cycle around a
    level of 10 per series, a little noise."""
    rng = np.random.default_rng(seed)
    frames = []
    for i, (sid, n, start) in enumerate(series):
        t = np.arange(n)
        frames.append(pd.DataFrame({"unique_id": sid, "ds": pd.date_range(start, periods=n, freq=freq),
                                    "y": 10.0 * i + np.sin(2 * np.pi * t / 24) + 0.1 * rng.normal(size=n)}))
    return pd.concat(frames, ignore_index=True)


def error_of(*args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        load_panel(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------- long and wide


def test_long_data_of_ragged_series_from_a_dataframe_and_a_csv(tmp_path):
    frame = panel_frame()
    shuffled = frame.sample(frac=1.0, random_state=0)  # any row order: each series is sorted by time
    panel = load_panel(shuffled)
    assert panel.layout == "long" and panel.ids == ("s0", "s1", "s2") and panel.time_kind == "datetime"
    assert panel.freq == "h" and panel.target_names == ("y",) and panel.n_channels == 1
    assert panel.lengths.tolist() == [60, 80, 70] and panel.offsets.tolist() == [0, 60, 140, 210]
    assert panel.starts == [pd.Timestamp("2021-01-01 00:00"), pd.Timestamp("2021-01-02 05:00"),
                            pd.Timestamp("2021-01-01 00:00")]
    for s, sid in enumerate(panel.ids):
        np.testing.assert_array_equal(panel.target[panel.rows(s), 0], frame.y[frame.unique_id == sid])
    assert panel.times(1, 0, 2).tolist() == [pd.Timestamp("2021-01-02 05:00"), pd.Timestamp("2021-01-02 06:00")]
    assert panel.times(0, 60, 61)[0] == pd.Timestamp("2021-01-03 12:00")  # the step after its end
    frame.to_csv(tmp_path / "panel.csv", index=False)
    from_csv = load_panel(tmp_path / "panel.csv")
    assert from_csv.source == str(tmp_path / "panel.csv") and from_csv.ids == panel.ids
    np.testing.assert_allclose(from_csv.target, panel.target)
    back = panel.to_frame()
    assert back.columns.tolist() == ["unique_id", "ds", "y"] and len(back) == 210
    pd.testing.assert_frame_equal(back, frame.sort_values(["unique_id", "ds"], ignore_index=True), check_dtype=False)


def test_parquet_round_trip(tmp_path):
    pytest.importorskip("pyarrow")
    frame = panel_frame()
    frame.to_parquet(tmp_path / "panel.parquet")
    panel = load_panel(tmp_path / "panel.parquet")
    assert panel.ids == ("s0", "s1", "s2") and panel.lengths.tolist() == [60, 80, 70]


def test_a_parquet_file_that_is_not_parquet_is_one_line(tmp_path, monkeypatch):
    bad = tmp_path / "data.parquet"
    bad.write_text("unique_id,ds,y\ns,2021-01-01,1\n")
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:  # without pyarrow: the error says how to get it
        assert "reading data.parquet needs pyarrow: pip install pyarrow" in error_of(bad)

        def read_table(path):  # what pyarrow says of a file without Parquet's magic bytes
            raise OSError("Could not open Parquet input source '<Buffer>': Parquet magic bytes not found in "
                          "footer. Either the file is corrupted or this is not a parquet file.")

        fake = types.ModuleType("pyarrow")
        fake.parquet = types.SimpleNamespace(read_table=read_table)
        monkeypatch.setitem(sys.modules, "pyarrow", fake)
        monkeypatch.setitem(sys.modules, "pyarrow.parquet", fake.parquet)
    message = error_of(bad)
    assert message.startswith(f"{bad} is not a Parquet file (") and message.endswith("pass a Parquet or CSV file")
    assert "missing.parquet not found" in error_of(tmp_path / "missing.parquet")


def test_wide_data_is_one_series_whose_columns_are_channels(tmp_path):
    n = 30
    frame = pd.DataFrame({"date": pd.date_range("2021-01-01", periods=n, freq="D"), "a": np.arange(n, dtype=float),
                          "b": np.arange(n, dtype=float) ** 2, "note": ["x"] * n})
    frame.to_csv(tmp_path / "wide.csv", index=False)
    panel = load_panel(tmp_path / "wide.csv")
    assert (panel.layout, panel.ids, panel.target_names, panel.freq) == ("wide", ("wide",), ("a", "b"), "D")
    np.testing.assert_array_equal(panel.target, frame[["a", "b"]].to_numpy())
    assert load_panel(frame).ids == ("series",)  # a DataFrame's one series
    assert load_panel(frame, inputs=("b",)).target_names == ("b",)
    assert load_panel(frame, exclude=("a",)).target_names == ("b",)
    futr = load_panel(frame, futr=("a",))
    assert futr.target_names == ("b",) and futr.futr_names == ("a",)
    assert "no numeric column(s) 'zz'" in error_of(frame, inputs=("zz",))
    assert "no column is left to forecast" in error_of(frame, exclude=("a", "b"))


def test_a_pandas_index_is_the_time_column(tmp_path):
    series = pd.DataFrame({"a": np.arange(10.0), "b": np.arange(10.0) * 2},
                          index=pd.date_range("2020-01-01", periods=10, freq="D"))
    series.to_csv(tmp_path / "idx.csv")  # the index is written as an unnamed first column
    assert (tmp_path / "idx.csv").read_text().startswith(",a,b\n")
    from_csv = load_panel(tmp_path / "idx.csv")
    assert from_csv.target_names == ("a", "b") and from_csv.freq == "D"
    assert from_csv.starts == [pd.Timestamp("2020-01-01")]
    from_frame = load_panel(series)  # a DataFrame indexed by time
    assert from_frame.target_names == ("a", "b") and from_frame.freq == "D"
    np.testing.assert_array_equal(from_frame.target, series.to_numpy())


def test_integer_periods(tmp_path):
    years = pd.DataFrame({"year": np.arange(1990, 2010), "gdp": np.arange(20.0)})
    panel = load_panel(years, time_col="year")
    assert panel.time_kind == "int" and panel.freq == "1" and panel.starts == [1990]
    assert panel.times(0, 20, 23).tolist() == [2010, 2011, 2012]  # the future continues the periods
    every_other = load_panel(years.assign(year=np.arange(1990, 2030, 2)), time_col="year")
    assert every_other.freq == "2" and every_other.times(0, 20, 22).tolist() == [2030, 2032]
    years.assign(year=years.year.astype(float)).to_csv(tmp_path / "years.csv", index=False)  # 1990.0, …
    assert load_panel(tmp_path / "years.csv", time_col="year").time_kind == "int"
    steps = pd.DataFrame({"unique_id": ["a"] * 5 + ["b"] * 3, "ds": [0, 1, 2, 3, 4, 7, 8, 9], "y": np.arange(8.0)})
    panel = load_panel(steps)
    assert panel.time_kind == "int" and panel.starts == [0, 7] and panel.lengths.tolist() == [5, 3]
    assert season_of(panel.freq, panel.time_kind) == 1


def test_mixed_datetime_and_integer_times_are_refused(tmp_path):
    frame = panel_frame()
    frame["ds"] = frame["ds"].astype(str)
    frame.loc[frame.unique_id == "s1", "ds"] = [str(i) for i in range(80)]
    frame.to_csv(tmp_path / "mixed.csv", index=False)
    message = error_of(tmp_path / "mixed.csv")
    assert "column 'ds' mixes integer periods and dates" in message and "use one kind of time stamp" in message


# ---------------------------------------------------------------------------------------------- checks at load


def test_an_id_column_that_does_not_exist():
    message = error_of(panel_frame(), id_col="store")
    assert message.startswith("DataFrame has no id column 'store' (columns: unique_id, ds, y)")
    assert "--id-col" in message


def test_a_duplicated_time_stamp_names_its_series_and_row():
    frame = panel_frame()
    frame.loc[65, "ds"] = frame.loc[64, "ds"]  # in s1, the second series of the file
    message = error_of(frame)
    assert message == ("DataFrame, series 's1': time stamp 2021-01-02 09:00:00 is duplicated at row 65 (file line "
                       "67); remove or merge the duplicate rows")


def test_frequency_is_inferred_per_series_and_checked_at_load():
    frame = panel_frame()
    gap = frame.index[(frame.unique_id == "s2")][10]
    holed = frame.drop(index=gap)  # s2 misses one hour
    message = error_of(holed)
    assert message.startswith("DataFrame, series 's2': time stamps are not regular")
    assert "pass --freq (e.g. --freq h) with --fill ffill or --fill interpolate" in message
    assert "missing value(s)" in error_of(holed, freq="h")  # the row is added, to fill
    filled = load_panel(holed, freq="h", fill="interpolate")
    assert filled.lengths.tolist() == [60, 80, 70]
    row = 140 + 10
    assert filled.target[row, 0] == pytest.approx((frame.y[gap - 1] + frame.y[gap + 1]) / 2)
    daily = panel_frame((("d", 20, "2021-01-01"),), freq="D")
    message = error_of(pd.concat([frame, daily]))
    assert "series 'd' is at frequency D but 's0' at h; pass --freq to put every series on one clock" in message


def test_missing_values_are_filled_within_each_series_only():
    frame = pd.DataFrame({"unique_id": ["a"] * 4 + ["b"] * 4, "ds": list(range(4)) * 2,
                          "y": [1.0, 2, 3, np.nan, np.nan, 6, 7, 8]})
    message = error_of(frame)
    assert message.startswith("DataFrame, series 'a' has 1 missing value(s) (the first in 'y' at step 3)")
    np.testing.assert_array_equal(load_panel(frame, fill="ffill").target[:, 0], [1, 2, 3, 3, 6, 6, 7, 8])
    np.testing.assert_array_equal(load_panel(frame, fill="interpolate").target[:, 0], [1, 2, 3, 3, 6, 6, 7, 8])
    assert "unknown fill 'bfill'" in error_of(frame, fill="bfill")


@pytest.mark.parametrize(("change", "expected"), [
    (lambda f: f.assign(unique_id=f.unique_id.where(f.index != 3)), "column 'unique_id' has empty ids (the first "
                                                                      "at row 3)"),
    (lambda f: f.iloc[:0], "DataFrame has no data rows"),
    (lambda f: f.assign(y=f.y.astype(str).where(f.index != 5, "n/a")), "column 'y' has a non-numeric value 'n/a'"),
    (lambda f: f.assign(y=f.y.map(lambda v: f"{v:.2f}".replace(".", ","))), "pass --decimal , to read them"),
    (lambda f: f.assign(z=1.0, w=2.0).drop(columns="y"), "which column is the target? pass --target COL"),
    (lambda f: f.assign(y="abc"), "DataFrame: the target column 'y' holds no numbers (e.g. 'abc'); fix its cells"),
    (lambda f: f.assign(y="abc", z=1.0), "the target column 'y' holds no numbers"),  # not z in its place
])
def test_bad_long_tables(change, expected):
    assert expected in error_of(change(panel_frame()))


def test_a_text_cell_in_the_target_names_a_fix_that_works_for_a_target():
    """--exclude cannot leave out the target: its text cell is fixed or emptied and filled; a covariate's may be
    excluded."""
    frame = panel_frame().assign(temp=1.5)
    text = frame.assign(y=frame.y.astype(str).where(frame.index != 5, "n/a"))
    message = error_of(text)
    assert message.endswith("column 'y' has a non-numeric value 'n/a' at row 5; fix the cell, or empty it and pass "
                            "--fill ffill or --fill interpolate")
    emptied = text.assign(y=text.y.where(text.index != 5))
    assert load_panel(emptied, fill="ffill").target[5, 0] == frame.y[4]  # the suggested fix reads the file
    temp = frame.assign(temp=frame.temp.astype(str).where(frame.index != 2, "warm"))
    assert error_of(temp).endswith("column 'temp' has a non-numeric value 'warm' at row 2; fix the cell or leave the "
                                   "column out with --exclude")
    assert load_panel(temp, exclude=("temp",)).hist_names == ()


def test_a_wide_target_without_numbers_is_named_as_such():
    frame = pd.DataFrame({"ds": pd.date_range("2021-01-01", periods=30, freq="D"), "y": "abc", "x": np.arange(30.0)})
    assert "DataFrame: the target column 'y' holds no numbers (e.g. 'abc')" in error_of(frame, target=("y",))


def test_columns_play_their_parts():
    frame = panel_frame().assign(temp=1.5, price=2.0, label="x")
    panel = load_panel(frame, futr=("price",))
    assert panel.target_names == ("y",) and panel.hist_names == ("temp",) and panel.futr_names == ("price",)
    assert load_panel(frame, exclude=("temp", "price")).hist_names == ()
    assert load_panel(frame, inputs=("price",)).hist_names == ("price",)  # --inputs: the covariates to use
    sales = frame.rename(columns={"y": "sales"})
    assert load_panel(sales, target=("sales",)).hist_names == ("temp", "price")
    assert "target column(s) 'y' cannot be excluded" in error_of(frame, target=("y",), exclude=("y",))
    assert "cannot be both a target and a future covariate" in error_of(frame, target=("y",), futr=("y",))
    assert "has no column(s) 'wind'" in error_of(frame, futr=("wind",))
    decimal = frame.assign(y=frame.y.map(lambda v: f"{v:.3f}".replace(".", ",")))
    np.testing.assert_allclose(load_panel(decimal, decimal=",").target[:, 0], np.round(frame.y, 3))


# ---------------------------------------------------------------------------------------------- covariates


def test_static_covariates_one_row_per_series(tmp_path):
    panel = load_panel(panel_frame())
    static = pd.DataFrame({"unique_id": ["s2", "s0", "s1"], "size": [3.0, 1.0, 2.0], "area": [30.0, 10.0, 20.0]})
    attached = static_from_frame(panel, static, "static.csv")
    assert attached.static_names == ("size", "area")
    np.testing.assert_array_equal(attached.static, [[1, 10], [2, 20], [3, 30]])  # in the panel's order
    static.to_csv(tmp_path / "static.csv", index=False)
    assert load_panel(panel_frame(), static=tmp_path / "static.csv").static_names == ("size", "area")

    def refused(table: pd.DataFrame) -> str:
        with pytest.raises(UserError) as info:
            static_from_frame(panel, table, "static.csv")
        return str(info.value)

    assert refused(static.assign(unique_id=["s2", "s0", "s9"])).startswith("static.csv: id(s) 's9' are not series")
    assert refused(pd.concat([static, static.iloc[:1]])) == ("static.csv: series id 's2' appears 2 times; give one "
                                                              "row per series")
    assert refused(static.iloc[:2]) == "static.csv has no row for series 's1'"
    assert "has missing static values" in refused(static.assign(size=[1.0, np.nan, 3.0]))
    assert "has no id column" in refused(static.rename(columns={"unique_id": "store"}))


def test_calendar_features_by_hand():
    times = pd.DatetimeIndex(["2021-01-04 06:00", "2021-01-10 18:00"])  # a Monday 06:00, a Sunday 18:00
    features = calendar_features(times, ["hour", "dayofweek"])
    np.testing.assert_allclose(features, [[1, 0, 0, 1], [-1, 0, np.sin(2 * np.pi * 6 / 7), np.cos(2 * np.pi * 6 / 7)]],
                               atol=1e-12)
    with pytest.raises(UserError, match="unknown calendar feature 'minute'; choose from hour, dayofweek"):
        calendar_features(times, ["minute"])
    panel = load_panel(panel_frame(), calendar=("hour",))
    assert panel.futr_names == ("hour_sin", "hour_cos")
    np.testing.assert_allclose(panel.futr[60], [np.sin(2 * np.pi * 5 / 24), np.cos(2 * np.pi * 5 / 24)])  # s1 05:00
    years = pd.DataFrame({"year": np.arange(1990, 2010), "gdp": np.arange(20.0)})
    assert "calendar features need datetime time stamps" in error_of(years, time_col="year", calendar=("month",))


def test_the_batch_carries_every_covariate_kind_standardised():
    frame = panel_frame().assign(temp=np.arange(210.0), price=np.arange(210.0) % 7)
    static = pd.DataFrame({"unique_id": ["s0", "s1", "s2"], "size": [1.0, 2.0, 6.0]})
    panel = load_panel(frame, futr=("price",), static=static)
    data = prepare_forecast(panel, input_len=8, horizon=4, split="last", val_size=4)
    batch = data.dataset("train").batch([0, 41])  # series s1's first window (s0 has 60 - 8 - 8 - 4 + 1 = 41)
    assert (batch.hist.shape, batch.futr.shape, batch.static.shape) == ((2, 8, 1), (2, 12, 1), (2, 1))
    assert batch.series.tolist() == [0, 1] and batch.origin.tolist() == [8, 8]
    train = frame.iloc[60:60 + 72]  # s1's training rows: 80 - 4 - 4
    expected_hist = (frame.temp.iloc[60:68] - train.temp.mean()) / train.temp.std(ddof=0)
    np.testing.assert_allclose(batch.hist[1, :, 0], expected_hist, rtol=1e-5)
    expected_futr = (frame.price.iloc[60:72] - train.price.mean()) / train.price.std(ddof=0)
    np.testing.assert_allclose(batch.futr[1, :, 0], expected_futr, rtol=1e-5, atol=1e-6)  # input and horizon
    np.testing.assert_allclose(batch.static[:, 0], (np.array([1.0, 2.0]) - 3.0) / np.std([1.0, 2.0, 6.0]), rtol=1e-5)


def test_future_covariates_of_the_horizon():
    frame = panel_frame().assign(price=1.0)
    ahead = pd.DataFrame({"unique_id": ["s0", "s0"], "ds": pd.date_range("2021-01-03 12:00", periods=2, freq="h"),
                          "price": [5.0, 6.0]})
    futr = future_covariates(ahead, ["price"], freq="h", calendar=("hour",))
    assert futr.ids == ("s0",) and futr.futr_names == ("price", "hour_sin", "hour_cos")
    np.testing.assert_allclose(futr.futr[:, 0], [5.0, 6.0])
    with pytest.raises(UserError, match=r"lacks the column\(s\) 'price' \(the model takes the future-known "
                                        r"covariates price\)"):
        future_covariates(ahead.drop(columns="price"), ["price"], freq="h")
    with pytest.raises(UserError, match="column .price. has no value at row 1 \\(file line 3\\); give every step"):
        future_covariates(ahead.assign(price=[5.0, np.nan]), ["price"], freq="h")
    assert frame.price.iloc[0] == 1.0


# ---------------------------------------------------------------------------------------------- windows, scaling


def test_window_index_over_series_and_origins():
    windows = WindowSet(first=[5, 3, 9], count=[2, 0, 3], stride=2)
    assert len(windows) == 5 and windows.cumulative.tolist() == [0, 2, 2, 5]
    series, origin = windows.locate([0, 1, 2, 3, 4])
    assert series.tolist() == [0, 0, 2, 2, 2] and origin.tolist() == [5, 7, 9, 11, 13]
    assert windows.last_of_each().tolist() == [1, 4]  # series 1 has none


def test_windows_of_a_panel_by_hand(caplog):
    panel = load_panel(panel_frame((("a", 30, "2021-01-01"), ("b", 9, "2021-01-01"), ("c", 40, "2021-01-01"))))
    with caplog.at_level(logging.INFO, logger="attnlab.data.forecasting"):
        data = prepare_forecast(panel, input_len=6, horizon=3, split="last", val_size=3, season=24)
    assert data.skipped == ("b",) and data.panel.ids == ("a", "c")  # 9 rows: no training window
    assert "left out 1 of 3 series too short for a training, validation and test window (e.g. b)" in caplog.text
    # last split: test = the last 3 steps, validation the 3 before; training windows end before validation
    assert data.borders.tolist() == [[24, 27, 30], [34, 37, 40]]
    train, val, test = (data.windows[name] for name in ("train", "val", "test"))
    assert train.first.tolist() == [6, 6] and train.count.tolist() == [24 - 6 - 3 + 1, 34 - 6 - 3 + 1]
    assert (val.first.tolist(), val.count.tolist(), test.first.tolist(), test.count.tolist()) == (
        [24, 34], [1, 1], [27, 37], [1, 1])
    dataset = data.dataset("test")
    batch = dataset.batch([0, 1])
    for i, s in enumerate((0, 1)):  # the last window of each series: its last 9 rows
        rows = data.panel.target[data.panel.rows(s)][-9:, 0]
        np.testing.assert_allclose(batch.x[i, :, 0].double() * data.std[s, 0] + data.mean[s, 0], rows[:6], rtol=1e-5)
        np.testing.assert_allclose(data.truth(batch.series.numpy(), batch.origin.numpy())[i, :, 0], rows[6:])
    assert isinstance(dataset, PanelWindows) and len(dataset) == 2


def test_no_series_long_enough_is_an_error():
    panel = load_panel(panel_frame())
    with pytest.raises(UserError, match=r"no series of DataFrame is long enough: each needs input_len \+ horizon = "
                                        r"90 training rows .* \(the longest has 80 rows\)"):
        prepare_forecast(panel, input_len=60, horizon=30, split="last")
    one = load_panel(panel_frame((("s0", 10, "2021-01-01"),)))  # one long series: split last, not split ratio
    with pytest.raises(UserError, match=r"no series of DataFrame is long enough: each needs input_len \+ horizon = "
                                        r"28 training rows .* \(the longest has 10 rows\)"):
        prepare_forecast(one, input_len=21, horizon=7, split="last")


def test_a_horizon_longer_than_every_validation_part_is_an_error():
    panel = load_panel(panel_frame())
    message = "val_size \\(4\\) and test_size \\(8\\) must be at least the horizon \\(8\\)"
    with pytest.raises(UserError, match=message):
        prepare_forecast(panel, input_len=8, horizon=8, split="last", val_size=4)
    with pytest.raises(UserError, match="no series of DataFrame is long enough"):  # ratio: 7-8 validation rows
        prepare_forecast(panel, input_len=8, horizon=10, split="ratio")


def test_training_windows_with_a_stride_end_at_the_last_training_origin():
    panel = load_panel(panel_frame())
    data = prepare_forecast(panel, input_len=8, horizon=4, split="last", train_stride=5)
    every = prepare_forecast(panel, input_len=8, horizon=4, split="last")
    for s in range(3):
        last = every.windows["train"].first[s] + every.windows["train"].count[s] - 1
        strided = data.windows["train"]
        assert strided.first[s] + (strided.count[s] - 1) * 5 == last and strided.first[s] < 8 + 5
    assert len(data.windows["train"]) == sum(-(-int(n) // 5) for n in every.windows["train"].count)


def test_a_history_limit_keeps_the_newest_training_origins_of_each_series():
    panel = load_panel(panel_frame())
    every = prepare_forecast(panel, input_len=8, horizon=4, split="last")
    for stride, history, count in [(1, 7, 7), (3, 7, 3), (3, 6, 2), (1, 10_000, None)]:
        data = prepare_forecast(panel, input_len=8, horizon=4, split="last", train_stride=stride,
                                train_history=history)
        train, full = data.windows["train"], every.windows["train"]
        for s in range(3):
            expected = count or full.count[s]
            assert train.count[s] == expected
            assert train.first[s] + (expected - 1) * stride == full.first[s] + full.count[s] - 1  # the newest origin
    with pytest.raises(ValueError, match="train_history=-1 is out of range"):
        ForecastConfig(train_history=-1)


def test_each_series_is_scaled_by_its_own_training_rows():
    frame = panel_frame()
    data = prepare_forecast(load_panel(frame), input_len=8, horizon=4, split="last", val_size=4, season=24)
    for s, (sid, n, _) in enumerate(SERIES):
        train = frame.y[frame.unique_id == sid].to_numpy()[: n - 8]
        assert data.borders[s, 0] == n - 8
        np.testing.assert_allclose([data.mean[s, 0], data.std[s, 0]], [train.mean(), train.std()])
        assert data.mase_scale[s, 0] == pytest.approx(np.abs(train[24:] - train[:-24]).mean())
        standard = data.tensors["target"][data.panel.rows(s), 0].double().numpy()
        np.testing.assert_allclose(standard, (frame.y[frame.unique_id == sid] - train.mean()) / train.std(),
                                   rtol=1e-5, atol=1e-6)


def test_mase_scale_falls_back_to_lag_one_and_constant_series_scale_by_one():
    values = np.array([[1.0], [3.0], [2.0], [6.0]])
    assert mase_denominator(values, 2).tolist() == [(1 + 3) / 2]  # |2 - 1|, |6 - 3|
    assert mase_denominator(values, 4).tolist() == [(2 + 1 + 4) / 3]  # shorter than two seasons: lag 1
    assert mase_denominator(np.ones((5, 1)), 1).tolist() == [1.0]
    frame = panel_frame().assign(y=lambda f: f.y.where(f.unique_id != "s1", 5.0))  # s1 constant
    data = prepare_forecast(load_panel(frame), input_len=8, horizon=4, split="last")
    assert data.std[1, 0] == 1.0 and data.mean[1, 0] == 5.0 and data.mase_scale[1, 0] == 1.0


def test_splits_of_a_panel():
    panel = load_panel(panel_frame())
    no_test = prepare_forecast(panel, input_len=8, horizon=4, split="last", val_size=4, test_size=0)
    assert no_test.n_windows("test") == 0 and no_test.borders[:, 0].tolist() == [56, 76, 66]
    longer = prepare_forecast(panel, input_len=8, horizon=4, split="last", val_size=12, test_size=8)
    assert longer.windows["val"].count.tolist() == [9, 9, 9] and longer.windows["test"].count.tolist() == [5, 5, 5]
    ratio = prepare_forecast(panel, input_len=8, horizon=4, split="ratio")
    assert ratio.borders.tolist() == [[42, 48, 60], [56, 64, 80], [49, 56, 70]]  # each series by its own length


# ---------------------------------------------------------------------------------------------- defaults


@pytest.mark.parametrize(("freq", "season"), [("h", 24), ("D", 7), ("B", 5), ("W", 52), ("W-SUN", 52), ("MS", 12),
                                              ("ME", 12), ("BME", 12), ("QS", 4), ("YS", 1), ("15min", 96),
                                              ("2h", 1)])
def test_the_season_follows_the_frequency(freq, season):
    assert season_of(freq, "datetime") == season
    assert season_of("1", "int") == 1


def test_default_input_length_is_whole_seasons():
    assert default_input_len(48, 24) == 144  # 3 horizons
    assert default_input_len(4, 24) == 48  # 2 seasons
    assert default_input_len(10, 7) == 35  # 30 rounded up to 5 weeks
    assert default_input_len(5, 1) == 15


def test_split_data_fills_what_the_options_leave_unset():
    panel = load_panel(panel_frame())
    with pytest.raises(UserError, match=r"^pass --horizon H, the steps to forecast \(the data is at frequency h, so "
                                        r"one season is 24 steps; e.g. --horizon 24\)$"):
        split_data(panel, ForecastConfig())
    data = split_data(panel, ForecastConfig(horizon=4))
    assert (data.split, data.season, data.input_len, data.horizon) == ("last", 24, 48, 4)
    data = split_data(panel, ForecastConfig(horizon=4, season=6))
    assert (data.season, data.input_len) == (6, 12)
    wide = load_panel(pd.DataFrame({"date": pd.date_range("2021", periods=500, freq="D"), "a": np.arange(500.0)}))
    assert split_data(wide, ForecastConfig(horizon=7)).split == "ratio"  # auto: one series
    with pytest.raises(UserError, match="--split ett needs at least 14400 rows"):
        split_data(wide, ForecastConfig(split="ett"))  # ett: the horizon defaults to 96


# ---------------------------------------------------------------------------------------------- M4


def write_m4(folder: Path, group: str, series: dict[str, list[float]], tests: dict[str, list[float]]) -> Path:
    """Files as the competition ships them: quoted, one series a row, rows padded with empty fields."""
    folder.mkdir(parents=True, exist_ok=True)
    for part, rows in (("train", series), ("test", tests)):
        width = max(len(v) for v in rows.values())
        lines = [",".join(f'"V{i}"' for i in range(1, width + 2))]
        for sid, values in rows.items():
            cells = [f'"{sid}"'] + [f'"{v:g}"' for v in values] + ['""'] * (width - len(values))
            lines.append(",".join(cells))
        (folder / f"{group}-{part}.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_m4_loader_on_a_small_file(tmp_path):
    horizon = M4_GROUPS["Yearly"][0]
    assert horizon == 6
    folder = write_m4(tmp_path, "Yearly", {"Y1": list(range(1, 11)), "Y2": [5, 4, 3, 2, 1, 0, -1, -2]},
                      {"Y1": [100, 101, 102, 103, 104, 105], "Y2": [7, 7, 7, 7, 7, 7]})
    train, test = read_m4(folder, "Yearly")
    assert train.columns.tolist() == test.columns.tolist() == ["unique_id", "ds", "y"]
    assert train.groupby("unique_id").size().to_dict() == {"Y1": 10, "Y2": 8}  # the ragged rows' own lengths
    assert train.y[train.unique_id == "Y2"].tolist() == [5, 4, 3, 2, 1, 0, -1, -2]
    assert test.ds[test.unique_id == "Y1"].tolist() == list(range(10, 16))  # the test periods continue the train's
    assert test.ds[test.unique_id == "Y2"].tolist() == list(range(8, 14))
    panel = load_panel(pd.concat([train, test]))
    assert panel.time_kind == "int" and panel.lengths.tolist() == [16, 14]


def test_m4_loader_errors(tmp_path):
    good = {"Y1": [1.0] * 10, "Y2": [2.0] * 9}
    ahead = {"Y1": [1.0] * 6, "Y2": [2.0] * 6}
    folder = write_m4(tmp_path / "ids", "Yearly", good, {"Y1": [1.0] * 6, "Y3": [2.0] * 6})
    with pytest.raises(UserError, match="Yearly-train.csv and .*Yearly-test.csv list different series ids"):
        read_m4(folder, "Yearly")
    folder = write_m4(tmp_path / "short", "Yearly", good, {"Y1": [1.0] * 6, "Y2": [2.0] * 5})
    with pytest.raises(UserError, match="series 'Y2' has 5 test values, the Yearly horizon is 6"):
        read_m4(folder, "Yearly")
    with pytest.raises(UserError, match="unknown M4 group 'Hourlyy'; choose one of: Yearly, Quarterly"):
        read_m4(folder, "Hourlyy")
    with pytest.raises(UserError, match="Monthly-train.csv not found"):
        read_m4(write_m4(tmp_path / "ok", "Yearly", good, ahead), "Monthly")


# ---------------------------------------------------------------------------------------------- the panel itself


def test_select_truncate_and_future_times():
    panel = load_panel(panel_frame())
    kept = panel.select(np.array([True, False, True]))
    assert kept.ids == ("s0", "s2") and kept.lengths.tolist() == [60, 70]
    np.testing.assert_array_equal(kept.target[60:], panel.target[140:])
    short = panel.truncate(10)
    assert short.lengths.tolist() == [50, 70, 60] and short.starts == panel.starts
    np.testing.assert_array_equal(short.target[50:120], panel.target[60:130])
    future = short.future_times(2)
    assert future[:2].tolist() == [pd.Timestamp("2021-01-03 02:00"), pd.Timestamp("2021-01-03 03:00")]
    assert len(future) == 6
    with pytest.raises(ValueError, match="would leave a series empty"):
        panel.truncate(60)


def test_a_panel_built_by_hand_fills_empty_covariates():
    panel = Panel(ids=("a",), time_kind="int", freq="1", starts=[0], offsets=np.array([0, 4]),
                  target=np.arange(4.0)[:, None], target_names=("y",))
    assert panel.hist.shape == (4, 0) and panel.futr.shape == (4, 0) and panel.static.shape == (1, 0)
    data = prepare_forecast(panel, input_len=1, horizon=1, split="last")
    assert data.tensors["static"].shape == (1, 0) and torch.equal(data.tensors["hist"], torch.empty(4, 0))


@pytest.mark.parametrize("kind", ["mse", "mae", "mase", "smape"])
def test_each_training_objective_against_a_hand_computation(kind):
    """``data.loss``: MSE and MAE on the standardised scale, MASE over each series' MASE scale and sMAPE in
    original units, for a batch of windows of series of different levels and spreads."""
    frame = panel_frame()
    frame["y"] = frame["y"] * (1 + frame["unique_id"].factorize()[0])  # another spread per series
    data = prepare_forecast(load_panel(frame), input_len=8, horizon=4, split="last", val_size=4, season=24)
    task = Forecast(ForecastConfig(input_len=8, horizon=4, loss=kind), data)
    windows = np.arange(len(data.dataset("train")))[::7]
    batch = data.dataset("train").batch(windows)
    assert len(set(batch.series.tolist())) > 1

    def model(x):  # (B, L, C) -> (B, H, C): the last input value, repeated
        return x[:, -1:].expand(-1, 4, -1) + 0.1

    series = batch.series.numpy()
    std, mean, scale = (getattr(data, name)[series][:, None] for name in ("std", "mean", "mase_scale"))  # (B, 1, C)
    out, y = model(batch.x).numpy().astype(np.float64), batch.y.numpy().astype(np.float64)  # (B, H, C)
    f_orig, y_orig = out * std + mean, y * std + mean
    expected = {"mse": ((out - y) ** 2).mean(), "mae": np.abs(out - y).mean(),
                "mase": (np.abs(f_orig - y_orig) / scale).mean(),
                "smape": (200 * np.abs(f_orig - y_orig) / (np.abs(f_orig) + np.abs(y_orig))).mean()}[kind]
    assert task.loss(model, batch).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kind", ["mse", "mae"])
def test_early_stopping_and_the_kept_epoch_follow_the_training_objective(tmp_path, kind):
    from attnlab.forecast.api import forecast

    result = forecast(panel_frame(), "linear", ["max_epochs=3", "patience=1", f"data.loss={kind}"], horizon=4,
                      input_len=8, progress=False, figures=False, run_dir=tmp_path / kind)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["monitor"] == ["val_loss", "min"]
    history = metrics["history"]
    # val_loss is the validation value of the objective: the standardised MSE or MAE
    assert [h["val_loss"] for h in history] == pytest.approx([h[f"val_{kind}"] for h in history], rel=1e-6)
    best = min(history, key=lambda h: h["val_loss"])
    assert metrics["val"][kind] == pytest.approx(best[f"val_{kind}"], rel=1e-5)  # that epoch's weights are kept
