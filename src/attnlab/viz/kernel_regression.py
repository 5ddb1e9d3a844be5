"""Figures of Nadaraya–Watson kernel regression: fitted curves and the comparison of kernels and widths."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure


def _np(t) -> np.ndarray:
    return t.detach().cpu().float().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=float)


def plot_fits(x_train, y_train, x, f, panels: Mapping[str, Mapping[str, object]], cols: int = 3) -> Figure:
    """One panel per group of fits: training points, the true function and each fitted curve.

    Args:
        x_train, y_train: (K,) training points (the keys and values).
        x, f: (Q,) sorted query inputs and the true function there.
        panels: panel title -> {curve label -> (Q,) predictions at ``x``}.
        cols: panels per row.
    """
    x_train, y_train, x, f = _np(x_train), _np(y_train), _np(x), _np(f)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), sharex=True, sharey=True, squeeze=False)
    for ax, (title, curves) in zip(axes.flat, panels.items(), strict=False):
        ax.scatter(x_train, y_train, s=10, c="0.5", label="training points")
        ax.plot(x, f, "k-", lw=1.5, label="true f")
        for label, prediction in curves.items():
            ax.plot(x, _np(prediction), lw=1.2, label=label)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("x")
    for ax in axes[:, 0]:
        ax.set_ylabel("y")
    fig.tight_layout()
    return fig


def plot_sweep(mse: Mapping[str, float], highlight: str, xlabel: str = "validation MSE") -> Figure:
    """Horizontal bars of an error per configuration (sorted, best on top), ``highlight`` in red.

    Args:
        mse: configuration label -> error.
        highlight: the label to colour (e.g. the learned model).
        xlabel: what the error is.
    """
    items = sorted(mse.items(), key=lambda kv: kv[1], reverse=True)  # worst at the bottom
    labels = [k for k, _ in items]
    values = np.array([v for _, v in items])
    fig, ax = plt.subplots(figsize=(6.5, 0.28 * len(items) + 1.2))
    colors = ["tab:red" if k == highlight else "tab:blue" for k in labels]
    ax.barh(range(len(items)), values, color=colors)
    ax.set_yticks(range(len(items)), labels=labels, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel + " (log scale)")
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.3g}", va="center", fontsize=7)
    fig.tight_layout()
    return fig
