"""Figures of the squares task: predicted corners, and the decoder's attention over the encoder."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from attnlab.viz.heatmaps import show_heatmaps


def _np(t: torch.Tensor | np.ndarray) -> np.ndarray:
    return t.detach().cpu().float().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def plot_squares(source, target, prediction, titles: Sequence[str], cols: int = 4) -> Figure:
    """One panel per square: the given corners, the true last corners and the predicted ones.

    Args:
        source: (N, S, 2) input corners.
        target: (N, T, 2) true following corners.
        prediction: (N, T, 2) predicted corners.
        titles: one title per square (e.g. its direction).
        cols: panels per row.
    """
    source, target, prediction = _np(source), _np(target), _np(prediction)
    n = source.shape[0]
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        true_path = np.concatenate([source[i], target[i]])  # (S + T, 2)
        pred_path = np.concatenate([source[i, -1:], prediction[i]])  # (1 + T, 2)
        ax.plot(true_path[:, 0], true_path[:, 1], "-", color="0.75", zorder=1)
        ax.plot(pred_path[:, 0], pred_path[:, 1], "--", color="tab:red", zorder=2)
        ax.scatter(source[i, :, 0], source[i, :, 1], c="tab:blue", label="input", zorder=3)
        ax.scatter(target[i, :, 0], target[i, :, 1], c="tab:green", label="target", zorder=3)
        ax.scatter(prediction[i, :, 0], prediction[i, :, 1], c="tab:red", marker="x", label="predicted", zorder=4)
        for k, (x, y) in enumerate(true_path):
            ax.annotate(str(k + 1), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlim(-1.6, 1.6)
        ax.set_ylim(-1.6, 1.6)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(titles[i], fontsize=9)
    axes.flat[0].legend(fontsize=7, loc="center")
    fig.tight_layout()
    return fig


def show_alphas(alphas, titles: Sequence[str], cols: int = 4, suptitle: str | None = None) -> Figure:
    """The decoder's attention over the encoder for several squares.

    Args:
        alphas: (N, T, S) weights: decoder step (predicted corner) × encoder step (given corner).
        titles: one title per square.
        cols: panels per row (extra squares beyond a full last row are dropped).
        suptitle: optional title over all panels.
    """
    a = _np(alphas)
    n, steps, source_len = a.shape
    cols = min(cols, n)
    rows = n // cols
    grid = a[: rows * cols].reshape(rows, cols, steps, source_len)  # (rows, cols, T, S)
    fig = show_heatmaps(
        grid,
        xlabel="encoder step",
        ylabel="decoder step",
        titles=list(titles),
        xticklabels=[f"c{j + 1}" for j in range(source_len)],
        yticklabels=[f"c{source_len + i + 1}" for i in range(steps)],
        annotate=True,
    )
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig
