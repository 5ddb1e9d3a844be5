"""`attnlab forecast` / `attnlab predict` and the Python API end to end on a wide CSV (one series, three
channels): run folder contents, exact metrics over every test window, forecasts.csv time stamps and interval
bounds, the predict round trip, and bad input (exit 2, one line, no run folder left behind)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from attnlab import cli
from attnlab.catalog.forecast import ForecastConfig
from attnlab.errors import UserError
from attnlab.experiments.forecast import Forecast
from attnlab.forecast import forecast, predict
from attnlab.train import load_model
from test_forecast_data import edit_lines, write_series

pytestmark = pytest.mark.usefixtures("torch_single_thread")

L, H = 24, 6


def seasonal_csv(path: Path, n: int = 400) -> Path:
    rng = np.random.default_rng(1)
    t = np.arange(n)
    return write_series(path, n=n, a=np.sin(2 * np.pi * t / 24) + 0.1 * rng.normal(size=n),
                        b=3 + 2 * np.cos(2 * np.pi * t / 12) + 0.1 * rng.normal(size=n),
                        c=0.01 * t + 0.2 * rng.normal(size=n))


def task_of(run_dir: Path, **changes) -> tuple[torch.nn.Module, Forecast]:
    """The run's model and a task that reads its CSV again (with ``changes`` to its data options)."""
    model, config = load_model(run_dir)
    options = {**vars(config.experiment_config), **changes}
    task = Forecast(ForecastConfig(**options))
    task.complete_model_config(config.model_config)
    return model, task


def interval_scale_by_hand(model: torch.nn.Module, data, values: np.ndarray) -> np.ndarray:
    """(C,) the interval scale of the fixture's one series from the CSV's rows ``values`` (400, C): the model's
    mean absolute error on the last 3 training windows (forecasting rows 262–279, a horizon apart) + 0.1 × the
    MASE scale."""
    errors = []
    for origin in (280 - 3 * H, 280 - 2 * H, 280 - H):
        x = torch.as_tensor((values[origin - L: origin] - data.mean[0]) / data.std[0], dtype=torch.float32)
        with torch.no_grad():
            point = data.original(model(x[None]), np.array([0]))[0]  # (H, C)
        errors.append(np.abs(values[origin: origin + H] - point).mean(axis=0))
    return np.mean(errors, axis=0) + 0.1 * data.mase_scale[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny DLinear run through the CLI with 80 % intervals (batch 16 does not divide the 75 test windows)."""
    root = tmp_path_factory.mktemp("forecast")
    csv = seasonal_csv(root / "series.csv")
    run_dir = root / "run"
    code = cli.main(["forecast", "--csv", str(csv), "--input-len", str(L), "--horizon", str(H), "--model", "linear",
                     "--levels", "80", "--run-dir", str(run_dir), "--no-progress", "max_epochs=2", "batch_size=16",
                     "lr=0.01"])
    assert code == 0
    return csv, run_dir


def test_run_folder_holds_everything(run):
    _, run_dir = run
    for name in ("config.json", "metrics.json", "model.safetensors", "series.json", "series_stats.safetensors",
                 "forecasts.csv", "baselines.json", "horizon_errors.csv", "intervals.json", "figures/forecast.png"):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    sizes = {key: config["model_config"][key] for key in ("seq_len", "pred_len", "n_channels", "n_hist", "n_futr",
                                                          "n_static", "kernel_size", "individual")}
    assert sizes == {"seq_len": L, "pred_len": H, "n_channels": 3, "n_hist": 0, "n_futr": 0, "n_static": 0,
                     "kernel_size": 25, "individual": False}
    series = json.loads((run_dir / "series.json").read_text())
    assert {key: series[key] for key in ("ids", "layout", "targets", "freq", "time_kind", "split", "season")} == {
        "ids": ["series"], "layout": "wide", "targets": ["a", "b", "c"], "freq": "h", "time_kind": "datetime",
        "split": "ratio", "season": 24}
    assert series["windows"] == {"train": 280 - L - H + 1, "val": 40 - H + 1, "test": 80 - H + 1, "recent": 3}
    assert json.loads((run_dir / "intervals.json").read_text())["method"] == "conformal"
    assert pd.read_csv(run_dir / "horizon_errors.csv").columns.tolist() == ["step", "mae", "rmse", "mase", "smape"]


def test_metrics_are_exact_means_over_every_test_window(run):
    csv, run_dir = run
    model, task = task_of(run_dir)
    data = task.series
    n = data.n_windows("test")
    assert n == 75
    batch = data.dataset("test").batch(np.arange(n))
    with torch.no_grad():
        prediction = model(batch.x).double()  # (n, H, C)
    error = prediction - batch.y.double()
    metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert metrics["mse"] == pytest.approx(error.pow(2).mean().item(), rel=1e-5)
    assert metrics["mae"] == pytest.approx(error.abs().mean().item(), rel=1e-5)
    std = torch.as_tensor(data.std[0])
    orig = error * std
    assert metrics["mse_orig"] == pytest.approx(orig.pow(2).mean().item(), rel=1e-5)
    assert metrics["mae_orig"] == pytest.approx(orig.abs().mean().item(), rel=1e-5)
    # MASE: over each channel's mean absolute seasonal (24-step) difference of the 280 training rows
    raw = pd.read_csv(csv)[["a", "b", "c"]].to_numpy()
    scale = np.abs(raw[24:280] - raw[:256]).mean(axis=0)
    assert metrics["mase"] == pytest.approx((orig.abs().numpy() / scale).mean(), rel=1e-5)
    truth = batch.y.double() * std + torch.as_tensor(data.mean[0])
    forecast_ = prediction * std + torch.as_tensor(data.mean[0])
    smape = (200 * (truth - forecast_).abs() / (truth.abs() + forecast_.abs())).mean().item()
    assert metrics["smape"] == pytest.approx(smape, rel=1e-4)


def test_window_mse_is_each_windows_error_and_averages_to_the_metric(run):
    _, run_dir = run
    model, task = task_of(run_dir)
    errors = task.window_mse(model)  # (75,)
    assert errors.shape == (75,)
    metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert errors.double().mean().item() == pytest.approx(metrics["mse"], rel=1e-5)
    batch = task.series.dataset("test").batch([40])
    with torch.no_grad():
        error = model(batch.x) - batch.y
    assert errors[40].item() == pytest.approx(error.pow(2).mean().item(), rel=1e-5)
    # one target channel: the error of that channel alone
    _, only_b = task_of(run_dir, target=("b",))
    assert only_b.window_mse(model)[40].item() == pytest.approx(error[..., 1].pow(2).mean().item(), rel=1e-5)


def test_forecasts_csv_has_every_window_with_time_stamps_and_bounds(run):
    csv, run_dir = run
    frame = pd.read_csv(run_dir / "forecasts.csv", parse_dates=["origin", "ds"])
    raw = pd.read_csv(csv, parse_dates=["date"])
    assert list(frame.columns) == ["window", "unique_id", "origin", "step", "ds"] + [
        f"{c}_{part}" for c in "abc" for part in ("forecast", "actual", "lo_80", "hi_80")]
    assert len(frame) == 75 * H and frame["window"].nunique() == 75 and set(frame["unique_id"]) == {"series"}
    test_start = 400 - 80  # the test split's first forecast row
    first = frame.iloc[0]
    assert first["origin"] == raw["date"][test_start - 1] and first["ds"] == raw["date"][test_start]
    last = frame.iloc[-1]
    assert (last["window"], last["step"], last["ds"]) == (74, H, raw["date"][399])
    np.testing.assert_allclose(frame["b_actual"].to_numpy()[:H], raw["b"][test_start : test_start + H], rtol=1e-5)
    model, task = task_of(run_dir)
    data = task.series
    with torch.no_grad():
        out = model(data.dataset("test").batch([74]).x)
    expected = data.original(out, np.array([0]))[0]  # (H, C)
    np.testing.assert_allclose(frame[["a_forecast", "b_forecast", "c_forecast"]].to_numpy()[-H:], expected, rtol=1e-4)
    # The conformal bounds: the forecast ± the step's multiplier times the channel's interval scale.
    scale = interval_scale_by_hand(model, task.series, raw[["a", "b", "c"]].to_numpy())
    multipliers = np.asarray(json.loads((run_dir / "intervals.json").read_text())["multipliers"]["80"])  # (H, C)
    half = (frame[["a_hi_80", "b_hi_80", "c_hi_80"]].to_numpy() - frame[["a_lo_80", "b_lo_80", "c_lo_80"]].to_numpy())
    np.testing.assert_allclose(half[:H] / 2, multipliers * scale, rtol=1e-4, atol=1e-5)


def test_predict_round_trip(run, tmp_path, capsys):
    csv, run_dir = run
    out = tmp_path / "next.csv"
    assert cli.main(["predict", "--run", str(run_dir), "--csv", str(csv), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"steps written to {out}")
    frame = pd.read_csv(out, parse_dates=["ds"])
    assert list(frame.columns) == ["unique_id", "ds"] + [f"{c}{part}" for c in "abc" for part in ("", "-lo-80",
                                                                                                    "-hi-80")]
    assert len(frame) == H
    assert frame["ds"][0] == pd.Timestamp("2021-03-01") + pd.Timedelta(hours=400)
    assert (frame["ds"].diff().dropna() == pd.Timedelta(hours=1)).all()
    # Same numbers by hand: the last L rows, standardised with the saved train statistics.
    data = task_of(run_dir)[1].series
    raw = pd.read_csv(csv)[["a", "b", "c"]].to_numpy()
    x = (raw[-L:] - data.mean[0]) / data.std[0]
    model, _ = load_model(run_dir)
    with torch.no_grad():
        y = model(torch.tensor(x, dtype=torch.float32)[None])[0].double().numpy()
    point = y * data.std[0] + data.mean[0]
    np.testing.assert_allclose(frame[["a", "b", "c"]].to_numpy(), point, rtol=1e-4)
    multipliers = np.asarray(json.loads((run_dir / "intervals.json").read_text())["multipliers"]["80"])
    np.testing.assert_allclose(frame[["a-hi-80", "b-hi-80", "c-hi-80"]].to_numpy(),
                               point + multipliers * interval_scale_by_hand(model, data, raw), rtol=1e-4)

    assert cli.main(["predict", "--run", str(run_dir), "--csv", str(csv)]) == 0
    printed = pd.read_csv(io.StringIO(capsys.readouterr().out))
    np.testing.assert_allclose(printed[["a", "b", "c"]].to_numpy(), frame[["a", "b", "c"]].to_numpy(), rtol=1e-5)


def test_the_docs_name_the_columns_of_the_run_files_and_of_predict(run, tmp_path):
    """docs/forecasting.md's file table and interval section name the columns forecasts.csv, horizon_errors.csv
    and `attnlab predict` really have (here: a wide file of targets a, b, c, 80 % intervals)."""
    import re

    csv, run_dir = run
    doc = (Path(__file__).parents[1] / "docs" / "forecasting.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z_]+\.csv)` \| (.*) \|$", doc, re.M)}
    forecasts = pd.read_csv(run_dir / "forecasts.csv", nrows=1).columns.tolist()
    start = rows["forecasts.csv"].split("`")[1].split(", ")
    assert forecasts[:len(start)] == start
    per_target = re.findall(r"`(<target>_[a-z]+(?:_<level>)?)`", rows["forecasts.csv"])
    assert sorted(per_target) == ["<target>_actual", "<target>_forecast", "<target>_hi_<level>", "<target>_lo_<level>"]
    assert {t.replace("<target>", "a").replace("<level>", "80") for t in per_target} <= set(forecasts)
    horizon = pd.read_csv(run_dir / "horizon_errors.csv", nrows=1).columns.tolist()
    assert rows["horizon_errors.csv"].split("`")[1].split(", ") == horizon
    assert predict(run_dir, csv).columns.tolist()[:5] == ["unique_id", "ds", "a", "a-lo-80", "a-hi-80"]
    assert "(`unique_id, ds, a, b`, `a-lo-80`, …)" in doc  # predict's columns, named by the targets


def test_predict_on_a_renamed_wide_file_is_the_trained_series(run, tmp_path):
    """A wide file is one series named after the file: the same rows under another file name (new rows appended
    to a copy, say) are still the series the run trained on, scaled with its saved statistics."""
    csv, run_dir = run
    renamed = tmp_path / "series-2021-copy.csv"
    shutil.copy(csv, renamed)
    expected, got = predict(run_dir, csv), predict(run_dir, renamed)
    assert list(got["unique_id"].unique()) == list(expected["unique_id"].unique()) == ["series"]
    np.testing.assert_allclose(got.drop(columns=["unique_id", "ds"]).to_numpy(),
                               expected.drop(columns=["unique_id", "ds"]).to_numpy(), rtol=1e-6)


def test_predict_bad_input(run, tmp_path, cli_error):
    csv, run_dir = run
    two = tmp_path / "two.csv"
    pd.read_csv(csv).drop(columns=["c"]).to_csv(two, index=False)
    with pytest.raises(UserError, match="lacks the target column\\(s\\) c that the run was trained on"):
        predict(run_dir, two)
    irregular = edit_lines(seasonal_csv(tmp_path / "irr.csv"), {390: "2021-03-17 06:30:00,0,1,2"})
    with pytest.raises(UserError, match="time stamp 2021-03-17 06:30:00 is not on the run's h grid; the run "
                       "forecasts steps of h"):
        predict(run_dir, irregular)  # the run's own frequency
    short = seasonal_csv(tmp_path / "short.csv", n=10)
    with pytest.raises(UserError, match="has 10 steps but the model needs the last input_len = 24"):
        predict(run_dir, short)
    with pytest.raises(UserError, match="not a run folder"):
        predict(tmp_path, csv)
    with pytest.raises(UserError, match=r"the run has no 95 % interval; it was trained with levels \[80"):
        predict(run_dir, csv, levels=[95])
    out = tmp_path / "never.csv"
    message = cli_error(["predict", "--run", str(run_dir), "--csv", str(short), "--out", str(out)])
    assert "input_len = 24" in message and not out.exists()


def test_predict_errors_name_fixes_that_predict_takes(run, tmp_path, cli_error):
    """predict reads the time column and the frequency from the run: its errors never suggest --date-col or --freq,
    which `attnlab predict` does not accept."""
    csv, run_dir = run
    renamed = tmp_path / "renamed.csv"
    pd.read_csv(csv).rename(columns={"date": "when"}).to_csv(renamed, index=False)
    message = cli_error(["predict", "--run", str(run_dir), "--csv", str(renamed)])
    assert message.endswith("the run reads its time stamps from a column named ds, date, time, timestamp or "
                            "datetime: give the file that column, or train a run on this file with `attnlab "
                            "forecast --csv renamed.csv`")
    coarse = tmp_path / "90min.csv"
    frame = pd.read_csv(csv)
    frame.assign(date=pd.date_range("2021-01-01", periods=len(frame), freq="90min")).to_csv(coarse, index=False)
    message = cli_error(["predict", "--run", str(run_dir), "--csv", str(coarse)])
    assert "01:30:00 is not on the run's h grid; the run forecasts steps of h, this data's are 90min: pass data at " \
        "the run's frequency" in message
    for message in (cli_error(["predict", "--run", str(run_dir), "--csv", str(renamed)]),
                    cli_error(["predict", "--run", str(run_dir), "--csv", str(coarse)])):
        assert "--date-col" not in message and "--freq" not in message


@pytest.mark.parametrize("levels", ["0", "100", "80,120", "-5"])
def test_predict_levels_out_of_range_are_refused_as_in_forecast(run, capsys, levels):
    csv, run_dir = run
    assert cli.main(["predict", "--run", str(run_dir), "--csv", str(csv), "--levels", levels]) == 2
    assert capsys.readouterr().err == (f"attnlab: error: --levels {levels!r}: each level is a percentage in (0, 100), "
                                       "e.g. 80,95\n")


def test_predict_never_overwrites_the_input_or_a_users_file(run, tmp_path):
    csv, run_dir = run
    before = csv.read_bytes()
    with pytest.raises(UserError, match=r"--out .* is the input CSV; write the forecast to another file"):
        predict(run_dir, csv, out=csv)
    assert csv.read_bytes() == before
    mine = tmp_path / "mine.csv"
    mine.write_text("keep me\n")
    with pytest.raises(UserError, match=r"--out .*mine.csv exists; choose another file, or pass --overwrite"):
        predict(run_dir, csv, out=mine)
    assert mine.read_text() == "keep me\n"
    assert len(predict(run_dir, csv, out=mine, overwrite=True)) == 6 and "keep me" not in mine.read_text()
    with pytest.raises(UserError, match="is a folder; pass a file name"):
        predict(run_dir, csv, out=tmp_path)


@pytest.mark.parametrize("damage", ["series key", "series json", "stats empty", "stats truncated", "intervals json",
                                    "weights empty", "weights truncated"])
def test_a_damaged_run_file_is_a_one_line_error(run, tmp_path, damage):
    csv, run_dir = run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    stats, weights = copy / "series_stats.safetensors", copy / "model.safetensors"
    if damage == "series key":
        payload = json.loads((copy / "series.json").read_text())
        del payload["input_len"]
        (copy / "series.json").write_text(json.dumps(payload))
        expected = r"damaged series.json or series_stats.safetensors \(missing 'input_len'\); retrain the run"
    elif damage == "series json":
        (copy / "series.json").write_text("{not json")
        expected = r"damaged series.json or series_stats.safetensors \(JSONDecodeError\)"
    elif damage == "stats empty":
        stats.write_bytes(b"")
        expected = r"damaged series.json or series_stats.safetensors \(SafetensorError\)"
    elif damage == "stats truncated":
        stats.write_bytes(stats.read_bytes()[:100])
        expected = r"damaged series.json or series_stats.safetensors \(SafetensorError\)"
    elif damage == "intervals json":
        (copy / "intervals.json").write_text("[1, 2")
        expected = r"intervals.json is damaged \(JSONDecodeError\)"
    elif damage == "weights empty":
        weights.write_bytes(b"")
        expected = r"model.safetensors is damaged \(.*\); retrain the run, or restore the file"
    else:
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        expected = r"model.safetensors is damaged \(.*\); retrain the run, or restore the file"
    with pytest.raises(UserError, match=expected) as info:
        predict(copy, csv)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------- bad input


def cli_error(capsys, args: list[str], run_dir: Path) -> str:
    capsys.readouterr()
    code = cli.main(["forecast", *args, "--run-dir", str(run_dir), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("attnlab: error: ") and "\n" not in err
    assert not run_dir.exists()
    return err


def test_cli_missing_file(tmp_path, capsys):
    err = cli_error(capsys, ["--csv", str(tmp_path / "missing.csv")], tmp_path / "run")
    assert "missing.csv not found" in err


def test_cli_nan_cells(tmp_path, capsys):
    csv = edit_lines(seasonal_csv(tmp_path / "s.csv"), {5: "2021-03-01 05:00:00,,1,2"})
    err = cli_error(capsys, ["--csv", str(csv), "--input-len", "24", "--horizon", "6"], tmp_path / "run")
    assert "1 missing value(s) (a: 1 from row 5 (file line 7))" in err and "--fill ffill" in err


def test_cli_horizon_zero(tmp_path, capsys):
    csv = seasonal_csv(tmp_path / "s.csv")
    err = cli_error(capsys, ["--csv", str(csv), "--horizon", "0"], tmp_path / "run")
    assert err.endswith("error: --horizon 0 is out of range; it must be at least 1 step")
    err = cli_error(capsys, ["--csv", str(csv), "--horizon", "6", "--input-len", "-3"], tmp_path / "run")
    assert err.endswith("error: --input-len -3 is out of range; it must be at least 1 step (or leave --input-len out "
                        "for the default)")
    err = cli_error(capsys, ["--csv", str(csv), "--horizon", "6", "--season", "0"], tmp_path / "run")
    assert "--season 0 is out of range" in err


def test_cli_unknown_target_and_all(tmp_path, capsys):
    csv = seasonal_csv(tmp_path / "s.csv")
    err = cli_error(capsys, ["--csv", str(csv), "--target", "OT", "--input-len", "24", "--horizon", "6"],
                    tmp_path / "run")
    assert "unknown target column(s) 'OT'" in err and "available: a, b, c" in err
    err = cli_error(capsys, ["--csv", str(csv), "--target", "a", "--all"], tmp_path / "run")
    assert "--all and --target exclude each other" in err


@pytest.mark.parametrize(
    ("edit", "options", "expected"),
    [
        ({}, {"date_col": "time"}, "has no column 'time'"),
        ({3: "soon,1,2,3"}, {}, "cannot parse 'soon' in column 'date' at row 3"),
        ({8: "2021-03-01 08:00:00,1,two,3"}, {}, "column 'b' has a non-numeric value 'two' at row 8"),
        ({8: "2021-03-01 07:00:00,1,2,3"}, {}, "duplicated at row 8"),
        ({8: "2021-03-01 06:30:00,1,2,3"}, {}, "not increasing: row 8"),
        ({}, {"horizon": 45}, "the val split has 64 rows (with 24 rows of context before it)"),
        ({}, {"target": ("x",)}, "unknown target column(s) 'x'"),
        ({6: "2021-03-01 04:00:00,1,2,3,4"}, {}, "Expected 4 fields in line 8, saw 5); pass a comma-separated file"),
    ],
)
def test_api_bad_input_leaves_no_run_folder(tmp_path, edit, options, expected):
    csv = edit_lines(seasonal_csv(tmp_path / "s.csv"), edit)
    kwargs = {"input_len": L, "horizon": H} | options
    with pytest.raises(UserError) as info:
        forecast(csv, "linear", run_dir=tmp_path / "run", progress=False, **kwargs)
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_api_constant_column_leaves_no_run_folder(tmp_path):
    csv = write_series(tmp_path / "s.csv", n=200, a=np.sin(np.arange(200.0)), flat=np.ones(200))
    with pytest.raises(UserError, match="column 'flat' is constant over the 140 train rows"):
        forecast(csv, "linear", input_len=L, horizon=H, run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_api_rejects_conflicting_sizes_and_data_overrides(tmp_path):
    csv = seasonal_csv(tmp_path / "s.csv")
    with pytest.raises(UserError, match=r"model.pred_len=7 conflicts with the data \(pred_len = 6 from --horizon"):
        forecast(csv, "linear", ["model.pred_len=7"], input_len=L, horizon=H, run_dir=tmp_path / "run",
                 progress=False)
    with pytest.raises(UserError, match="set horizon with --horizon"):
        forecast(csv, "linear", ["data.horizon=7"], input_len=L, horizon=H, run_dir=tmp_path / "run",
                 progress=False)
    with pytest.raises(UserError, match="unknown model 'prophet'"):
        forecast(csv, "prophet", input_len=L, horizon=H, run_dir=tmp_path / "run", progress=False)
    with pytest.raises(TypeError, match="unknown data option"):
        forecast(csv, "linear", horizn=H, run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_data_overrides_move_into_the_data_options(tmp_path):
    """``data.loss=mae`` (or ``loss=mae``, a key only the data options have) sets the data option; train and
    model keys stay overrides."""
    from attnlab.catalog.forecast import DLinearConfig
    from attnlab.forecast.api import _data_overrides

    overrides = {"data.loss": "mae", "train_stride": "4", "lr": "0.1", "model.kernel_size": "5"}
    assert _data_overrides(overrides, DLinearConfig) == {"loss": "mae", "train_stride": 4}
    assert overrides == {"lr": "0.1", "model.kernel_size": "5"}
    with pytest.raises(UserError, match="bad value for data.train_stride"):
        _data_overrides({"data.train_stride": "often"}, DLinearConfig)


def test_attention_model_on_target_subset(tmp_path):
    """An attention model scoring one target channel: metrics over that channel, attention samples labelled
    with time stamps, forecasts.csv and predict restricted to the target."""
    csv = seasonal_csv(tmp_path / "s.csv")
    result = forecast(csv, "attentive_rnn", ["max_epochs=1", "model.hidden_dim=8"], target=("b",), input_len=L,
                      horizon=H, run_dir=tmp_path / "run", progress=False, forecast_windows=5)
    model, task = task_of(result.run_dir)
    n = task.series.n_windows("test")
    batch = task.series.dataset("test").batch(np.arange(n))
    with torch.no_grad():
        error = (model(batch.x) - batch.y)[..., 1]
    assert result.metrics["mse"] == pytest.approx(error.double().pow(2).mean().item(), rel=1e-5)
    frame = pd.read_csv(result.forecasts_csv)
    assert list(frame.columns[5:]) == ["b_forecast", "b_actual"] and frame["window"].nunique() == 5
    assert (result.run_dir / "figures" / "forecast_attention.png").is_file()

    samples = task.attention_samples(model, task.data(0), limit=2)
    assert len(samples) == 2 and samples[1].maps[0].key_labels[0] == "2021-03-13 08:00"  # test window 0
    focus = task.attention_window()  # the attention figure's window comes first: the report opens on it
    assert samples[0].in_figures and samples[0].title.startswith(f"test window {focus}: ") and focus == 37
    assert list(predict(result.run_dir, csv).columns) == ["unique_id", "ds", "b"]


def test_cli_figure_options_choose_windows_channels_and_attention_window(tmp_path):
    """--plot-window / --plot-channel / --attention-window reach the run's config, and the task draws and
    records exactly those (negative windows counted from the end, repeats dropped)."""
    csv = seasonal_csv(tmp_path / "s.csv")
    run_dir = tmp_path / "run"
    code = cli.main(["forecast", "--csv", str(csv), "--input-len", str(L), "--horizon", str(H), "--model",
                     "attentive_rnn", "--run-dir", str(run_dir), "--no-progress", "--forecast-windows", "0",
                     "--plot-window", "0,-1", "--plot-window", "0", "--plot-channel", "c", "--plot-channel", "a",
                     "--attention-window", "-5", "max_epochs=1", "model.hidden_dim=8"])
    assert code == 0
    saved = json.loads((run_dir / "config.json").read_text())["experiment_config"]
    assert (saved["plot_window"], saved["plot_channel"], saved["attention_window"]) == ([0, -1, 0], ["c", "a"], -5)
    assert (run_dir / "figures" / "forecast.png").is_file()
    assert (run_dir / "figures" / "forecast_attention.png").is_file()
    assert not (run_dir / "forecasts.csv").exists()  # --forecast-windows 0

    model, task = task_of(run_dir)
    n = task.series.n_windows("test")  # 75
    assert task.drawn_windows() == [0, n - 1] and task.drawn_channels() == [2, 0] and task.attention_window() == n - 5
    samples = task.attention_samples(model, task.data(0), limit=3)
    assert [s.title.split(":")[0] for s in samples] == [f"test window {n - 5}", "test window 0",
                                                          f"test window {(n - 1) // 2}"]


def test_figure_defaults_are_spread_windows_first_targets_and_the_middle_one(tmp_path):
    csv = seasonal_csv(tmp_path / "s.csv")
    task = Forecast(Forecast.Config(csv=str(csv), input_len=L, horizon=H, target=("c", "b")))
    assert task.drawn_windows() == [0, 37, 74] and task.drawn_channels() == [2, 1] and task.attention_window() == 37
    task = Forecast(Forecast.Config(csv=str(csv), input_len=L, horizon=H, plot_windows=0))
    assert task.drawn_windows() == [] and task.attention_window() is None


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["plot_window=75"], "plot_window=75 is out of range: the test split has 75 windows (0 to 74, or -75 to -1"),
        (["plot_window=3,-76"], "plot_window=-76 is out of range"),
        (["attention_window=100"], "attention_window=100 is out of range"),
        (["plot_channel=x"], "s.csv; choose from a, b, c"),
        (["plot_window=first"], "bad value for plot_window"),
    ],
)
def test_bad_figure_options_leave_no_run_folder(tmp_path, options, expected):
    csv = seasonal_csv(tmp_path / "s.csv")
    with pytest.raises(UserError) as info:
        forecast(csv, "linear", options, input_len=L, horizon=H, run_dir=tmp_path / "run", progress=False)
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_plot_channel_must_be_a_target(tmp_path, capsys):
    csv = seasonal_csv(tmp_path / "s.csv")
    err = cli_error(capsys, ["--csv", str(csv), "--input-len", "24", "--horizon", "6", "--target", "b",
                             "--plot-channel", "a"], tmp_path / "run")
    assert "plot_channel 'a' is not a target channel of" in err and "s.csv; choose from b (the model is scored" in err


def test_attention_figure_keeps_the_drawn_channels_maps_channel_by_channel():
    from attnlab.experiments.forecast import maps_of_channels
    from attnlab.nn.maps import AttentionMap

    def amap(layer):
        return AttentionMap(layer, "self", torch.zeros(1, 2, 2), ["p0", "p1"], ["p0", "p1"])

    maps = [amap(f"encoder.layers.{i}.self_attn [{c}]") for i in range(2) for c in ("a", "b", "c")]
    maps.append(amap("pool"))
    kept = maps_of_channels(maps, ("a", "b", "c"), ["c", "a"])
    assert [m.layer for m in kept] == ["pool", "encoder.layers.0.self_attn [c]", "encoder.layers.1.self_attn [c]",
                                       "encoder.layers.0.self_attn [a]", "encoder.layers.1.self_attn [a]"]
