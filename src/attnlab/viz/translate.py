"""Cross-attention heatmaps of a translation: source tokens × generated tokens, per layer and head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure

from attnlab.nn.maps import layer_role
from attnlab.viz.heatmaps import show_heatmaps


def plot_cross_attention(maps: dict[str, torch.Tensor], source: Sequence[str], output: Sequence[str],
                         title: str | None = None) -> Figure:
    """One panel per (layer, head) of the cross-attention layers, named by role, layers and heads from 1.

    Args:
        maps: layer name -> (H, T, S) weights (T generated tokens, S source tokens); all layers must have the
            same number of heads H. Rows of the figure are layers, columns heads.
        source: the S source tokens (x axis).
        output: the T generated tokens (y axis).
        title: optional figure title.
    """
    if not maps:
        raise ValueError("no cross-attention to plot (the seq2seq model has no attention)")
    names = list(maps)
    stack = torch.stack([maps[n] for n in names])  # (layers, H, T, S)
    heads = stack.shape[1]
    roles = [layer_role(n, "cross").removeprefix("Decoder cross-attention, ") for n in names]  # "layer 2"
    titles = [f"{r}, head {h + 1}" if heads > 1 else r for r in roles for h in range(heads)]
    fig = show_heatmaps(
        stack, xlabel="source token", ylabel="generated token", titles=titles,
        xticklabels=list(source), yticklabels=list(output),
        figsize=(max(3.0, 0.35 * len(source) + 1.5) * heads + 1.0, max(2.5, 0.3 * len(output) + 1.2) * len(names)),
    )
    fig.suptitle((f"{title}\n" if title else "") + "decoder cross-attention (layers and heads numbered from 1)",
                 fontsize=10)
    return fig
