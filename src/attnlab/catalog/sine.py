"""``sine``: next-step prediction of random sinusoids, GRU vs causal self-attention.

Torch-free: the data options, the models' hyper-parameters and the table the registry reads.
The task (:class:`attnlab.experiments.sine.Sine`)
and the models (:mod:`attnlab.models.sine`) are imported only when a run is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from attnlab.registry import ExperimentSpec, ModelSpec, register_experiment


@dataclass
class SineConfig:
    """Data options.

    Args:
        n_train, n_val, n_test: series in each split.
        min_len, max_len: each series has a uniform random number of steps in [min_len, max_len].
        min_period, max_period: the period (steps per cycle) is 1 / frequency, with the frequency
            uniform between 1/max_period and 1/min_period.
        noise_std: standard deviation of Gaussian noise added to every value (0 = clean).
        rollout_context, rollout_steps: the rollout figure shows the model ``rollout_context``
            true values, then ``rollout_steps`` of its own forecasts.
    """

    n_train: int = 4000
    n_val: int = 200
    n_test: int = 500
    min_len: int = 60
    max_len: int = 300
    min_period: float = 40.0
    max_period: float = 120.0
    noise_std: float = 0.0
    rollout_context: int = 60
    rollout_steps: int = 120

    def __post_init__(self) -> None:
        for key in ("n_train", "n_val", "n_test"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)} must be at least 1")
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got min_len={self.min_len}, max_len={self.max_len}")
        if not 2 <= self.min_period <= self.max_period:
            raise ValueError(f"need 2 <= min_period <= max_period, got {self.min_period}, {self.max_period}")
        if self.noise_std < 0:
            raise ValueError(f"noise_std={self.noise_std} must be >= 0")
        if self.rollout_context < 1 or self.rollout_steps < 1:
            raise ValueError("rollout_context and rollout_steps must be at least 1")


@dataclass
class SineGRUConfig:
    """The classic GRU of the question: ``nn.GRU(1, hidden_dim, num_layers) → Linear(hidden_dim, 1) → tanh``."""

    hidden_dim: int = 4
    num_layers: int = 2


@dataclass
class SineTransformerConfig:
    """Hyper-parameters of :class:`~attnlab.models.sine.SineTransformer`, a causal Transformer for a 1-D series."""

    d_model: int = 32
    num_heads: int = 2
    num_layers: int = 2
    d_ff: int | None = None
    dropout: float = 0.0
    positional: Literal["rotary", "sinusoidal", "none"] = "rotary"
    input_window: int = 1


@dataclass
class AttentiveRNNConfig:
    """Hyper-parameters of :class:`~attnlab.models.sine.SineAttentiveRNN`, a GRU attending over its own past."""

    hidden_dim: int = 32
    num_layers: int = 1
    score: Literal["general", "scaled_dot", "additive"] = "general"


SPEC = register_experiment(ExperimentSpec(
    name="sine",
    summary="next value of random sinusoids (length 60-300, padded + masked): GRU vs causal self-attention",
    description="Replace a GRU with self-attention on a series whose input dimension is 1: next-step MSE.",
    task="attnlab.experiments.sine:Sine",
    Config=SineConfig,
    models={
        "gru": ModelSpec("attnlab.models.sine:SineGRU", SineGRUConfig,
                         "GRU(1, 4, num_layers=2) -> Linear -> tanh, the classic baseline",
                         train_overrides={"batch_size": 64, "max_epochs": 8}),
        "transformer": ModelSpec(
            "attnlab.models.sine:SineTransformer", SineTransformerConfig,
            "Linear 1 -> d_model, rotary positions, causal self-attention encoder (padding masked), Linear head",
        ),
        "attentive_rnn": ModelSpec("attnlab.models.sine:SineAttentiveRNN", AttentiveRNNConfig,
                                   "GRU attending causally over its own past hidden states, Linear head",
                                   train_overrides={"batch_size": 32, "max_epochs": 4}),
    },
    metric_notes={"mse": "one-step-ahead: each next value predicted from the true past (the rollout figure's "
                         "free-running errors compound and are far larger); all test steps"},
    default_model="transformer",
    monitor=("val_mse", "min"),
    # Precision needs optimiser steps more than big batches: batches of 8 give the transformer ~1500 steps in
    # 3 epochs.
    train_defaults={"max_epochs": 3, "batch_size": 8, "lr": 1e-2, "warmup_steps": 50},
))
