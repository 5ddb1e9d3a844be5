"""Experiments and their models, looked up by name: one table for the CLI, the demo and the benchmarks.

The table is data, not code: an :class:`ExperimentSpec` names its task class and each :class:`ModelSpec` its
model class (``"package.module:Name"``), with the config dataclasses, summaries and training defaults beside
them. The specs live in torch-free modules (:mod:`attnlab.catalog`), so ``attnlab list`` and argument errors
answer at once; the task and the model are imported only when a run is built.

Your own model joins an experiment with :func:`register_model` (see docs/extending.md)::

    import attnlab

    @dataclass
    class MineConfig(attnlab.catalog.forecast.ForecastSizes):
        hidden: int = 64

    attnlab.register_model("forecast", "mine", "mypkg.models:Mine", MineConfig, "my forecaster")
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from attnlab.errors import UserError

# Modules that declare the built-in experiments (each calls register_experiment on import).
CATALOG_MODULES: tuple[str, ...] = (
    "attnlab.catalog.sine",
    "attnlab.catalog.count",
    "attnlab.catalog.squares",
    "attnlab.catalog.kernel_regression",
    "attnlab.catalog.digits_vit",
    "attnlab.catalog.translate",
    "attnlab.catalog.forecast",
)


def resolve_object(target: str | Any, what: str) -> Any:
    """``"package.module:Name"`` imported and looked up; anything else returned as it is.

    Raises:
        UserError: the module cannot be imported or has no such name.
    """
    if not isinstance(target, str):
        return target
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{what} {target!r} is not 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UserError(f"cannot import {module_name!r} for {what} ({err}); install it or fix the name") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise UserError(f"module {module_name!r} has no {attribute!r} (needed for {what})") from None


@dataclass(frozen=True)
class Twin:
    """The attention-free twin of an attention model: what the model would be without its attention, trained
    under the same budget, so that a benchmark can say whether the attention earns its place.

    Attributes:
        model: a model of the same experiment (the attention model itself when a config key turns its attention
            off).
        overrides: ``KEY=VALUE`` items that make ``model`` the twin (``model.attention=mean``), applied before the
            user's own overrides.
    """

    model: str
    overrides: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """How tables name it: ``ridge``, or ``horizon_attention[attention=mean]`` with its overrides."""
        if not self.overrides:
            return self.model
        return f"{self.model}[{','.join(item.removeprefix('model.') for item in self.overrides)}]"


@dataclass(frozen=True)
class ModelSpec:
    """A model of an experiment: how to build it from its config dataclass.

    Attributes:
        build: the model class (or a factory), called with the config: ``Model(config) -> nn.Module``; or
            ``"package.module:Name"``, imported when the model is first built.
        config: the dataclass of its hyper-parameters, with defaults (torch-free).
        summary: one line for ``attnlab list``.
        train_overrides: TrainConfig defaults of this model (its recipe), above the experiment's.
        module: the module to import so that the model is registered (recorded in a run's ``config.json``
            for models defined outside attnlab; None for built-in models).
        twin: an attention model's attention-free :class:`Twin` (None: no attention, or no twin declared).
    """

    build: str | Callable[[Any], Any]
    config: type
    summary: str
    train_overrides: Mapping[str, Any] = field(default_factory=dict)
    module: str | None = None
    twin: Twin | None = None

    def factory(self, config: Any) -> Any:
        """Build the model (an ``nn.Module``) from an instance of :attr:`config`."""
        return resolve_object(self.build, "a model")(config)

    @property
    def model_class(self) -> Any:
        """What :attr:`build` names, imported."""
        return resolve_object(self.build, "a model")


@dataclass
class ExperimentSpec:
    """A task and its models, as data.

    Attributes:
        name: registry name (``attnlab fit NAME``).
        summary: one line for ``attnlab list``.
        task: the :class:`~attnlab.experiments.base.Experiment` subclass, or ``"package.module:Name"``.
        Config: dataclass of the task's data options.
        models: model name -> :class:`ModelSpec`, in the order ``attnlab list`` and the demo show them.
        default_model: the model ``attnlab fit NAME`` uses without ``--model``.
        train_defaults: TrainConfig field values that suit this task (budget, lr, …).
        monitor: the validation metric that picks the best epoch and stops early, and its mode.
        headline: the test metric that tables show first (default: the monitor's).
        metric_notes: test metric -> one phrase saying what it measures and on which scale (standardised or
            original units, one-step or free-running, …); the run report prints it beside the value.
        in_demo: whether ``attnlab demo`` trains it (tasks that read a user's file set False).
        description: one sentence on what the task tests (the demo's index shows it).
    """

    name: str
    summary: str
    task: str | type
    Config: type
    models: dict[str, ModelSpec]
    default_model: str
    train_defaults: dict[str, Any] = field(default_factory=dict)
    monitor: tuple[str, str] = ("val_loss", "min")
    headline: str | None = None
    metric_notes: dict[str, str] = field(default_factory=dict)
    in_demo: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if self.default_model not in self.models:
            raise ValueError(f"experiment {self.name!r}: default_model {self.default_model!r} is not in its models")
        if not dataclasses.is_dataclass(self.Config):
            raise ValueError(f"experiment {self.name!r}: Config must be a dataclass")

    def task_class(self) -> Any:
        """The :class:`~attnlab.experiments.base.Experiment` subclass, imported on first use."""
        return resolve_object(self.task, f"experiment {self.name!r}")

    def create(self, config: Any) -> Any:
        """An instance of the task with its data options ``config``."""
        return self.task_class()(config)


_EXPERIMENTS: dict[str, ExperimentSpec] = {}
_loaded = False


def register_experiment(spec: ExperimentSpec) -> ExperimentSpec:
    """Make an experiment available by its name (a second spec under the same name is an error)."""
    if spec.name in _EXPERIMENTS and _EXPERIMENTS[spec.name] is not spec:
        raise ValueError(f"experiment name {spec.name!r} is registered twice")
    if isinstance(spec.task, type) and getattr(spec.task, "spec", None) is not spec:
        spec.task.bind_spec(spec)  # a task class given directly (not by name) learns its entry
    _EXPERIMENTS[spec.name] = spec
    return spec


def register_model(
    experiment: str,
    name: str,
    build: str | Callable[[Any], Any],
    config: type,
    summary: str = "",
    train_overrides: Mapping[str, Any] | None = None,
    twin: Twin | None = None,
) -> ModelSpec:
    """Add a model to an experiment, e.g. your own forecaster to ``forecast``.

    Args:
        experiment: the experiment's name (``attnlab list``).
        name: the model's name (``--model NAME``); must not be taken.
        build: the model class or factory, ``build(config) -> nn.Module`` (forward-only: the experiment owns
            the loss), or ``"package.module:Name"``.
        config: its hyper-parameter dataclass; for ``forecast``, a subclass of
            :class:`attnlab.catalog.forecast.ForecastSizes` (the data fills ``seq_len``, ``pred_len``,
            ``n_channels``).
        summary: one line for ``attnlab list``.
        train_overrides: TrainConfig defaults for this model (``{"lr": 3e-4}``).
        twin: for an attention model, its attention-free :class:`Twin`, for benchmarks that train both under the
            same budget.

    Returns:
        The registered :class:`ModelSpec`. Runs of the model record the module that registered it, so
        ``attnlab predict --run RUN`` and ``attnlab report`` find the model again.

    Raises:
        ValueError: the name is taken or the config is not a dataclass.
        UserError: no such experiment.
    """
    spec = get_experiment(experiment)
    if name in spec.models:
        raise ValueError(f"experiment {experiment!r} already has a model {name!r}; choose another name")
    if not dataclasses.is_dataclass(config):
        raise ValueError(f"the config of model {name!r} must be a @dataclass, got {config!r}")
    # The module to import again when a run of this model is loaded: the caller's, which registers it.
    module = sys._getframe(1).f_globals.get("__name__")
    if module in (None, "__main__"):
        module = build.partition(":")[0] if isinstance(build, str) else getattr(build, "__module__", None)
    model = ModelSpec(build, config, summary or (getattr(build, "__doc__", "") or name).strip().splitlines()[0],
                      dict(train_overrides or {}), module=None if module in (None, "__main__") else module,
                      twin=twin)
    spec.models[name] = model
    return model


def _load() -> None:
    global _loaded
    if not _loaded:
        built_in = [importlib.import_module(module).SPEC.name for module in CATALOG_MODULES]
        # The built-in experiments first, in catalogue order, whatever was imported first.
        order = built_in + [name for name in _EXPERIMENTS if name not in built_in]
        _EXPERIMENTS.update({name: _EXPERIMENTS.pop(name) for name in order})
        _loaded = True


def experiments() -> dict[str, ExperimentSpec]:
    """All registered experiments, by name, in registration order."""
    _load()
    return dict(_EXPERIMENTS)


def get_experiment(name: str) -> ExperimentSpec:
    """The experiment called ``name``; a UserError lists the valid names otherwise."""
    table = experiments()
    if name not in table:
        raise UserError(f"unknown experiment {name!r}; choose one of: {', '.join(table)}")
    return table[name]


def get_model(experiment: ExperimentSpec, name: str | None) -> tuple[str, ModelSpec]:
    """The model ``name`` of an experiment (its default if None); a UserError lists the valid names."""
    name = experiment.default_model if name is None else name
    if name not in experiment.models:
        raise UserError(
            f"unknown model {name!r} for experiment {experiment.name!r}; choose one of: {', '.join(experiment.models)}"
        )
    return name, experiment.models[name]


def import_modules(names: list[str] | tuple[str, ...]) -> None:
    """Import modules that register models or experiments (``attnlab --import mypkg.models``)."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise UserError(f"--import {name}: {err}; make the module importable (pip install it, or run from "
                            "the folder that holds it)") from None


@contextmanager
def registered(*specs: ExperimentSpec) -> Iterator[None]:
    """Register experiments for the duration of a block (tests, notebooks), then remove them."""
    _load()
    added = [spec for spec in specs if spec.name not in _EXPERIMENTS]
    for spec in specs:
        register_experiment(spec)
    try:
        yield
    finally:
        for spec in added:
            _EXPERIMENTS.pop(spec.name, None)
