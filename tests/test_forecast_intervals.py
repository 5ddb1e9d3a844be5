"""Scores and prediction intervals: MASE, sMAPE, MSIS, coverage and OWA on tiny arrays, split-conformal
multipliers on a constructed panel, the naive and seasonal naive baselines by hand, the error per horizon step,
and the warning for a model that loses to seasonal naive."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from attnlab.catalog.forecast import ForecastConfig
from attnlab.data.panel import load_panel
from attnlab.experiments.forecast import Forecast, quantile_levels, split_data
from attnlab.experiments.forecast_scores import smape, window_scores
from attnlab.metrics import interval_scores, owa, point_scores, smape_values

pytestmark = pytest.mark.usefixtures("torch_single_thread")


# ---------------------------------------------------------------------------------------------- the scores


def test_point_scores_by_hand():
    truth = np.array([[[1.0], [2.0]], [[4.0], [4.0]]])  # (N=2, H=2, T=1)
    forecast = np.array([[[2.0], [2.0]], [[1.0], [5.0]]])
    scale = np.array([[0.5], [2.0]])  # each window's series
    scores = point_scores(truth, forecast, scale)
    # window 0: errors 1, 0 over 0.5 -> MASE 1; window 1: errors 3, 1 over 2 -> 1; mean 1
    assert scores["mase"] == pytest.approx(1.0)
    # sMAPE: 200·1/3, 0, 200·3/5, 200·1/9
    assert scores["smape"] == pytest.approx((200 / 3 + 0 + 120 + 200 / 9) / 4)
    assert scores["mae_orig"] == pytest.approx(5 / 4) and scores["rmse_orig"] == pytest.approx(math.sqrt(11 / 4))


def test_smape_is_zero_where_both_are_zero():
    np.testing.assert_allclose(smape_values(np.array([0.0, 0.0, 1.0]), np.array([0.0, 2.0, -1.0])), [0, 200, 200])
    torch.testing.assert_close(smape(torch.tensor([0.0, 3.0]), torch.tensor([0.0, 1.0])), torch.tensor([0.0, 100.0]))


def test_smape_counts_zeros_rounded_by_float32_as_zero():
    """A zero and a forecast of zero read back from float32 are about 1e-8 of the series' scale: still 0/0 = 0,
    not 200; anything above 1e-6 of the MASE scale is scored as before."""
    truth, forecast = np.zeros((1, 3, 1)), np.array([[[-1.6e-8], [0.3e-6], [0.5]]])
    scale = np.array([[0.4]])  # 1e-6 of it: 4e-7
    np.testing.assert_allclose(smape_values(truth, forecast, scale[:, None, :]).ravel(), [0, 0, 200])
    np.testing.assert_allclose(smape_values(truth, forecast).ravel(), [200, 200, 200])  # no scale: exact zeros
    assert point_scores(truth, forecast, scale)["smape"] == pytest.approx(200 / 3)
    got = smape(torch.zeros(1, 3, 1), torch.tensor(forecast, dtype=torch.float32), torch.tensor([[[0.4]]]))
    torch.testing.assert_close(got.ravel(), torch.tensor([0.0, 0.0, 200.0]))


def test_model_and_closed_form_ridge_baseline_agree_on_zeros(tmp_path):
    """ridge's test sMAPE (float32, the engine) and the "ridge (closed form)" baseline's (float64) are the same
    forecasts; on a series whose test values are all 0 they gave 76 and 176."""
    from attnlab.forecast import forecast

    rng = np.random.default_rng(0)
    ds = pd.date_range("2020-01-01", periods=200, freq="D")
    b = rng.poisson(0.25, 200).astype(float)
    b[163:] = 0.0
    df = pd.concat([pd.DataFrame({"unique_id": "a", "ds": ds, "y": rng.poisson(0.25, 200).astype(float)}),
                    pd.DataFrame({"unique_id": "b", "ds": ds, "y": b})])
    result = forecast(df, "ridge", horizon=7, progress=False, figures=False, run_dir=tmp_path / "run")
    baseline = json.loads((tmp_path / "run" / "baselines.json").read_text())["baselines"]["ridge (closed form)"]
    assert result.run.metrics["mae_orig"] == pytest.approx(baseline["mae_orig"], rel=1e-5)
    assert result.run.metrics["smape"] == pytest.approx(baseline["smape"], rel=1e-5)
    assert result.run.metrics["smape"] < 100


def test_interval_scores_by_hand():
    truth = np.array([[[1.0], [5.0], [3.0], [-2.0]]])  # (1, 4, 1)
    lower = np.array([[[0.0], [0.0], [0.0], [0.0]]])
    upper = np.array([[[2.0], [4.0], [4.0], [2.0]]])
    scores = interval_scores(truth, lower, upper, 80, np.array([[2.0]]))
    assert scores["coverage"] == pytest.approx(0.5)  # 5 above, -2 below
    assert scores["width"] == pytest.approx(3.0) and scores["width_scaled"] == pytest.approx(1.5)
    # a = 0.2: (2) + (4 + 2/0.2·1) + (4) + (2 + 2/0.2·2) = 2 + 14 + 4 + 22 = 42 over 4 steps, over the scale 2
    assert scores["msis"] == pytest.approx(42 / 4 / 2)


def test_owa_and_the_quantiles_of_levels():
    assert owa(9.0, 1.0, 18.0, 2.0) == pytest.approx(0.5)
    assert owa(18.383, 2.395, 18.383, 2.395) == pytest.approx(1.0)
    assert quantile_levels((80, 95)) == pytest.approx((0.5, 0.1, 0.9, 0.025, 0.975))


# ---------------------------------------------------------------------------------------------- conformal


class LastValue(nn.Module):
    """The naive forecast as a model: the last input value for every step."""

    def __init__(self, horizon: int) -> None:
        super().__init__()
        self.horizon = horizon

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1:, :].expand(-1, self.horizon, -1)


class Mean(nn.Module):
    """Each series' training mean (0 on the standardised scale)."""

    def __init__(self, horizon: int) -> None:
        super().__init__()
        self.horizon = horizon

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], self.horizon, x.shape[2])


def jump_task(levels=(50, 80, 95)) -> Forecast:
    """Nine series of 40 integer periods: y = t up to the validation border (34), then t + j for series j.

    The last-value forecast of the one validation window of series j (input rows 30..33, forecast rows 34..36) is
    33, its errors h + 1 + j at step h; every series' MASE scale (lag 1 over its ramp) is 1. The test window
    (rows 37..39, last input 36 + j) has errors h + 1.
    """
    t = np.arange(40, dtype=float)
    frame = pd.concat([pd.DataFrame({"unique_id": f"s{j}", "ds": np.arange(40), "y": t + j * (t >= 34)})
                       for j in range(9)])
    config = ForecastConfig(horizon=3, input_len=4, season=1, split="last", val_size=3, levels=tuple(levels))
    return Forecast(config, split_data(load_panel(frame), config))


def test_split_conformal_multipliers_on_a_constructed_case():
    task = jump_task()
    assert task.series.n_windows("val") == 9 and np.all(task.series.mase_scale == 1.0)
    # every series' last 3 training windows lie on its ramp: the last value's errors 1, 2, 3, mean 2, + 0.1 × 1
    np.testing.assert_allclose(task.interval_scale(LastValue(3)), 2.1, rtol=1e-6)
    multipliers = task.calibrate(LastValue(3))
    steps = np.arange(3)[:, None]  # (H, 1)
    # the k-th smallest of the 9 errors h + 1 + j over the interval scale, k = ceil((n + 1) · level): 5 at 50 %, 8 at
    # 80 %, and at 95 % ceil(9.5) = 10 > 9, so the largest
    np.testing.assert_allclose(multipliers[50], (steps + 1 + 4) / 2.1, rtol=1e-5)
    np.testing.assert_allclose(multipliers[80], (steps + 1 + 7) / 2.1, rtol=1e-5)
    np.testing.assert_allclose(multipliers[95], (steps + 1 + 8) / 2.1, rtol=1e-5)
    record = task.interval_record()
    assert record["method"] == "conformal" and record["levels"] == [50, 80, 95]
    assert record["scale"].startswith("each series' mean absolute error on its last 3 training windows")
    assert {level: np.round(np.asarray(m) * 2.1, 4).tolist() for level, m in record["multipliers"].items()} == {
        "50": [[5.0], [6.0], [7.0]], "80": [[8.0], [9.0], [10.0]], "95": [[9.0], [10.0], [11.0]]}


def test_intervals_are_wider_for_the_series_the_model_forecasts_worse():
    """Two series with the same MASE scale (lag-1 steps of 1): a ramp, whose last value misses by 1, 2, 3 (mean 2),
    and a zigzag 0, 1, 0, 1 …, whose last value misses by 1, 0, 1 (mean 2/3). The intervals follow the error, not
    the MASE scale."""
    t = np.arange(40, dtype=float)
    frame = pd.concat([pd.DataFrame({"unique_id": "ramp", "ds": t, "y": t}),
                       pd.DataFrame({"unique_id": "zigzag", "ds": t, "y": t % 2})])
    config = ForecastConfig(horizon=3, input_len=4, season=1, split="last", val_size=3, levels=(80,))
    task = Forecast(config, split_data(load_panel(frame), config))
    np.testing.assert_allclose(task.series.mase_scale, 1.0)
    np.testing.assert_allclose(task.interval_scale(LastValue(3)), [[2.1], [2 / 3 + 0.1]], rtol=1e-6)
    windows, forecast = task.forecasts(LastValue(3), "test")
    series, _ = task.series.locate("test", windows)
    lower, upper = task.intervals(LastValue(3), forecast, series, [0])[80]
    half = (upper - lower)[..., 0] / 2  # (2, H)
    np.testing.assert_allclose(half[0] / half[1], 2.1 / (2 / 3 + 0.1), rtol=1e-6)


def test_the_summary_scores_intervals_baselines_and_steps(tmp_path):
    task = jump_task(levels=(80,))
    metrics, warnings = task.summarize(LastValue(3), None, tmp_path)
    # test errors h + 1 (1, 2, 3) inside ± (8, 9, 10): covered; width 2 · 9 on average; no penalty
    assert metrics == pytest.approx({"coverage_80": 1.0, "width_80": 18.0, "width_scaled_80": 18.0, "msis_80": 18.0},
                                    rel=1e-5)
    assert warnings == []  # as good as seasonal naive (season 1: the last value)
    steps = pd.read_csv(tmp_path / "horizon_errors.csv")
    assert steps.step.tolist() == [1, 2, 3]
    np.testing.assert_allclose(steps[["mae", "rmse", "mase"]].to_numpy(), [[1, 1, 1], [2, 2, 2], [3, 3, 3]], rtol=1e-5)
    baselines = json.loads((tmp_path / "baselines.json").read_text())["baselines"]
    assert {"naive (last value)", "seasonal naive (season 1)", "seasonal naive"} <= set(baselines)
    assert baselines["naive (last value)"]["mase"] == pytest.approx(2.0)
    saved = json.loads((tmp_path / "intervals.json").read_text())["multipliers"]["80"]
    np.testing.assert_allclose(np.asarray(saved) * 2.1, [[8.0], [9.0], [10.0]], rtol=1e-5)

    metrics, warnings = task.summarize(Mean(3), None, tmp_path)  # far from the jumped series: worse
    assert len(warnings) == 1 and warnings[0].startswith("the model loses to the seasonal naive forecast on the "
                                                         "test windows (MASE ")
    assert warnings[0].endswith("against 2, season 1)")


def _baseline_scores(task, windows):
    """Every baseline's scores on test windows ``windows``, as summarize scores them (no ridge)."""
    d = task.series
    series, origin = d.locate("test", np.asarray(windows))
    idx = list(d.target_index)
    truth = d.truth(series, origin)[..., idx]
    scale = d.mase_scale[series][:, idx]
    scores = {name: window_scores(d, truth, values, series, idx, scale)
              for name, values in task.baseline_forecasts(np.asarray(windows), series, origin, idx, truth.shape, None)}
    scores["seasonal naive"] = scores[f"seasonal naive (season {d.season})"]
    return scores


def test_naive_and_seasonal_naive_baselines_by_hand():
    t = np.arange(30)
    frame = pd.DataFrame({"unique_id": "a", "ds": t, "y": (t % 3) * 10.0 + t})  # a season of 3 on a trend
    config = ForecastConfig(horizon=3, input_len=6, season=3, split="last", val_size=3)
    task = Forecast(config, split_data(load_panel(frame), config))
    d = task.series
    series, origin = d.locate("test", [0])
    assert origin.tolist() == [27]
    truth = d.truth(series, origin)  # rows 27..29: 27, 38, 49
    np.testing.assert_allclose(truth[0, :, 0], [27, 38, 49])
    assert d.mase_scale[0, 0] == pytest.approx(3.0)  # y_t - y_{t-3} = 3 over the training rows
    scores = _baseline_scores(task, [0])
    naive = scores["naive (last value)"]  # 46 each step: errors 19, 8, 3
    assert naive["mase"] == pytest.approx(30 / 3 / 3) and naive["mae_orig"] == pytest.approx(10.0)
    assert naive["smape"] == pytest.approx(200 * np.mean([19 / 73, 8 / 84, 3 / 95]))
    seasonal = scores["seasonal naive (season 3)"]  # rows 24..26: 24, 35, 46, each 3 short
    assert seasonal == scores["seasonal naive"] and seasonal["mase"] == pytest.approx(1.0)
    assert seasonal["mse_orig"] == pytest.approx(9.0) and seasonal["mse"] == pytest.approx(9.0 / d.std[0, 0] ** 2)


def test_seasonal_naive_with_less_than_a_season_of_history_is_the_last_value():
    frame = pd.concat([pd.DataFrame({"unique_id": sid, "ds": np.arange(20), "y": base + np.arange(20.0)})
                       for sid, base in (("a", 0.0), ("b", 100.0))])
    config = ForecastConfig(horizon=2, input_len=4, season=24, split="last", val_size=2)
    task = Forecast(config, split_data(load_panel(frame), config))
    scores = _baseline_scores(task, [0, 1])
    # 18 steps of history, a season of 24: the last value (errors 1, 2 over the lag-1 scale 1), never the other
    # series' rows
    assert scores["seasonal naive (season 24)"]["mase"] == pytest.approx(1.5)
    assert scores["seasonal naive"] == scores["naive (last value)"]
