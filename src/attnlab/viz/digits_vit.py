"""Figures of the digits task: where the ViT's class token looks, and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from attnlab.viz.heatmaps import ATTENTION_CMAP


def _np(t) -> np.ndarray:
    return t.detach().cpu().float().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def plot_class_token_attention(images, attention, titles: Sequence[str], pairs_per_row: int = 4) -> Figure:
    """Each digit next to its class-token attention over the patch grid.

    Args:
        images: (N, 1, H, W) or (N, H, W) images.
        attention: (N, g, g) class-token weights per patch.
        titles: one title per digit (e.g. "label 3 → 3").
        pairs_per_row: digits per row (each takes two panels).
    """
    images, attention = _np(images), _np(attention)
    if images.ndim == 4:
        images = images[:, 0]  # (N, H, W)
    n = images.shape[0]
    rows = -(-n // pairs_per_row)
    fig, axes = plt.subplots(rows, 2 * pairs_per_row, figsize=(2.0 * 2 * pairs_per_row, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for i in range(rows * pairs_per_row):
        row, col = divmod(i, pairs_per_row)
        ax_img, ax_att = axes[row, 2 * col], axes[row, 2 * col + 1]
        if i >= n:
            ax_img.axis("off")
            ax_att.axis("off")
            continue
        ax_img.imshow(images[i], cmap="gray_r", vmin=0, vmax=1)
        ax_img.set_title(titles[i], fontsize=8)
        image = ax_att.imshow(attention[i], cmap=ATTENTION_CMAP, vmin=0)
        ax_att.set_title("class-token attention", fontsize=7)
        fig.colorbar(image, ax=ax_att, fraction=0.046, pad=0.02)
    fig.tight_layout()
    return fig


def plot_confusion(matrix, class_names: Sequence[str] | None = None, title: str = "") -> Figure:
    """Confusion matrix (true class × predicted class counts) with the counts written in the cells.

    Args:
        matrix: (C, C) counts, rows = true class, columns = predicted class.
        class_names: C labels (default 0…C−1).
        title: figure title.
    """
    m = _np(matrix)
    names = list(class_names) if class_names is not None else [str(i) for i in range(m.shape[0])]
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    image = ax.imshow(m, cmap="Blues")
    for (i, j), count in np.ndenumerate(m):
        if count:
            ax.text(j, i, f"{int(count)}", ha="center", va="center", fontsize=7,
                    color="white" if count > m.max() / 2 else "black")
    ax.set_xticks(range(len(names)), labels=names)
    ax.set_yticks(range(len(names)), labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig
