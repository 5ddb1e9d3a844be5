"""Weights as safetensors plus a JSON config: a run's model can be rebuilt without unpickling anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
from torch import nn

from attnlab import registry
from attnlab.errors import UserError
from attnlab.registry import ModelSpec
from attnlab.train.config import RunConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
FORMAT_VERSION = 1


def build_model(spec: ModelSpec, model_config: Any) -> nn.Module:
    """Call the model factory; a ValueError (an impossible size, e.g. heads not dividing d_model) becomes
    a UserError with the same message."""
    try:
        return spec.factory(model_config)
    except ValueError as err:
        hint = ""
        if "not divisible by num_heads" in str(err):
            hint = " With `attnlab fit`: set model.d_model to a multiple of num_heads, or change num_heads."
        raise UserError(f"cannot build the model: {err}{hint}") from err


def write_config(run_dir: Path, config: RunConfig, monitor: tuple[str, str], model_module: str | None = None) -> Path:
    """Write ``config.json``: experiment and model names plus the three resolved config dataclasses, and for a
    model registered outside attnlab the module that registers it (imported again by :func:`read_config`)."""
    from attnlab import __version__

    data = {"format": FORMAT_VERSION, "attnlab_version": __version__, **config.to_dict(), "monitor": list(monitor)}
    if model_module:
        data["model_module"] = model_module
    path = run_dir / CONFIG_FILE
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def read_config(run_dir: str | Path) -> RunConfig:
    """The resolved configuration saved in ``run_dir/config.json`` (experiment and model looked up by name)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{path} not found; pass the folder of a run written by `attnlab fit`")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err}); the run folder is damaged") from None
    if not isinstance(data, dict) or not {"experiment", "model"} <= set(data):
        raise UserError(f"{path} names no experiment and model; the run folder is damaged")
    if data.get("model_module"):  # a model registered outside attnlab: its module registers it again
        registry.import_modules([str(data["model_module"])])
    experiment_cls = registry.get_experiment(str(data["experiment"]))
    _, spec = registry.get_model(experiment_cls, str(data["model"]))
    return RunConfig.from_dict(data, experiment_cls, spec)


def load_model(run_dir: str | Path, device: str = "cpu") -> tuple[nn.Module, RunConfig]:
    """Rebuild a run's model from ``config.json`` via the registry and load ``model.safetensors``.

    No pickle is involved: the config is JSON and the weights are read with safetensors.

    Args:
        run_dir: a folder written by :func:`attnlab.train.fit`.
        device: where to put the weights.

    Returns:
        ``(model, config)``: the model in eval mode, and the run's resolved :class:`RunConfig`.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise UserError(f"{weights} not found; the run did not finish (resume it with `attnlab fit --resume`)")
    experiment_cls = registry.get_experiment(config.experiment)
    _, spec = registry.get_model(experiment_cls, config.model)
    model = build_model(spec, config.model_config)
    try:
        safetensors.torch.load_model(model, weights, strict=True, device=device)
    except RuntimeError as err:
        raise UserError(f"{weights} does not match model {config.model!r}: {err}") from None
    except (safetensors.SafetensorError, OSError, ValueError) as err:  # truncated, empty or not safetensors
        raise UserError(f"{weights} is damaged ({err}); retrain the run, or restore the file") from None
    return model.to(device).eval(), config
