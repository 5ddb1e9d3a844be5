"""The attention-free twins the catalogue declares: each names a registered model, has no attention layer, forecasts
the same shape, keeps the attention model's other layers and training recipe; and TokenMean, the stand-in for
self-attention, against a hand computation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attnlab import registry
from attnlab.catalog.forecast import MODELS, SPEC
from attnlab.models.capabilities import ClosedFormFit
from attnlab.models.retrieval import _window_batches
from attnlab.nn import Encoder, TokenMean
from attnlab.nn.maps import has_attention
from attnlab.train.config import resolve
from attnlab.train.weights import build_model

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SIZES = {"seq_len": 48, "pred_len": 12, "n_channels": 2, "season": 12}
SMALL = {  # small sizes for speed; applied to the attention model and its twin alike
    "patch_transformer": ["model.d_model=8", "model.d_ff=16", "model.num_layers=2", "model.num_heads=2"],
    "horizon_attention": ["model.d_model=8", "model.d_ff=16", "model.num_heads=2"],
    "attentive_rnn": ["model.hidden_dim=8"],
}
TWINNED = [name for name, spec in MODELS.items() if spec.twin is not None]


def built(name: str, overrides: list[str]) -> tuple[torch.nn.Module, object]:
    """The model ``name`` with ``overrides``, its sizes filled as the forecast experiment would, and its run
    config."""
    config = resolve(SPEC, name, MODELS[name], overrides)
    return build_model(MODELS[name], dataclasses.replace(config.model_config, **SIZES)), config


def test_the_attention_models_and_their_twins():
    assert {name: MODELS[name].twin.label for name in TWINNED} == {
        "attentive_rnn": "gru[num_layers=1]",
        "patch_transformer": "patch_transformer[attention=mean]",
        "horizon_attention": "horizon_attention[attention=mean]",
        "retrieval": "ridge",
    }
    for name in TWINNED:  # every twin is a registered model of the same experiment, without a twin of its own
        twin = MODELS[name].twin
        assert twin.model in registry.get_experiment("forecast").models
        assert twin.model == name or MODELS[twin.model].twin is None


@pytest.mark.parametrize("name", TWINNED)
def test_a_twin_has_no_attention_the_same_output_and_the_same_recipe(name):
    twin = MODELS[name].twin
    model, config = built(name, SMALL.get(name, []))
    twin_model, twin_config = built(twin.model, [*twin.overrides, *SMALL.get(name, [])])
    assert has_attention(model) and not has_attention(twin_model)
    assert twin_config.train == config.train  # the same training recipe: optimiser, lr, epochs, batch, patience
    for m in (model, twin_model):
        fit_if_closed_form(m.eval())
    x = torch.randn(3, SIZES["seq_len"], SIZES["n_channels"])
    with torch.no_grad():
        assert twin_model(x).shape == model(x).shape == (3, SIZES["pred_len"], SIZES["n_channels"])


def fit_if_closed_form(model: torch.nn.Module) -> None:
    """Solve ridge and retrieval on the windows of a random walk (the others train by gradient descent)."""
    if not isinstance(model, ClosedFormFit):
        return
    torch.manual_seed(0)
    series = torch.randn(400, SIZES["n_channels"]).cumsum(0)  # (R, C)
    train, val = series[:300], series[300:]

    def windows(part: torch.Tensor):
        return lambda: _window_batches(part, SIZES["seq_len"], SIZES["pred_len"])

    model.fit_closed_form(windows(train), windows(val), train)


@pytest.mark.parametrize("name", ["patch_transformer", "horizon_attention"])
def test_the_mean_twin_keeps_every_layer_but_the_attention(name):
    model, _ = built(name, SMALL[name])
    twin, _ = built(name, [*MODELS[name].twin.overrides, *SMALL[name]])
    keys, twin_keys = set(model.state_dict()), set(twin.state_dict())
    if name == "patch_transformer":  # the same embedding, norms, feed-forward and head; only self_attn is gone
        assert twin_keys < keys and all(".self_attn." in key for key in keys - twin_keys)
    else:  # horizon_attention's twin (MeanMixer) keeps the embedding, queries, head and skip
        shared = {key for key in keys if not key.startswith(("encoder.", "decoder."))}
        assert shared <= twin_keys
    assert sum(p.numel() for p in twin.parameters()) < sum(p.numel() for p in model.parameters())


def test_the_rnn_twin_is_the_same_gru_without_the_context():
    model, _ = built("attentive_rnn", SMALL["attentive_rnn"])
    twin, _ = built("gru", [*MODELS["attentive_rnn"].twin.overrides, *SMALL["attentive_rnn"]])
    assert (twin.rnn.hidden_size, twin.rnn.num_layers) == (model.gru.hidden_size, model.gru.num_layers) == (8, 1)
    assert twin.head.in_features == model.head.in_features // 2  # [state] instead of [state; context]


def test_token_mean_by_hand():
    v = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]]])  # (1, 3, 2)
    out, weights = TokenMean()(v, v, v)
    assert weights is None and out.tolist() == [[[3.0, 2.0]] * 3]
    causal, _ = TokenMean()(v, v, v, is_causal=True)
    assert causal.tolist() == [[[1.0, 0.0], [2.0, 1.0], [3.0, 2.0]]]
    padded, _ = TokenMean()(v, v, v, key_padding_mask=torch.tensor([[False, False, True]]))
    assert padded.tolist() == [[[2.0, 1.0]] * 3]
    with pytest.raises(ValueError, match="no attn_mask"):
        TokenMean()(v, v, v, attn_mask=torch.zeros(3, 3, dtype=torch.bool))


def test_a_mean_encoder_mixes_tokens_without_attention():
    torch.manual_seed(0)
    encoder = Encoder(2, 8, 2, 16, attention="mean").eval()
    assert not has_attention(encoder) and all(isinstance(layer.self_attn, TokenMean) for layer in encoder.layers)
    x = torch.randn(2, 5, 8)
    moved = x.clone()
    moved[:, 4] += torch.randn(2, 8)  # one token changes: every token's output moves (they all read the mean)
    assert not torch.allclose(encoder(x)[:, 0], encoder(moved)[:, 0])
    with pytest.raises(ValueError, match="'full' or 'mean'"):
        Encoder(1, 8, 2, attention="none")
