"""A tiny experiment for testing the training engine without the real tasks: linear regression.

``y = x @ w_true + 0.5 + noise`` with ``x`` of dimension ``d_in``. Models: ``linear`` (trainable, optional
hidden layer split in ``groups``; a ValueError for sizes that do not divide), ``frozen`` (no trainable
parameters) and ``mlp`` (``linear`` with a hidden layer by default). ``d_in`` is both an experiment and a
model key, to exercise prefix disambiguation.

Run as a script it registers the toy and runs the attnlab CLI (used by the DDP test)::

    python tests/toy_experiment.py fit toy devices=2 strategy=ddp
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from attnlab import registry
from attnlab.experiments.base import DataSplits, Experiment
from attnlab.registry import ExperimentSpec, ModelSpec


@dataclass
class ToyConfig:
    n_train: int = 512
    n_eval: int = 128
    d_in: int = 4
    noise: float = 0.05
    scale: float | None = None  # multiplies the targets if set
    tags: tuple[int, ...] = (1, 2)


@dataclass
class LinearConfig:
    d_in: int = 4
    hidden: int = 0  # 0 = a single linear layer
    groups: int = 1  # must divide hidden
    bias: bool = True


@dataclass
class MLPConfig(LinearConfig):
    hidden: int = 8


@dataclass
class FrozenConfig:
    d_in: int = 4
    weight: float = 0.5


class Linear(nn.Module):
    """x (B, d_in) -> y (B,)."""

    def __init__(self, cfg: LinearConfig) -> None:
        super().__init__()
        if cfg.hidden and cfg.hidden % cfg.groups:
            raise ValueError(f"groups ({cfg.groups}) must divide hidden ({cfg.hidden})")
        if cfg.hidden:
            self.net: nn.Module = nn.Sequential(
                nn.Linear(cfg.d_in, cfg.hidden, bias=cfg.bias), nn.Tanh(), nn.Linear(cfg.hidden, 1, bias=cfg.bias)
            )
        else:
            self.net = nn.Linear(cfg.d_in, 1, bias=cfg.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)  # (B,)


class Frozen(nn.Module):
    """A fixed linear map held in a buffer: no trainable parameters."""

    def __init__(self, cfg: FrozenConfig) -> None:
        super().__init__()
        self.register_buffer("w", torch.full((cfg.d_in,), cfg.weight))

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.w  # (B,)


TOY = ExperimentSpec(
    name="toy",
    summary="Linear regression on synthetic data (engine tests).",
    task="toy_experiment:ToyExperiment",
    Config=ToyConfig,
    models={
        "linear": ModelSpec(Linear, LinearConfig, "A linear layer (or a small MLP).", {"lr": 0.1}),
        "frozen": ModelSpec(Frozen, FrozenConfig, "A fixed linear map without trainable parameters."),
        "mlp": ModelSpec(Linear, MLPConfig, "A small MLP (a non-default trainable model)."),
    },
    default_model="linear",
    train_defaults={"max_epochs": 6, "batch_size": 32, "lr": 0.01},
    monitor=("val_loss", "min"),
)


class ToyExperiment(Experiment):
    spec = TOY

    def data(self, seed: int) -> DataSplits:
        cfg = self.config
        g = torch.Generator().manual_seed(seed)
        w = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 2.0, 0.25, -0.5])[: cfg.d_in]

        def split(n: int) -> TensorDataset:
            x = torch.randn(n, cfg.d_in, generator=g)
            y = x @ w + 0.5 + cfg.noise * torch.randn(n, generator=g)
            return TensorDataset(x, y * (cfg.scale or 1.0))

        return DataSplits(split(cfg.n_train), split(cfg.n_eval), split(cfg.n_eval))

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        return nn.functional.mse_loss(model(x), y)

    def evaluate(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        x, y = batch
        pred = model(x)
        return {"loss": nn.functional.mse_loss(pred, y), "mae": (pred - y).abs().mean()}

    def figures(self, model: nn.Module, data: DataSplits, out_dir: Path, history: list[dict[str, float]]) -> list[Path]:
        # A text "figure" keeps the tests fast; it records what the engine passed in.
        x, y = data.test.tensors  # type: ignore[attr-defined]
        with torch.no_grad():
            mse = nn.functional.mse_loss(model(x), y).item()
        path = out_dir / "summary.txt"
        path.write_text(f"epochs={len(history)} training={model.training} test_mse={mse:.8f}\n")
        return [path]


def register() -> None:
    """Make ``toy`` available by name, without importing the real experiments."""
    registry._load()
    registry.register_experiment(TOY)


if __name__ == "__main__":
    from attnlab import cli

    register()
    cli.COMMAND_MODULES = ("attnlab.train.command",)  # independent of other sub-commands' state
    sys.exit(cli.main())
