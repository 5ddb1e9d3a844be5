"""The pandas-first API (attnlab.forecast.Forecaster) and the panel commands: fit / predict / save / load,
cross_validation and `attnlab backtest`, attention as a tidy table, `attnlab forecast` and `attnlab predict` on
a long CSV, and every bad input of #22 through `attnlab.cli.main` (exit 2, one line, nothing written)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import safetensors.torch

from attnlab import cli
from attnlab.data.forecasting import mase_denominator
from attnlab.data.panel import load_panel
from attnlab.errors import UserError
from attnlab.forecast import Forecaster, forecast
from attnlab.forecast.api import forecast_future
from attnlab.metrics import point_scores
from test_forecast_panel import SERIES, panel_frame

pytestmark = pytest.mark.usefixtures("torch_single_thread")

H, L = 4, 12


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """ridge and a one-epoch DLinear on three hourly series of 60, 80 and 70 steps, with 80 % intervals."""
    root = tmp_path_factory.mktemp("forecaster")
    fc = Forecaster(["ridge", "linear"], h=H, input_len=L, levels=(80,), overrides={"linear": ["max_epochs=1"]},
                    runs_root=root / "runs")
    return fc.fit(panel_frame())


# ---------------------------------------------------------------------------------------------- fit and predict


def test_predict_continues_every_series(fitted):
    future = fitted.predict()
    assert future.columns.tolist() == ["unique_id", "ds", "ridge", "ridge-lo-80", "ridge-hi-80", "linear",
                                       "linear-lo-80", "linear-hi-80"]
    for sid, n, start in SERIES:
        stamps = future.ds[future.unique_id == sid].tolist()
        assert stamps == list(pd.date_range(start, periods=n + H, freq="h")[n:])
    for model in ("ridge", "linear"):
        assert (future[f"{model}-lo-80"] < future[model]).all() and (future[model] < future[f"{model}-hi-80"]).all()
        alone = forecast_future(fitted.runs[model], fitted.history, label=model)
        pd.testing.assert_frame_equal(future[alone.columns], alone)
    with pytest.raises(UserError, match=r"the run has no 95 % interval; it was trained with levels \[80"):
        fitted.predict(level=[95])
    assert fitted.predict(level=[]).columns.tolist() == ["unique_id", "ds", "ridge", "linear"]


def test_a_series_unseen_in_training_is_scaled_by_its_own_history(fitted):
    frame = panel_frame()
    shifted = frame[frame.unique_id == "s0"].assign(unique_id="new", y=lambda f: f.y + 1000.0)
    future = fitted.predict(pd.concat([frame, shifted]))
    # ridge forecasts x_L + (x - x_L) W on any scale: the shifted copy's forecast is s0's plus 1000
    np.testing.assert_allclose(future.ridge[future.unique_id == "new"].to_numpy() - 1000.0,
                               future.ridge[future.unique_id == "s0"].to_numpy(), atol=2e-3)
    # its interval scale: its MASE scale (over its whole history, season 24) times the run's median ratio of
    # interval scale to MASE scale
    own = mase_denominator(shifted.y.to_numpy()[:, None], 24)[0]
    stats = safetensors.torch.load_file(str(fitted.runs["ridge"] / "series_stats.safetensors"))
    interval, mase = stats["interval_scale"][:, 0].numpy(), stats["mase_scale"][:, 0].numpy()  # (3,) each
    half = {sid: (future["ridge-hi-80"] - future["ridge-lo-80"])[future.unique_id == sid].to_numpy() / 2
            for sid in ("new", "s0")}
    np.testing.assert_allclose(half["new"] / half["s0"], own * np.median(interval / mase) / interval[0], rtol=1e-5)


def test_a_series_too_short_to_train_is_left_out_of_predict_and_backtests(tmp_path, caplog):
    """fit leaves out a series too short for a training, a validation and a test window (and says so); predict()
    and cross_validation then forecast the series the models were trained on, not fail on the short one."""
    frame = panel_frame((*SERIES, ("short", 10, "2021-01-01 00:00")))
    fc = Forecaster(["ridge"], h=H, input_len=L, runs_root=tmp_path / "runs")
    with caplog.at_level("INFO"):
        future = fc.fit(frame).predict()
    assert "left out 1 of 4 series too short" in caplog.text
    assert future.groupby("unique_id").size().to_dict() == {sid: H for sid, _, _ in SERIES}
    table = fc.cross_validation(frame, n_windows=2)
    assert sorted(table.unique_id.unique()) == [sid for sid, _, _ in SERIES]
    assert len(table) == 2 * len(SERIES) * H and table.ridge.notna().all()


def test_integer_series_ids_come_back_as_integers(tmp_path):
    """predict, cross_validation and attention give the input's ids with their dtype, so they merge back on it."""
    frame = panel_frame()
    frame["unique_id"] = frame.unique_id.str[1:].astype(np.int64) + 10  # 10, 11, 12
    fc = Forecaster(["ridge"], h=H, input_len=L, runs_root=tmp_path / "runs").fit(frame)
    future = fc.predict()
    assert future.unique_id.dtype == np.int64 and sorted(future.unique_id.unique()) == [10, 11, 12]
    last = frame.groupby("unique_id", as_index=False).y.last()
    merged = future.merge(last, on="unique_id")
    assert len(merged) == len(future) == 3 * H and merged.y.notna().all()
    assert fc.predict(frame).unique_id.dtype == np.int64
    cv = fc.cross_validation(frame, n_windows=2)
    assert cv.unique_id.dtype == np.int64
    back = cv.merge(frame, on=["unique_id", "ds"], suffixes=("", "_frame"))
    assert len(back) == len(cv) and (back.y == back.y_frame).all()
    scales = fc._scales(cv)  # each row's own series' scale, not the fallback 1.0
    assert len(set(np.round(scales, 12))) == 3 and not np.isclose(scales, 1.0).any()


def test_column_names_are_settable(tmp_path):
    frame = panel_frame().rename(columns={"unique_id": "store", "ds": "day", "y": "sales"})
    fc = Forecaster(["ridge"], h=H, input_len=L, id_col="store", time_col="day", target_col="sales",
                    runs_root=tmp_path)
    future = fc.fit(frame).predict()
    assert future.columns.tolist() == ["store", "day", "ridge"] and len(future) == 3 * H
    with pytest.raises(UserError, match="has no column 'day'"):
        fc.predict(panel_frame())  # the history must have the fitted data's columns


def test_save_and_load_give_the_same_forecasts(fitted, tmp_path):
    saved = fitted.save(tmp_path / "saved")
    assert sorted(p.name for p in saved.iterdir()) == ["forecaster.json", "linear", "ridge"]
    suffixes = {p.suffix for p in saved.rglob("*") if p.is_file()}
    assert not suffixes & {".pkl", ".pickle", ".pt", ".pth", ".ckpt"}  # safetensors and JSON, no pickle
    assert json.loads((saved / "forecaster.json").read_text())["models"] == ["ridge", "linear"]
    loaded = Forecaster.load(saved)
    assert loaded.models == ["ridge", "linear"] and loaded.h == H
    pd.testing.assert_frame_equal(loaded.predict(panel_frame()), fitted.predict())
    with pytest.raises(UserError, match="pass the history df to continue"):
        loaded.predict()
    with pytest.raises(UserError, match="is not empty; save the forecaster to a new folder"):
        fitted.save(saved)
    with pytest.raises(UserError, match="forecaster.json not found; pass a folder written by Forecaster.save"):
        Forecaster.load(tmp_path)
    (saved / "forecaster.json").write_text("{")
    with pytest.raises(UserError, match="forecaster.json is damaged"):
        Forecaster.load(saved)


def test_bad_settings_are_one_line(tmp_path):
    with pytest.raises(UserError, match="h=None: pass the horizon"):
        Forecaster(["ridge"])
    with pytest.raises(UserError, match="levels=.* percentages in \\(0, 100\\)"):
        Forecaster(["ridge"], h=4, levels=(80, 100))
    with pytest.raises(UserError, match="unknown model 'prophet'"):
        Forecaster(["prophet"], h=4)
    with pytest.raises(UserError, match="name a model twice"):
        Forecaster(["ridge", "ridge"], h=4)
    with pytest.raises(UserError, match="fit the Forecaster"):
        Forecaster(["ridge"], h=4).predict()


def test_data_errors_name_the_forecasters_arguments_not_the_clis_options(tmp_path):
    frame = panel_frame().rename(columns={"ds": "when", "unique_id": "store"})
    with pytest.raises(UserError, match=r"has no column 'ds' \(columns: store, when, y\); name its time column with "
                                        r"time_col=$"):
        Forecaster(["ridge"], h=4, id_col="store", runs_root=tmp_path).fit(frame)
    with pytest.raises(UserError, match=r"no id column 'unique_id' .*; name it with id_col=, or pass id_col=None"):
        Forecaster(["ridge"], h=4, time_col="when", runs_root=tmp_path).fit(frame)


# ---------------------------------------------------------------------------------------------- backtests


def test_cross_validation_by_hand(tmp_path):
    frame = panel_frame()
    fc = Forecaster(["ridge"], h=H, input_len=L, runs_root=tmp_path / "runs")
    table = fc.cross_validation(frame, n_windows=3, step_size=2)
    assert table.columns.tolist() == ["unique_id", "ds", "cutoff", "window", "y", "ridge"]
    assert len(table) == 3 * len(SERIES) * H
    assert len(list((tmp_path / "runs").iterdir())) == 1  # refit=False: trained once, at the first cutoff
    for w in range(3):
        for sid, n, start in SERIES:
            part = table[(table.window == w) & (table.unique_id == sid)]
            cut = n - H - (2 - w) * 2  # steps before the cutoff's forecast
            stamps = pd.date_range(start, periods=n, freq="h")
            assert (part.cutoff == stamps[cut - 1]).all() and part.ds.tolist() == list(stamps[cut:cut + H])
            np.testing.assert_allclose(part.y, frame.y[frame.unique_id == sid].iloc[cut:cut + H])
    # every window is forecast by the first cutoff's model from the history before its own cutoff
    panel = load_panel(frame)
    run_dir = next((tmp_path / "runs").iterdir())
    later = forecast_future(run_dir, panel.truncate(H), label="ridge")
    np.testing.assert_allclose(table.ridge[table.window == 2], later.ridge)
    lines = fc.cv_summary(table)
    assert lines[0].split() == ["model", "window", "MSE", "MAE", "MASE", "sMAPE"] and len(lines) == 1 + 4
    scales = fc._scales(table)
    overall = point_scores(table.y.to_numpy()[:, None, None], table.ridge.to_numpy()[:, None, None], scales[:, None])
    error = table.ridge - table.y
    assert lines[-1].split() == ["ridge", "all", f"{(error ** 2).mean():.5g}", f"{error.abs().mean():.5g}",
                                 f"{overall['mase']:.4f}", f"{overall['smape']:.3f}"]
    first = error[table.window == 0]
    assert lines[1].split()[:4] == ["ridge", "0", f"{(first ** 2).mean():.5g}", f"{first.abs().mean():.5g}"]


def test_a_wide_files_backtest_scores_each_target_against_its_own_values(tmp_path):
    rng = np.random.default_rng(7)
    wide = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=80, freq="h"), "a": rng.normal(size=80),
                         "b": 100 + rng.normal(size=80).cumsum(), "c": 50 + rng.normal(size=80)})
    fc = Forecaster(["ridge"], h=H, input_len=L, id_col=None, time_col="date", target_col=("c", "a"),
                    runs_root=tmp_path)
    table = fc.cross_validation(wide, n_windows=2)
    assert table.columns.tolist() == ["unique_id", "date", "cutoff", "window", "c", "a", "ridge:c", "ridge:a"]
    for column in ("a", "c"):  # the true values of that column, at each row's time
        np.testing.assert_allclose(table[column], wide.set_index("date").loc[table.date, column])
    lines = fc.cv_summary(table)
    assert [line.split()[:2] for line in lines[1:]] == [[f"ridge:{t}", w] for t in "ca" for w in ("0", "1", "all")]
    overall = point_scores(table.a.to_numpy()[:, None, None], table["ridge:a"].to_numpy()[:, None, None],
                           fc._scales(table, 0)[:, None])
    assert lines[-1].split()[4:] == [f"{overall['mase']:.4f}", f"{overall['smape']:.3f}"]


@pytest.mark.parametrize(("refit", "fits"), [(True, 3), (2, 2)])
def test_refit_every_k_windows(tmp_path, refit, fits):
    Forecaster(["ridge"], h=H, input_len=L, runs_root=tmp_path).cross_validation(panel_frame(), n_windows=3,
                                                                                  refit=refit)
    names = sorted(p.name.rsplit("-", 3)[0] for p in tmp_path.iterdir())
    assert names == [f"forecaster-ridge-cutoff{w}" for w in ((0, 1, 2) if refit is True else (0, 2))]
    assert len(names) == fits


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_windows": 0}, "n_windows=0 must be at least 1"),
    ({"step_size": 0}, "step_size=0 must be at least 1"),
    ({"refit": 0}, "refit=0 must be False, True or a number of windows >= 1"),
    ({"n_windows": 20}, "series 's0' has 60 steps, too few for 20 backtest windows of horizon 4, 4 apart"),
])
def test_bad_backtests(tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message):
        Forecaster(["ridge"], h=H, input_len=L, runs_root=tmp_path / "runs").cross_validation(panel_frame(), **kwargs)
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------- attention


def test_attention_as_a_tidy_table(tmp_path):
    fc = Forecaster(["transformer", "ridge"], h=H, input_len=L, runs_root=tmp_path,
                    overrides={"transformer": ["max_epochs=1", "model.d_model=8", "model.num_heads=2",
                                               "model.num_layers=1"]})
    table = fc.fit(panel_frame()).attention()
    assert table.columns.tolist() == ["model", "unique_id", "cutoff", "layer", "layer_name", "head", "query", "key",
                                      "weight"]
    assert set(table.model) == {"transformer"} and set(table.layer_name) == {"encoder.layers.0.self_attn"}
    assert len(table) == 3 * 2 * L * L  # series x heads x queries x keys
    sums = table.groupby(["unique_id", "head", "query"]).weight.sum()
    np.testing.assert_allclose(sums, 1.0, atol=1e-5)
    assert table[table.unique_id == "s1"].cutoff.iloc[0] == pd.Timestamp("2021-01-05 12:00")  # its last step
    assert (table["query"].min(), table["key"].max(), table["head"].max()) == (1, L, 2)
    with pytest.raises(UserError, match=r"none of the models \(ridge\) has attention to show"):
        fc.attention(model="ridge")


# ---------------------------------------------------------------------------------------------- the commands


@pytest.fixture(scope="module")
def panel_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("panel") / "panel.csv"
    panel_frame().to_csv(path, index=False)
    return path


def test_forecast_command_on_a_panel_flags_a_model_that_loses_to_seasonal_naive(panel_csv, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli.main(["forecast", "--csv", str(panel_csv), "--horizon", "4", "--input-len", "12", "--levels", "80,95",
                     "--model", "linear", "--run-dir", str(run_dir), "--no-progress", "--no-figures",
                     "max_epochs=1", "lr=1e-6"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("forecast/linear: panel.csv  3 series  split last  input 12  horizon 4  season 24")
    names = [line.split("  ")[1].strip() for line in lines if line.startswith("  ") and "  " in line[2:]]
    assert {"naive (last value)", "seasonal naive (season 24)", "ridge (closed form)"} <= set(names)
    assert any(line.startswith("  80 % interval: coverage ") and "MSIS" in line for line in lines)
    assert any(line.startswith("  95 % interval: coverage ") for line in lines)
    assert any(line.startswith("  warning: the model loses to the seasonal naive forecast") for line in lines)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"coverage_80", "width_80", "msis_80", "coverage_95"} <= set(metrics["test"])
    assert any("loses to the seasonal naive" in w for w in metrics["warnings"])

    out = tmp_path / "next.csv"
    assert cli.main(["predict", "--run", str(run_dir), "--csv", str(panel_csv), "--levels", "95", "--out",
                     str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"forecast of 3 series x 4 steps written to {out}"
    future = pd.read_csv(out)
    assert future.columns.tolist() == ["unique_id", "ds", "linear", "linear-lo-95", "linear-hi-95"]
    assert future.groupby("unique_id").size().to_dict() == {"s0": 4, "s1": 4, "s2": 4}
    assert cli.main(["predict", "--run", str(run_dir), "--csv", str(panel_csv), "--out", str(out),
                     "--overwrite"]) == 0
    assert pd.read_csv(out).columns.tolist()[2:] == ["linear", "linear-lo-80", "linear-hi-80", "linear-lo-95",
                                                     "linear-hi-95"]


def test_backtest_command(panel_csv, tmp_path, capsys):
    out, runs = tmp_path / "cv.csv", tmp_path / "runs"
    assert cli.main(["backtest", "--csv", str(panel_csv), "--horizon", "4", "--input-len", "12", "--n-windows", "2",
                     "--models", "ridge", "--levels", "80", "--runs-root", str(runs), "--out", str(out),
                     "--no-progress"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["model", "window", "MSE", "MAE", "MASE", "sMAPE"]
    assert [line.split()[:2] for line in printed[1:4]] == [["ridge", "0"], ["ridge", "1"], ["ridge", "all"]]
    assert printed[-1] == f"forecasts of 2 cutoffs written to {out}"
    table = pd.read_csv(out)
    assert table.columns.tolist() == ["unique_id", "ds", "cutoff", "window", "y", "ridge", "ridge-lo-80",
                                      "ridge-hi-80"]
    assert len(table) == 2 * 3 * 4 and len(list(runs.iterdir())) == 1


@pytest.mark.parametrize(("args", "message"), [
    ([], "pass --horizon H, the steps each backtest window forecasts"),
    (["--horizon", "4", "--levels", "100"], "--levels '100': each level is a percentage in (0, 100)"),
    (["--horizon", "4", "--refit", "sometimes"], "--refit 'sometimes' is not never, always or a number"),
    (["--horizon", "4", "--n-windows", "0"], "--n-windows 0 is out of range"),
    (["--horizon", "4", "--models", "ridge,nope"], "unknown model 'nope'"),
    (["--horizon", "4", "--id-col", "store"], "has no id column 'store'"),
    (["--horizon", "4", "--n-windows", "30"], "too few for 30 backtest windows"),
])
def test_backtest_bad_input_writes_nothing(panel_csv, tmp_path, cli_error, args, message):
    out, runs = tmp_path / "cv.csv", tmp_path / "runs"
    assert message in cli_error(["backtest", "--csv", str(panel_csv), *args, "--input-len", "12", "--runs-root",
                                 str(runs), "--out", str(out)])
    assert not out.exists() and not runs.exists()


def _edit(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    if kind == "duplicated":
        frame.loc[65, "ds"] = frame.loc[64, "ds"]
    elif kind == "mixed":
        frame["ds"] = frame["ds"].astype(str)
        frame.loc[frame.unique_id == "s2", "ds"] = [str(i) for i in range(70)]
    elif kind == "irregular":
        frame = frame.drop(index=70)
    return frame


@pytest.mark.parametrize(("case", "extra", "message"), [
    ("plain", ["--id-col", "store"], "has no id column 'store'"),
    ("duplicated", [], "series 's1': time stamp 2021-01-02 09:00:00 is duplicated at row 65"),
    ("mixed", [], "column 'ds' mixes integer periods and dates"),
    ("irregular", [], "series 's1': time stamps are not regular"),
    ("unknown static", ["--static-csv", "STATIC"], "id(s) 's9' are not series of the data"),
    ("duplicated static", ["--static-csv", "STATIC"], "series id 's1' appears 2 times"),
    ("plain", ["--levels", "0,95"], "--levels '0,95': each level is a percentage in (0, 100)"),
    ("plain", ["--levels", "80,100"], "each level is a percentage in (0, 100)"),
    ("plain", ["--split", "ratio", "--input-len", "8", "--horizon", "10"], "no series of"),
    ("parquet", [], "Parquet"),
    ("plain", ["--freq", "h", "--fill", "sometimes"], "invalid choice: 'sometimes'"),
    ("plain", ["--no-horizon"], "pass --horizon H, the steps to forecast (the data is at frequency h, so one season "
                                "is 24 steps; e.g. --horizon 24)"),
])
def test_bad_panels_are_one_line_and_leave_no_run_folder(tmp_path, cli_error, case, extra, message):
    frame = _edit(panel_frame(), case)
    csv = tmp_path / ("data.parquet" if case == "parquet" else "data.csv")
    frame.to_csv(csv, index=False)  # a "Parquet" file that is a CSV
    static = pd.DataFrame({"unique_id": ["s0", "s1", "s2" if case != "unknown static" else "s9"],
                           "size": [1.0, 2.0, 3.0]})
    if case == "duplicated static":
        static = pd.concat([static, static.iloc[1:2]])
    static.to_csv(tmp_path / "static.csv", index=False)
    args = [str(tmp_path / "static.csv") if a == "STATIC" else a for a in extra]
    if "--no-horizon" in args:
        args.remove("--no-horizon")
    elif "--horizon" not in args:
        args += ["--horizon", "4"]
    run_dir = tmp_path / "run"
    if message.startswith("invalid choice"):  # argparse's own error (exit 2, its usage lines)
        with pytest.raises(SystemExit) as info:
            cli.main(["forecast", "--csv", str(csv), *args, "--run-dir", str(run_dir)])
        assert info.value.code == 2 and not run_dir.exists()
        return
    assert message in cli_error(["forecast", "--csv", str(csv), *args, "--run-dir", str(run_dir)])
    assert not run_dir.exists()


def test_integer_periods_end_to_end(tmp_path):
    """Series indexed by years: trained with figures, the future continues the periods."""
    t = np.arange(60)
    frame = pd.concat([pd.DataFrame({"unique_id": sid, "ds": np.arange(1950 + i, 2010 + i), "y": np.sin(t / 4) + i})
                       for i, sid in enumerate(("a", "b"))])
    fc = Forecaster(["ridge"], h=3, input_len=8, levels=(90,), runs_root=tmp_path)
    future = fc.fit(frame, val_size=6).predict()
    assert future.ds.tolist() == [2010, 2011, 2012, 2011, 2012, 2013]
    assert json.loads((fc.runs["ridge"] / "series.json").read_text())["time_kind"] == "int"
    result = forecast(frame, "ridge", horizon=3, input_len=8, run_dir=tmp_path / "run", progress=False)
    assert [p.name for p in result.run.figures] == ["forecast.png"]
    assert pd.read_csv(result.forecasts_csv).ds.tolist()[:3] == [2007, 2008, 2009]  # series a's test window


def test_a_horizon_longer_than_the_validation_part_leaves_no_run_folder(tmp_path):
    with pytest.raises(UserError, match=r"val_size \(4\) and test_size \(8\) must be at least the horizon \(8\)"):
        forecast(panel_frame(), "ridge", horizon=8, input_len=8, val_size=4, run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
