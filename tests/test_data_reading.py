"""Users' CSV files as they come: encodings, separators, decimal commas, time zones, day-first dates, gaps, and
paths that are not files. Each problem is one line naming the fix, or the file is read as it means."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnlab import cli
from attnlab.data.timeseries import read_table
from attnlab.errors import UserError


def frame(n: int = 48, freq: str = "h") -> pd.DataFrame:
    stamps = pd.date_range("2020-01-01", periods=n, freq=freq)
    return pd.DataFrame({"date": stamps.strftime("%Y-%m-%d %H:%M:%S"), "a": np.sin(np.arange(n) / 5),
                         "b": np.arange(n, dtype=float) * 1.5})


def test_mixed_utc_offsets_are_converted_to_utc(tmp_path, caplog):
    # The same hourly instants written with alternating offsets (+01:00, +02:00): a regular series in UTC.
    stamps = pd.date_range("2020-01-01", periods=48, freq="h")
    offsets = [f"{(t + pd.Timedelta(hours=1 + i % 2)).isoformat()}+0{1 + i % 2}:00" for i, t in enumerate(stamps)]
    frame().assign(date=offsets).to_csv(tmp_path / "mixed.csv", index=False)
    with caplog.at_level("INFO", logger="attnlab"):
        table = read_table(tmp_path / "mixed.csv")
    assert "different UTC offsets: converted to UTC" in caplog.text
    assert table.timestamps[0] == pd.Timestamp("2020-01-01 00:00:00") and table.freq == "h"
    assert table.timestamps.tz is None


def test_daily_stamps_across_summer_time_keep_their_local_dates(tmp_path, caplog):
    """Daily Europe/Berlin stamps (+01:00 in winter, +02:00 in summer) are regular on the local calendar, not in
    UTC: they keep their dates, at the file's frequency and at predict time; the log says so once."""
    from attnlab.data.panel import load_panel
    from attnlab.forecast import Forecaster

    days = pd.date_range("2020-01-01", periods=200, freq="D", tz="Europe/Berlin")
    rng = np.random.default_rng(0)
    long = pd.concat([pd.DataFrame({"unique_id": sid, "ds": days, "y": rng.normal(size=200)}) for sid in "ab"])
    path = tmp_path / "berlin.csv"
    long.assign(ds=long.ds.map(lambda t: t.isoformat())).to_csv(path, index=False)
    assert "+01:00" in path.read_text() and "+02:00" in path.read_text()
    with caplog.at_level("INFO", logger="attnlab"):
        panel = load_panel(path)
    assert caplog.text.count("have different UTC offsets, each at the same local time of day: kept as local") == 1
    assert panel.freq == "D" and panel.starts == [pd.Timestamp("2020-01-01")] * 2 and list(panel.lengths) == [200] * 2
    assert load_panel(path, freq="D", fill="ffill").lengths.tolist() == [200, 200]  # no row added
    assert list(load_panel(long).times(0)) == list(days.tz_localize(None))  # a zoned DataFrame column: the same
    fc = Forecaster(["ridge"], h=3, input_len=14, runs_root=tmp_path / "runs").fit(path)
    assert fc.predict(path).ds.tolist()[:3] == list(pd.date_range("2020-07-19", periods=3, freq="D"))


def test_hourly_stamps_across_summer_time_are_read_in_utc():
    """Hourly stamps in a summer-time zone skip an hour of the local clock in spring: in UTC they are regular."""
    from attnlab.data.panel import load_panel

    hours = pd.date_range("2020-03-28", periods=72, freq="h", tz="Europe/Berlin")
    panel = load_panel(pd.DataFrame({"unique_id": "a", "ds": hours, "y": np.arange(72.0)}))
    assert panel.freq == "h" and panel.starts[0] == pd.Timestamp("2020-03-27 23:00")


def test_empty_rows_at_the_end_are_dropped_and_counted(tmp_path, caplog):
    """A spreadsheet's export ends in ",," lines: they hold no data, so they are dropped (one log line counts
    them); a row with a time stamp but empty values is still a missing value, and an empty row inside the data is
    still named by its row."""
    from attnlab.data.panel import load_panel

    path = tmp_path / "excel.csv"
    frame().to_csv(path, index=False)
    path.write_text(path.read_text() + ",,\n,,\n , ,\n")
    with caplog.at_level("INFO", logger="attnlab"):
        table = read_table(path)
    assert len(table.timestamps) == 48 and table.freq == "h"
    assert caplog.text.count("excel.csv: dropped 3 empty row(s) at its end (every cell empty)") == 1
    long = tmp_path / "long.csv"
    pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2020-01-01", periods=30, freq="D"), "y": 1.0}).to_csv(
        long, index=False)
    long.write_text(long.read_text() + ",,\n,,\n")
    assert load_panel(long).lengths.tolist() == [30]
    with_gap = tmp_path / "gap.csv"
    with_gap.write_text(long.read_text().replace("2020-01-05,1.0", "2020-01-05,"))
    with pytest.raises(UserError, match=r"1 missing value\(s\)"):
        load_panel(with_gap)
    inside = tmp_path / "inside.csv"
    lines = path.read_text().splitlines()
    inside.write_text("\n".join(lines[:6] + [",,"] + lines[6:]) + "\n")
    with pytest.raises(UserError, match=r"1 empty time stamp\(s\), the first at row 5 \(file line 7\)"):
        read_table(inside)


def test_semicolon_separated_with_decimal_commas(tmp_path):
    path = tmp_path / "excel.csv"
    frame().to_csv(path, index=False, sep=";", decimal=",")
    expected = r"column 'a' holds numbers written with a decimal comma \('0,0'\); pass --decimal ,"
    with pytest.raises(UserError, match=expected):
        read_table(path)
    table = read_table(path, decimal=",")
    np.testing.assert_allclose(table.values[:, 1], np.arange(48) * 1.5)
    assert table.columns == ("a", "b")


def test_a_quoted_decimal_comma_column_is_named_not_dropped(tmp_path, capsys):
    data = frame()
    data["b"] = [f"{v:.2f}".replace(".", ",") for v in data["b"]]
    path = tmp_path / "comma.csv"
    data.to_csv(path, index=False)
    with pytest.raises(UserError, match=r"column 'b' holds numbers written with a decimal comma .*pass --decimal ,"):
        read_table(path)
    argv = ["forecast", "--csv", str(path), "--target", "b", "--input-len", "8", "--horizon", "2",
            "--run-dir", str(path.parent / "run")]
    assert cli.main(argv) == 2
    assert "holds numbers written with a decimal comma" in capsys.readouterr().err  # not "unknown target column"
    assert read_table(path, decimal=",").values[3, 1] == 4.5


def test_thousands_separators_with_a_decimal_comma(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("date;v\n" + "".join(f"2020-01-{d:02d};1.234,{d}\n" for d in range(1, 11)))
    assert read_table(path, decimal=",").values[:3, 0].tolist() == [1234.1, 1234.2, 1234.3]


def test_gaps_are_refused_unless_a_frequency_and_a_fill_are_given(tmp_path):
    path = tmp_path / "gaps.csv"
    frame().drop(index=[10, 11, 12]).to_csv(path, index=False)
    with pytest.raises(UserError, match=r"not regular: 2020-01-01 09:00:00 is followed by 2020-01-01 13:00:00 .*"
                                        r"pass --freq \(e.g. --freq h\) with --fill ffill"):
        read_table(path)
    with pytest.raises(UserError, match=r"has 6 missing value\(s\) .*fill them with --fill ffill"):
        read_table(path, freq="h")
    table = read_table(path, freq="h", fill="interpolate")
    assert len(table.timestamps) == 48 and table.freq == "h"
    np.testing.assert_allclose(table.values[10:13, 1], [15.0, 16.5, 18.0])  # b is linear in time
    with pytest.raises(UserError, match="--freq 'fortnightly' is not a pandas frequency"):
        read_table(path, freq="fortnightly")


@pytest.mark.parametrize(("encoding", "expected"), [
    ("utf-16", r"is UTF-16 text; re-encode it as UTF-8 \(e.g. iconv -f UTF-16 -t UTF-8"),
    ("latin-1", r"is not UTF-8 \(byte 0xe9 at byte 10; it looks like Latin-1 or Windows-1252\); re-encode it"),
])
def test_other_encodings_say_to_re_encode(tmp_path, encoding, expected):
    path = tmp_path / "enc.csv"
    frame().rename(columns={"a": "température"}).to_csv(path, index=False, encoding=encoding)
    with pytest.raises(UserError, match=expected):
        read_table(path)


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    path = tmp_path / "bom.csv"
    frame().to_csv(path, index=False, encoding="utf-8-sig")
    assert read_table(path).columns == ("a", "b")


def test_day_first_dates_are_read_day_first_without_a_pandas_warning(tmp_path, caplog):
    data = frame(n=40, freq="D")
    data["date"] = pd.date_range("2020-01-01", periods=40, freq="D").strftime("%d/%m/%Y")
    path = tmp_path / "dayfirst.csv"
    data.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning from pandas fails the test
        with caplog.at_level("INFO", logger="attnlab"):
            table = read_table(path)
    assert table.timestamps[12] == pd.Timestamp("2020-01-13") and table.freq == "D"
    assert "read the dates of dayfirst.csv day-first" in caplog.text


@pytest.mark.parametrize(("make", "expected"), [
    (lambda tmp: tmp, "is a folder, not a CSV file; pass the file itself with --csv"),
    (lambda tmp: Path("/dev/null"), "/dev/null is not a regular file (a device or a pipe)"),
    (lambda tmp: tmp / "empty.csv", "empty.csv is empty; pass a CSV file with a header row and data rows"),
])
def test_paths_that_are_not_csv_files(tmp_path, make, expected):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UserError) as err:
        read_table(make(tmp_path))
    assert expected in str(err.value)


def test_an_unreadable_file_says_so(tmp_path, monkeypatch):
    import os

    path = tmp_path / "locked.csv"
    frame().to_csv(path, index=False)
    monkeypatch.setattr(os, "access", lambda p, mode: False)  # the tests run as root, who can read anything
    with pytest.raises(UserError, match=r"locked.csv is not readable \(permission denied\); fix its permissions"):
        read_table(path)


@pytest.mark.parametrize("argv", [
    ["forecast", "--csv", "{tmp}"],
    ["forecast", "--csv", "/dev/null"],
    ["predict", "--run", "{tmp}/missing-run", "--csv", "{tmp}/x.csv"],
    ["translate", "fit", "--corpus", "{tmp}"],
    ["fit", "sine", "--out", "{tmp}/file"],
    ["fit", "sine", "--out", ""],
    ["report", "{tmp}/file"],
])
def test_the_cli_answers_bad_paths_in_one_line(tmp_path, capsys, argv):
    (tmp_path / "file").write_text("x")
    code = cli.main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("attnlab: error: "), err
