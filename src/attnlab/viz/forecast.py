"""Forecast figures: forecast vs actual with the input window, and attention over the input time."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from attnlab.experiments.base import AttentionMap  # noqa: E402


def _time_axis(ax: plt.Axes) -> None:
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def plot_forecasts(
    times: Sequence[pd.DatetimeIndex],
    actual: Sequence[np.ndarray],
    forecast: Sequence[np.ndarray],
    input_len: int,
    channel_names: Sequence[str],
    titles: Sequence[str] | None = None,
) -> Figure:
    """A grid of panels, one row per channel and one column per window: the input window and the actual
    future (grey, black), the forecast (red), and a dashed line where the forecast starts.

    Args:
        times: per window, the L + H time stamps (input then forecast).
        actual: per window, (L + H, K) values of the K channels drawn, original units.
        forecast: per window, (H, K) forecasts, original units.
        input_len: L.
        channel_names: the K channel names (row labels).
        titles: one per window (column titles).
    """
    rows, cols = len(channel_names), len(times)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols + 0.6, 2.3 * rows + 0.6), squeeze=False)
    for j in range(cols):
        t = times[j]
        for i in range(rows):
            ax = axes[i, j]
            ax.plot(t[:input_len], actual[j][:input_len, i], color="0.55", lw=0.8, label="input")
            ax.plot(t[input_len:], actual[j][input_len:, i], color="black", lw=0.9, label="actual")
            ax.plot(t[input_len:], forecast[j][:, i], color="tab:red", lw=1.1, label="forecast")
            ax.axvline(t[input_len], color="0.3", ls="--", lw=0.7)
            _time_axis(ax)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel(channel_names[i])
            if i == 0 and titles is not None:
                ax.set_title(titles[j], fontsize=9)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def plot_attention_over_input(
    times: pd.DatetimeIndex,
    values: np.ndarray,
    channel_names: Sequence[str],
    maps: Sequence[AttentionMap],
    title: str = "",
    max_maps: int = 6,
) -> Figure:
    """The input window on top, then one panel per attention map (heads averaged).

    A map whose keys are the L input steps is drawn against their time stamps: one query (a pooling
    layer) as a curve of its weights, several queries as a heatmap (queries × time). Maps over other
    tokens (patches) are heatmaps labelled with the map's own key labels.

    Args:
        times: the L input time stamps.
        values: (L, K) input values of the K channels drawn, original units.
        channel_names: their names.
        maps: attention maps of this window (at most ``max_maps`` drawn).
        title: figure title.
    """
    maps = list(maps)[:max_maps]
    fig, axes = plt.subplots(1 + len(maps), 1, figsize=(9.0, 2.0 + 2.4 * len(maps)), squeeze=False)
    ax = axes[0, 0]
    for k, name in enumerate(channel_names):
        ax.plot(times, values[:, k], lw=0.8, label=name)
    ax.set_xlim(times[0], times[-1])
    _time_axis(ax)
    ax.legend(fontsize=7, ncol=min(4, len(channel_names)), loc="upper left")
    ax.set_title(title or "input window", fontsize=9)
    for m, amap in enumerate(maps, start=1):
        ax = axes[m, 0]
        weights = amap.weights.float().mean(dim=0).numpy()  # (Q, K), mean over heads
        q, k = weights.shape
        heads = amap.weights.shape[0]
        label = f"{amap.layer} ({amap.kind}{f', mean of {heads} heads' if heads > 1 else ''})"
        on_time = k == len(times)
        if q == 1 and on_time:
            ax.plot(times, weights[0], color="tab:red", lw=0.9)
            ax.set_xlim(times[0], times[-1])
            _time_axis(ax)
            ax.set_ylabel("weight")
        else:
            if on_time:
                x0, x1 = mdates.date2num(times[0]), mdates.date2num(times[-1])
                ax.imshow(weights, aspect="auto", cmap="Reds", extent=(x0, x1, q - 0.5, -0.5), interpolation="nearest")
                ax.xaxis_date()
                _time_axis(ax)
            else:
                ax.imshow(weights, aspect="auto", cmap="Reds", interpolation="nearest")
                ticks = np.unique(np.linspace(0, k - 1, min(k, 8)).round().astype(int))
                ax.set_xticks(ticks, labels=[amap.key_labels[t] for t in ticks], rotation=20, fontsize=6, ha="right")
            if q <= 12:
                ax.set_yticks(range(q), labels=amap.query_labels, fontsize=6)
            ax.set_ylabel("query")
        ax.tick_params(labelsize=7)
        ax.set_title(label, fontsize=8)
    fig.tight_layout()
    return fig
