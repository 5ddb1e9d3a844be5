"""attnlab.models.forecast: DLinear against a hand computation, shapes of every model, attention labels,
and how the forecast experiment fills the data-dependent sizes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from attnlab.catalog.forecast import MODELS, DLinearConfig, ForecastSizes
from attnlab.errors import UserError
from attnlab.experiments.forecast import Forecast, attention_maps, spread
from attnlab.models.forecast import DLinear, InstanceNorm, MovingAverage
from attnlab.models.retrieval import _window_batches
from attnlab.train.weights import build_model
from test_forecast_data import write_series

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def test_moving_average_by_hand():
    x = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0]).view(1, 5, 1)
    # kernel 3: one copy of each end value on each side: [1, 1, 2, 4, 8, 16, 16]
    expected = torch.tensor([4 / 3, 7 / 3, 14 / 3, 28 / 3, 40 / 3]).view(1, 5, 1)
    torch.testing.assert_close(MovingAverage(3)(x), expected)


def test_moving_average_kernel_25_matches_a_loop():
    rng = np.random.default_rng(0)
    series = rng.normal(size=(40, 2))
    padded = np.concatenate([np.repeat(series[:1], 12, 0), series, np.repeat(series[-1:], 12, 0)])
    expected = np.stack([padded[t : t + 25].mean(0) for t in range(40)])
    out = MovingAverage(25)(torch.tensor(series, dtype=torch.float64).unsqueeze(0))[0]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)


def test_dlinear_is_two_linear_maps_of_the_decomposition():
    torch.manual_seed(0)
    L, H, C = 30, 7, 3
    model = DLinear(DLinearConfig(seq_len=L, pred_len=H, n_channels=C, kernel_size=5)).double()
    x = torch.randn(2, L, C, dtype=torch.float64)
    trend = MovingAverage(5)(x)
    seasonal = x - trend
    Ws, bs = model.seasonal[0].weight, model.seasonal[0].bias  # (H, L), (H,)
    Wt, bt = model.trend[0].weight, model.trend[0].bias
    expected = torch.einsum("hl,blc->bhc", Ws, seasonal) + bs[:, None] + torch.einsum("hl,blc->bhc", Wt, trend) \
        + bt[:, None]
    torch.testing.assert_close(model(x), expected)


def test_dlinear_individual_has_one_map_per_channel():
    torch.manual_seed(0)
    shared = DLinear(DLinearConfig(seq_len=24, pred_len=6, n_channels=3))
    individual = DLinear(DLinearConfig(seq_len=24, pred_len=6, n_channels=3, individual=True))
    assert sum(p.numel() for p in individual.parameters()) == 3 * sum(p.numel() for p in shared.parameters())
    x = torch.randn(2, 24, 3)
    alone = DLinear(DLinearConfig(seq_len=24, pred_len=6, n_channels=1))
    alone.seasonal[0].load_state_dict(individual.seasonal[1].state_dict())
    alone.trend[0].load_state_dict(individual.trend[1].state_dict())
    torch.testing.assert_close(individual(x)[..., 1], alone(x[..., 1:2])[..., 0])


def _sized(name: str, L: int = 24, H: int = 6, C: int = 3):
    spec = MODELS[name]
    return build_model(spec, dataclasses.replace(spec.config(), seq_len=L, pred_len=H, n_channels=C))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_maps_windows_to_horizons(name):
    torch.manual_seed(0)
    model = _sized(name)
    if hasattr(model, "fit_closed_form"):  # ridge, retrieval: solved from data, not trained
        train, val = torch.randn(200, 3), torch.randn(80, 3)
        model.fit_closed_form(lambda: _window_batches(train, 24, 6), lambda: _window_batches(val, 24, 6), train)
    x = torch.randn(4, 24, 3)
    y = model(x)
    assert y.shape == (4, 6, 3)
    if any(p.requires_grad for p in model.parameters()):
        y.pow(2).mean().backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_the_time_step_transformer_drops_no_attention_weights_unless_asked():
    """As in the original Transformer, dropout falls on the embeddings and each sub-layer's output, not on the
    attention weights, so training keeps the fused kernel (which takes no dropout)."""
    spec = MODELS["transformer"]
    for extra, expected in (({}, 0.0), ({"attn_dropout": 0.2}, 0.2)):
        config = dataclasses.replace(spec.config(), seq_len=24, pred_len=6, n_channels=1, **extra)
        model = build_model(spec, config)
        assert config.dropout == 0.1 and model.positions.dropout.p == 0.1
        assert [layer.self_attn.dropout for layer in model.encoder.layers] == [expected] * config.num_layers


@pytest.mark.parametrize("name", sorted(n for n in MODELS if hasattr(MODELS[n].config(), "instance_norm")))
def test_models_with_instance_norm_follow_level_shifts(name):
    config = MODELS[name].config()
    torch.manual_seed(0)
    model = build_model(MODELS[name], dataclasses.replace(config, seq_len=24, pred_len=6, n_channels=3,
                                                          instance_norm=True)).eval()
    x = torch.randn(2, 24, 3)
    torch.testing.assert_close(model(x + 100.0), model(x) + 100.0, atol=1e-3, rtol=0)


@pytest.mark.parametrize("center", ["mean", "last"])
@pytest.mark.parametrize("affine", [False, True])
def test_instance_norm_round_trip(affine, center):
    norm = InstanceNorm(3, affine=affine, center=center)
    if affine:
        with torch.no_grad():
            norm.weight.copy_(torch.tensor([0.5, 2.0, 1.5]))
            norm.bias.copy_(torch.tensor([1.0, -1.0, 0.0]))
    x = torch.randn(2, 10, 3) * 5 + 7
    z, stats = norm.normalize(x)
    if not affine:
        centred = z[:, -1] if center == "last" else z.mean(1)  # the centre maps to 0, the spread to 1
        torch.testing.assert_close(centred, torch.zeros(2, 3), atol=1e-5, rtol=0)
        torch.testing.assert_close(z.std(1, unbiased=False), torch.ones(2, 3), atol=1e-4, rtol=0)
    torch.testing.assert_close(norm.denormalize(z, stats), x, atol=1e-4, rtol=0)


def test_instance_norm_last_centre_is_the_last_value():
    x = torch.tensor([[[1.0], [2.0], [6.0]]])  # (1, 3, 1): mean 3, last 6
    z, (centre, std) = InstanceNorm(center="last").normalize(x)
    assert centre.item() == 6.0
    torch.testing.assert_close(z.flatten(), (x.flatten() - 6.0) / std.item())
    with pytest.raises(ValueError, match="center='median' must be 'mean' or 'last'"):
        InstanceNorm(center="median")


def test_affine_instance_norm_needs_channels():
    with pytest.raises(ValueError, match="needs the number of channels"):
        InstanceNorm(affine=True)


def test_sizes_must_be_filled():
    with pytest.raises(ValueError, match="fills them from the data"):
        MODELS["linear"].factory(DLinearConfig())
    assert issubclass(DLinearConfig, ForecastSizes)


def test_attention_maps_are_labelled_with_time_stamps():
    torch.manual_seed(0)
    stamps = [f"t{i}" for i in range(24)]
    x = torch.randn(1, 24, 3)
    def maps_of(name):
        model = _sized(name).eval()
        return attention_maps(model, lambda: model(x), stamps, ("a", "b", "c"))

    maps = maps_of("attentive_rnn")
    assert [(m.layer, m.kind, tuple(m.weights.shape)) for m in maps] == [("attention", "pooling", (1, 1, 24))]
    assert maps[0].key_labels == stamps and maps[0].query_labels == ["final state (t23)"]
    torch.testing.assert_close(maps[0].weights.sum(-1), torch.ones(1, 1))

    maps = maps_of("transformer")
    assert [m.layer for m in maps] == ["encoder.layers.0.self_attn", "encoder.layers.1.self_attn"]
    assert all(m.kind == "self" and m.weights.shape == (4, 24, 24) and m.key_labels == stamps for m in maps)
    for name in ("linear", "gru", "lstm"):
        assert maps_of(name) == []


def test_channel_independent_attention_gives_one_map_per_channel():
    """A patch-style model runs attention on C series per window: each channel gets its own map."""
    from attnlab.nn import MultiHeadAttention

    class PerChannel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = MultiHeadAttention(4, 2)

        def token_labels(self, timestamps):
            return [f"patch {i} ({timestamps[4 * i]}..)" for i in range(len(timestamps) // 4)]

        def forward(self, x):  # (B, L, C) -> patches of 4 steps per channel, (B·C, L/4, 4)
            B, L, C = x.shape
            tokens = x.permute(0, 2, 1).reshape(B * C, L // 4, 4)
            return self.attn(tokens, tokens, tokens)[0]

    stamps = [f"t{i}" for i in range(16)]
    model, x = PerChannel(), torch.randn(1, 16, 3)
    maps = attention_maps(model, lambda: model(x), stamps, ("a", "b", "c"))
    assert [m.layer for m in maps] == ["attn [a]", "attn [b]", "attn [c]"]
    assert maps[0].key_labels == ["patch 0 (t0..)", "patch 1 (t4..)", "patch 2 (t8..)", "patch 3 (t12..)"]
    assert maps[0].weights.shape == (2, 4, 4)


def test_experiment_fills_sizes_and_rejects_conflicts(tmp_path):
    path = write_series(tmp_path / "s.csv", n=120)
    task = Forecast(Forecast.Config(csv=str(path), input_len=12, horizon=4))
    filled = task.complete_model_config(DLinearConfig(kernel_size=5))
    assert (filled.seq_len, filled.pred_len, filled.n_channels, filled.kernel_size) == (12, 4, 2, 5)
    assert task.complete_model_config(filled) == filled  # already filled (a resumed run): unchanged
    with pytest.raises(UserError, match=r"model.seq_len=99 conflicts with the data \(seq_len = 12 from --input-len"):
        task.complete_model_config(DLinearConfig(seq_len=99))


def test_spread():
    assert spread(10, 3) == [0, 4, 9] or spread(10, 3) == [0, 5, 9]
    assert spread(2, 5) == [0, 1]
    assert spread(7, 1) == [3]
    assert spread(0, 3) == []
