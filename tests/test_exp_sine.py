"""The ``sine`` experiment: data, padding and masking, causal models, rollout, and one short fit."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attnlab import registry
from attnlab.catalog.sine import AttentiveRNNConfig, SineGRUConfig, SineTransformerConfig
from attnlab.data.synthetic import SeriesDataset, collate_next_step, make_sines
from attnlab.errors import UserError
from attnlab.experiments.sine import Sine, attention_maps, masked_mse, rollout
from attnlab.models.rnn import GRURegressor
from attnlab.models.sine import CausalTransformer, SineAttentiveRNN, SineGRU, SineTransformer

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "gru": SineGRU(SineGRUConfig()),
        "transformer": SineTransformer(SineTransformerConfig(d_model=16, num_heads=2, num_layers=2)),
        "transformer_window": SineTransformer(SineTransformerConfig(d_model=16, num_heads=2, num_layers=1,
                                                                    input_window=3)),
        "transformer_sinusoidal": SineTransformer(SineTransformerConfig(d_model=16, num_heads=4,
                                                                        positional="sinusoidal")),
        "attentive_rnn": SineAttentiveRNN(AttentiveRNNConfig(hidden_dim=8)),
    }


MODEL_NAMES = ["gru", "transformer", "transformer_window", "transformer_sinusoidal", "attentive_rnn"]


# ---------------------------------------------------------------------------------------------- data


def test_make_sines_lengths_frequencies_and_determinism():
    series = make_sines(50, torch.Generator().manual_seed(3), min_len=20, max_len=40, min_period=10, max_period=30)
    again = make_sines(50, torch.Generator().manual_seed(3), min_len=20, max_len=40, min_period=10, max_period=30)
    assert all(torch.equal(a, b) for a, b in zip(series, again, strict=True))
    assert {len(s) - 1 for s in series} <= set(range(20, 41))
    assert len({len(s) for s in series}) > 5  # lengths really vary
    for s in series:
        s = s.double()
        assert s.abs().max() <= 1.0 + 1e-6
        # A clean sinusoid obeys x[t+1] + x[t-1] = 2 cos(ω) x[t]: one ratio per series.
        t = torch.nonzero(s[1:-1].abs() > 0.3).squeeze(1) + 1
        ratio = (s[t + 1] + s[t - 1]) / s[t]
        assert ratio.std() < 1e-4
        omega = math.acos(float(ratio.mean()) / 2)
        assert 2 * math.pi / 30 - 1e-3 <= omega <= 2 * math.pi / 10 + 1e-3


def test_make_sines_noise_is_added_to_the_same_curves():
    clean = make_sines(20, torch.Generator().manual_seed(1), noise_std=0.0)
    noisy = make_sines(20, torch.Generator().manual_seed(1), noise_std=0.1)
    diff = torch.cat([n - c for n, c in zip(noisy, clean, strict=True)])
    assert diff.std().item() == pytest.approx(0.1, rel=0.05)


def test_make_sines_rejects_bad_sizes():
    with pytest.raises(ValueError, match="min_len"):
        make_sines(2, torch.Generator(), min_len=10, max_len=5)
    with pytest.raises(ValueError, match="period"):
        make_sines(2, torch.Generator(), min_period=1.0)


def test_collate_pads_and_shifts_targets_by_one_step():
    a, b = torch.arange(6.0), torch.arange(10.0, 14.0)  # 5 and 3 steps
    x, y, lengths = collate_next_step([a, b])
    assert x.shape == y.shape == (2, 5, 1)
    assert lengths.tolist() == [5, 3]
    assert x[0, :, 0].tolist() == [0, 1, 2, 3, 4] and y[0, :, 0].tolist() == [1, 2, 3, 4, 5]
    assert x[1, :3, 0].tolist() == [10, 11, 12] and y[1, :3, 0].tolist() == [11, 12, 13]
    assert x[1, 3:].abs().sum() == 0 and y[1, 3:].abs().sum() == 0  # padding
    # The target at every valid step is the next input.
    assert torch.equal(y[0, :-1], x[0, 1:])


def test_masked_mse_ignores_padding():
    x, y, lengths = collate_next_step([torch.randn(9), torch.randn(4)])
    prediction = torch.randn_like(y)
    expected = torch.cat([(prediction[0, :8] - y[0, :8]).pow(2), (prediction[1, :3] - y[1, :3]).pow(2)]).mean()
    assert masked_mse(prediction, y, lengths).item() == pytest.approx(expected.item(), rel=1e-6)
    garbage = prediction.clone()
    garbage[1, 3:] = 1e6  # whatever a model outputs at padding does not count
    assert masked_mse(garbage, y, lengths).item() == pytest.approx(expected.item(), rel=1e-6)


def test_experiment_loss_is_the_mean_over_valid_steps_of_each_series():
    model = _models()["transformer"]
    long, short = torch.randn(21), torch.randn(8)
    batch = collate_next_step([long, short])
    per_series = [model(s[:-1].view(1, -1, 1)) - s[1:].view(1, -1, 1) for s in (long, short)]
    expected = torch.cat([e.flatten() for e in per_series]).pow(2).mean()
    torch.testing.assert_close(Sine(Sine.Config()).loss(model, batch), expected, atol=1e-6, rtol=1e-5)


def test_experiment_data_is_deterministic_and_splits_are_independent():
    small = Sine(Sine.Config(n_train=8, n_val=4, n_test=5))
    first, second = small.data(seed=7), small.data(seed=7)
    assert all(torch.equal(first.test[i], second.test[i]) for i in range(5))
    other_seed = small.data(seed=8)
    assert not torch.equal(first.test[0], other_seed.test[0])
    bigger_train = Sine(Sine.Config(n_train=20, n_val=4, n_test=5)).data(seed=7)
    assert all(torch.equal(first.test[i], bigger_train.test[i]) for i in range(5))


def test_batch_size_of_counts_valid_steps():
    batch = collate_next_step([torch.randn(11), torch.randn(6)])
    assert Sine(Sine.Config()).batch_size_of(batch) == 10 + 5


# ---------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_models_padding_does_not_change_valid_outputs(name):
    model = _models()[name].eval()
    long, short = torch.randn(31), torch.randn(13)
    x, _, lengths = collate_next_step([long, short])
    with torch.no_grad():
        batched = model(x, lengths)  # (2, 30, 1)
        alone = model(short[:-1].view(1, -1, 1))  # (1, 12, 1), no padding at all
    assert batched.shape == (2, 30, 1)
    torch.testing.assert_close(batched[1, :12], alone[0], atol=1e-5, rtol=1e-5)
    x_changed = x.clone()
    x_changed[1, 12:] = 5.0  # different padding values
    with torch.no_grad():
        torch.testing.assert_close(model(x_changed, lengths)[1, :12], batched[1, :12], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_models_are_causal(name):
    model = _models()[name].eval()
    x = torch.randn(2, 25, 1)
    changed = x.clone()
    changed[:, 15:] = torch.randn(2, 10, 1)
    with torch.no_grad():
        before, after = model(x), model(changed)
    torch.testing.assert_close(before[:, :15], after[:, :15], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(before[:, 15:], after[:, 15:])


def test_gru_is_the_classic_seed_network():
    model = SineGRU(Sine.models["gru"].config())
    assert isinstance(model, GRURegressor)
    assert (model.gru.input_size, model.gru.hidden_size, model.gru.num_layers) == (1, 4, 2)
    assert isinstance(model.activation, nn.Tanh)
    assert model(torch.full((1, 5, 1), 100.0)).abs().max() < 1  # tanh output


def test_transformer_heads_must_divide_d_model():
    with pytest.raises(ValueError, match="divisible"):
        SineTransformer(SineTransformerConfig(d_model=30, num_heads=4))
    from attnlab.train.weights import build_model  # the engine turns it into a one-line UserError

    _, spec = registry.get_model(Sine, "transformer")
    with pytest.raises(UserError, match="not divisible by num_heads=4"):
        build_model(spec, SineTransformerConfig(d_model=30, num_heads=4))


def test_the_causal_transformer_block_takes_any_number_of_features():
    """SineTransformer is the 1-D case of CausalTransformer; the block itself maps (B, L, in) to (B, L, out)."""
    block = CausalTransformer(3, 2, d_model=8, num_heads=2, num_layers=1)
    x = torch.randn(4, 7, 3)
    out = block(x)
    assert out.shape == (4, 7, 2)
    changed = x.clone()
    changed[:, 5:] = 9.0
    torch.testing.assert_close(block(changed)[:, :5], out[:, :5])  # causal: steps 0..4 never see 5..6
    sine = SineTransformer(SineTransformerConfig(d_model=8, num_heads=2, num_layers=1))
    assert (sine.input_proj.conv.in_channels, sine.head.out_features) == (1, 1)


def test_rollout_feeds_back_predictions():
    omega = 2 * math.pi / 25

    class Recurrence(nn.Module):
        """The exact next-step rule of a sinusoid: x[t+1] = 2 cos(ω) x[t] - x[t-1]."""

        def forward(self, x, lengths=None):
            previous = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
            return 2 * math.cos(omega) * x - previous

    t = torch.arange(60, dtype=torch.float64)
    truth = torch.sin(omega * t + 0.3).float()
    forecast = rollout(Recurrence(), truth[:20].view(1, -1, 1), steps=40)
    assert forecast.shape == (1, 40, 1)
    torch.testing.assert_close(forecast[0, :, 0], truth[20:], atol=1e-4, rtol=0)


def test_attention_maps_are_causal_rows_of_weights():
    model = _models()["transformer"].eval()
    weights, titles = attention_maps(model, torch.randn(1, 12, 1))
    assert weights.shape == (2, 2, 12, 12)  # layers, heads, queries, keys
    assert len(titles) == 4 and titles[0] == "Encoder self-attention, layer 1, head 1"  # numbered from 1
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 12))
    assert weights.triu(diagonal=1).abs().max() == 0  # no step looks ahead
    assert attention_maps(_models()["gru"], torch.randn(1, 12, 1)) is None
    single, _ = attention_maps(_models()["attentive_rnn"].eval(), torch.randn(1, 12, 1))
    assert single.shape == (1, 1, 12, 12)


# ---------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("model", ["transformer", "gru"])
def test_fit_end_to_end(tmp_path, model):
    from attnlab.train import fit

    overrides = ["n_train=32", "n_val=8", "n_test=8", "max_len=80", "rollout_context=20", "rollout_steps=10",
                 "max_epochs=1", "batch_size=8"]
    result = fit("sine", model, overrides, run_dir=tmp_path / "run", progress=False)
    assert set(result.metrics) >= {"loss", "mse"}
    assert math.isfinite(result.metrics["mse"]) and result.metrics["mse"] == result.metrics["loss"]
    names = sorted(p.name for p in result.figures)
    assert names == (["sine_attention.png", "sine_rollout.png"] if model == "transformer" else ["sine_rollout.png"])
    assert all(p.is_file() and p.stat().st_size > 0 for p in result.figures)


def test_series_dataset_indexing():
    data = SeriesDataset([torch.zeros(3), torch.ones(5)])
    assert len(data) == 2 and data[1].shape == (5,)
