"""The patch forecaster: patching against a hand computation, shapes, channel independence, attention over
patches with labelled axes, bad sizes, and its training recipe's batch on small and large data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnlab.catalog.forecast import PATCH_TRAINING
from attnlab.data.forecasting import prepare_forecast
from attnlab.data.panel import load_panel
from attnlab.forecast import forecast
from attnlab.models.patch import (
    PatchTransformer,
    PatchTransformerConfig,
    num_patches,
    patchify,
)
from attnlab.nn import record_attention
from attnlab.train.config import TrainConfig
from attnlab.train.engine import fit_batch_to_data
from test_forecast_data import ETTH1, write_series

SIZES = {"seq_len": 32, "pred_len": 6, "n_channels": 3}


def test_patchify_pads_the_end_with_the_last_value():
    x = torch.arange(10.0).unsqueeze(0)  # (1, 10)
    patches = patchify(x, patch_len=4, stride=2)  # padded to 0..9, 9, 9
    assert patches.shape == (1, num_patches(10, 4, 2), 4) == (1, 5, 4)
    assert patches[0, 0].tolist() == [0, 1, 2, 3]
    assert patches[0, -1].tolist() == [8, 9, 9, 9]


def test_shapes_and_channel_independence():
    torch.manual_seed(0)
    config = PatchTransformerConfig(patch_len=8, stride=4, d_model=8, num_heads=2, num_layers=1, d_ff=16, **SIZES)
    model = PatchTransformer(config).eval()
    x = torch.randn(4, 32, 3)
    y = model(x)
    assert y.shape == (4, 6, 3)
    changed = x.clone()
    changed[:, :, 1] += torch.randn(4, 32)  # another channel's values must not move channel 0's forecast
    torch.testing.assert_close(model(changed)[:, :, 0], y[:, :, 0])
    torch.testing.assert_close(model(x + 5.0), y + 5.0, atol=1e-4, rtol=0)  # instance normalisation


def test_quantile_heads_give_q_values_per_step_in_the_inputs_units():
    torch.manual_seed(0)
    kwargs = dict(patch_len=8, stride=4, d_model=8, num_heads=2, num_layers=1, d_ff=16, affine=True, **SIZES)
    point = PatchTransformer(PatchTransformerConfig(**kwargs)).eval()
    heads = PatchTransformer(PatchTransformerConfig(quantiles=(0.5, 0.1, 0.9), **kwargs)).eval()
    x = 100 + 10 * torch.randn(4, 32, 3)
    assert heads(x).shape == (4, 6, 3, 3)
    # one quantile (the median) with the point model's weights is the point model
    median = PatchTransformer(PatchTransformerConfig(quantiles=(0.5,), **kwargs)).eval()
    median.load_state_dict(point.state_dict())
    out = median(x)
    assert out.shape == (4, 6, 3, 1)
    torch.testing.assert_close(out[..., 0], point(x))
    # each quantile is denormalised like the point forecast: shifting the input shifts every quantile
    torch.testing.assert_close(heads(x + 50), heads(x) + 50, rtol=1e-4, atol=1e-3)


def test_attention_over_patches_with_labels():
    model = PatchTransformer(PatchTransformerConfig(patch_len=8, stride=8, d_model=8, num_heads=2, num_layers=2,
                                                    **SIZES)).eval()
    with record_attention(model) as rec:
        model(torch.randn(2, 32, 3))
    p = num_patches(32, 8, 8)
    assert p == 5 and rec["encoder.layers.1.self_attn"][0].shape == (2 * 3, 2, p, p)
    labels = model.token_labels([f"t{i}" for i in range(32)])
    assert labels[0] == "p0 t0–t7" and labels[3] == "p3 t24–t31"
    assert labels[-1] == "p4 t31–t31"  # only padding: copies of the last step
    assert len(labels) == p


@pytest.mark.parametrize(("changes", "message"), [
    ({"patch_len": 40}, "patch_len=40 must be between 1 and the input length 32"),
    ({"stride": 9, "patch_len": 8}, "stride=9 must be between 1 and patch_len=8"),
    ({"d_model": 10, "num_heads": 4}, "num_heads"),
])
def test_bad_sizes(changes, message):
    with pytest.raises(ValueError, match=message):
        PatchTransformer(PatchTransformerConfig(**{**SIZES, **changes}))


def test_runs_saved_before_center_existed_load_with_mean_centring():
    from attnlab.catalog.forecast import MODELS
    from attnlab.experiments.forecast import Forecast
    from attnlab.train.config import RunConfig

    saved = {"experiment": "forecast", "model": "patch_transformer", "model_config": {"d_model": 8}}
    assert RunConfig.from_dict(saved, Forecast, MODELS["patch_transformer"]).model_config.center == "mean"
    saved["model_config"]["center"] = "last"
    assert RunConfig.from_dict(saved, Forecast, MODELS["patch_transformer"]).model_config.center == "last"
    assert PatchTransformerConfig().center == "last"  # what new runs get, and save


def test_last_value_centring_follows_level_shifts_and_zeroes_the_last_step():
    # With center=last the normalised window is (x - x_L) / σ, so adding a constant to the whole window moves
    # the forecast by that constant (as with the mean), and the model sees the same normalised window.
    torch.manual_seed(0)
    model = PatchTransformer(PatchTransformerConfig(patch_len=8, stride=4, d_model=8, num_heads=2, num_layers=1,
                                                    d_ff=16, center="last", **SIZES)).eval()
    x = torch.randn(2, 32, 3)
    torch.testing.assert_close(model(x + 5.0), model(x) + 5.0, atol=1e-4, rtol=0)
    z, (centre, _) = model.revin.normalize(x)
    torch.testing.assert_close(centre, x[:, -1:])
    torch.testing.assert_close(z[:, -1], torch.zeros(2, 3))
    torch.testing.assert_close(model.revin.normalize(x + 5.0)[0], z, atol=1e-5, rtol=0)


@pytest.mark.skipif(not ETTH1.is_file(), reason="ETTh1.csv not available")
@pytest.mark.parametrize("input_len", [336, 512])
def test_the_patch_recipe_keeps_patchtsts_batch_on_etth1(input_len):
    # The measured ETTh1 figures were trained at batch 128: min_steps_per_epoch must leave them unchanged at
    # every horizon and input length `attnlab bench forecast` uses.
    train = TrainConfig(**PATCH_TRAINING)
    panel = load_panel(ETTH1)
    for horizon in (96, 192, 336, 720):
        data = prepare_forecast(panel, split="ett", input_len=input_len, horizon=horizon)
        assert fit_batch_to_data(train, len(data.dataset("train"))).batch_size == 128


@pytest.mark.slow
def test_a_small_csv_gets_a_smaller_batch_and_is_fitted(tmp_path, torch_single_thread):
    # 600 hourly rows of a noisy daily sine: 301 training windows. At batch 128 an epoch is 3 steps and the
    # 20-epoch recipe stops far from a fit; the lowered batch (301 // 32 = 9) fits it.
    n = 600
    t = np.arange(n)
    rng = np.random.default_rng(0)
    wave = np.sin(2 * np.pi * t / 24) + 0.1 * rng.normal(size=n)
    panel = load_panel(write_series(tmp_path / "sine.csv", n=n, a=wave, b=2 * wave + 1))

    def fitted(*overrides: str):
        return forecast(panel, "patch_transformer", list(overrides), runs_root=tmp_path, progress=False,
                        figures=False, forecast_windows=0, input_len=96, horizon=24).run

    lowered, kept = fitted(), fitted("min_steps_per_epoch=none")
    assert (lowered.config.train.batch_size, kept.config.train.batch_size) == (9, 128)
    assert lowered.metrics["mse"] < 0.1 < 0.3 < kept.metrics["mse"]
