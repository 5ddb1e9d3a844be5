"""Override parsing and configuration resolution of the training engine."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Literal

import pytest

from attnlab.errors import UserError
from attnlab.registry import ModelSpec
from attnlab.train.config import RunConfig, TrainConfig, convert, not_a, parse_overrides, resolve, type_name
from toy_experiment import TOY, FrozenConfig, LinearConfig, ToyConfig, ToyExperiment

LINEAR = ToyExperiment.models["linear"]


def resolve_toy(overrides=(), model="linear", base=None) -> RunConfig:
    return resolve(ToyExperiment, model, ToyExperiment.models[model], overrides, base=base)


@pytest.mark.parametrize(
    ("text", "tp", "expected"),
    [
        ("3", int, 3),
        (" -7 ", int, -7),
        ("1e-3", float, 1e-3),
        ("2", float, 2.0),
        ("true", bool, True),
        ("Yes", bool, True),
        ("1", bool, True),
        ("no", bool, False),
        ("0", bool, False),
        ("off", bool, False),
        ("cosine", str, "cosine"),
        ("none", float | None, None),
        ("None", int | None, None),
        ("null", str | None, None),
        ("5", int | None, 5),
        ("0.5", float | None, 0.5),
        ("1,2,3", tuple[int, ...], (1, 2, 3)),
        ("(4, 5)", tuple[int, ...], (4, 5)),
        ("4,", tuple[int, ...], (4,)),
        ("", tuple[int, ...], ()),
        ("1.5,2", list[float], [1.5, 2.0]),
        ("3,a", tuple[int, str], (3, "a")),
        ("b", Literal["a", "b"], "b"),
        ("none", tuple[int, ...] | None, None),
    ],
)
def test_convert_text_by_annotation(text, tp, expected):
    value = convert(text, tp)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("value", "tp", "expected"),
    [(3, float, 3.0), (4.0, int, 4), ([1, 2], tuple[int, ...], (1, 2)), (None, float | None, None), (True, bool, True)],
)
def test_convert_python_values(value, tp, expected):
    converted = convert(value, tp)
    assert converted == expected and type(converted) is type(expected)


@pytest.mark.parametrize(
    ("text", "tp"),
    [
        ("abc", float),
        ("1.5", int),
        ("maybe", bool),
        ("none", int),
        ("1,x", tuple[int, ...]),
        ("1,2,3", tuple[int, int]),
        ("c", Literal["a", "b"]),
        (True, int),
        (3, str),
    ],
)
def test_convert_rejects(text, tp):
    with pytest.raises(ValueError):
        convert(text, tp)


def test_type_names_for_messages():
    assert type_name(int) == "int"
    assert type_name(float | None) == "float or none"
    assert type_name(tuple[int, ...]) == "comma list of int"
    assert type_name(bool) == "bool (true/false)"


def test_parse_overrides_list_and_mapping():
    assert parse_overrides(["lr=0.1", " model.hidden = 8", "tags="]) == {"lr": "0.1", "model.hidden": " 8", "tags": ""}
    assert parse_overrides({"lr": 0.1}) == {"lr": 0.1}
    with pytest.raises(UserError, match=r"override 'lr' is not key=value"):
        parse_overrides(["lr"])


def test_resolution_order_defaults_experiment_model_user():
    # TrainConfig default < Experiment.train_defaults < ModelSpec.train_overrides < user override.
    assert TrainConfig().batch_size == 64 and TrainConfig().lr == 1e-3 and TrainConfig().max_epochs == 20
    cfg = resolve_toy()
    assert cfg.train.batch_size == 32  # experiment default beats the dataclass
    assert cfg.train.max_epochs == 6
    assert cfg.train.lr == 0.1  # the model's train_overrides beat the experiment's lr=0.01
    assert cfg.train.weight_decay == 0.0  # untouched dataclass default
    frozen = resolve_toy(model="frozen")
    assert frozen.train.lr == 0.01  # no model override: the experiment's value
    user = resolve_toy(["lr=0.2", "batch_size=16", "noise=0.5", "hidden=8", "seed=3"])
    assert (user.train.lr, user.train.batch_size, user.train.seed) == (0.2, 16, 3)
    assert user.experiment_config == ToyConfig(noise=0.5)
    assert user.model_config == LinearConfig(hidden=8)
    assert (user.experiment, user.model) == ("toy", "linear")


def test_optional_tuple_and_bool_overrides():
    cfg = resolve_toy(["grad_clip=none", "patience=3", "max_time_s=None", "tags=4,5,6", "scale=2", "bias=false"])
    assert cfg.train.grad_clip is None and cfg.train.patience == 3 and cfg.train.max_time_s is None
    assert cfg.experiment_config.tags == (4, 5, 6)
    assert cfg.experiment_config.scale == 2.0
    assert cfg.model_config.bias is False


def test_mapping_overrides_with_python_values():
    cfg = resolve_toy({"lr": 1, "tags": [7], "patience": None})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.experiment_config.tags == (7,)


def test_unknown_key_lists_valid_keys_by_group():
    with pytest.raises(UserError) as err:
        resolve_toy(["lrr=0.1"])
    message = str(err.value)
    assert "unknown override key 'lrr'" in message
    assert "did you mean 'lr'?" in message
    assert "train (train.): max_epochs" in message
    assert "experiment (data.): n_train, n_eval, d_in, noise, scale, tags" in message
    assert "model (model.): d_in, hidden, groups, bias" in message
    assert "\n" not in message


def test_wrong_type_names_key_value_and_type():
    with pytest.raises(UserError, match=r"bad value for lr: 'fast' is not a float$"):
        resolve_toy(["lr=fast"])
    with pytest.raises(UserError, match=r"bad value for model\.hidden: '2.5' is not an int"):
        resolve_toy(["model.hidden=2.5"])
    with pytest.raises(UserError, match=r"bad value for patience: 'x' is not an int or none"):
        resolve_toy(["patience=x"])


def test_ambiguous_key_needs_prefix():
    with pytest.raises(UserError) as err:
        resolve_toy(["d_in=3"])
    assert "ambiguous" in str(err.value)
    assert "data.d_in=..." in str(err.value) and "model.d_in=..." in str(err.value)
    cfg = resolve_toy(["data.d_in=3", "model.d_in=5"])
    assert cfg.experiment_config.d_in == 3 and cfg.model_config.d_in == 5
    assert resolve_toy(["experiment.d_in=2"]).experiment_config.d_in == 2
    assert resolve_toy(["train.lr=0.3"]).train.lr == 0.3


def test_bad_prefix_and_wrong_group():
    with pytest.raises(UserError, match=r"unknown prefix 'optim'.*train\., data\. or model\."):
        resolve_toy(["optim.lr=1"])
    with pytest.raises(UserError, match=r"unknown model key 'noise'.*valid model keys: d_in, hidden, groups, bias"):
        resolve_toy(["model.noise=1"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer=lion", r"optimizer='lion' is not supported; choose one of: adamw, adam, sgd"),
        ("scheduler=linear", r"scheduler='linear' is not supported; choose one of: cosine, step, halving, none"),
        ("lr_gamma=0", r"lr_gamma=0.0 is out of range; it must be in \(0, 1\]"),
        ("lr_hold_epochs=-1", r"lr_hold_epochs=-1 is out of range; it must be 0 or more"),
        ("batch_size=0", r"batch_size=0 is out of range; it must be at least 1"),
        ("lr=-1", r"lr=-1.0 is out of range; it must be positive"),
        ("patience=0", r"patience=0 is out of range"),
        ("min_steps_per_epoch=0", r"min_steps_per_epoch=0 is out of range; it must be at least 1 or none"),
    ],
)
def test_train_values_checked(override, message):
    with pytest.raises(UserError, match=message):
        resolve_toy([override])


def test_halving_rejects_an_lr_gamma_it_would_ignore():
    with pytest.raises(UserError, match=r"^lr_gamma=0.9 has no effect with scheduler=halving, .*; "
                                        r"use scheduler=step lr_gamma=0.9$"):
        resolve_toy(["scheduler=halving", "lr_gamma=0.9"])
    assert resolve_toy(["scheduler=halving", "lr_gamma=0.5"]).train.scheduler == "halving"


def test_config_post_init_value_error_becomes_user_error():
    @dataclass
    class Checked:
        d_model: int = 8
        heads: int = 2

        def __post_init__(self):
            if self.d_model % self.heads:
                raise ValueError(f"heads ({self.heads}) must divide d_model ({self.d_model})")

    spec = ModelSpec(build=lambda cfg: None, config=Checked, summary="x")
    with pytest.raises(UserError, match=r"invalid model config: heads \(3\) must divide d_model \(8\)"):
        resolve(ToyExperiment, "checked", spec, ["heads=3"])


def test_experiment_train_defaults_must_be_train_fields():
    broken = dataclasses.replace(TOY, train_defaults={"learning_rate": 0.1})
    with pytest.raises(ValueError, match=r"experiment 'toy' train_defaults sets 'learning_rate'"):
        resolve(broken, "linear", LINEAR, [])


def test_resume_base_keeps_saved_values_and_applies_new_overrides():
    saved = resolve_toy(["lr=0.3", "noise=0.2"])
    cfg = resolve_toy(["max_epochs=9"], base=saved)
    assert cfg.train.max_epochs == 9
    assert cfg.train.lr == 0.3  # not reset to the model's train_overrides
    assert cfg.experiment_config.noise == 0.2


def test_run_config_dict_round_trip():
    cfg = resolve_toy(["tags=3,4", "grad_clip=none", "model.hidden=4", "groups=2"])
    data = cfg.to_dict()
    back = RunConfig.from_dict(json.loads(json.dumps(data)), ToyExperiment, LINEAR)
    assert back == cfg
    assert RunConfig.from_dict(
        {"experiment": "toy", "model": "frozen", "model_config": {"weight": 2}},
        ToyExperiment,
        ToyExperiment.models["frozen"],
    ).model_config == FrozenConfig(weight=2.0)
    with pytest.raises(UserError, match=r"unknown keys \['dropout'\]"):
        RunConfig.from_dict({**data, "model_config": {"dropout": 0.1}}, ToyExperiment, LINEAR)
    with pytest.raises(UserError, match=r"^saved model config: hidden: 'many' is not an int$"):
        RunConfig.from_dict({**data, "model_config": {"hidden": "many"}}, ToyExperiment, LINEAR)


@pytest.mark.parametrize(("tp", "message"), [
    (int, "'x' is not an int"),
    (float, "'x' is not a float"),
    (int | None, "'x' is not an int or none"),
    (Literal["mean", "last"], "'x' is not one of mean|last"),
    (tuple[int, ...], "'x' is not a comma list of int"),
])
def test_not_a_names_the_type_with_its_article(tp, message):
    assert not_a("x", tp) == message
