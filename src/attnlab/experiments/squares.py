"""``squares``: given the first two corners of a square, predict the last two (Godoy, ch. 9).

The sequence-to-sequence toy of *Deep Learning with PyTorch Step-by-Step*: a GRU encoder–decoder,
the same decoder attending over the encoder states (one head, then several), and a Transformer.
The metric is the held-out (test) MSE of free-running predictions: at evaluation every model
feeds back its own predicted corners, never the true ones. The figures show predicted corners and
the decoder's attention (decoder step × encoder step) for eight test squares, four in each direction; the
attention saved for the report is that of the first of them, by test index. ``baselines.json`` holds the
MSE of repeating the last given corner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.catalog.squares import SPEC
from attnlab.data.squares import CLOCKWISE, DIRECTION_NAMES, square_splits
from attnlab.errors import UserError
from attnlab.experiments.base import DataSplits, Experiment, model_device
from attnlab.nn import Attention, MultiHeadAttention, record_attention
from attnlab.nn.maps import AttentionSample, record_maps, samples_from_maps
from attnlab.report.files import write_baselines
from attnlab.viz.heatmaps import save_figure
from attnlab.viz.squares import plot_squares, show_alphas


def decoder_alphas(model: nn.Module, source: Tensor, steps: int) -> tuple[Tensor, Tensor | None]:
    """Run ``model`` free on ``source`` (B, S, P) and read its decoder's attention over the encoder.

    Returns:
        ``(prediction, alphas)``: prediction (B, steps, P) and the weights (B, steps, S) of the
        last cross-attention layer, averaged over heads (row t: decoder step t, column s: encoder
        step s); ``alphas`` is ``None`` for a model without attention.
    """
    if not any(isinstance(m, (Attention, MultiHeadAttention)) for m in model.modules()):
        with torch.no_grad():
            return model(source, steps=steps), None
    with torch.no_grad(), record_attention(model) as record:
        prediction = model(source, steps=steps)
    names = [name for name in record if "cross_attn" in name]  # in call order: the last is the top layer
    if not names:
        return prediction, None
    rows = []
    for weights in record[names[-1]]:  # one call per decoder step (or per prefix without a cache)
        if weights.dim() == 4:
            weights = weights.mean(dim=1)  # (B, H, Q, S) -> (B, Q, S)
        rows.append(weights[:, -1:])  # (B, 1, S): the newest decoder step
    return prediction, torch.cat(rows, dim=1)  # (B, steps, S)


def figure_squares(data: DataSplits) -> Tensor:
    """Test indices of the squares the figures draw: the first four clockwise, then the first four
    counter-clockwise ones, among the first 512."""
    direction = data.test[:512][2]
    return torch.cat([(direction == CLOCKWISE).nonzero()[:4, 0], (direction != CLOCKWISE).nonzero()[:4, 0]])


class Squares(Experiment):
    """Corners of squares: first two corners in, last two out."""

    spec = SPEC



    def data(self, seed: int) -> DataSplits:
        c = self.config
        if min(c.n_train, c.n_val, c.n_test) < 1 or c.noise < 0:
            raise UserError(f"squares needs n_train, n_val, n_test >= 1 and noise >= 0, got n_train={c.n_train} "
                            f"n_val={c.n_val} n_test={c.n_test} noise={c.noise}")
        train, val, test = square_splits(c.n_train, c.n_val, c.n_test, c.noise, seed)
        return DataSplits(train, val, test)

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """MSE of the predicted corners; the model uses teacher forcing only in training mode."""
        source, target = batch[0], batch[1]
        return F.mse_loss(model(source, target), target)

    def evaluate(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """Free-running MSE against the noisy held-out corners (``mse``, also the loss) and against
        the noise-free corners (``mse_clean``: the model's own error, without the target noise)."""
        source, target, _, clean = batch
        prediction = model(source, steps=target.shape[1])  # never sees the target's values
        mse = F.mse_loss(prediction, target)
        return {"loss": mse, "mse": mse, "mse_clean": F.mse_loss(prediction, clean)}

    def figures(self, model: nn.Module, data: DataSplits, out_dir: Path, history: list[dict[str, float]]) -> list[Path]:
        """``squares_predictions.png`` (test squares with true and predicted corners) and, for models
        with attention, ``squares_alphas.png`` (decoder step × encoder step weights)."""
        picks = figure_squares(data)
        source, target, direction, _ = data.test[picks]
        titles = [f"test square {i}\n{DIRECTION_NAMES[int(d)]}" for i, d in zip(picks.tolist(), direction, strict=True)]
        model.eval()
        prediction, alphas = decoder_alphas(model, source.to(model_device(model)), steps=target.shape[1])
        paths = [save_figure(plot_squares(source, target, prediction, titles), out_dir / "squares_predictions.png")]
        if alphas is not None:
            note = "decoder attention over the given corners (last cross-attention layer, mean over heads)"
            paths.append(save_figure(show_alphas(alphas, titles, suptitle=note), out_dir / "squares_alphas.png"))
        return paths

    def save_artifacts(self, model: nn.Module, data: DataSplits, run_dir: Path) -> None:
        """Write ``baselines.json``: the test MSE of repeating the last given corner for both missing corners."""
        source, target, _, clean = data.test[:]
        guess = source[:, -1:].expand_as(target)
        write_baselines(run_dir, {"repeat the last given corner": {
            "mse": float(F.mse_loss(guess, target)), "mse_clean": float(F.mse_loss(guess, clean))}})

    def attention_samples(self, model: nn.Module, data: DataSplits, limit: int = 4) -> list[AttentionSample]:
        """``limit`` of the test squares the figures draw, in test order, decoded free-running. Encoder
        points are the given corners (``c1 (x, y)``, ``c2 (x, y)``); decoder steps are named by the corner
        they predict, with the prediction (``→c3 (x, y)``). Cross-attention is decoder step × encoder point;
        the Transformer adds encoder and (causal, KV-cached) decoder self-attention."""
        picks = figure_squares(data).sort().values[:limit]
        source, target, direction, _ = data.test[picks]
        steps = target.shape[1]
        prediction, maps = record_maps(model, lambda: model(source.to(model_device(model)), steps=steps))
        if not maps:
            return []
        given = [[f"c{j + 1} ({x:+.2f}, {y:+.2f})" for j, (x, y) in enumerate(points)] for points in source.tolist()]
        predicted = [[f"→c{source.shape[1] + t + 1} ({x:+.2f}, {y:+.2f})" for t, (x, y) in enumerate(points)]
                     for points in prediction.cpu().tolist()]
        titles = [f"test square {i}: {DIRECTION_NAMES[int(d)]}" for i, d in zip(picks.tolist(), direction, strict=True)]

        def labels(i: int, layer: str, kind: str) -> tuple[list[str], list[str]]:
            if kind == "cross":
                return predicted[i], given[i]
            return (given[i], given[i]) if layer.startswith("encoder") else (predicted[i], predicted[i])

        samples = samples_from_maps(maps, titles, labels)
        for sample in samples:
            sample.in_figures = True
        return samples
