"""``kernel_regression``: Nadaraya-Watson regression as attention pooling (d2l).

Torch-free: the data options, the models' hyper-parameters and the table the registry reads.
The task (:class:`attnlab.experiments.kernel_regression.KernelRegression`)
and the models (:mod:`attnlab.models.kernel_regression`) are imported only when a run is built.
"""

from __future__ import annotations

from dataclasses import dataclass

from attnlab.registry import ExperimentSpec, ModelSpec, register_experiment


@dataclass
class KernelRegressionConfig:
    """Data options.

    Args:
        n_train: training points (keys and values), x uniform in [0, 5], sorted.
        n_val: validation queries on the grid 0, 5/n_val, …, (noise-free targets).
        n_test: test queries, uniform in [0, 5] (noise-free targets).
        noise: standard deviation of the noise on the training targets.
    """

    n_train: int = 40
    n_val: int = 50
    n_test: int = 200
    noise: float = 0.5


@dataclass
class NadarayaWatsonConfig:
    """Fixed kernel, nothing to train (:class:`~attnlab.models.kernel_regression.NadarayaWatson`).

    Args:
        kernel: gaussian | boxcar | constant | epanechikov.
        sigma: kernel width σ > 0.
    """

    kernel: str = "gaussian"
    sigma: float = 0.5


@dataclass
class LearnedNadarayaWatsonConfig:
    """Kernel with a width learned by gradient descent, leave-one-out on the training points
    (:class:`~attnlab.models.kernel_regression.LearnedNadarayaWatson`).

    Args:
        kernel: gaussian (default) or epanechikov; boxcar and constant have no gradient with
            respect to σ, so σ would stay at its initial value.
        sigma: initial width σ > 0.
    """

    kernel: str = "gaussian"
    sigma: float = 1.0


SPEC = register_experiment(ExperimentSpec(
    name="kernel_regression",
    summary="Nadaraya-Watson attention pooling on 2 sin x + x (d2l): 4 kernels x 4 widths vs a learned width",
    description="Kernel regression as attention pooling: fixed kernels and widths against a learned width.",
    task="attnlab.experiments.kernel_regression:KernelRegression",
    Config=KernelRegressionConfig,
    models={
        "nadaraya_watson": ModelSpec(
            "attnlab.models.kernel_regression:NadarayaWatson", NadarayaWatsonConfig,
            "fixed kernel and width (no training)", {"max_epochs": 1},
        ),
        "nadaraya_watson_learned": ModelSpec(
            "attnlab.models.kernel_regression:LearnedNadarayaWatson", LearnedNadarayaWatsonConfig,
            "kernel width learned by leave-one-out gradient descent", {"max_epochs": 200, "lr": 0.05},
        ),
    },
    metric_notes={"mse": "squared error of the model's pooled prediction at held-out x (leave-one-out keys)",
                  "sigma": "the kernel width the model ends with (learned or fixed); not a score"},
    default_model="nadaraya_watson_learned",
    monitor=("val_mse", "min"),
    # One batch holds the whole training set: full-batch gradient descent, as in d2l.
    train_defaults={"batch_size": 256, "grad_clip": None},
))
