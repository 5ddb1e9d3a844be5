"""Figures of the ``count`` experiment ("more 2s than 4s?"): where the pooling query looks, and the loss."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.patheffects as patheffects  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from attnlab.viz.heatmaps import ATTENTION_CMAP  # noqa: E402

HIGHLIGHT = (2, 4)  # digits written in red


def _numpy(a: torch.Tensor | np.ndarray) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _write_digits(ax: Axes, digits: np.ndarray) -> None:
    outline = [patheffects.withStroke(linewidth=2, foreground="white")]  # legible on any cell colour
    for (row, col), digit in np.ndenumerate(digits):
        red = int(digit) in HIGHLIGHT
        ax.text(col, row, str(int(digit)), ha="center", va="center", fontsize=8, path_effects=outline,
                color="red" if red else "black", fontweight="bold" if red else "normal")


def plot_loss_history(ax: Axes, history: Sequence[dict[str, float]]) -> None:
    """Draw ``train_loss`` and ``val_loss`` per epoch (from the engine's history) on ``ax``."""
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    for key, style in (("train_loss", "-"), ("val_loss", "--")):
        points = [(e, h[key]) for e, h in zip(epochs, history, strict=True) if key in h]
        if points:
            ax.plot(*zip(*points, strict=True), style, marker="o", ms=3, label=key.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (training objective)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    if any("train_loss" in h or "val_loss" in h for h in history):
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # readable even within one decade
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no epoch finished", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("loss", fontsize=10)


def plot_count_attention(digits: torch.Tensor | np.ndarray, weights: torch.Tensor | np.ndarray,
                         values: torch.Tensor | np.ndarray, history: Sequence[dict[str, float]],
                         row_labels: Sequence[str] | None = None, threshold: float = 0.1) -> Figure:
    """The exercise's three panels for n test sequences of L digits.

    1. the pooling attention per position (a heatmap, one row per sequence);
    2. the value v of every position where the attention exceeds ``threshold`` (blank elsewhere);
    3. the loss per epoch.

    Digits are written in the cells of panels 1 and 2; 2s and 4s in red.

    Args:
        digits: (n, L) the sequences.
        weights: (n, L) attention weights of the pooling query (rows sum to 1).
        values: (n, L) the scalar value of each position.
        history: the engine's per-epoch history (``train_loss``, ``val_loss``).
        row_labels: one label per sequence (e.g. its label and predicted probability).
        threshold: attention below it hides the value in panel 2.
    """
    digits, weights, values = _numpy(digits), _numpy(weights).astype(float), _numpy(values).astype(float)
    if not digits.shape == weights.shape == values.shape or digits.ndim != 2:
        raise ValueError(f"digits, weights and values must all be (n, L), got {digits.shape}, {weights.shape}, "
                         f"{values.shape}")
    n, L = digits.shape
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.45 * n + 2.0), gridspec_kw={"width_ratios": [1, 1, 1.1]})
    ax_w, ax_v, ax_loss = axes

    image = ax_w.imshow(weights, cmap=ATTENTION_CMAP, vmin=0.0, vmax=max(float(weights.max()), 1e-12), aspect="auto")
    _write_digits(ax_w, digits)
    fig.colorbar(image, ax=ax_w, shrink=0.8)
    ax_w.set_title("attention of the pooling query", fontsize=10)

    shown = np.where(weights > threshold, values, np.nan)
    bound = max(float(np.nanmax(np.abs(shown))) if np.isfinite(shown).any() else 0.0, 1e-12)
    image = ax_v.imshow(shown, cmap="PRGn", vmin=-bound, vmax=bound, aspect="auto")
    _write_digits(ax_v, digits)
    fig.colorbar(image, ax=ax_v, shrink=0.8)
    ax_v.set_title(f"value v where attention > {threshold:g}", fontsize=10)

    for ax in (ax_w, ax_v):
        ax.set_xticks(range(L))
        ax.set_xlabel("position")
        ax.set_yticks(range(n), labels=list(row_labels) if row_labels is not None else [str(i) for i in range(n)],
                      fontsize=7)
    plot_loss_history(ax_loss, history)
    fig.tight_layout()
    return fig


def plot_loss_only(history: Sequence[dict[str, float]], title: str = "") -> Figure:
    """The loss per epoch, for models without an attention pooling to show."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    plot_loss_history(ax, history)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
