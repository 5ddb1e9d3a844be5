"""Covariates: historical, future-known and static columns reach a model that declares them (a test's own
model, registered for the module), each kind is refused by a model that cannot use it, predict takes the
future-known values of the horizon (and says which series or step lacks them), and quantile heads give the
intervals. `attnlab list forecast` names the kinds each model takes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import safetensors.torch
import torch
from torch import nn

from attnlab import cli
from attnlab.catalog.forecast import SPEC, ForecastConfig, ForecastSizes
from attnlab.data.panel import load_panel
from attnlab.errors import UserError
from attnlab.experiments.forecast import Forecast
from attnlab.forecast import forecast, predict
from attnlab.forecast.api import SavedSeries, future_inputs
from attnlab.forecast.forecaster import Forecaster
from attnlab.registry import register_model
from attnlab.train import load_model
from test_forecast_panel import panel_frame

pytestmark = pytest.mark.usefixtures("torch_single_thread")

H, L = 4, 8
TOY = "covariate_toy"


@dataclass
class CovariateToyConfig(ForecastSizes):
    """Takes every covariate kind and has quantile heads."""

    COVARIATES: ClassVar[frozenset[str]] = frozenset({"hist", "futr", "static"})
    QUANTILES: ClassVar[bool] = True


class CovariateToy(nn.Module):
    """One linear map of the window and every covariate to the H x C forecast (x Q quantiles)."""

    def __init__(self, config: CovariateToyConfig) -> None:
        super().__init__()
        seq, self.horizon, self.channels = config.sizes()
        self.widths = {"hist": config.n_hist, "futr": config.n_futr, "static": config.n_static}
        self.q = len(config.quantiles)
        inputs = seq * self.channels + seq * config.n_hist + (seq + self.horizon) * config.n_futr + config.n_static
        self.map = nn.Linear(inputs, self.horizon * self.channels * max(1, self.q))

    def forward(self, x, hist=None, futr=None, static=None):
        parts = [x.flatten(1)]
        for name, values in (("hist", hist), ("futr", futr), ("static", static)):
            if self.widths[name]:  # the experiment passes every kind the data has, at its width
                assert values is not None and values.shape[-1] == self.widths[name], name
                parts.append(values.flatten(1))
        out = self.map(torch.cat(parts, 1)).view(x.shape[0], self.horizon, self.channels, max(1, self.q))
        if not self.q:
            return out[..., 0]
        # the median, then each level's lower and upper quantile (spread apart, so that lower < upper)
        spread = 1.0 - 2.0 * (torch.arange(self.q, device=x.device) % 2)  # odd -> -1, even -> +1: lo, hi, lo, hi
        spread[0] = 0.0
        return out[..., :1] + spread * (1 + out[..., 1:2].abs())


@pytest.fixture(scope="module", autouse=True)
def toy():
    """Register the toy model for this module's tests (its runs name this module, which registers it)."""
    spec = register_model("forecast", TOY, CovariateToy, CovariateToyConfig, "a test's covariate model")
    yield spec
    del SPEC.models[TOY]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A long CSV with a historical column (temp) and a future-known one (price), a static table, and the
    future prices of the 4 hours after each series."""
    root = tmp_path_factory.mktemp("covariates")
    frame = panel_frame()
    rng = np.random.default_rng(5)
    frame["temp"] = rng.normal(size=len(frame))
    frame["price"] = np.arange(len(frame)) % 5 * 1.0
    frame.to_csv(root / "panel.csv", index=False)
    pd.DataFrame({"unique_id": ["s0", "s1", "s2"], "size": [1.0, 2.0, 4.0]}).to_csv(root / "static.csv", index=False)
    panel = load_panel(frame)
    ahead = pd.DataFrame({"unique_id": np.repeat(panel.ids, H), "ds": panel.future_times(H),
                          "price": np.tile([1.0, 2.0, 3.0, 4.0], 3)})
    ahead.to_csv(root / "futr.csv", index=False)
    return root


@pytest.fixture(scope="module")
def run(files):
    result = forecast(files / "panel.csv", TOY, ["max_epochs=1", "lr=0.01"], futr_cols=("price",),
                      static_csv=str(files / "static.csv"), calendar=("hour",), horizon=H, input_len=L, val_size=H,
                      levels=(80,), run_dir=files / "run", progress=False, figures=False)
    return result


# ---------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("options", "kind"), [
    ({}, "historical"),
    ({"futr_cols": ("price",), "exclude": ("temp",)}, "future-known"),
    ({"calendar": ("hour",), "exclude": ("temp", "price")}, "future-known"),
    ({"static_csv": "static.csv", "exclude": ("temp", "price")}, "static"),
])
def test_a_kind_the_model_cannot_take_is_refused(files, tmp_path, options, kind):
    if "static_csv" in options:
        options = {**options, "static_csv": str(files / "static.csv")}
    with pytest.raises(UserError) as info:
        forecast(files / "panel.csv", "linear", horizon=H, input_len=L, run_dir=tmp_path / "run", progress=False,
                 **options)
    message = str(info.value)
    assert message.startswith(f"DLinear takes no {kind} covariates, and the data has some; choose a model that "
                              "does (") and TOY in message and "or leave them out (--exclude)" in message
    assert not (tmp_path / "run").exists()


def test_every_kind_named_in_one_refusal_and_the_cli_exit(files, tmp_path, cli_error):
    message = cli_error(["forecast", "--csv", str(files / "panel.csv"), "--futr-cols", "price", "--static-csv",
                         str(files / "static.csv"), "--horizon", "4", "--model", "ridge", "--run-dir",
                         str(tmp_path / "run")])
    assert "Ridge takes no historical or future-known or static covariates" in message
    assert not (tmp_path / "run").exists()


def test_quantile_intervals_need_quantile_heads(files, tmp_path):
    with pytest.raises(UserError, match=r"intervals=quantile needs a model with quantile heads \(.*covariate_toy"):
        forecast(files / "panel.csv", "linear", exclude=("temp", "price"), horizon=H, input_len=L, levels=(80,),
                 intervals="quantile", run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_the_experiment_fills_the_covariate_widths(files):
    config = ForecastConfig(csv=str(files / "panel.csv"), futr_cols=("price",), static_csv=str(files / "static.csv"),
                            calendar=("hour", "dayofweek"), horizon=H, input_len=L, levels=(80, 95),
                            intervals="quantile")
    filled = Forecast(config).complete_model_config(CovariateToyConfig())
    assert (filled.n_hist, filled.n_futr, filled.n_static) == (1, 1 + 4, 1)
    assert filled.quantiles == pytest.approx((0.5, 0.1, 0.9, 0.025, 0.975))
    assert Forecast(ForecastConfig(**{**vars(config), "intervals": "conformal"})).complete_model_config(
        CovariateToyConfig()).quantiles == ()


def test_list_names_the_kinds_each_model_takes(capsys):
    assert cli.main(["list", "forecast"]) == 0
    lines = capsys.readouterr().out.splitlines()
    line = next(line for line in lines if "covariates each model takes" in line)
    assert "linear none;" in line and "patch_transformer none;" in line
    assert f"{TOY} futr, hist, static" in line
    heads = next(line for line in lines if line.startswith("  quantile heads")).split(": ")[1].split(", ")
    assert {"patch_transformer", "horizon_attention", TOY} <= set(heads) and "linear" not in heads
    assert "  one series only (a wide CSV, not a panel): retrieval" in lines


# ---------------------------------------------------------------------------------------------- the data path


def test_a_run_with_every_kind(run, files):
    config = json.loads((run.run_dir / "config.json").read_text())
    sizes = {key: config["model_config"][key] for key in ("n_hist", "n_futr", "n_static", "quantiles")}
    assert sizes == {"n_hist": 1, "n_futr": 3, "n_static": 1, "quantiles": []}
    series = json.loads((run.run_dir / "series.json").read_text())
    assert (series["hist"], series["futr"], series["static"]) == (["temp"], ["price", "hour_sin", "hour_cos"],
                                                                   ["size"])
    assert {"mse", "mase", "smape", "coverage_80", "msis_80"} <= set(run.metrics)
    assert config["model_module"] == __name__  # predict imports this module again to find the model


def test_predict_takes_the_future_covariates_of_the_horizon(run, files, tmp_path):
    frame = predict(run.run_dir, files / "panel.csv", futr=files / "futr.csv")
    frame = frame.rename(columns=lambda c: c.replace(TOY, "y"))  # a target y: columns named after the model
    assert frame.columns.tolist() == ["unique_id", "ds", "y", "y-lo-80", "y-hi-80"]
    assert frame.groupby("unique_id").size().to_dict() == {"s0": H, "s1": H, "s2": H}
    assert frame.ds[frame.unique_id == "s1"].iloc[0] == pd.Timestamp("2021-01-05 13:00")  # after s1's last hour
    assert (frame["y-lo-80"] < frame["y"]).all() and (frame["y"] < frame["y-hi-80"]).all()
    # the future prices are read: other prices, other forecasts; the same prices, the same forecasts
    dearer = pd.read_csv(files / "futr.csv").assign(price=lambda f: f.price * 10)
    assert not np.allclose(predict(run.run_dir, files / "panel.csv", futr=dearer)[TOY], frame.y)
    shuffled = pd.read_csv(files / "futr.csv").sample(frac=1.0, random_state=1)
    np.testing.assert_allclose(predict(run.run_dir, files / "panel.csv", futr=shuffled)[TOY], frame.y, rtol=1e-6)
    # The model's inputs by hand: the last L rows and the H future prices, scaled by each series' training rows.
    saved = SavedSeries.read(run.run_dir)
    panel = load_panel(files / "panel.csv", futr=("price",), calendar=("hour",), static=files / "static.csv")
    futr = load_panel(pd.read_csv(files / "futr.csv").assign(y=0.0), futr=("price",), calendar=("hour",))
    inputs = future_inputs(saved, CovariateToyConfig.COVARIATES, panel, futr)
    assert inputs.x.shape == (3, L, 1) and inputs.extra["futr"].shape == (3, L + H, 3)
    assert inputs.extra["hist"].shape == (3, L, 1) and inputs.extra["static"].shape == (3, 1)
    s = 1  # s1: 80 rows, trained on its first 72
    s1 = pd.read_csv(files / "panel.csv").query("unique_id == 's1'")
    train = s1.iloc[:72]
    expected_price = (np.r_[s1.price.iloc[-L:], [1.0, 2.0, 3.0, 4.0]] - train.price.mean()) / train.price.std(ddof=0)
    np.testing.assert_allclose(inputs.extra["futr"][s, :, 0], expected_price, rtol=1e-5, atol=1e-6)
    hour = (pd.Timestamp("2021-01-05 13:00").hour + np.arange(H)) % 24
    np.testing.assert_allclose(inputs.extra["futr"][s, L:, 1].double() * saved.stats["cov_std"][s, 2]
                               + saved.stats["cov_mean"][s, 2], np.sin(2 * np.pi * hour / 24), atol=1e-5)


@pytest.mark.parametrize(("change", "expected"), [
    (None, "the model takes future-known covariates (price, hour_sin, hour_cos); pass their values for the horizon "
           "with --futr-csv (Python: futr_df=)"),
    (lambda f: f[f.unique_id != "s2"], "the future covariates have no rows for series 's2'"),
    (lambda f: f.drop(index=5), "the future covariates of series 's1' lack 2021-01-05 14:00:00 (they must cover "
                                "every step of the horizon); column(s) price"),
    (lambda f: f.drop(index=7), "the future covariates of series 's1' lack 2021-01-05 16:00:00 (they must cover the "
                                "4 steps after its history)"),
    (lambda f: f.assign(price=f.price.where(f.index != 6)), "column 'price' has no value at row 6 (file line 8)"),
    (lambda f: f.iloc[:, :2], "lacks the column(s) 'price' (the model takes the future-known covariates price)"),
])
def test_missing_future_covariates_are_one_line(run, files, tmp_path, cli_error, change, expected):
    argv = ["predict", "--run", str(run.run_dir), "--csv", str(files / "panel.csv"), "--out", str(tmp_path / "o.csv")]
    if change is not None:
        change(pd.read_csv(files / "futr.csv")).to_csv(tmp_path / "futr.csv", index=False)
        argv += ["--futr-csv", str(tmp_path / "futr.csv")]
    assert expected in cli_error(argv)
    assert not (tmp_path / "o.csv").exists()


def test_quantile_heads_give_the_intervals(files, tmp_path):
    result = forecast(files / "panel.csv", TOY, ["max_epochs=1"], exclude=("temp", "price"), horizon=H, input_len=L,
                      levels=(80,), intervals="quantile", run_dir=tmp_path / "run", progress=False, figures=False)
    record = json.loads((result.run_dir / "intervals.json").read_text())
    assert (record["method"], record["levels"]) == ("quantile", [80])
    assert np.array(record["corrections"]["80"]).shape == (H, 1)  # per step, in multiples of the interval scale
    frame = pd.read_csv(result.forecasts_csv)
    assert (frame.y_lo_80 <= frame.y_hi_80).all()
    future = predict(result.run_dir, files / "panel.csv")
    assert future.columns.tolist() == ["unique_id", "ds", TOY, f"{TOY}-lo-80", f"{TOY}-hi-80"]
    assert (future[f"{TOY}-lo-80"] <= future[f"{TOY}-hi-80"]).all()
    with pytest.raises(UserError, match=r"the run has no 95 % interval; it was trained with levels \[80\]"):
        predict(result.run_dir, files / "panel.csv", levels=[95])
    model, config = load_model(result.run_dir)
    task = Forecast(config.experiment_config, result.data)
    task.complete_model_config(config.model_config)
    # conformalized quantiles: the corrected bounds cover at least 80 % of the validation windows at every step
    windows, out = task.forecasts(model, "val")
    series, origin = result.data.locate("val", windows)
    lower, upper = task.intervals(model, out, series, [0])[80]
    truth = result.data.truth(series, origin)[..., [0]]
    assert (((truth >= lower - 1e-9) & (truth <= upper + 1e-9)).mean(axis=0) >= 0.8).all()
    raw = task.intervals(model, out, series, [0])  # and they are the raw quantiles moved by the corrections
    saved = safetensors.torch.load_file(str(result.run_dir / "series_stats.safetensors"))["interval_scale"]  # (S, 1)
    scale = saved.numpy()[series][:, [0]][:, None]
    np.testing.assert_allclose(raw[80][0], out[..., [0], 1] - np.array(record["corrections"]["80"]) * scale)
    # the pinball loss over the quantiles (0.5, 0.1, 0.9), on a batch by hand
    batch = result.data.dataset("train").batch([0, 1, 2])
    with torch.no_grad():
        out = model(batch.x)  # (3, H, 1, 3)
        error = batch.y.unsqueeze(-1) - out
        q = torch.tensor([0.5, 0.1, 0.9])
        expected = torch.maximum(q * error, (q - 1) * error).mean()
        torch.testing.assert_close(task.loss(model, batch), expected)


def test_forecaster_with_future_covariates_and_its_own_column_names(files, tmp_path):
    frame = pd.read_csv(files / "panel.csv").drop(columns="temp").rename(
        columns={"unique_id": "store", "ds": "hour", "y": "sales"})
    static = pd.read_csv(files / "static.csv").rename(columns={"unique_id": "store"})
    fc = Forecaster([TOY], h=H, input_len=L, futr_cols=("price",), id_col="store", time_col="hour",
                    target_col="sales", overrides=["max_epochs=1"], runs_root=tmp_path / "runs")
    fc.fit(frame, static_df=static)
    ahead = pd.read_csv(files / "futr.csv").rename(columns={"unique_id": "store", "ds": "hour"})
    future = fc.predict(futr_df=ahead, static_df=static)
    assert future.columns.tolist() == ["store", "hour", TOY] and len(future) == 3 * H
    with pytest.raises(UserError, match="pass their values for the horizon"):
        fc.predict()
    table = fc.cross_validation(frame, n_windows=2, step_size=2, static_df=static)
    assert table.columns.tolist() == ["store", "hour", "cutoff", "window", "sales", TOY]
    assert len(table) == 2 * 3 * H


def test_calendar_features_alone_need_no_future_file(files, tmp_path):
    """Calendar features are known for any future time stamp: predict computes them for the horizon."""
    result = forecast(files / "panel.csv", TOY, ["max_epochs=1"], exclude=("temp", "price"), calendar=("hour",),
                      horizon=H, input_len=L, val_size=H, run_dir=tmp_path / "run", progress=False, figures=False)
    frame = predict(result.run_dir, files / "panel.csv")
    assert len(frame) == 3 * H and np.isfinite(frame[TOY]).all()
    saved = SavedSeries.read(result.run_dir)
    panel = load_panel(files / "panel.csv", exclude=("temp", "price"), calendar=("hour",))
    inputs = future_inputs(saved, CovariateToyConfig.COVARIATES, panel, None, ("hour",))
    hour = (pd.Timestamp("2021-01-05 13:00").hour + np.arange(H)) % 24  # s1's horizon
    futr = inputs.extra["futr"][1, L:].double().numpy() * saved.stats["cov_std"][1] + saved.stats["cov_mean"][1]
    np.testing.assert_allclose(futr[:, 0], np.sin(2 * np.pi * hour / 24), atol=1e-5)
    np.testing.assert_allclose(futr[:, 1], np.cos(2 * np.pi * hour / 24), atol=1e-5)
    with pytest.raises(UserError, match="pass their values for the horizon with --futr-csv"):
        future_inputs(saved, CovariateToyConfig.COVARIATES, panel, None)  # without the run's calendar
