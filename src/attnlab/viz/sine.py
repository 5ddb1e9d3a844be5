"""Figures of the ``sine`` experiment: free-running forecasts against the true series."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def plot_rollouts(truth: torch.Tensor | np.ndarray, forecast: torch.Tensor | np.ndarray, context_len: int,
                  titles: Sequence[str] | None = None) -> Figure:
    """One panel per series: the true series, the part the model saw, and its free-running forecast.

    Args:
        truth: (n, context_len + steps) true values.
        forecast: (n, steps) the model's forecasts of steps ``context_len …``, each fed back as input.
        context_len: number of true values the model saw before forecasting.
        titles: one title per panel.

    Returns:
        The figure (save it with :func:`attnlab.viz.save_figure`).
    """
    truth = np.asarray(truth.detach().cpu() if isinstance(truth, torch.Tensor) else truth, dtype=float)
    forecast = np.asarray(forecast.detach().cpu() if isinstance(forecast, torch.Tensor) else forecast, dtype=float)
    if truth.ndim != 2 or forecast.ndim != 2 or truth.shape[0] != forecast.shape[0]:
        raise ValueError(f"truth (n, T) and forecast (n, steps) must be 2-D with the same n, "
                         f"got {truth.shape} and {forecast.shape}")
    if truth.shape[1] != context_len + forecast.shape[1]:
        raise ValueError(f"truth has {truth.shape[1]} steps, expected context_len + steps = "
                         f"{context_len} + {forecast.shape[1]}")
    n, steps = forecast.shape
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.0 * n), sharex=True, squeeze=False)
    t = np.arange(truth.shape[1])
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(t, truth[i], color="0.6", lw=2.5, label="truth")
        ax.plot(t[:context_len], truth[i, :context_len], color="tab:blue", lw=1.2, label="seen by the model")
        ax.plot(t[context_len:], forecast[i], color="tab:red", lw=1.2, ls="--", label="free-running forecast")
        ax.axvline(context_len - 0.5, color="k", lw=0.8, ls=":")
        mse = float(np.mean((forecast[i] - truth[i, context_len:]) ** 2))
        title = titles[i] if titles is not None and i < len(titles) else f"series {i}"
        ax.set_title(f"{title}: free-running MSE over {steps} steps {mse:.3g}", fontsize=9)
        ax.set_ylabel("value")
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=3)
    axes[-1, 0].set_xlabel("step")
    fig.suptitle("free-running rollout: after the dotted line the model feeds back its own predictions, so errors "
                 "compound\n(the run's headline mse is one-step-ahead, from the true past)", fontsize=9)
    fig.tight_layout()
    return fig
