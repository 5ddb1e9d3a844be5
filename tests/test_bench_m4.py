"""`attnlab bench m4`: Naive2 and the competition's scores by hand, the published Hourly figures reproduced from
the real files, the table, a tiny run end to end on files the test writes, and its bad options."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from attnlab import cli
from attnlab.bench import m4
from attnlab.data.panel import load_panel
from attnlab.data.readers import read_m4
from test_forecast_data import SHARED_DATA
from test_forecast_panel import write_m4

pytestmark = pytest.mark.usefixtures("torch_single_thread")

M4_DATA = SHARED_DATA / "m4"


def test_naive2_of_a_seasonal_series_repeats_its_seasonal_indices():
    pattern = np.array([10.0, 20.0, 30.0, 40.0])
    history = np.tile(pattern, 4)  # a level of 25 times the indices 0.4, 0.8, 1.2, 1.6
    np.testing.assert_allclose(m4.naive2(history, 6, 4), [10, 20, 30, 40, 10, 20])
    assert m4._seasonal(history, 4)


def test_naive2_without_seasonality_is_the_last_value():
    rng = np.random.default_rng(0)
    walk = 100 + rng.normal(size=60).cumsum()
    np.testing.assert_array_equal(m4.naive2(walk, 3, 1), np.repeat(walk[-1], 3))  # period 1: never seasonal
    np.testing.assert_array_equal(m4.naive2(walk[:8], 3, 4), np.repeat(walk[7], 3))  # under 3 seasons of history
    flat = np.full(40, 5.0)
    assert not m4._seasonal(flat, 4) and m4.naive2(flat, 2, 4).tolist() == [5.0, 5.0]


def test_the_competitions_scores_by_hand():
    histories = [np.array([1.0, 2, 3, 4, 5]), np.array([10.0, 10, 12, 12, 14])]
    truth = np.array([[6.0, 7.0], [14.0, 14.0]])
    forecast = np.array([[5.0, 5.0], [15.0, 13.0]])
    bounds = (np.array([[4.0, 6.0], [13.0, 13.5]]), np.array([[8.0, 6.5], [16.0, 15.0]]))
    row = m4.score("x", histories, truth, forecast, 2, (10.0, 1.0), bounds, level=80.0)
    # MASE period 2: scales mean |x_t - x_{t-2}| = 2 and (2 + 2 + 2) / 3 = 2
    assert row.mase == pytest.approx(((1 + 2) / 2 / 2 + (1 + 1) / 2 / 2) / 2)
    smape = 200 * np.mean([1 / 11, 2 / 12, 1 / 29, 1 / 27])
    assert row.smape == pytest.approx(smape)
    assert row.owa == pytest.approx(0.5 * (smape / 10.0 + row.mase / 1.0))
    # 7 is above 6.5: 3 of 4 covered; MSIS (a = 0.2): widths 4, 0.5, 3, 1.5 + 10 · 0.5 for the miss, over 2
    assert row.coverage == pytest.approx(0.75)
    assert row.msis == pytest.approx(np.mean([4 / 2, (0.5 + 10 * 0.5) / 2, 3 / 2, 1.5 / 2]))


def test_a_series_shorter_than_its_period_scales_by_lag_one():
    assert m4._mase_scale(np.array([1.0, 3.0, 6.0]), 24) == pytest.approx(2.5)


@pytest.mark.skipif(not (M4_DATA / "Hourly-train.csv").is_file(), reason="the M4 Hourly files are not available")
def test_the_published_hourly_benchmarks_are_reproduced():
    train, test = read_m4(M4_DATA, "Hourly")
    ids = list(dict.fromkeys(train.unique_id))
    assert len(ids) == 414 and test.groupby("unique_id").size().eq(48).all()
    histories = [part.y.to_numpy() for _, part in train.groupby("unique_id", sort=False)]
    truth = np.stack([part.y.to_numpy() for _, part in test.groupby("unique_id", sort=False)])
    published = m4.M4_GROUPS["Hourly"][2:]
    naive2 = m4.score("Naive2", histories, truth, np.stack([m4.naive2(x, 48, 24) for x in histories]), 24, published)
    assert (round(naive2.smape, 3), round(naive2.mase, 3), round(naive2.owa, 3)) == (18.383, 2.395, 1.0)
    seasonal = m4.score("seasonal naive", histories, truth, np.stack([np.resize(x[-24:], 48) for x in histories]),
                        24, published)
    smape, mase, owa = m4.PUBLISHED["Hourly"]["seasonal naive (M4)"]
    assert (round(seasonal.smape, 3), round(seasonal.mase, 3)) == (smape, mase)
    assert seasonal.owa == pytest.approx(owa, abs=1e-3)  # 0.6275: the paper rounds it down


def test_table_lists_the_rows_then_the_published_ones():
    rows = [m4.Row("Naive2", 18.383, 2.395, 1.0), m4.Row("ridge", 12.5, 1.25, 0.601, msis=9.5, coverage=0.93,
                                                         seconds=12.4)]
    lines = m4.table(rows, "Hourly").splitlines()
    assert lines[0] == "| model | sMAPE | MASE | OWA | 95 % MSIS | coverage | seconds |"
    assert lines[2] == "| Naive2 | 18.383 | 2.395 | 1.000 |  |  |  |"
    assert lines[3] == "| ridge | 12.500 | 1.250 | 0.601 | 9.500 | 0.930 | 12 |"
    assert lines[4] == "| *best method (M4)* | 8.913 | 0.801 | 0.410 |  |  |  |"
    assert lines[-1] == "| *ARIMA (M4)* |  |  |  | 7.538 |  |  |"
    assert len(m4.table(rows, "Yearly").splitlines()) == 4  # no published table for the group


def run_yearly(tmp_path, *args):
    """``attnlab bench m4`` on the Yearly files under ``tmp_path / "m4"`` with input 18, runs and rows.json under
    ``tmp_path``; its rows."""
    out = tmp_path / "rows.json"
    assert cli.main(["bench", "m4", "--data", str(tmp_path / "m4"), "--group", "Yearly", "--input-len", "18",
                     "--runs-root", str(tmp_path / "runs"), "--json", str(out), "--no-progress", "--jobs", "1",
                     *args]) == 0
    return json.loads(out.read_text())


def test_tiny_benchmark_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(3)
    series = {f"Y{i}": list(np.round(50 + i * 10 + rng.normal(size=40).cumsum(), 2)) for i in range(1, 5)}
    ahead = {sid: list(np.round(values[-1] + rng.normal(size=6).cumsum(), 2)) for sid, values in series.items()}
    write_m4(tmp_path / "m4", "Yearly", series, ahead)
    rows = {row["model"]: row for row in run_yearly(tmp_path, "--models", "ridge")}
    text = capsys.readouterr().out
    assert text.startswith("bench m4: Yearly, 4 series, horizon 6, MASE period 1, input 18, objectives mae,smape,mase, "
                           "95 % intervals")
    assert list(rows) == ["naive (last value)", "seasonal naive (1)", "Naive2", "ridge"]
    histories = [np.array(v) for v in series.values()]
    truth = np.array(list(ahead.values()))
    naive = m4.score("naive", histories, truth, np.stack([np.repeat(x[-1], 6) for x in histories]), 1,
                     m4.M4_GROUPS["Yearly"][2:])
    assert rows["naive (last value)"]["smape"] == pytest.approx(naive.smape)
    assert rows["Naive2"]["mase"] == pytest.approx(naive.mase)  # period 1: Naive2 is the last value
    ridge = rows["ridge"]
    assert 0 <= ridge["coverage"] <= 1 and math.isfinite(ridge["msis"]) and ridge["run_dir"].endswith("ridge")
    assert "| ridge |" in text and (tmp_path / "runs" / "ridge" / "forecasts.csv").is_file()


def test_a_runs_root_holding_a_finished_benchmark_or_a_file_is_refused_before_anything_runs(tmp_path, capsys,
                                                                                          cli_error):
    rng = np.random.default_rng(5)
    series = {f"Y{i}": list(np.round(50 + rng.normal(size=40).cumsum(), 2)) for i in range(1, 4)}
    write_m4(tmp_path / "m4", "Yearly", series, {sid: list(rng.normal(size=6) + 50) for sid in series})
    run_yearly(tmp_path, "--models", "ridge")
    capsys.readouterr()
    before = sorted(p.name for p in (tmp_path / "runs" / "ridge").iterdir())
    args = ["bench", "m4", "--group", "Yearly", "--data", str(tmp_path / "m4"), "--models", "ridge",
            "--input-len", "18", "--no-progress"]
    message = cli_error([*args, "--runs-root", str(tmp_path / "runs")])
    assert message.endswith(f": {tmp_path / 'runs' / 'ridge'} already holds a finished run; choose another --runs-root")
    assert sorted(p.name for p in (tmp_path / "runs" / "ridge").iterdir()) == before
    (tmp_path / "notes.txt").write_text("mine")
    message = cli_error([*args, "--runs-root", str(tmp_path / "notes.txt")])
    assert message.endswith(f": {tmp_path / 'notes.txt'} is a file, not a folder; pass a new folder for the run with "
                            "--runs-root")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_default_input_lengths_are_whole_seasons_covering_multiples_of_the_horizon():
    expected = list(dict.fromkeys(math.ceil(k * 48 / 24) * 24 for k in m4.INPUT_HORIZONS))
    assert m4._input_lens(None, 48, 24) == expected and all(n % 24 == 0 for n in expected)
    assert m4._input_lens(None, 6, 4) == list(dict.fromkeys(math.ceil(k * 6 / 4) * 4 for k in m4.INPUT_HORIZONS))
    assert m4._input_lens("96,168,96", 48, 24) == [96, 168]


@pytest.mark.parametrize(("args", "message"), [
    (["--group", "Hourlyy"], "unknown M4 group 'Hourlyy'"),
    (["--models", "ridge,nope"], "unknown forecast model(s) nope"),
    (["--level", "100"], "--level 100 must be a percentage in (0, 100)"),
    (["--data", "nowhere"], "Hourly-train.csv not found"),
    (["--seeds", "0"], "--seeds 0 must be at least 1"),
    (["--jobs", "0"], "--jobs 0 must be at least 1"),
    (["--input-len", "24,x"], "--input-len '24,x' must be one or more whole numbers of steps"),
    (["--losses", "mae,huber"], "--losses: unknown 'huber'; choose from mse,mae,mase,smape"),
])
def test_bad_options_are_one_line_errors(tmp_path, cli_error, args, message):
    assert message in cli_error(["bench", "m4", "--runs-root", str(tmp_path / "runs"), "--data", str(tmp_path),
                                 *args])
    assert not (tmp_path / "runs").exists()


def test_validation_scores_the_last_horizon_of_the_training_rows_and_never_the_test_values(tmp_path, capsys):
    rng = np.random.default_rng(4)
    series = {f"Y{i}": list(np.round(50 + i * 10 + rng.normal(size=46).cumsum(), 2)) for i in range(1, 5)}
    write_m4(tmp_path / "m4", "Yearly", series, {sid: [1e9] * 6 for sid in series})  # test values never used
    rows = {row["model"]: row for row in run_yearly(tmp_path, "--models", "linear", "--validation", "--seeds", "2",
                                                    "max_epochs=1")}
    text = capsys.readouterr().out
    assert "scored on the last horizon of each training row (--validation)" in text
    assert "*Naive2 (M4)*" not in text  # the published figures are test figures: not beside validation ones
    histories = [np.array(v[:-6]) for v in series.values()]
    truth = np.array([v[-6:] for v in series.values()])
    naive = m4.score("naive", histories, truth, np.stack([np.repeat(x[-1], 6) for x in histories]), 1,
                     m4.M4_GROUPS["Yearly"][2:])
    assert rows["naive (last value)"]["smape"] == pytest.approx(naive.smape)
    # two seeds: the row is the median (here the mean) of the two fits' forecasts
    members = [tmp_path / "runs" / "linear" / name for name in ("L18-mae-seed0", "L18-smape-seed1")]
    # the fits take the objectives of --losses (mae, smape, mase) in turn
    assert [json.loads((run / "config.json").read_text())["experiment_config"]["loss"] for run in members] == [
        "mae", "smape"]
    fits = [m4._read_forecasts(run / "forecasts.csv", _panel_of(series), 95.0) for run in members]
    assert not np.allclose(fits[0][0], fits[1][0])
    median = m4.score("m", histories, truth, (fits[0][0] + fits[1][0]) / 2, 1, m4.M4_GROUPS["Yearly"][2:])
    assert rows["linear (median of 2)"]["smape"] == pytest.approx(median.smape)
    assert rows["linear (median of 2)"]["owa"] < 10  # the 1e9 test values would give sMAPE near 200


def test_fits_in_worker_processes_score_as_one_at_a_time(tmp_path, capsys):
    rng = np.random.default_rng(7)
    series = {f"Y{i}": list(np.round(50 + i * 10 + rng.normal(size=40).cumsum(), 2)) for i in range(1, 5)}
    write_m4(tmp_path / "m4", "Yearly", series, {sid: list(v[-6:]) for sid, v in series.items()})
    rows = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"rows-{jobs}.json"
        assert cli.main(["bench", "m4", "--data", str(tmp_path / "m4"), "--group", "Yearly", "--input-len", "12,18",
                         "--models", "linear,ridge", "--runs-root", str(tmp_path / f"runs-{jobs}"), "--json", str(out),
                         "--no-progress", "--jobs", jobs, "max_epochs=1"]) == 0
        rows[jobs] = [{k: v for k, v in row.items() if k not in ("seconds", "run_dir", "extra")}
                      for row in json.loads(out.read_text())]
        text = capsys.readouterr().out
        assert f"fits {jobs} at a time" in text and "fit 4/4: " in text
    assert rows["1"] == rows["2"]  # each fit on one thread: the same forecasts bit for bit
    assert rows["2"][3]["model"] == "linear (median of 2)" and rows["2"][4]["model"] == "ridge (median of 2)"
    config = json.loads((tmp_path / "runs-2" / "linear" / "L18-smape-seed0" / "config.json").read_text())
    assert config["train"]["threads"] == 1


def test_the_median_of_several_fits_gets_intervals_calibrated_on_its_own_validation_errors(tmp_path):
    rng = np.random.default_rng(9)
    series = {f"Y{i}": list(np.round(50 + i * 10 + rng.normal(size=44).cumsum(), 2)) for i in range(1, 7)}
    ahead = {sid: list(np.round(v[-1] + rng.normal(size=6).cumsum(), 2)) for sid, v in series.items()}
    write_m4(tmp_path / "m4", "Yearly", series, ahead)
    row = run_yearly(tmp_path, "--models", "linear", "--seeds", "2", "max_epochs=2")[-1]
    assert row["model"] == "linear (median of 2)"
    members = [tmp_path / "runs" / "linear" / name for name in ("L18-mae-seed0", "L18-smape-seed1")]
    calibration = [pd.read_parquet(run / "calibration.parquet") for run in members]
    tests = [m4._read_forecasts(run / "forecasts.csv", _panel_of(series), 95.0)[0] for run in members]  # (S, 6) each
    ids, histories = list(series), [np.array(v) for v in series.values()]
    mase = np.array([m4._mase_scale(x, 1) for x in histories])
    # by hand, window by window: the two fits' median (their mean), its error, their disagreement (half the gap)
    windows = {}
    for frame in calibration:
        for r in frame.itertuples():
            windows.setdefault((r.split, r.unique_id, r.origin, r.step), []).append((r.point, r.truth))
    assert all(len(v) == 2 for v in windows.values())  # both fits forecast every window (the same input length)
    error = {k: abs(v[0][1] - (v[0][0] + v[1][0]) / 2) for k, v in windows.items()}
    gap = {k: abs(v[0][0] - v[1][0]) / 2 for k, v in windows.items()}
    recent = {sid: np.mean([e for k, e in error.items() if k[:2] == ("recent", sid)]) for sid in ids}
    steps = range(6)
    scores = {h: [] for h in steps}
    for sid, origin in {(k[1], k[2]) for k in windows if k[0] == "val"}:
        spread = np.mean([gap["val", sid, origin, h] for h in steps])
        for h in steps:
            scores[h].append(error["val", sid, origin, h] / (recent[sid] + 0.1 * mase[ids.index(sid)] + spread))
    n = len(scores[0])
    multiplier = np.array([sorted(scores[h])[min(n, int(np.ceil((n + 1) * 0.95))) - 1] for h in steps])  # (6,)
    point = (tests[0] + tests[1]) / 2
    width = (np.array([recent[s] for s in ids]) + 0.1 * mase + np.abs(tests[0] - tests[1]).mean(axis=1) / 2)[:, None]
    expected = m4.score("linear", histories, np.array(list(ahead.values())), point, 1, m4.M4_GROUPS["Yearly"][2:],
                        (point - multiplier * width, point + multiplier * width), 95.0)
    assert (row["msis"], row["coverage"], row["owa"]) == pytest.approx((expected.msis, expected.coverage, expected.owa))


def test_every_trained_model_gets_the_benchmarks_training_settings_and_the_users_overrides_win(tmp_path):
    rng = np.random.default_rng(8)
    series = {f"Y{i}": list(np.round(50 + rng.normal(size=40).cumsum(), 2)) for i in range(1, 4)}
    write_m4(tmp_path / "m4", "Yearly", series, {sid: list(v[-6:]) for sid, v in series.items()})
    run_yearly(tmp_path, "--models", "gru,ridge", "max_epochs=1")
    config = json.loads((tmp_path / "runs" / "gru" / "config.json").read_text())
    assert (config["train"]["batch_size"], config["train"]["patience"], config["train"]["max_epochs"]) == (256, 2, 1)
    assert config["experiment_config"]["train_history"] == 10 * 6  # ten horizons of the Yearly group
    ridge = json.loads((tmp_path / "runs" / "ridge" / "config.json").read_text())
    assert ridge["experiment_config"]["train_history"] == 0  # a closed-form model takes none of them


def _panel_of(series):
    return load_panel(pd.DataFrame([(sid, t, y) for sid, v in series.items() for t, y in enumerate(v)],
                                   columns=["unique_id", "ds", "y"]))


def test_twins_fit_beside_their_attention_model_and_the_ablation_says_which_wins(tmp_path, capsys):
    rng = np.random.default_rng(5)
    series = {f"Y{i}": list(np.round(50 + i * 10 + rng.normal(size=40).cumsum(), 2)) for i in range(1, 4)}
    write_m4(tmp_path / "m4", "Yearly", series, {sid: list(v[-6:]) for sid, v in series.items()})
    rows = run_yearly(tmp_path, "--models", "patch_transformer,linear", "--twins", "max_epochs=1")
    assert [r["model"] for r in rows][3:] == ["patch_transformer", "patch_transformer[attention=mean]", "linear"]
    model, twin = rows[3], rows[4]
    assert twin["twin_of"] == "patch_transformer" and model["twin_of"] is None
    assert json.loads((tmp_path / "runs" / "patch_transformer-twin" / "config.json").read_text()
                      )["model_config"]["attention"] == "mean"
    verdict = "PASS" if model["owa"] < twin["owa"] else "FAIL"
    text = capsys.readouterr().out
    assert (f"{verdict} attention vs its attention-free twin: patch_transformer OWA {model['owa']:.3f}, "
            f"patch_transformer[attention=mean] {twin['owa']:.3f}") in text
    assert f": patch_transformer[attention=mean] L18-mae-seed0  OWA {twin['owa']:.3f}" in text  # its fit's line


def test_series_too_short_for_the_input_get_seasonal_naive_and_are_counted(tmp_path, capsys):
    rng = np.random.default_rng(6)
    series = {f"Y{i}": list(np.round(50 + rng.normal(size=n).cumsum(), 2)) for i, n in enumerate([40, 40, 40, 20])}
    ahead = {sid: list(np.round(v[-1] + rng.normal(size=6).cumsum(), 2)) for sid, v in series.items()}
    write_m4(tmp_path / "m4", "Yearly", series, ahead)
    row = run_yearly(tmp_path, "--models", "ridge")[3]
    assert "1 series too short for every input length: seasonal naive forecasts them" in capsys.readouterr().out
    assert row["extra"]["series_too_short"] == 1
    fit = m4._read_forecasts(tmp_path / "runs" / "ridge" / "forecasts.csv", _panel_of(series), 95.0)
    assert np.isnan(fit[0][3]).all() and not np.isnan(fit[0][:3]).any()
    point, lo, hi, short = m4._fill_short(fit, [np.array(v) for v in series.values()], 6, 1)
    assert short == 1 and point[3].tolist() == [series["Y3"][-1]] * 6 and (lo[3] < point[3]).all()
    histories = [np.array(v) for v in series.values()]
    expected = m4.score("", histories, np.array(list(ahead.values())), point, 1, m4.M4_GROUPS["Yearly"][2:])
    assert row["smape"] == pytest.approx(expected.smape)
