"""Wide tables (attnlab.data.timeseries) split for forecasting (attnlab.data.forecasting): reading, validation
messages, the ETT / ratio splits, standardisation, windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from attnlab.catalog.forecast import ForecastConfig
from attnlab.data.forecasting import ETT_BORDERS, borders, count_windows, prepare_forecast
from attnlab.data.panel import Panel, load_panel
from attnlab.data.timeseries import parse_targets, read_table
from attnlab.data.windows import PanelWindows, WindowSet
from attnlab.errors import UserError
from attnlab.experiments.forecast import load_data

# The shared data sit beside the repository: ../shared/data (a worktree's too: /work/<tree>/../shared).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ETTH1 = SHARED_DATA / "ett" / "ETTh1.csv"


def write_series(path: Path, n: int = 200, seed: int = 0, freq: str = "h", **columns: np.ndarray) -> Path:
    """A CSV with an hourly ``date`` column and columns a, b (random walks) unless given."""
    rng = np.random.default_rng(seed)
    frame = {"date": pd.date_range("2021-03-01", periods=n, freq=freq).strftime("%Y-%m-%d %H:%M:%S")}
    frame.update(columns or {"a": rng.normal(size=n).cumsum(), "b": 10 + rng.normal(size=n)})
    pd.DataFrame(frame).to_csv(path, index=False)
    return path


def edit_lines(path: Path, edits: dict[int, str]) -> Path:
    """Replace whole data rows (0-based, header excluded) of a CSV."""
    lines = path.read_text().splitlines()
    for row, text in edits.items():
        lines[row + 1] = text
    path.write_text("\n".join(lines) + "\n")
    return path


def data_of(csv: Path, **options) -> object:
    """The split data of a CSV as ``attnlab forecast`` reads it (options: ForecastConfig's fields)."""
    return load_data(ForecastConfig(csv=str(csv), **options))


def error_of(**kwargs) -> str:
    with pytest.raises(UserError) as info:
        data_of(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    message = error_of(csv=tmp_path / "nope.csv", horizon=5)
    assert "nope.csv not found" in message and "--csv" in message


def test_no_date_column(tmp_path):
    path = write_series(tmp_path / "s.csv")
    message = error_of(csv=path, date_col="time", input_len=10, horizon=5)
    assert "no column 'time'" in message and "date, a, b" in message and "--date-col" in message


def test_a_year_column_is_named_in_the_fix_not_taken_silently(tmp_path):
    """`year` (or `period`, `order_date`) is not taken as the time column without --date-col, since it may be a
    covariate of a file whose time column has another name; the error names it in the fix."""
    years = tmp_path / "sunspots.csv"
    pd.DataFrame({"year": np.arange(1700, 1800), "sunspots": np.arange(100.0)}).to_csv(years, index=False)
    expected = (r"has no time column \(looked for ds, date, time, timestamp, datetime; columns: year, sunspots\); "
                r"name it with --date-col \(e.g. --date-col year\)$")
    with pytest.raises(UserError, match=expected):
        read_table(years)
    assert read_table(years, "year").columns == ("sunspots",)
    orders = pd.DataFrame({"holiday": [0, 1, 0], "order_date": ["2020-01-01", "2020-01-02", "2020-01-03"]})
    with pytest.raises(UserError, match=r"--date-col \(e.g. --date-col order_date\)$"):
        load_panel(orders)
    with pytest.raises(UserError, match=r"; name it with --date-col$"):  # nothing that looks like a time
        load_panel(pd.DataFrame({"Datum": ["2020-01-01"], "x": [1.0]}))


def test_every_line_with_an_extra_field(tmp_path):
    # pandas silently turns a first field that every data line has beyond the header into the row index
    path = write_series(tmp_path / "s.csv")
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0]] + [line + ",9" for line in lines[1:]]) + "\n")
    message = error_of(csv=path, input_len=10, horizon=5)
    assert message == (f"{path}: every data line has more fields than the header row (3); pass a comma-separated "
                       "file with as many fields on every line as in the header")


def test_unparsable_date(tmp_path):
    path = edit_lines(write_series(tmp_path / "s.csv"), {7: "yesterday,1.0,2.0"})
    message = error_of(csv=path, input_len=10, horizon=5)
    assert "'yesterday'" in message and "row 7 (file line 9)" in message


def test_empty_date(tmp_path):
    path = edit_lines(write_series(tmp_path / "s.csv"), {4: ",1.0,2.0"})
    message = error_of(csv=path, input_len=10, horizon=5)
    assert "1 empty time stamp(s)" in message and "row 4" in message


def test_non_numeric_cell(tmp_path):
    path = edit_lines(write_series(tmp_path / "s.csv"), {12: "2021-03-01 12:00:00,abc,1.0",
                                                         30: "2021-03-02 06:00:00,x,1.0"})
    message = error_of(csv=path, input_len=10, horizon=5)
    assert "column 'a'" in message and "'abc'" in message and "row 12 (file line 14)" in message
    assert "and 1 more" in message


def test_nan_and_empty_cells_are_counted_and_located(tmp_path):
    path = edit_lines(write_series(tmp_path / "s.csv"), {3: "2021-03-01 03:00:00,,1.0",
                                                        9: "2021-03-01 09:00:00,NaN,NaN",
                                                        20: "2021-03-01 20:00:00,NaN,2.0"})
    message = error_of(csv=path, input_len=10, horizon=5)
    assert "4 missing value(s)" in message
    assert "a: 3 from row 3 (file line 5)" in message and "b: 1 from row 9 (file line 11)" in message
    assert "--fill ffill" in message and "--fill interpolate" in message


def test_fill_ffill_and_interpolate(tmp_path):
    values = np.arange(12, dtype=float)
    path = write_series(tmp_path / "s.csv", n=12, a=values, b=values * 2)
    edit_lines(path, {0: "2021-03-01 00:00:00,,0", 5: "2021-03-01 05:00:00,,10", 6: "2021-03-01 06:00:00,,12"})
    ffill = read_table(path, fill="ffill").values[:, 0]
    np.testing.assert_allclose(ffill[:8], [1, 1, 2, 3, 4, 4, 4, 7])  # leading gap takes the first value
    interp = read_table(path, fill="interpolate").values[:, 0]
    np.testing.assert_allclose(interp[:8], [1, 1, 2, 3, 4, 5, 6, 7])
    # the same through the panel the forecasting code reads
    np.testing.assert_allclose(load_panel(path, fill="ffill").target[:8, 0], [1, 1, 2, 3, 4, 4, 4, 7])


def test_too_few_rows_names_the_split(tmp_path):
    path = write_series(tmp_path / "s.csv", n=200)  # ratio split: train 140, val 20 (+ context), test 40
    message = error_of(csv=path, input_len=30, horizon=25)
    assert message.startswith("the val split has 50 rows (with 30 rows of context before it)")
    assert "input_len + horizon = 55" in message
    message = error_of(csv=path, input_len=150, horizon=10)
    assert message.startswith("the train split has 140 rows") and "= 160" in message


def test_unknown_target_lists_the_columns(tmp_path):
    path = write_series(tmp_path / "s.csv")
    message = error_of(csv=path, target=("OT",), input_len=10, horizon=5)
    assert "unknown target column(s) 'OT'" in message and "available: a, b" in message


def test_constant_column(tmp_path):
    n = 200
    path = write_series(tmp_path / "s.csv", n=n, a=np.arange(n, dtype=float), flat=np.full(n, 3.0))
    message = error_of(csv=path, input_len=10, horizon=5)
    assert "column 'flat' is constant over the 140 train rows" in message and "remove it" in message


def test_duplicated_timestamp(tmp_path):
    path = edit_lines(write_series(tmp_path / "s.csv"), {6: "2021-03-01 05:00:00,1.0,2.0"})
    message = error_of(csv=path, input_len=10, horizon=5)
    assert "duplicated at row 6 (file line 8)" in message


def test_unsorted_timestamps(tmp_path):
    path = edit_lines(write_series(tmp_path / "s.csv"), {6: "2021-03-01 01:30:00,1.0,2.0"})
    message = error_of(csv=path, input_len=10, horizon=5)
    assert "not increasing: row 6 (file line 8)" in message and "sort the file by 'date'" in message


@pytest.mark.parametrize(("input_len", "horizon", "flag"), [(336, 0, "--horizon"), (336, -4, "--horizon"),
                                                             (0, 96, "--input-len")])
def test_non_positive_sizes(tmp_path, input_len, horizon, flag):
    # The options are refused before the file is read (ForecastConfig), and by the split itself.
    with pytest.raises(ValueError, match=f"{flag.strip('-').replace('-', '_')}=.* is out of range"):
        ForecastConfig(csv=str(tmp_path / "not-read.csv"), input_len=input_len, horizon=horizon)
    panel = load_panel(write_series(tmp_path / "s.csv"))
    with pytest.raises(UserError, match=f"^{flag} must be at least 1 step"):
        prepare_forecast(panel, input_len=input_len, horizon=horizon)


def test_bad_ratios_and_short_ett(tmp_path):
    path = write_series(tmp_path / "s.csv")
    assert "summing to 1" in error_of(csv=path, ratios=(0.5, 0.1, 0.1), input_len=10, horizon=5)
    assert "--split ett needs at least 14400 rows" in error_of(csv=path, split="ett", input_len=10, horizon=5)


def test_text_columns_are_ignored(tmp_path):
    n = 50
    path = write_series(tmp_path / "s.csv", n=n, a=np.arange(n, dtype=float), station=np.array(["x"] * n))
    assert read_table(path).columns == ("a",)
    assert load_panel(path).target_names == ("a",)


def test_irregular_time_stamps_are_refused_at_load(tmp_path):
    path = edit_lines(write_series(tmp_path / "s.csv", n=10), {5: "2021-03-01 05:30:00,1,2"})
    expected = (r"time stamps are not regular: 2021-03-01 04:00:00 is followed by 2021-03-01 05:30:00 \(row 5\), "
                r"the usual step is 0 days 01:00:00; pass --freq \(e.g. --freq h\)")
    with pytest.raises(UserError, match=expected):
        read_table(path)
    with pytest.raises(UserError, match=r"time stamp 2021-03-01 05:30:00 is not on the --freq h grid"):
        read_table(path, freq="h")
    assert read_table(write_series(tmp_path / "w.csv", n=10, freq="W")).freq == "W-SUN"


def test_stamps_off_the_freq_grid_name_the_weekday_and_the_series_own_frequency(tmp_path):
    thursdays = write_series(tmp_path / "w.csv", n=20, freq="W-THU")  # starts 2021-03-04, a Thursday
    message = (r"^.*w.csv: time stamp 2021-03-04 00:00:00 is not on the --freq W grid \(weeks ending on Sunday; "
               r"2021-03-04 is a Thursday\); pass --freq W-THU, the series' own frequency, or leave --freq out$")
    with pytest.raises(UserError, match=message):
        read_table(thursdays, freq="W")
    assert read_table(thursdays, freq="W-THU").freq == "W-THU"
    hourly = write_series(tmp_path / "h.csv", n=20)
    with pytest.raises(UserError, match=r"01:00:00 is not on the --freq 2h grid; pass --freq h, the series' own freq"):
        read_table(hourly, freq="2h")


def test_a_freq_finer_than_the_data_is_refused_not_filled(tmp_path):
    """--freq h on daily data would make 23 of every 24 rows up (with --fill, silently): refused, naming the data's
    own frequency; the same for integer periods (decades read at --freq 1)."""
    daily = write_series(tmp_path / "d.csv", n=10, freq="D")
    message = (r"d.csv: --freq h would add 207 time stamps to its 10 \(95 % of the rows invented\); pass --freq D, the "
               r"series' own frequency, or leave --freq out$")
    for fill in ("none", "ffill", "interpolate"):
        with pytest.raises(UserError, match=message):
            load_panel(daily, freq="h", fill=fill)
    long = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2021-01-01", periods=10, freq="D"), "y": 1.0})
    with pytest.raises(UserError, match=r"series 'a': --freq h would add 207 time stamps .* pass --freq D"):
        load_panel(long, freq="h", fill="ffill")
    decades = pd.DataFrame({"year": np.arange(1900, 2000, 10), "y": np.arange(10.0)})
    with pytest.raises(UserError, match=r"--freq 1 would add 81 periods to its 10 \(89 % of the rows invented\); the "
                                        r"usual step is 10: pass --freq 10, or leave --freq out"):
        load_panel(decades, time_col="year", freq="1", fill="ffill")
    assert load_panel(decades, time_col="year", freq="10").lengths.tolist() == [10]
    half = pd.concat([long.iloc[:5], long.iloc[5:].assign(ds=lambda f: f.ds + pd.Timedelta(days=4))])
    assert load_panel(half, freq="D", fill="ffill").lengths.tolist() == [14]  # 4 of 14 rows filled: still allowed


def test_missing_rows_are_added_by_freq_and_filled(tmp_path):
    path = write_series(tmp_path / "s.csv", n=10, a=np.arange(10.0), b=np.arange(10.0))
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:4] + lines[6:]) + "\n")  # rows 3 and 4 (03:00, 04:00) gone
    with pytest.raises(UserError, match=r"pass --freq \(e.g. --freq h\) with --fill ffill"):
        load_panel(path)
    with pytest.raises(UserError, match=r"4 missing value\(s\) \(a: 2 from row 3"):
        load_panel(path, freq="h")  # the rows are added, but not filled
    panel = load_panel(path, freq="h", fill="interpolate")
    assert panel.lengths.tolist() == [10] and panel.freq == "h"
    np.testing.assert_allclose(panel.target[:, 0], np.arange(10.0))


# ---------------------------------------------------------------------------------------------- protocol


def _series(n: int, channels: int = 1) -> Panel:
    """A one-series panel of n hourly rows (values 0..n-1 in each channel)."""
    values = np.repeat(np.arange(n, dtype=float)[:, None], channels, 1) * (1 + np.arange(channels))
    return Panel(ids=("s",), time_kind="datetime", freq="h", starts=[pd.Timestamp("2016-07-01")],
                 offsets=np.array([0, n]), target=values, target_names=tuple(f"c{i}" for i in range(channels)),
                 layout="wide")


@pytest.mark.parametrize(("L", "H"), [(336, 96), (336, 720), (512, 192), (96, 336)])
def test_ett_split_arithmetic(L, H):
    assert borders(17420, "ett", (), 0, 0) == ETT_BORDERS == (8640, 11520, 14400)
    data = prepare_forecast(_series(17420), input_len=L, horizon=H, split="ett")
    windows = {name: len(w) for name, w in data.windows.items()}
    # README: windows per split = rows - input_len - horizon + 1, val/test rows include L rows of context.
    assert windows == {"train": 8640 - L - H + 1, "val": 2880 - H + 1, "test": 2880 - H + 1, "recent": 3}
    # the recent windows (what the intervals' width is a multiple of): the last 3 training windows, a horizon apart
    assert data.windows["recent"].locate([0, 1, 2])[1].tolist() == [8640 - 3 * H, 8640 - 2 * H, 8640 - H]
    assert windows["train"] == count_windows(8640, L, H) and windows["val"] == count_windows(2880 + L, L, H)
    # Origins (the first forecast step): train from L, validation from its border, test from its border.
    assert [int(data.windows[name].first[0]) for name in ("train", "val", "test")] == [L, 8640, 11520]
    last_test = data.windows["test"].locate([windows["test"] - 1])[1][0]
    assert last_test + H == 14400  # the last test window ends on the border; later rows are unused


def test_ratio_split_arithmetic():
    assert borders(1000, "ratio", (0.7, 0.1, 0.2), 0, 0) == (700, 800, 1000)
    assert borders(17420, "ratio", (0.6, 0.2, 0.2), 0, 0) == (10452, 13936, 17420)
    data = prepare_forecast(_series(1000), input_len=24, horizon=6)
    # val: rows 676..799 (24 rows of context before its border), test: rows 776..999
    assert {name: (int(w.first[0]), len(w)) for name, w in data.windows.items()} == {
        "train": (24, 700 - 24 - 6 + 1), "val": (700, 124 - 24 - 6 + 1), "test": (800, 224 - 24 - 6 + 1),
        "recent": (700 - 3 * 6, 3)}
    x = data.dataset("val").batch([0]).x[0, :, 0].double() * data.std[0, 0] + data.mean[0, 0]
    torch.testing.assert_close(x, torch.arange(676, 700, dtype=torch.float64))


@pytest.mark.skipif(not ETTH1.is_file(), reason="ETTh1.csv not available")
def test_etth1_protocol():
    data = data_of(ETTH1, split="ett", input_len=336, horizon=96)
    assert data.columns == ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
    assert data.targets == data.columns and data.n_channels == 7
    assert {name: data.n_windows(name) for name in ("train", "val", "test")} == {"train": 8209, "val": 2785,
                                                                                 "test": 2785}
    assert len(data.dataset("test")) == 2785
    # ETT months are 30 days: the test split starts 16 · 30 days after 2016-07-01.
    assert data.panel.times(0, ETT_BORDERS[1], ETT_BORDERS[1] + 1)[0] == \
        pd.Timestamp("2016-07-01") + pd.Timedelta(days=480)
    raw = pd.read_csv(ETTH1)
    np.testing.assert_allclose(data.mean[0], raw.iloc[:8640, 1:].mean().to_numpy())
    np.testing.assert_allclose(data.std[0], raw.iloc[:8640, 1:].std(ddof=0).to_numpy())


def test_standardisation_uses_train_rows_only(tmp_path):
    n = 100
    a = np.concatenate([np.linspace(0, 1, 70), np.linspace(50, 60, 30)])  # later rows far from train rows
    path = write_series(tmp_path / "s.csv", n=n, a=a, b=np.sin(np.arange(n)))
    data = data_of(path, input_len=8, horizon=4)
    assert data.borders[0].tolist() == [70, 80, 100]
    np.testing.assert_allclose(data.mean[0, 0], a[:70].mean())
    np.testing.assert_allclose(data.std[0, 0], a[:70].std())
    standard = data.tensors["target"].double()  # (100, 2)
    train = standard[:70]
    torch.testing.assert_close(train.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(train.std(0, unbiased=False), torch.ones(2, dtype=torch.float64), atol=1e-6, rtol=0)
    assert standard[80:, 0].min() > 10  # test rows keep the train statistics
    test = data.dataset("test")
    assert int(test.windows.first[0]) == 80  # its first input: rows 72..79
    back = data.original(standard[None, 72:], np.array([0]))[0]
    np.testing.assert_allclose(back, data.panel.target[72:], rtol=1e-5, atol=1e-5)


def test_targets_select_channels(tmp_path):
    path = write_series(tmp_path / "s.csv")
    assert parse_targets(["b", "a,b"]) == ("b", "a") and parse_targets("a") == ("a",) and parse_targets(None) == ()
    data = data_of(path, target=("b", "a"), input_len=10, horizon=5)
    assert data.targets == ("b", "a") and data.target_index == (1, 0) and data.n_channels == 2


def test_windows_are_gathered_in_order():
    series = torch.arange(30, dtype=torch.float32).view(15, 2)
    empty = torch.empty(15, 0)
    windows = WindowSet([4], [15 - 4 - 3 + 1])
    dataset = PanelWindows(series, empty, empty, torch.empty(1, 0), np.array([0, 15]), windows, input_len=4,
                           horizon=3)
    assert len(dataset) == 15 - 4 - 3 + 1
    batch = dataset[2]  # origin 6: input rows 2..5, forecast rows 6..8
    torch.testing.assert_close(batch.x[0], series[2:6])
    torch.testing.assert_close(batch.y[0], series[6:9])
    assert batch.origin.tolist() == [6] and batch.series.tolist() == [0]
    both = dataset.batch([0, 8])
    torch.testing.assert_close(both.x[1], series[8:12])
    torch.testing.assert_close(both.y[1], series[12:15])
    with pytest.raises(IndexError):
        dataset[9]


@pytest.mark.skipif(not ETTH1.is_file(), reason="ETTh1.csv not available")
def test_etth1_ridge_keeps_the_published_protocols_figure(torch_single_thread):
    """The wide ETT path gives the figures `attnlab bench forecast` prints: ridge at L=512, H=96 (its lookback and
    strength chosen on the validation months) scores test MSE 0.3639 and MAE 0.3893 over every test window, all 7
    channels (docs/benchmarks.md; before the lookback choice: 0.3639 and 0.3905)."""
    from attnlab.catalog.forecast import RidgeConfig
    from attnlab.experiments.forecast import Forecast
    from attnlab.models.retrieval import RidgeForecaster

    task = Forecast(ForecastConfig(csv=str(ETTH1), split="ett", input_len=512, horizon=96))
    model = RidgeForecaster(task.complete_model_config(RidgeConfig()))
    task.prepare_model(model, task.data(0))
    test = task.series.dataset("test")
    squared = absolute = 0.0
    for chunk, out in task.predicted(model, "test"):
        error = (out - test.batch(chunk).y).double()
        squared, absolute = squared + error.pow(2).sum().item(), absolute + error.abs().sum().item()
    values = len(test) * 96 * 7
    assert (round(squared / values, 4), round(absolute / values, 4)) == (0.3639, 0.3893)
