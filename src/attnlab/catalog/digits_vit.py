"""``digits_vit``: a Vision Transformer on scikit-learn's 8x8 digits, against an MLP.

Torch-free: the data options, the models' hyper-parameters and the table the registry reads.
The task (:class:`attnlab.experiments.digits_vit.DigitsViT`)
and the models (:mod:`attnlab.models.vit`) are imported only when a run is built.
"""

from __future__ import annotations

from dataclasses import dataclass

from attnlab.registry import ExperimentSpec, ModelSpec, register_experiment


@dataclass
class DigitsConfig:
    """Data options.

    Args:
        val_fraction: share of the 1797 images held out for validation.
        test_fraction: share held out for the test.
        rotate_deg, scale, translate_px: random rotation (± degrees), zoom (1 ± scale) and shift
            (± pixels, fractional allowed) of training images; all 0 = no augmentation.
        label_smoothing: label smoothing of the training loss (the reported loss has none).
    """

    val_fraction: float = 0.1
    test_fraction: float = 0.2
    rotate_deg: float = 10.0
    scale: float = 0.1
    translate_px: float = 0.5
    label_smoothing: float = 0.1


@dataclass
class ViTConfig:
    """Vision Transformer hyper-parameters.

    Args:
        image_size: side of the (square) input image.
        patch_size: side of a patch; must divide image_size.
        patch_overlap: pixels each patch window reaches into its neighbours (0 = plain ViT patches).
        in_channels: image channels.
        num_classes: classes to predict.
        d_model: token size D, divisible by num_heads.
        num_heads: attention heads.
        num_layers: encoder blocks.
        d_ff: feed-forward hidden size.
        dropout: dropout on tokens, attention weights and residual branches.
    """

    image_size: int = 8
    patch_size: int = 2
    patch_overlap: int = 1
    in_channels: int = 1
    num_classes: int = 10
    d_model: int = 32
    num_heads: int = 4
    num_layers: int = 3
    d_ff: int = 64
    dropout: float = 0.0


@dataclass
class MLPConfig:
    """MLP baseline on flattened pixels.

    Args:
        image_size, in_channels, num_classes: as in :class:`ViTConfig`.
        hidden_dim: width of each hidden layer.
        num_layers: hidden layers.
        dropout: dropout after each hidden layer.
    """

    image_size: int = 8
    in_channels: int = 1
    num_classes: int = 10
    hidden_dim: int = 256
    num_layers: int = 2
    dropout: float = 0.2


SPEC = register_experiment(ExperimentSpec(
    name="digits_vit",
    summary="ViT on scikit-learn's 8x8 digits (class token, learned positions, pre-norm) vs an MLP",
    description="A Vision Transformer on 8x8 digit images against an MLP: held-out accuracy.",
    task="attnlab.experiments.digits_vit:DigitsViT",
    Config=DigitsConfig,
    models={
        "vit": ModelSpec(
            "attnlab.models.vit:ViT", ViTConfig,
            "ViT: 2x2 patches (4x4 windows), class token, learned positions, 3 pre-norm blocks",
            {"max_epochs": 60, "lr": 3e-3, "weight_decay": 0.05, "warmup_steps": 100},
        ),
        "mlp": ModelSpec("attnlab.models.vit:MLPClassifier", MLPConfig, "MLP on flattened pixels (baseline)",
                         {"max_epochs": 40, "lr": 1e-3}),
    },
    metric_notes={"accuracy": "share of test digits classified right (10 classes)",
                  "loss": "cross-entropy of the predicted class probabilities"},
    default_model="vit",
    headline="accuracy",
    train_defaults={"batch_size": 64},
))
