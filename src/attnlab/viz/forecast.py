"""Forecast figures: forecast vs actual with the input window, and attention over the input time."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from attnlab.nn.maps import AttentionMap, layer_role  # noqa: E402
from attnlab.viz.heatmaps import ATTENTION_CMAP, clip_top  # noqa: E402


def _time_axis(ax: plt.Axes, times: pd.Index) -> None:
    """Date ticks at the data's resolution: no time of day for daily or coarser data (every stamp at midnight),
    day ticks for a few weeks of it, concise labels (the year or month once, in the offset) otherwise. Integer
    periods keep matplotlib's plain number ticks."""
    if not isinstance(times, pd.DatetimeIndex):
        ax.xaxis.get_major_locator().set_params(integer=True)
        return
    at_midnight = bool((times == times.normalize()).all())
    days = (times[-1] - times[0]) / pd.Timedelta(days=1)
    if at_midnight and days <= 60:
        locator: mdates.DateLocator = mdates.DayLocator(interval=max(1, math.ceil(days / 6)))
    else:
        locator = mdates.AutoDateLocator(minticks=3, maxticks=7)
    formats = ["%Y", "%b", "%d", "%d %b", "%d %b", "%d %b"] if at_midnight else None
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, formats=formats))


def plot_forecasts(
    times: Sequence[pd.DatetimeIndex],
    actual: Sequence[np.ndarray],
    forecast: Sequence[np.ndarray],
    input_len: int,
    channel_names: Sequence[str],
    titles: Sequence[str] | None = None,
    bands: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    band_label: str | None = None,
) -> Figure:
    """A grid of panels, one row per channel and one column per window: the input window and the actual
    future (grey, black), the forecast (red) with its prediction interval (a pale band), and a dashed line
    where the forecast starts.

    Args:
        times: per window, the L + H time stamps (input then forecast).
        actual: per window, (L + H, K) values of the K channels drawn, original units.
        forecast: per window, (H, K) forecasts, original units.
        input_len: L.
        channel_names: the K channel names (row labels).
        titles: one per window (column titles).
        bands: per window, the interval's lower and upper bounds (H, K); None = no band.
        band_label: the band's legend entry (``"95 % interval"``).
    """
    rows, cols = len(channel_names), len(times)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols + 0.6, 2.3 * rows + 0.6), squeeze=False)
    for j in range(cols):
        t = times[j]
        for i in range(rows):
            ax = axes[i, j]
            ax.plot(t[:input_len], actual[j][:input_len, i], color="0.55", lw=0.8, label="input")
            ax.plot(t[input_len:], actual[j][input_len:, i], color="black", lw=0.9, label="actual")
            if bands is not None:
                ax.fill_between(t[input_len:], bands[j][0][:, i], bands[j][1][:, i], color="tab:red", alpha=0.18,
                                lw=0, label=band_label or "interval")
            ax.plot(t[input_len:], forecast[j][:, i], color="tab:red", lw=1.1, label="forecast")
            ax.axvline(t[input_len], color="0.3", ls="--", lw=0.7)
            _time_axis(ax, t)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel(channel_names[i])
            if i == 0 and titles is not None:
                ax.set_title(titles[j], fontsize=9)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def _edges(centres: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Cell edges around sorted centres: the midpoints between them, and ``lo`` and ``hi`` at the ends."""
    return np.concatenate([[lo], (centres[1:] + centres[:-1]) / 2, [hi]])


def _key_cells(times: pd.DatetimeIndex, k: int,
               key_spans: Sequence[tuple[int, int]] | None) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """Where the k keys of a map sit on the time axis (matplotlib date numbers): ``(centres, edges, patches)``
    for one key per input step, or for the patches of ``key_spans`` (centred on their spans, the cells
    covering the whole window); None when the keys are neither."""
    numbers = mdates.date2num(times) if isinstance(times, pd.DatetimeIndex) else np.asarray(times, dtype=float)
    if k == len(times):
        step = (numbers[-1] - numbers[0]) / max(1, len(numbers) - 1)
        return numbers, _edges(numbers, numbers[0] - step / 2, numbers[-1] + step / 2), False
    if key_spans is not None and len(key_spans) == k:
        centres = np.array([(numbers[a] + numbers[b - 1]) / 2 for a, b in key_spans])
        return centres, _edges(centres, numbers[0], numbers[-1]), True
    return None


def _short(label: str, n: int = 18) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def plot_attention_over_input(
    times: pd.DatetimeIndex,
    values: np.ndarray,
    channel_names: Sequence[str],
    maps: Sequence[AttentionMap],
    title: str = "",
    max_maps: int = 6,
    key_spans: Sequence[tuple[int, int]] | None = None,
) -> Figure:
    """The input window on top, then one panel per attention map (heads averaged), all on the series' time axis.

    A map whose keys are the L input steps, or patches with known spans (``key_spans``), is drawn against the
    same time axis as the series: one query (a pooling layer) as a curve of its weights, several queries as a
    heatmap (queries × time, each patch as wide as its stride). Maps over other tokens are heatmaps labelled
    with the map's own key labels. Layers are named by their role (:func:`attnlab.report.attention.layer_role`),
    colours are viridis, clipped at the 99th percentile so that a few large weights do not wash out the rest.

    Args:
        times: the L input time stamps.
        values: (L, K) input values of the K channels drawn, original units.
        channel_names: their names.
        maps: attention maps of this window (at most ``max_maps`` drawn).
        title: figure title.
        key_spans: the [start, end) input steps of each key of a patch model (``PatchTransformer.patch_spans``).
    """
    maps = list(maps)[:max_maps]
    fig = plt.figure(figsize=(10.0, 2.4 + 2.6 * len(maps)))
    grid = fig.add_gridspec(1 + len(maps), 2, width_ratios=[1, 0.02], wspace=0.02, hspace=0.6)
    top = fig.add_subplot(grid[0, 0])
    for k, name in enumerate(channel_names):
        top.plot(times, values[:, k], lw=0.8, label=name)
    top.set_xlim(times[0], times[-1])
    _time_axis(top, times)
    top.legend(fontsize=7, ncol=min(4, len(channel_names)), loc="lower left", bbox_to_anchor=(0, 1), frameon=False)
    top.set_title(title or "input window", fontsize=9, loc="right")  # the legend above the series, on the left
    top.tick_params(labelsize=7)
    for row, amap in enumerate(maps, start=1):
        cells = _key_cells(times, amap.weights.shape[-1], key_spans)
        ax = fig.add_subplot(grid[row, 0], sharex=top if cells is not None else None)
        _draw_map(fig, ax, fig.add_subplot(grid[row, 1]), amap, cells)
        if cells is not None:
            _time_axis(ax, times)
            ax.set_xlim(times[0], times[-1])
        ax.tick_params(labelsize=7)
    return fig


def _draw_map(fig: Figure, ax: plt.Axes, bar: plt.Axes, amap: AttentionMap,
              cells: tuple[np.ndarray, np.ndarray, bool] | None) -> None:
    """One attention map (mean over heads) on ``ax``, its colour bar on ``bar``: see
    :func:`plot_attention_over_input` (``cells``: :func:`_key_cells`)."""
    weights = amap.weights.float().mean(dim=0).numpy()  # (Q, K), mean over heads
    q, k = weights.shape
    heads = amap.weights.shape[0]
    ax.set_title(f"{layer_role(amap.layer, amap.kind)}" + (f" (mean of {heads} heads)" if heads > 1 else ""),
                 fontsize=8)
    if q == 1 and cells is not None:
        ax.plot(cells[0], weights[0], color="#21918c", lw=0.9)
        ax.set_ylabel("weight", fontsize=8)
        bar.axis("off")
        return
    top = max(clip_top(weights), 1e-12)
    cut = f"weight (clipped at {top:.2g}; max {weights.max():.2g})" if top < weights.max() else "weight"
    if cells is not None:
        image = ax.pcolormesh(cells[1], np.arange(q + 1) - 0.5, weights, cmap=ATTENTION_CMAP, vmin=0, vmax=top,
                              shading="flat")
        ax.set_ylim(q - 0.5, -0.5)
    else:
        image = ax.imshow(weights, aspect="auto", cmap=ATTENTION_CMAP, vmin=0, vmax=top, interpolation="nearest")
        ticks = np.unique(np.linspace(0, k - 1, min(k, 6)).round().astype(int))
        ax.set_xticks(ticks, labels=[_short(amap.key_labels[t]) for t in ticks], fontsize=6)
    patches = cells is not None and cells[2]
    rows = np.unique(np.linspace(0, q - 1, min(q, 6)).round().astype(int))
    labels = [amap.query_labels[r].split(" ")[0] if patches else _short(amap.query_labels[r]) for r in rows]
    ax.set_yticks(rows, labels=labels, fontsize=6)  # a patch query by its number: its span is on the x axis
    ax.set_ylabel("query" + (" patch" if patches else ""), fontsize=8)
    fig.colorbar(image, cax=bar).set_label(cut, fontsize=7)
    bar.tick_params(labelsize=6)
