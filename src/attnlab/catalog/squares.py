"""``squares``: the last two corners of a square from its first two (Godoy ch. 9).

Torch-free: the data options, the models' hyper-parameters and the table the registry reads.
The task (:class:`attnlab.experiments.squares.Squares`)
and the models (:mod:`attnlab.models.seq2seq_points`) are imported only when a run is built.
"""

from __future__ import annotations

from dataclasses import dataclass

from attnlab.registry import ExperimentSpec, ModelSpec, register_experiment


@dataclass
class SquaresConfig:
    """Data options.

    Args:
        n_train, n_val, n_test: squares in each split.
        noise: standard deviation of the Gaussian noise on every coordinate (inputs and targets).
    """

    n_train: int = 1024
    n_val: int = 256
    n_test: int = 1024
    noise: float = 0.1


@dataclass
class Seq2SeqConfig:
    """GRU encoder–decoder, without attention (:class:`~attnlab.models.seq2seq_points.Seq2Seq`) or with one
    scaled dot-product head (:class:`~attnlab.models.seq2seq_points.Seq2SeqAttention`).

    Args:
        hidden_dim: GRU hidden size H. Small on purpose (Godoy uses 2): the encoder's last state is
            then a bottleneck for the decoder, the situation attention was invented for. With
            H ≥ 8 the plain GRU already solves this two-step task to the noise level and one
            attention head brings no gain.
        teacher_forcing: probability, at each decoder step while training, of feeding the true
            previous point instead of the model's own prediction.
        target_len: points to generate when no target (and no ``steps``) is given.
        point_dim: size P of a point.
    """

    hidden_dim: int = 4
    teacher_forcing: float = 0.5
    target_len: int = 2
    point_dim: int = 2


@dataclass
class MultiHeadSeq2SeqConfig:
    """GRU encoder–decoder whose decoder attends with several heads over points projected to d_model.

    Args:
        d_model: size of the projected points and of both GRUs' hidden state; divisible by num_heads.
        num_heads: attention heads.
        teacher_forcing, target_len, point_dim: as in :class:`Seq2SeqConfig`.
    """

    d_model: int = 32
    num_heads: int = 4
    teacher_forcing: float = 0.5
    target_len: int = 2
    point_dim: int = 2


@dataclass
class PointTransformerConfig:
    """Transformer encoder–decoder on points projected to d_model (pre-norm blocks).

    Args:
        d_model: model size D, divisible by num_heads.
        num_heads: attention heads H.
        num_layers: encoder blocks and decoder blocks (each).
        d_ff: feed-forward hidden size.
        dropout: dropout on attention weights and residual branches.
        target_len, point_dim: as in :class:`Seq2SeqConfig`.
    """

    d_model: int = 32
    num_heads: int = 4
    num_layers: int = 2
    d_ff: int = 64
    dropout: float = 0.0
    target_len: int = 2
    point_dim: int = 2


SPEC = register_experiment(ExperimentSpec(
    name="squares",
    summary="corners of squares (Godoy ch. 9): first 2 corners in, last 2 out; GRU vs attention encoder-decoders",
    description="Encoder-decoder on square corners, with and without attention: MSE of the two predicted corners.",
    task="attnlab.experiments.squares:Squares",
    Config=SquaresConfig,
    models={
        "seq2seq": ModelSpec("attnlab.models.seq2seq_points:Seq2Seq", Seq2SeqConfig,
                             "GRU encoder-decoder (small state: hidden_dim 4), no attention"),
        "seq2seq_attention": ModelSpec(
            "attnlab.models.seq2seq_points:Seq2SeqAttention", Seq2SeqConfig,
            "same GRUs, decoder attends over encoder states (scaled dot, 1 head)",
        ),
        "seq2seq_multihead": ModelSpec(
            "attnlab.models.seq2seq_points:MultiHeadSeq2Seq", MultiHeadSeq2SeqConfig,
            "GRU encoder-decoder on projected points, multi-head attention",
        ),
        "transformer": ModelSpec(
            "attnlab.models.seq2seq_points:PointTransformer", PointTransformerConfig,
            "Transformer encoder-decoder, KV-cached free-running decoding",
        ),
    },
    metric_notes={"mse": "free-running: the decoder feeds back its own predicted corners; against the noisy "
                         "held-out corners (noise 0.1 sets a floor near 0.01)",
                  "mse_clean": "the same predictions against the noise-free corners: the model's own error"},
    default_model="seq2seq_attention",
    monitor=("val_mse", "min"),
    train_defaults={"max_epochs": 60, "batch_size": 32, "lr": 3e-3},
))
