"""``count``: more 2s than 4s among 10 digits, decided by one learned query.

Torch-free: the data options, the models' hyper-parameters and the table the registry reads.
The task (:class:`attnlab.experiments.count.Count`)
and the models (:mod:`attnlab.models.count`) are imported only when a run is built.
"""

from __future__ import annotations

from dataclasses import dataclass

from attnlab.registry import ExperimentSpec, ModelSpec, register_experiment


@dataclass
class CountConfig:
    """Data options.

    Args:
        n_train, n_val, n_test: sequences in each split.
        seq_len: digits per sequence.
        entropy_weight: weight of the pooling attention's mean entropy in the training objective
            (attention models only; 0 = plain cross-entropy).
        figure_rows: test sequences drawn in the figure.
    """

    n_train: int = 10000
    n_val: int = 1000
    n_test: int = 4000
    seq_len: int = 10
    entropy_weight: float = 1e-3
    figure_rows: int = 12

    def __post_init__(self) -> None:
        for key in ("n_train", "n_val", "n_test", "seq_len", "figure_rows"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)} must be at least 1")
        if self.entropy_weight < 0:
            raise ValueError(f"entropy_weight={self.entropy_weight} must be >= 0")


@dataclass
class AttentionPoolingConfig:
    """Sizes of :class:`AttentionPoolingClassifier` (the exercise: 5, 5, 200)."""

    embed_dim: int = 5
    attn_dim: int = 5
    mlp_hidden: int = 200


@dataclass
class CountTransformerConfig:
    """Sizes of :class:`TransformerClassifier`."""

    d_model: int = 32
    num_heads: int = 4
    num_layers: int = 2
    d_ff: int | None = None
    dropout: float = 0.0


@dataclass
class CountGRUConfig:
    """Sizes of :class:`GRUClassifier`."""

    embed_dim: int = 8
    hidden_dim: int = 32
    num_layers: int = 1


SPEC = register_experiment(ExperimentSpec(
    name="count",
    summary="more 2s than 4s in 10 digits? attention pooling (the exercise) vs Transformer vs GRU",
    description="Decide 'more 2s than 4s' with one learned query, and check where its attention goes.",
    task="attnlab.experiments.count:Count",
    Config=CountConfig,
    models={
        "attention_pooling": ModelSpec(
            "attnlab.models.count:AttentionPoolingClassifier", AttentionPoolingConfig,
            "the exercise: one learned query pools scalar values (embedding 5, attention 5), MLP 1-200-1",
        ),
        "transformer": ModelSpec("attnlab.models.count:TransformerClassifier", CountTransformerConfig,
                                 "embedding + positions, Transformer encoder, learned-query attention pooling",
                                 train_overrides={"lr": 1e-3, "max_epochs": 15}),
        "gru": ModelSpec("attnlab.models.count:GRUClassifier", CountGRUConfig,
                         "embedding, GRU, Linear on the last state"),
    },
    metric_notes={"accuracy": "share of test sequences classified right (threshold 0.5)",
                  "mass_on_2_4": "mean attention weight the pooling query puts on the 2s and 4s (1 = all of it)",
                  "bce": "binary cross-entropy of the predicted probability, without the entropy penalty"},
    default_model="attention_pooling",
    monitor=("val_loss", "min"),  # accuracy saturates at 1.0 within an epoch; the loss keeps improving
    headline="accuracy",
    train_defaults={"max_epochs": 30, "batch_size": 64, "lr": 1e-2},
))
