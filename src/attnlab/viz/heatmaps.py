"""One function draws any stack of attention matrices (after d2l's ``show_heatmaps``).

Attention figures use one colour map, viridis, as the run report's explorer does; layers and heads are
numbered from 1 in their titles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown on a screen

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

ATTENTION_CMAP = "viridis"  # every attention figure, and the report's explorer


def clip_top(weights: np.ndarray, quantile: float = 0.99) -> float:
    """The value below the top ``1 - quantile`` share of ``weights``: the cell ranked ``ceil(quantile·n)`` in
    ascending order, so that a map of under 100 cells is not clipped at 0.99 (the report's explorer does the
    same)."""
    ordered = np.sort(np.asarray(weights, dtype=float).ravel())
    return float(ordered[max(0, math.ceil(quantile * len(ordered)) - 1)])


def show_heatmaps(
    matrices: torch.Tensor | np.ndarray,
    xlabel: str = "keys",
    ylabel: str = "queries",
    titles: Sequence[str] | None = None,
    xticklabels: Sequence[str] | None = None,
    yticklabels: Sequence[str] | None = None,
    figsize: tuple[float, float] | None = None,
    cmap: str = ATTENTION_CMAP,
    annotate: bool = False,
    clip: float | None = None,
) -> Figure:
    """Draw a grid of heatmaps.

    Args:
        matrices: (rows, cols, Q, K), (n, Q, K) (one row) or (Q, K) weights.
        xlabel, ylabel: axis labels of the bottom row / first column.
        titles: one title per panel, row-major.
        xticklabels, yticklabels: labels of keys and queries (e.g. tokens), shared by all panels.
        figsize: figure size in inches (default: 2.5 per panel).
        cmap: matplotlib colour map.
        annotate: write each weight in its cell (for small matrices).
        clip: a quantile (e.g. 0.99) of all weights at which the colour scale tops out, so that a few weights
            near 1 (the first row of a causal map) do not wash out the rest; the colour bar names the cut.
            None: the scale runs to the largest weight.

    Returns:
        The matplotlib figure (save it with :func:`save_figure`).
    """
    m = matrices.detach().cpu().float().numpy() if isinstance(matrices, torch.Tensor) else np.asarray(matrices)
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[None]
    elif m.ndim != 4:
        raise ValueError(f"matrices must be 2-D, 3-D or 4-D, got shape {m.shape}")
    rows, cols = m.shape[:2]
    top = max(float(m.max()), 1e-12)
    cut = clip_top(m, clip) if clip is not None else 0.0
    if cut > 0:
        top = min(top, cut)
    figsize = figsize or (2.5 * cols + 1.0, 2.5 * rows)
    fig, axes = plt.subplots(rows, cols, figsize=figsize, sharex=True, sharey=True, squeeze=False)
    image = None
    for i in range(rows):
        for j in range(cols):
            ax = axes[i, j]
            image = ax.imshow(m[i, j], cmap=cmap, vmin=0.0, vmax=top, aspect="auto")
            if annotate:
                for (q, k), w in np.ndenumerate(m[i, j]):
                    ax.text(k, q, f"{w:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if w > 0.6 * top else "white")
            if xticklabels is not None:
                ax.set_xticks(range(len(xticklabels)), labels=list(xticklabels), rotation=90, fontsize=7)
            if yticklabels is not None:
                ax.set_yticks(range(len(yticklabels)), labels=list(yticklabels), fontsize=7)
            if i == rows - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel(ylabel)
            if titles is not None and i * cols + j < len(titles):
                ax.set_title(titles[i * cols + j], fontsize=9)
    bar = fig.colorbar(image, ax=axes, shrink=0.6)
    if top < float(m.max()):
        bar.set_label(f"weight, clipped at {top:.3g} (the top {1 - clip:.0%} of cells share the top colour; max "
                      f"{float(m.max()):.3g})", fontsize=8)
    else:
        bar.set_label("weight", fontsize=8)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG (creating parent folders) and close it; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
