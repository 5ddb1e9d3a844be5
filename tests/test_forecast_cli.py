"""`attnlab forecast` / `attnlab predict` and the Python API end to end: run folder contents, exact metrics over
every test window, forecasts.csv time stamps, the predict round trip, and bad input (exit 2, one line, no run
folder left behind)."""

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
from attnlab.errors import UserError
from attnlab.experiments.forecast import predict_windows, window_mse
from attnlab.forecast import forecast, load_data, predict
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


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny DLinear run through the CLI (batch 16 does not divide the 89 test windows)."""
    root = tmp_path_factory.mktemp("forecast")
    csv = seasonal_csv(root / "series.csv")
    run_dir = root / "run"
    code = cli.main(["forecast", "--csv", str(csv), "--input-len", str(L), "--horizon", str(H), "--model", "linear",
                     "--run-dir", str(run_dir), "--no-progress", "max_epochs=2", "batch_size=16", "lr=0.01"])
    assert code == 0
    return csv, run_dir


def test_run_folder_holds_everything(run, capsys):
    _, run_dir = run
    for name in ("config.json", "metrics.json", "model.safetensors", "scaler.json", "forecasts.csv",
                 "figures/forecast.png"):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model_config"] | {"kernel_size": 25} == {"seq_len": L, "pred_len": H, "n_channels": 3,
                                                            "kernel_size": 25, "individual": False}
    scaler = json.loads((run_dir / "scaler.json").read_text())
    assert scaler["columns"] == ["a", "b", "c"] and scaler["frequency"] == "h"
    assert scaler["windows"] == {"train": 280 - L - H + 1, "val": 40 - H + 1, "test": 80 - H + 1}


def test_metrics_are_exact_means_over_every_test_window(run):
    csv, run_dir = run
    data = load_data(csv, input_len=L, horizon=H)
    model, _ = load_model(run_dir)
    n = data.windows("test")
    assert n == 75
    prediction = predict_windows(model, data, "test", range(n)).double()  # (n, H, C)
    _, truth = data.dataset("test").batch(range(n))
    error = prediction - truth.double()
    metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert metrics["mse"] == pytest.approx(error.pow(2).mean().item(), rel=1e-5)
    assert metrics["mae"] == pytest.approx(error.abs().mean().item(), rel=1e-5)
    orig = error * torch.as_tensor(data.scaler.std)
    assert metrics["mse_orig"] == pytest.approx(orig.pow(2).mean().item(), rel=1e-5)
    assert metrics["mae_orig"] == pytest.approx(orig.abs().mean().item(), rel=1e-5)


def test_window_mse_is_each_windows_error_and_averages_to_the_metric(run):
    csv, run_dir = run
    model, _ = load_model(run_dir)
    data = load_data(csv, input_len=L, horizon=H)
    errors = window_mse(model, data)  # (75,)
    assert errors.shape == (75,)
    metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert errors.double().mean().item() == pytest.approx(metrics["mse"], rel=1e-5)
    x, y = data.dataset("test").batch([40])
    assert errors[40].item() == pytest.approx((model(x) - y).pow(2).mean().item(), rel=1e-5)
    # one target channel: the error of that channel alone
    only_b = load_data(csv, input_len=L, horizon=H, target=("b",))
    assert window_mse(model, only_b)[40].item() == pytest.approx((model(x) - y)[..., 1].pow(2).mean().item(), rel=1e-5)


def test_forecasts_csv_has_every_window_with_time_stamps(run):
    csv, run_dir = run
    frame = pd.read_csv(run_dir / "forecasts.csv", parse_dates=["origin", "timestamp"])
    raw = pd.read_csv(csv, parse_dates=["date"])
    assert list(frame.columns) == ["window", "origin", "step", "timestamp", "a_forecast", "a_actual", "b_forecast",
                                   "b_actual", "c_forecast", "c_actual"]
    assert len(frame) == 75 * H and frame["window"].nunique() == 75
    test_start = 400 - 80  # the test split's first forecast row
    first = frame.iloc[0]
    assert first["origin"] == raw["date"][test_start - 1] and first["timestamp"] == raw["date"][test_start]
    last = frame.iloc[-1]
    assert (last["window"], last["step"], last["timestamp"]) == (74, H, raw["date"][399])
    np.testing.assert_allclose(frame["b_actual"].to_numpy()[:H], raw["b"][test_start : test_start + H], rtol=1e-5)
    data = load_data(csv, input_len=L, horizon=H)
    model, _ = load_model(run_dir)
    expected = data.scaler.inverse(predict_windows(model, data, "test", [74]))[0]  # (H, C)
    np.testing.assert_allclose(frame[["a_forecast", "b_forecast", "c_forecast"]].to_numpy()[-H:], expected, rtol=1e-4)


def test_predict_round_trip(run, tmp_path, capsys):
    csv, run_dir = run
    out = tmp_path / "next.csv"
    assert cli.main(["predict", "--run", str(run_dir), "--csv", str(csv), "--out", str(out)]) == 0
    frame = pd.read_csv(out, parse_dates=["date"])
    assert list(frame.columns) == ["date", "a", "b", "c"] and len(frame) == H
    assert frame["date"][0] == pd.Timestamp("2021-03-01") + pd.Timedelta(hours=400)
    assert (frame["date"].diff().dropna() == pd.Timedelta(hours=1)).all()
    # Same numbers by hand: the last L rows, standardised with the saved train statistics.
    scaler = json.loads((run_dir / "scaler.json").read_text())
    raw = pd.read_csv(csv)[["a", "b", "c"]].to_numpy()
    x = (raw[-L:] - scaler["mean"]) / np.asarray(scaler["std"])
    model, _ = load_model(run_dir)
    with torch.no_grad():
        y = model(torch.tensor(x, dtype=torch.float32)[None])[0].double().numpy()
    np.testing.assert_allclose(frame[["a", "b", "c"]].to_numpy(), y * scaler["std"] + scaler["mean"], rtol=1e-4)

    capsys.readouterr()
    assert cli.main(["predict", "--run", str(run_dir), "--csv", str(csv)]) == 0
    printed = pd.read_csv(io.StringIO(capsys.readouterr().out))
    np.testing.assert_allclose(printed[["a", "b", "c"]].to_numpy(), frame[["a", "b", "c"]].to_numpy())


def test_predict_bad_input(run, tmp_path):
    csv, run_dir = run
    two = tmp_path / "two.csv"
    pd.read_csv(csv).drop(columns=["c"]).to_csv(two, index=False)
    with pytest.raises(UserError, match="lacks column\\(s\\) c that the run was trained on"):
        predict(run_dir, two)
    irregular = edit_lines(seasonal_csv(tmp_path / "irr.csv"), {390: "2021-03-17 06:30:00,0,1,2"})
    with pytest.raises(UserError, match="time stamp 2021-03-17 06:30:00 is not on the --freq h grid"):
        predict(run_dir, irregular)  # the run's own frequency
    short = seasonal_csv(tmp_path / "short.csv", n=10)
    with pytest.raises(UserError, match="has 10 rows but the model needs the last input_len = 24"):
        predict(run_dir, short)
    with pytest.raises(UserError, match="not a run folder"):
        predict(tmp_path, csv)


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


@pytest.mark.parametrize("damage", ["scaler key", "scaler json", "weights empty", "weights truncated"])
def test_a_damaged_run_file_is_a_one_line_error(run, tmp_path, damage):
    csv, run_dir = run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    if damage == "scaler key":
        payload = json.loads((copy / "scaler.json").read_text())
        del payload["std"]
        (copy / "scaler.json").write_text(json.dumps(payload))
        expected = r"scaler.json is damaged \(missing 'std'\); retrain the run"
    elif damage == "scaler json":
        (copy / "scaler.json").write_text("{not json")
        expected = r"scaler.json is damaged \(JSONDecodeError\)"
    elif damage == "weights empty":
        (copy / "model.safetensors").write_bytes(b"")
        expected = r"model.safetensors is damaged \(.*\); retrain the run, or restore the file"
    else:
        weights = (copy / "model.safetensors").read_bytes()
        (copy / "model.safetensors").write_bytes(weights[: len(weights) // 2])
        expected = r"model.safetensors is damaged \(.*\); retrain the run, or restore the file"
    with pytest.raises(UserError, match=expected):
        predict(copy, csv)


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
    assert "--horizon must be at least 1 row, got 0" in err


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
        ({}, {"target": "x"}, "unknown target column(s) 'x'"),
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
    assert not (tmp_path / "run").exists()


def test_attention_model_on_target_subset(tmp_path):
    """An attention model scoring one target channel: metrics over that channel, attention samples labelled
    with time stamps, forecasts.csv and predict restricted to the target."""
    csv = seasonal_csv(tmp_path / "s.csv")
    data = load_data(csv, target="b", input_len=L, horizon=H)
    result = forecast(model="attentive_rnn", data=data, overrides=["max_epochs=1", "model.hidden_dim=8"],
                      run_dir=tmp_path / "run", progress=False, forecast_windows=5)
    model, _ = load_model(result.run_dir)
    prediction = predict_windows(model, data, "test", range(data.windows("test")))
    _, truth = data.dataset("test").batch(range(data.windows("test")))
    assert result.metrics["mse"] == pytest.approx((prediction - truth)[..., 1].double().pow(2).mean().item(),
                                                  rel=1e-5)
    frame = pd.read_csv(result.forecasts_csv)
    assert list(frame.columns[4:]) == ["b_forecast", "b_actual"] and frame["window"].nunique() == 5
    assert (result.run_dir / "figures" / "forecast_attention.png").is_file()

    from attnlab.experiments.forecast import Forecast

    task = Forecast(result.run.config.experiment_config)
    samples = task.attention_samples(model, task.data(0), limit=2)
    assert len(samples) == 2 and samples[1].maps[0].key_labels[0] == "2021-03-13 08:00"  # test window 0
    focus = task.attention_window()  # the attention figure's window comes first: the report opens on it
    assert samples[0].in_figures and samples[0].title.startswith(f"test window {focus}: ") and focus == 37
    assert list(predict(result.run_dir, csv).columns) == ["date", "b"]


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

    from attnlab.experiments.forecast import Forecast

    model, config = load_model(run_dir)
    task = Forecast(config.experiment_config)
    n = task.series.windows("test")  # 75
    assert task.drawn_windows() == [0, n - 1] and task.drawn_channels() == [2, 0] and task.attention_window() == n - 5
    samples = task.attention_samples(model, task.data(0), limit=3)
    assert [s.title.split(":")[0] for s in samples] == [f"test window {n - 5}", "test window 0",
                                                          f"test window {(n - 1) // 2}"]


def test_figure_defaults_are_spread_windows_first_targets_and_the_middle_one(tmp_path):
    from attnlab.experiments.forecast import Forecast

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
        (["plot_channel=x"], "plot_channel 'x' is not a target channel of s.csv; choose from a, b, c"),
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
    assert "plot_channel 'a' is not a target channel of s.csv; choose from b (the model is scored" in err


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
