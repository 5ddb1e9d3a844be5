"""Resolve a run's configuration: three typed dataclasses from defaults plus ``key=value`` overrides.

Resolution order, later wins::

    dataclass defaults < ExperimentSpec.train_defaults < ModelSpec.train_overrides < user overrides

A user override ``key=value`` names a field of :class:`TrainConfig`, of the experiment's ``Config`` or of
the model's config dataclass. A name found in more than one of them needs a prefix: ``train.``,
``data.`` (alias ``experiment.``) or ``model.``. Values are parsed by the field's type annotation.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

from attnlab.errors import UserError
from attnlab.registry import ExperimentSpec, ModelSpec


@dataclass
class TrainConfig:
    """How to train, for any task. Every field can be overridden as ``key=value`` on the CLI."""

    max_epochs: int = 20
    max_steps: int | None = None  # optimiser steps at most (None = no limit besides max_epochs)
    # A safety cap on the run's wall-clock seconds, evaluation included (None = off): training stops early
    # enough to leave evaluation its time. Budgets are max_epochs / max_steps, so results do not depend on load.
    max_time_s: float | None = None
    batch_size: int = 64
    # A smaller data set gets a smaller batch, so an epoch still makes this many steps: batch_size is lowered to
    # (training examples) // min_steps_per_epoch where that is smaller (None = batch_size as given).
    min_steps_per_epoch: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"  # adamw | adam | sgd
    scheduler: str = "cosine"  # cosine | step (x lr_gamma every epoch after lr_hold_epochs) | halving | none
    lr_gamma: float = 0.5  # scheduler=step: the lr's factor from one epoch to the next
    lr_hold_epochs: int = 0  # scheduler=step: epochs 0..lr_hold_epochs run at the full lr
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    patience: int | None = None  # early stopping on the experiment's monitor metric (None = off)
    seed: int = 0
    # torch's intra-op threads: fixed, because the thread count changes a float sum's order and so the last
    # bits of every result. Raise it on a bigger machine for speed.
    threads: int = 2
    # Data-loader worker processes per training process; "auto": none on CPU (they would take the cores the
    # model computes on), on GPUs up to 4 of the CPUs left to each process (see loader_workers).
    num_workers: int | Literal["auto"] = "auto"
    # Passed straight to lightning.Trainer, so the same command runs on GPUs and with DDP.
    accelerator: str = "cpu"
    devices: str = "1"
    strategy: str = "auto"
    precision: str = "32-true"
    num_nodes: int = 1



# Group of a config -> the prefixes that select it, first one canonical.
GROUPS: dict[str, tuple[str, ...]] = {"train": ("train",), "experiment": ("data", "experiment"), "model": ("model",)}
_NONE_WORDS = ("none", "null")
_TRUE_WORDS = ("true", "1", "yes", "y", "on")
_FALSE_WORDS = ("false", "0", "no", "n", "off")

_BASE_FIELD = {"train": "train", "experiment": "experiment_config", "model": "model_config"}

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "step", "halving", "none")
HALVING_GAMMA = 0.5  # scheduler=halving is scheduler=step with this lr_gamma
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit


@dataclass
class RunConfig:
    """The fully resolved configuration of one run: what ``config.json`` holds.

    Attributes:
        experiment: registry name of the experiment.
        model: registry name of the model (within the experiment).
        train: the engine's :class:`TrainConfig`.
        experiment_config: an instance of the experiment's ``Config`` dataclass.
        model_config: an instance of the model's config dataclass (``ModelSpec.config``).
    """

    experiment: str
    model: str
    train: TrainConfig
    experiment_config: Any
    model_config: Any

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return {
            "experiment": self.experiment,
            "model": self.model,
            "train": dataclasses.asdict(self.train),
            "experiment_config": dataclasses.asdict(self.experiment_config),
            "model_config": dataclasses.asdict(self.model_config),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], experiment_cls: ExperimentSpec, spec: ModelSpec) -> RunConfig:
        """Rebuild the dataclasses from :meth:`to_dict` output, converting values by their field types.

        A config written before a key of the task changed meaning is first rewritten by the task's
        ``Config.upgrade_saved(data) -> data`` (a staticmethod), where it has one.
        """
        upgrade = getattr(experiment_cls.Config, "upgrade_saved", None)
        if upgrade is not None:
            data = upgrade(dict(data))
        return cls(
            experiment=str(data["experiment"]),
            model=str(data["model"]),
            train=_build(TrainConfig, data.get("train", {}), "train"),
            experiment_config=_build(experiment_cls.Config, data.get("experiment_config", {}), "experiment"),
            model_config=_build(spec.config, data.get("model_config", {}), "model"),
        )


def _build(cls: type, values: Mapping[str, Any], group: str) -> Any:
    fields = field_types(cls)
    # A config saved before a field existed leaves it out; `saved_defaults` (a ClassVar) says what it meant
    # then, where today's default differs.
    values = {**getattr(cls, "saved_defaults", {}), **values}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(f"saved {group} config has unknown keys {unknown}; it was written by another attnlab version")
    kwargs = {}
    for key, value in values.items():
        try:
            kwargs[key] = convert(value, fields[key])
        except ValueError as err:
            raise UserError(f"saved {group} config: {key}: {not_a(value, fields[key])}") from err
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------------- typed values


def field_types(cls: type) -> dict[str, Any]:
    """Init fields of a dataclass with their resolved type annotations, in declaration order."""
    if not dataclasses.is_dataclass(cls):
        raise ValueError(f"{cls!r} is not a dataclass; configs must be @dataclass classes")
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def type_name(tp: Any) -> str:
    """A readable name of a type annotation, for messages: ``int``, ``float or none``, ``comma list of int``."""
    if tp is Any:
        return "any value"
    if tp is type(None):
        return "none"
    if _is_union(tp):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + "|".join(str(a) for a in args)
    if origin in (tuple, list) or tp in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"comma list of {len(args)} values ({', '.join(type_name(a) for a in args)})"
        return f"comma list of {type_name(args[0]) if args else 'values'}"
    if tp is bool:
        return "bool (true/false)"
    return getattr(tp, "__name__", str(tp))


def not_a(value: Any, tp: Any) -> str:
    """"'x' is not an int", "'y' is not one of a|b": the message for a value that does not convert to ``tp``."""
    name = type_name(tp)
    article = "" if name.startswith("one of") else "an " if name[0] in "aeiou" else "a "
    return f"{value!r} is not {article}{name}"


def convert(value: Any, tp: Any) -> Any:
    """Convert ``value`` (text from the command line, or a Python/JSON value) to the annotation ``tp``.

    Raises:
        ValueError: the value does not fit the type.
    """
    if tp is Any:
        return value
    if tp is type(None):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
            return None
        raise ValueError(f"{value!r} is not none")
    if _is_union(tp):
        args = typing.get_args(tp)
        if type(None) in args and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(value, arg)
            except NonFinite:
                raise
            except ValueError:
                continue
        raise ValueError(not_a(value, tp))
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and value.strip() == str(choice)):
                return choice
        raise ValueError(f"{value!r} is not {type_name(tp)}")
    if origin in (tuple, list) or tp in (tuple, list):
        return _convert_sequence(value, tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS + _FALSE_WORDS:
            return value.strip().lower() in _TRUE_WORDS
        raise ValueError(f"{value!r} is not a bool")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            return int(value.strip())
        raise ValueError(f"{value!r} is not an int")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            number = float(value.strip())
        else:
            raise ValueError(f"{value!r} is not a float")
        if not math.isfinite(number):
            raise NonFinite(f"{value!r} is not a finite number")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{value!r} is not a str")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ValueError(f"cannot convert {value!r} to {type_name(tp)}")


class NonFinite(ValueError):
    """A float setting given as inf or nan: every float setting must be finite (``none`` turns an optional
    one off)."""


def _convert_sequence(value: Any, tp: Any) -> tuple[Any, ...] | list[Any]:
    origin = typing.get_origin(tp) or tp
    args = typing.get_args(tp)
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "([" and text[-1:] in ")]":
            text = text[1:-1]
        items: list[Any] = [part.strip() for part in text.split(",")] if text.strip() else []
        if items and items[-1] == "":  # trailing comma: "4," is a one-element tuple
            items.pop()
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError(not_a(value, tp))
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(items) != len(args):
            raise ValueError(f"{value!r} needs {len(args)} values")
        converted = [convert(item, arg) for item, arg in zip(items, args, strict=True)]
    else:
        element = args[0] if args else Any
        converted = [convert(item, element) for item in items]
    return tuple(converted) if origin is tuple else converted


# ---------------------------------------------------------------------------------------------- overrides


def parse_overrides(overrides: Mapping[str, Any] | Iterable[str]) -> dict[str, Any]:
    """``["lr=0.01", "model.d_model=64"]`` or a mapping -> ``{key: value}``; a UserError on a malformed item."""
    if isinstance(overrides, Mapping):
        return {str(k).strip(): v for k, v in overrides.items()}
    if isinstance(overrides, str):
        overrides = [overrides]
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"override {item!r} is not key=value (for example lr=0.01 or model.d_model=64)")
        parsed[key.strip()] = value
    return parsed


def _valid_keys_text(tables: Mapping[str, Mapping[str, Any]]) -> str:
    parts = []
    for group, fields in tables.items():
        prefix = GROUPS[group][0]
        parts.append(f"{group} ({prefix}.): {', '.join(fields) if fields else '-'}")
    return "; ".join(parts)


def resolve(
    experiment: ExperimentSpec,
    model_name: str,
    spec: ModelSpec,
    overrides: Mapping[str, Any] | Iterable[str] = (),
    base: RunConfig | None = None,
) -> RunConfig:
    """Resolve the run configuration of ``experiment`` with model ``model_name``.

    Args:
        experiment: the experiment class.
        model_name: the model's registry name (already validated).
        spec: the model's :class:`ModelSpec`.
        overrides: user ``key=value`` items (list) or a mapping; applied last.
        base: start from this configuration instead of the defaults (used to resume a run).

    Raises:
        UserError: unknown key (lists the valid keys by group), ambiguous key, value of the wrong type,
            or an invalid TrainConfig choice.
    """
    tables = {
        "train": field_types(TrainConfig),
        "experiment": field_types(experiment.Config),
        "model": field_types(spec.config),
    }
    values: dict[str, dict[str, Any]] = {group: {} for group in tables}
    if base is None:
        for source, layer in (
            (f"experiment {experiment.name!r} train_defaults", experiment.train_defaults),
            (f"model {model_name!r} train_overrides", spec.train_overrides),
        ):
            for key, value in layer.items():
                if key not in tables["train"]:
                    raise ValueError(f"{source} sets {key!r}, which is not a TrainConfig field")
                values["train"][key] = _convert_or_raise(key, value, tables["train"][key], ValueError)

    for raw_key, value in parse_overrides(overrides).items():
        group, key = _locate(raw_key, tables)
        values[group][key] = _convert_or_raise(raw_key, value, tables[group][key], UserError)

    built = {}
    for group, cls in (("train", TrainConfig), ("experiment", experiment.Config), ("model", spec.config)):
        try:  # a config's __post_init__ may reject impossible values with a ValueError
            if base is None:
                built[group] = cls(**values[group])
            else:
                built[group] = dataclasses.replace(getattr(base, _BASE_FIELD[group]), **values[group])
        except ValueError as err:
            raise UserError(f"invalid {group} config: {err}") from None
    train, experiment_config, model_config = built["train"], built["experiment"], built["model"]
    check_train_config(train)
    check_model_config(model_config)
    return RunConfig(experiment.name, model_name, train, experiment_config, model_config)


def _locate(raw_key: str, tables: Mapping[str, Mapping[str, Any]]) -> tuple[str, str]:
    prefix, dot, rest = raw_key.partition(".")
    if dot:
        for group, prefixes in GROUPS.items():
            if prefix in prefixes:
                if rest in tables[group]:
                    return group, rest
                raise UserError(
                    f"unknown {group} key {rest!r} in override {raw_key!r}; "
                    f"valid {group} keys: {', '.join(tables[group]) or '-'}"
                )
        raise UserError(
            f"unknown prefix {prefix!r} in override {raw_key!r}; use train., data. or model. "
            f"(valid keys: {_valid_keys_text(tables)})"
        )
    groups = [group for group, fields in tables.items() if raw_key in fields]
    if len(groups) == 1:
        return groups[0], raw_key
    if len(groups) > 1:
        spelled = " or ".join(f"{GROUPS[g][0]}.{raw_key}=..." for g in groups)
        raise UserError(
            f"override key {raw_key!r} is ambiguous: it is a key of the {' and the '.join(groups)} configs; "
            f"write {spelled}"
        )
    every = [key for fields in tables.values() for key in fields]
    close = difflib.get_close_matches(raw_key, every, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UserError(f"unknown override key {raw_key!r}; {hint}valid keys are {_valid_keys_text(tables)}")


def _convert_or_raise(key: str, value: Any, tp: Any, error: type[Exception]) -> Any:
    try:
        return convert(value, tp)
    except NonFinite as err:
        optional = " (or none to turn it off)" if _is_union(tp) and type(None) in typing.get_args(tp) else ""
        raise error(f"bad value for {key}: {err}; give a finite number{optional}") from None
    except ValueError:
        raise error(f"bad value for {key}: {not_a(value, tp)}") from None


# Model keys checked by name in every model config (the model's own checks run when it is built).
_SIZE_KEYS = ("d_model", "num_heads", "num_layers", "hidden_dim", "embed_dim", "d_ff", "patch_len", "stride",
              "patch_size")


def check_model_config(model_config: Any) -> None:
    """Reject impossible model sizes before anything is built, naming the user's keys (``model.d_model``):
    ``d_model`` not divisible by ``num_heads``, a size below 1, a dropout outside [0, 1)."""
    values = {f.name: getattr(model_config, f.name) for f in dataclasses.fields(model_config)}
    for key in _SIZE_KEYS:
        value = values.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise UserError(f"model.{key}={value} is out of range; it must be at least 1")
    for key, value in values.items():
        if "dropout" in key and isinstance(value, float) and not 0.0 <= value < 1.0:
            raise UserError(f"model.{key}={value:g} is out of range; it must be in [0, 1)")
    d_model, heads = values.get("d_model"), values.get("num_heads")
    if isinstance(d_model, int) and isinstance(heads, int) and d_model % heads:
        nearest = heads * max(1, round(d_model / heads))
        raise UserError(f"model.d_model={d_model} is not divisible by model.num_heads={heads}: each head gets "
                        f"d_model / num_heads features; set model.d_model to a multiple of {heads} (e.g. {nearest}) "
                        "or change model.num_heads")


def check_train_config(train: TrainConfig) -> None:
    """Reject TrainConfig values the engine cannot run (UserError naming the key and the valid range)."""
    if train.optimizer not in OPTIMIZERS:
        raise UserError(f"optimizer={train.optimizer!r} is not supported; choose one of: {', '.join(OPTIMIZERS)}")
    if train.scheduler not in SCHEDULERS:
        raise UserError(f"scheduler={train.scheduler!r} is not supported; choose one of: {', '.join(SCHEDULERS)}")
    checks = [
        ("batch_size", train.batch_size >= 1, "at least 1"),
        ("max_steps", train.max_steps is None or train.max_steps >= 1, "at least 1 or none"),
        ("seed", 0 <= train.seed <= MAX_SEED, f"between 0 and {MAX_SEED}"),
        ("threads", train.threads >= 1, "at least 1"),
        ("min_steps_per_epoch", train.min_steps_per_epoch is None or train.min_steps_per_epoch >= 1,
         "at least 1 or none"),
        ("max_epochs", train.max_epochs >= -1, "-1 (no limit), 0 (evaluate only) or more"),
        ("lr", train.lr > 0, "positive"),
        ("weight_decay", train.weight_decay >= 0, "0 or more"),
        ("warmup_steps", train.warmup_steps >= 0, "0 or more"),
        ("lr_gamma", 0 < train.lr_gamma <= 1, "in (0, 1]"),
        ("lr_hold_epochs", train.lr_hold_epochs >= 0, "0 or more"),
        ("num_workers", train.num_workers == "auto" or train.num_workers >= 0, "0 or more, or auto"),
        ("num_nodes", train.num_nodes >= 1, "at least 1"),
        ("grad_clip", train.grad_clip is None or train.grad_clip > 0, "positive or none"),
        ("patience", train.patience is None or train.patience >= 1, "at least 1 or none"),
        ("max_time_s", train.max_time_s is None or train.max_time_s > 0, "positive or none"),
    ]
    for key, ok, expected in checks:
        if not ok:
            raise UserError(f"{key}={getattr(train, key)!r} is out of range; it must be {expected}")
    if train.scheduler == "halving" and train.lr_gamma != HALVING_GAMMA:
        raise UserError(f"lr_gamma={train.lr_gamma!r} has no effect with scheduler=halving, which halves the lr every "
                        f"epoch; use scheduler=step lr_gamma={train.lr_gamma!r}")
