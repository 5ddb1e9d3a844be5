"""Closed-form forecasters: the ridge map against a direct least-squares solve and a brute-force choice of its
strength, the retrieval attention against a hand computation, β's closed form, the memory's round trip through
a saved run, and bad settings (one line, exit 2, no run folder)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attnlab import cli
from attnlab.models.retrieval import (
    RIDGE_ALPHAS,
    TEMPERATURES,
    RetrievalConfig,
    RetrievalForecaster,
    RidgeConfig,
    RidgeForecaster,
    RidgeLinear,
    _window_batches,
    choose,
    count_windows_in,
    key_lens,
    lookbacks,
    se_blocks,
    unit_keys,
)
from attnlab.nn import record_attention
from attnlab.train import load_model
from test_forecast_cli import cli_error, seasonal_csv

pytestmark = pytest.mark.usefixtures("torch_single_thread")

L, H, C = 16, 4, 2


def series(rows: int, seed: int) -> torch.Tensor:
    """(rows, C) noisy seasonal series with a random walk, standardised-looking."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(rows, dtype=torch.float32)[:, None]
    walk = torch.randn(rows, C, generator=g).cumsum(0) * 0.05
    return torch.sin(2 * torch.pi * t / 8 + torch.tensor([0.0, 1.0])) + walk + 0.1 * torch.randn(rows, C, generator=g)


def batches(s: torch.Tensor):
    """The windows of a series (R, C), a batch at a time: what closed-form fits take."""
    return lambda: _window_batches(s, L, H)


def windows(s: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Every (window, channel) as rows, centred on the last input value: X (N·C, L), Y (N·C, H)."""
    w = s.double().T.unfold(1, L + H, 1).reshape(-1, L + H).numpy()
    last = w[:, L - 1 : L]
    return w[:, :L] - last, w[:, L:] - last


def test_ridge_matches_a_direct_solve_and_the_best_lookback_and_strength():
    train, val = series(300, 0), series(120, 1)
    ridge = RidgeLinear(L, H)
    val_mse = ridge.fit(batches(train), batches(val))
    x, y = windows(train)
    xv, yv = windows(val)
    # Brute force: solve for every lookback (the newest ell steps) and strength, predict the validation windows, keep
    # the best. The last strength, infinity, is W = 0: the naive forecast.
    errors = {}
    assert lookbacks(L) == [2, 4, 6, 8, 10, 12, 14, 16]
    for ell in lookbacks(L):
        for alpha in RIDGE_ALPHAS:
            w = np.zeros((L, H))
            if np.isfinite(alpha):
                w[L - ell :] = np.linalg.solve(x[:, -ell:].T @ x[:, -ell:] + alpha * len(x) * np.eye(ell),
                                               x[:, -ell:].T @ y)
            errors[ell, alpha] = (((xv @ w) - yv) ** 2).mean()
    best = min(errors, key=errors.get)
    assert (ridge.lookback, float(ridge.alpha)) == (best[0], pytest.approx(best[1]))
    assert val_mse == pytest.approx(errors[best], rel=1e-9)
    w = np.zeros((L, H))
    w[L - best[0] :] = np.linalg.solve(x[:, -best[0] :].T @ x[:, -best[0] :] + best[1] * len(x) * np.eye(best[0]),
                                       x[:, -best[0] :].T @ y)
    np.testing.assert_allclose(ridge.weight.numpy(), w, rtol=1e-4, atol=1e-6)
    # The forecast of a window (B, L, C) is the map applied to each channel around its last value.
    batch = train[:L].unsqueeze(0)  # (1, L, C)
    rows, last = batch[0].T.double().numpy(), batch[0, -1].double().numpy()[:, None]  # (C, L), (C, 1)
    expected = (rows - last) @ w + last  # (C, H)
    torch.testing.assert_close(ridge(batch)[0].T.double(), torch.from_numpy(expected), rtol=1e-4, atol=1e-5)


def test_ridge_keeps_the_naive_forecast_where_validation_prefers_it():
    """On a random walk the last value is the best forecast: validation keeps W = 0 (an infinite strength), so the
    ridge map is the naive forecast, with the naive forecast's validation MSE."""
    walk = torch.randn(1500, C, generator=torch.Generator().manual_seed(0)).cumsum(0)  # (1500, C)
    ridge = RidgeLinear(L, H)
    val_mse = ridge.fit(batches(walk[:1000]), batches(walk[1000 - L :]))
    assert float(ridge.alpha) == float("inf") and not ridge.weight.any()
    _, yv = windows(walk[1000 - L :])  # centred on the last value: the naive forecast's errors
    assert val_mse == pytest.approx((yv**2).mean(), rel=1e-9)
    x = walk[:L].unsqueeze(0)  # (1, L, C)
    torch.testing.assert_close(ridge(x), x[:, -1:].expand(1, H, C))


def test_choose_by_lowest_error_or_by_one_standard_error():
    counts = torch.full((4,), 10.0, dtype=torch.float64)  # 10 values scored in each of 4 blocks
    # Per-block MSE: candidate 0 (simplest) 1.0 1.3 0.7 1.0, candidate 1 0.9 1.1 0.9 0.9 (the lowest: 0.95).
    errors = torch.tensor([[1.0, 1.3, 0.7, 1.0], [0.9, 1.1, 0.9, 0.9]], dtype=torch.float64) * 10
    assert choose(errors, counts, [0.0, 1.0], "min") == 1
    # Differences 0.1 0.2 −0.2 0.1: mean 0.05, standard error std/√4 = √0.03/2 = 0.087, so 0 is within one SE.
    assert choose(errors, counts, [0.0, 1.0], "one_se") == 0
    sure = torch.tensor([[1.0, 1.2, 1.0, 1.0], [0.9, 1.1, 0.9, 0.9]], dtype=torch.float64) * 10  # always 0.1 worse
    assert choose(sure, counts, [0.0, 1.0], "one_se") == 1
    # Fewer than 2 blocks scored: no standard error, so no evidence against the simplest candidate.
    one_block = torch.tensor([[10.0, 0, 0, 0], [9.0, 0, 0, 0]], dtype=torch.float64)
    assert choose(one_block, torch.tensor([10.0, 0, 0, 0], dtype=torch.float64), [0.0, 1.0], "one_se") == 0
    assert choose(one_block, torch.tensor([10.0, 0, 0, 0], dtype=torch.float64), [0.0, 1.0], "min") == 1
    # Blocks are at least one horizon of windows long, so that no two forecast the same steps: the exchange rates'
    # 40 validation windows at H = 720 make one block, ETTh1's 2161 make three, its 2785 at H = 96 ten (the most).
    assert [se_blocks(40, 720), se_blocks(424, 336), se_blocks(2161, 720), se_blocks(2785, 96)] == [1, 1, 3, 10]
    with pytest.raises(ValueError, match="selection must be one of min, one_se, got 'best'"):
        choose(errors, counts, [0.0, 1.0], "best")


def test_windows_are_counted_by_len_where_the_source_has_one():
    """The forecast task's windows know their number (no counting pass that builds every batch); a plain callable is
    counted by one pass."""
    from attnlab.experiments.forecast_scores import WindowBatches

    class NoPass(WindowBatches):
        def __call__(self):
            raise AssertionError("counted by iterating")

    assert count_windows_in(NoPass(list(range(37)))) == 37
    assert count_windows_in(batches(series(120, 1))) == 120 - L - H + 1


def test_one_se_prefers_the_naive_forecast_and_no_attention_where_they_do_as_well():
    """On a random walk nothing beats the last value by more than chance: ridge with ``one_se`` is the naive forecast,
    and retrieval (``one_se`` by default) turns its attention off and forecasts exactly as its twin, the default
    ridge; with ``min`` its in-sample β keeps some attention. On a clean recurrence ridge keeps a real map."""
    walk = torch.randn(1500, C, generator=torch.Generator().manual_seed(0)).cumsum(0) * 0.1  # (1500, C)
    train, val = batches(walk[:1000]), batches(walk[1000 - L :])
    sizes = {"seq_len": L, "pred_len": H, "n_channels": C}
    ridge = RidgeForecaster(RidgeConfig(**sizes, selection="one_se"))
    ridge.fit_closed_form(train, val)
    assert float(ridge.linear.alpha) == float("inf") and not ridge.linear.weight.any()
    retrieval = RetrievalForecaster(RetrievalConfig(**sizes))
    assert retrieval.config.selection == "one_se"
    chosen = retrieval.fit_closed_form(train, val, walk[:1000])
    assert chosen["beta"] == 0.0 and float(retrieval.beta) == 0.0
    twin = RidgeForecaster(RidgeConfig(**sizes))
    twin.fit_closed_form(train, val)
    x = walk[:L].unsqueeze(0)
    torch.testing.assert_close(retrieval(x), twin(x), rtol=0, atol=0)
    in_sample = RetrievalForecaster(RetrievalConfig(**sizes, selection="min"))
    assert in_sample.fit_closed_form(train, val, walk[:1000])["beta"] > 0
    seasonal = RetrievalForecaster(RetrievalConfig(**sizes, season=4))  # where the neighbours do help, it keeps them
    assert seasonal.fit_closed_form(batches(series(200, 0)), batches(series(120, 1)), series(200, 0))["beta"] > 0.5
    t = torch.arange(400, dtype=torch.float32)[:, None]
    clean = torch.sin(2 * torch.pi * t / 24).expand(400, C).contiguous()
    ridge.fit_closed_form(batches(clean[:300]), batches(clean[300 - L :]))
    assert ridge.linear.weight.any()


def test_ridge_learns_an_exact_linear_recurrence():
    t = torch.arange(400, dtype=torch.float32)[:, None]
    clean = torch.cat([torch.sin(2 * torch.pi * t / 24), torch.cos(2 * torch.pi * t / 10)], 1)  # (400, 2)
    model = RidgeForecaster(RidgeConfig(seq_len=L, pred_len=H, n_channels=C))
    model.fit_closed_form(batches(clean[:300]), batches(clean[300 - L :]))
    x = clean[300 - L : 300].unsqueeze(0)  # (1, L, C)
    torch.testing.assert_close(model(x)[0], clean[300 : 300 + H], atol=2e-3, rtol=0)


def fitted(top_k: int = 5, temperature: float = 0.2) -> RetrievalForecaster:
    model = RetrievalForecaster(RetrievalConfig(seq_len=L, pred_len=H, n_channels=C, key_len=6, top_k=top_k,
                                                temperature=temperature, selection="min"))
    train = series(200, 0)
    model.fit_closed_form(batches(train), batches(series(120, 1)), train)
    return model.eval()


def test_retrieval_attention_by_hand():
    model = fitted()
    x = series(L, 5).unsqueeze(0)  # (1, L, C)
    memory = model.memory  # (R, C)
    for c in range(C):
        w = memory[:, c].unfold(0, L + H, 1)  # (N, L + H)
        keys = unit_keys(w[:, L - 6 : L])  # (N, 6)
        last = w[:, L - 1 : L]  # (N, 1)
        residuals = w[:, L:] - ((w[:, :L] - last) @ model.linear.weight + last)  # (N, H): the ridge's errors
        scores = keys @ unit_keys(x[0, -6:, c]) / 0.2  # (N,)
        top = scores.topk(5)
        expected = torch.softmax(top.values, 0) @ residuals[top.indices]  # (H,)
        torch.testing.assert_close(model.correction(x)[0, :, c], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model(x), model.linear(x) + model.beta * model.correction(x))


def test_a_constant_query_correlates_with_nothing():
    """A window whose newest key_len steps are constant (a flat sensor) has no correlation with anything: its query is
    zero, not its float rounding noise scaled to unit norm (which made the forecast depend on the memory layout of
    the input), it attends to no training window, and that channel's forecast is the ridge map's."""
    flat = torch.full((3, 6), 0.7) + torch.tensor([0.0, 1e-7, -1e-7, 0.0, 1e-7, 0.0])  # rounding-level wiggles
    torch.testing.assert_close(unit_keys(flat), torch.zeros(3, 6), rtol=0, atol=0)
    wave = torch.sin(torch.arange(6.0))
    torch.testing.assert_close(unit_keys(wave).norm(), torch.tensor(1.0))
    model = fitted()
    x = series(L, 5).unsqueeze(0).clone()  # (1, L, C)
    x[0, -6:, 0] = 0.3 + torch.tensor([0.0, 1e-8, 0.0, -1e-8, 0.0, 0.0])
    a = model.correction(x)  # (1, H, C)
    assert float(model.beta) > 0 and not a[0, :, 0].any() and a[0, :, 1].abs().sum() > 0
    torch.testing.assert_close(model(x)[0, :, 0], model.linear(x)[0, :, 0])
    with record_attention(model) as rec:
        model(x)
    assert not rec["attention"][0][0].any() and rec["attention"][0][1].sum() == pytest.approx(1.0)  # (C, 1, N)
    strided = x.transpose(1, 2).contiguous().transpose(1, 2)  # the same values, another memory layout
    torch.testing.assert_close(model(strided), model(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("flat", [False, True])
def test_beta_is_the_validation_least_squares_gain(flat):
    """β from the fit's batched terms equals least squares over the forward's own corrections, also where some
    validation queries are constant (a flat stretch in channel 0: no correction there)."""
    train, val = series(200, 0), series(120, 1)
    if flat:
        val[40:70, 0] = 0.25
    model = RetrievalForecaster(RetrievalConfig(seq_len=L, pred_len=H, n_channels=C, key_len=6, top_k=5,
                                                temperature=0.2, selection="min"))
    model.fit_closed_form(batches(train), batches(val), train)
    w = val.T.unfold(1, L + H, 1).permute(1, 2, 0)  # (N, L + H, C)
    x, y = w[:, :L], w[:, L:]
    r, a = (y - model.linear(x)).double(), model.correction(x).double()
    assert (a[:, :, 0].eq(0).all(1).sum() > 10) == flat  # windows whose last 6 steps are flat get no correction
    expected = min(max(float((r * a).sum() / (a * a).sum()), 0.0), 1.0)
    assert 0.0 < float(model.beta) <= 1.0
    assert float(model.beta) == pytest.approx(expected, rel=1e-5)


def test_key_length_temperature_and_top_k_are_chosen_on_validation():
    """Unset, with ``selection="min"`` they are the triple whose β lowers the validation error most: a brute force
    over the same candidates (top-k at most the 181 training windows), each fitted with the triple fixed, agrees; a
    saved model keeps it."""
    train, val = series(200, 0), series(120, 1)
    sizes = {"seq_len": L, "pred_len": H, "n_channels": C, "season": 4, "selection": "min"}
    assert key_lens(L, 4) == [4, 8, 16] and key_lens(L, None) == [2, 4] and key_lens(L, 1) == [2, 4]
    model = RetrievalForecaster(RetrievalConfig(**sizes))
    chosen = model.fit_closed_form(batches(train), batches(val), train)
    errors = {}
    for key_len in key_lens(L, 4):
        for temperature in TEMPERATURES:
            for top_k in (10, 30, 100, 181):
                fixed = RetrievalForecaster(RetrievalConfig(**sizes, key_len=key_len, temperature=temperature,
                                                            top_k=top_k))
                fixed.fit_closed_form(batches(train), batches(val), train)
                errors[key_len, temperature, top_k] = sum(
                    float(((fixed(x) - y) ** 2).double().sum()) for x, y in batches(val)())
    best = min(errors, key=errors.get)
    assert (model.key_len, model.temperature, model.top_k) == pytest.approx(best)
    assert (chosen["key_len"], chosen["temperature"], chosen["top_k"]) == pytest.approx(best)
    assert len({round(e, 6) for e in errors.values()}) > 20  # the candidates differ, so the choice is a real one
    fresh = RetrievalForecaster(model.config)  # as load_model builds it: the config leaves all three unset
    fresh.load_state_dict(model.state_dict())
    x = series(L, 9).unsqueeze(0)
    assert (fresh.key_len, fresh.temperature, fresh.top_k) == (model.key_len, model.temperature, model.top_k)
    torch.testing.assert_close(fresh(x), model(x))


def test_a_run_saved_before_the_choice_loads_with_the_old_settings():
    model = fitted()  # key length 6, temperature 0.2, from its config
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("chosen_")}
    fresh = RetrievalForecaster(model.config)
    fresh.load_state_dict(state)
    assert (fresh.key_len, fresh.temperature, fresh.top_k) == (6, pytest.approx(0.2), 5)
    old = RetrievalForecaster(RetrievalConfig(seq_len=64, pred_len=H, n_channels=C))  # the defaults runs had then
    old.load_state_dict({k: v for k, v in old.state_dict().items() if not k.startswith("chosen_")})
    assert (old.key_len, old.temperature, old.top_k) == (48, pytest.approx(0.1), 300)


def test_recorded_weights_attend_to_top_k_training_windows():
    model = fitted(top_k=7)
    x = torch.stack([series(L, 5), series(L, 6), series(L, 7)])  # (3, L, C)
    with record_attention(model) as rec:
        model(x)
    (weights,) = rec["attention"]
    n = model.memory.shape[0] - L - H + 1
    assert weights.shape == (C, 3, n)
    torch.testing.assert_close(weights.sum(-1), torch.ones(C, 3))
    assert ((weights > 0).sum(-1) == 7).all()
    assert len(model.token_labels([])) == n


def test_memory_survives_a_state_dict_round_trip():
    model = fitted()
    fresh = RetrievalForecaster(model.config)  # an empty memory, as load_model builds it
    fresh.load_state_dict(model.state_dict())
    x = series(L, 9).unsqueeze(0)
    torch.testing.assert_close(fresh(x), model(x))
    with pytest.raises(RuntimeError, match="call fit_closed_form"):
        RetrievalForecaster(model.config)(x)


def test_bad_settings_raise():
    sizes = {"seq_len": L, "pred_len": H, "n_channels": C}
    with pytest.raises(ValueError, match="key_len must be between 2 and the input length 16, got 17"):
        RetrievalForecaster(RetrievalConfig(key_len=17, **sizes))
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        RetrievalForecaster(RetrievalConfig(top_k=0, **sizes))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        RetrievalForecaster(RetrievalConfig(temperature=0.0, **sizes))
    with pytest.raises(ValueError, match="selection must be one of min, one_se, got 'lowest'; set model.selection"):
        RetrievalForecaster(RetrievalConfig(selection="lowest", **sizes))
    with pytest.raises(ValueError, match="selection must be one of min, one_se"):
        RidgeForecaster(RidgeConfig(selection="lowest", **sizes))


def test_cli_retrieval_run_and_predict(tmp_path, capsys):
    csv = seasonal_csv(tmp_path / "series.csv")
    run_dir = tmp_path / "run"
    assert cli.main(["forecast", "--csv", str(csv), "--input-len", "24", "--horizon", "6", "--model", "retrieval",
                     "--run-dir", str(run_dir), "--no-progress", "--no-figures", "model.key_len=12"]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["trainable_params"] == 0 and metrics["epochs"] == 0 and metrics["test"]["mse"] < 0.5
    attention = json.loads((run_dir / "attention.json").read_text())
    first = attention["samples"][0]["maps"][0]
    assert first["kind"] == "pooling" and first["key_labels"][0] == "2021-03-01 23:00"  # row 23 ends window 0
    model, _ = load_model(run_dir)
    assert model.memory.shape == (280, 3)  # the 0.7 training rows, kept for forecasting
    capsys.readouterr()
    assert cli.main(["predict", "--run", str(run_dir), "--csv", str(csv)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + 6


def test_memory_limit(monkeypatch):
    monkeypatch.setattr("attnlab.models.retrieval.MAX_BANK_BYTES", 1000)
    model = RetrievalForecaster(RetrievalConfig(seq_len=L, pred_len=H, n_channels=C, key_len=6))
    # 2 channels x 181 windows x (6 + 4) values x 4 bytes = 14480 bytes
    train = series(200, 0)
    with pytest.raises(ValueError, match="would need 0.0 GiB \\(2 channels x 181 training windows x 10 values"):
        model.fit_closed_form(batches(train), batches(series(120, 1)), train)


def test_cli_bad_key_len(tmp_path, capsys):
    csv = seasonal_csv(tmp_path / "s.csv")
    err = cli_error(capsys, ["--csv", str(csv), "--input-len", "24", "--horizon", "6", "--model", "retrieval",
                             "model.key_len=99"], tmp_path / "run")
    assert "key_len must be between 2 and the input length 24, got 99" in err


def test_retrieval_attends_over_one_series_only(tmp_path):
    """Its memory is the training rows of one series: a panel of many is refused, before a run folder exists."""
    from attnlab.errors import UserError
    from attnlab.forecast import forecast
    from test_forecast_panel import panel_frame

    model = RetrievalForecaster(RetrievalConfig(seq_len=L, pred_len=H, n_channels=C, key_len=6))
    with pytest.raises(ValueError, match="attends over the training windows of one series"):
        model.fit_closed_form(batches(series(200, 0)), batches(series(120, 1)), None)
    with pytest.raises(UserError, match=r"Retrieval fits one series \(a wide CSV\), and the data has 3; choose a "
                                        r"model for many series \(linear, .*patch_transformer.*ridge\)"):
        forecast(panel_frame(), "retrieval", horizon=4, input_len=12, run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
