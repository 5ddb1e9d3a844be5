"""Every registry model of the seed tasks and translation is a class built as ``Model(config)`` from its config
dataclass, and builds the network that runs saved before models became classes.

``data/models_before_config_classes.json`` was written by :func:`describe` with attnlab at commit 7286b4a, when
the catalogue named factory functions (``sine_gru``, ``seq2seq_attention``, ``bahdanau``, …): per model, the
state-dict keys with their shapes, and the outputs of the model built after ``torch.manual_seed(0)`` on fixed
inputs. Equal keys and shapes mean a ``model.safetensors`` saved then loads now (strictly); equal outputs mean
the same weights are drawn in the same order and wired the same way. Never regenerate the file with newer code.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from attnlab import registry

pytestmark = pytest.mark.usefixtures("torch_single_thread")

BEFORE = Path(__file__).parent / "data" / "models_before_config_classes.json"
EXPERIMENTS = ("sine", "count", "squares", "kernel_regression", "digits_vit", "translate")

# Small sizes (the defaults where they are small already), so the saved outputs stay short.
SMALL: dict[str, dict[str, Any]] = {
    "sine/transformer": {"d_model": 8, "num_heads": 2, "num_layers": 1, "input_window": 2},
    "sine/attentive_rnn": {"hidden_dim": 4, "score": "additive"},
    "count/transformer": {"d_model": 8, "num_heads": 2, "num_layers": 1},
    "count/gru": {"embed_dim": 3, "hidden_dim": 4},
    "squares/seq2seq_multihead": {"d_model": 8, "num_heads": 2},
    "squares/transformer": {"d_model": 8, "num_heads": 2, "num_layers": 1, "d_ff": 16},
    "kernel_regression/nadaraya_watson": {"kernel": "epanechikov", "sigma": 0.7},
    "digits_vit/vit": {"d_model": 8, "num_heads": 2, "num_layers": 1, "d_ff": 16},
    "digits_vit/mlp": {"hidden_dim": 8},
    "translate/seq2seq": {"src_vocab_size": 8, "tgt_vocab_size": 9, "embed_dim": 4, "hidden_dim": 6, "num_layers": 2},
    "translate/bahdanau": {"src_vocab_size": 8, "tgt_vocab_size": 9, "embed_dim": 4, "hidden_dim": 6},
    "translate/luong": {"src_vocab_size": 8, "tgt_vocab_size": 9, "embed_dim": 4, "hidden_dim": 6,
                        "input_feeding": True},
    "translate/transformer": {"src_vocab_size": 8, "tgt_vocab_size": 9, "d_model": 8, "num_heads": 2,
                              "num_layers": 1, "d_ff": 16},
}


def registry_models() -> list[str]:
    """``experiment/model`` of every model of :data:`EXPERIMENTS`, in catalogue order."""
    return [f"{e}/{m}" for e in EXPERIMENTS for m in registry.get_experiment(e).models]


def small_config(name: str) -> Any:
    experiment, model = name.split("/")
    spec = registry.get_experiment(experiment).models[model]
    return dataclasses.replace(spec.config(), **SMALL.get(name, {}))


def _outputs(name: str, model: nn.Module) -> Tensor:
    """The model's output on inputs fixed per experiment (a separate generator: the global RNG built the model)."""
    g = torch.Generator().manual_seed(1)
    experiment = name.split("/")[0]
    if experiment == "sine":
        return model(torch.randn(2, 6, 1, generator=g), torch.tensor([6, 4]))  # (B, L, 1)
    if experiment == "count":
        return model(torch.randint(0, 10, (2, 10), generator=g))  # (B, 1)
    if experiment == "squares":
        return model(torch.randn(2, 2, 2, generator=g), steps=2)  # (B, T, P), free-running
    if experiment == "kernel_regression":
        keys = torch.linspace(0, 5, 7)
        return model(torch.rand(5, generator=g) * 5, keys, 2 * torch.sin(keys) + keys)  # (Q,)
    if experiment == "digits_vit":
        return model(torch.rand(2, 1, 8, 8, generator=g))  # (B, classes)
    src = torch.randint(4, 8, (2, 4), generator=g)  # (B, S)
    return model(src, torch.tensor([4, 3]), torch.randint(1, 9, (2, 3), generator=g))  # (B, T, V)


def describe(name: str) -> dict[str, Any]:
    """State-dict keys and shapes, and outputs on fixed inputs, of registry model ``name`` built after
    ``torch.manual_seed(0)`` from its :data:`SMALL` config (eval mode)."""
    experiment, model_name = name.split("/")
    spec = registry.get_experiment(experiment).models[model_name]
    torch.manual_seed(0)
    model = spec.factory(small_config(name)).eval()
    with torch.no_grad():
        out = _outputs(name, model)
    return {"state": {k: list(v.shape) for k, v in model.state_dict().items()},
            "output": [round(v, 6) for v in out.flatten().tolist()]}


@pytest.fixture(scope="module")
def before() -> dict[str, Any]:
    return json.loads(BEFORE.read_text())


def test_the_saved_description_covers_every_model(before):
    assert sorted(before) == sorted(registry_models())


@pytest.mark.parametrize("name", registry_models())
def test_the_model_is_a_class_built_from_its_config(name):
    experiment, model_name = name.split("/")
    spec = registry.get_experiment(experiment).models[model_name]
    cls = spec.model_class
    assert inspect.isclass(cls) and issubclass(cls, nn.Module), f"{name} is built by {cls!r}, not a model class"
    assert list(inspect.signature(cls).parameters) == ["config"]
    config = small_config(name)
    torch.manual_seed(0)
    direct = cls(config)
    torch.manual_seed(0)
    built = spec.factory(config)
    assert type(built) is cls
    for (k1, v1), (k2, v2) in zip(direct.state_dict().items(), built.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2)


@pytest.mark.parametrize("name", registry_models())
def test_the_model_matches_the_one_runs_were_saved_with(name, before):
    now = describe(name)
    assert now["state"] == before[name]["state"]  # a state dict saved then loads strictly
    assert now["output"] == pytest.approx(before[name]["output"], abs=1e-5)


@pytest.mark.parametrize("name", ["sine/gru", "count/attention_pooling", "squares/seq2seq_attention",
                                  "digits_vit/vit", "translate/bahdanau"])
def test_saved_weights_load_into_the_class_and_give_the_same_outputs(name, tmp_path):
    from safetensors.torch import load_file, save_file

    experiment, model_name = name.split("/")
    spec = registry.get_experiment(experiment).models[model_name]
    torch.manual_seed(3)
    saved = spec.factory(small_config(name)).eval()
    save_file({k: v.contiguous() for k, v in saved.state_dict().items()}, tmp_path / "model.safetensors")
    torch.manual_seed(4)  # other initial weights, replaced by the loaded ones
    loaded = spec.model_class(small_config(name)).eval()
    loaded.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(_outputs(name, loaded), _outputs(name, saved), rtol=0, atol=0)


def test_two_models_on_one_config_are_two_classes():
    """``seq2seq`` and ``seq2seq_attention`` share ``Seq2SeqConfig``: the class, not a flag, decides attention."""
    from attnlab.catalog.squares import Seq2SeqConfig
    from attnlab.models.seq2seq_points import Seq2Seq, Seq2SeqAttention

    plain, attending = Seq2Seq(Seq2SeqConfig()), Seq2SeqAttention(Seq2SeqConfig())
    assert plain.cross_attn is None and attending.cross_attn is not None
    assert (plain.head.in_features, attending.head.in_features) == (4, 8)  # [h] against [context; h]


def test_the_default_config_builds_the_registry_model():
    """``Model(Config())`` is what ``attnlab fit`` builds with no model overrides."""
    from attnlab.catalog.kernel_regression import LearnedNadarayaWatsonConfig, NadarayaWatsonConfig
    from attnlab.catalog.sine import SineGRUConfig
    from attnlab.models.kernel_regression import LearnedNadarayaWatson, NadarayaWatson
    from attnlab.models.sine import SineGRU

    gru = SineGRU(SineGRUConfig())
    assert (gru.gru.input_size, gru.gru.hidden_size, gru.gru.num_layers, gru.head.out_features) == (1, 4, 2, 1)
    fixed, learned = NadarayaWatson(NadarayaWatsonConfig()), LearnedNadarayaWatson(LearnedNadarayaWatsonConfig())
    assert list(fixed.parameters()) == [] and fixed.sigma.item() == pytest.approx(0.5)
    assert [p.numel() for p in learned.parameters()] == [1] and learned.sigma.item() == pytest.approx(1.0)

