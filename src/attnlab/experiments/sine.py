"""``sine``: next-step prediction of sinusoids — "replace my GRU with self-attention, input dimension 1".

Each series is ``sin(ω t + φ)`` (plus optional Gaussian noise) with random frequency, phase and
length (60–300 steps by default); at every step the model predicts the next value. Batches are
padded to their longest series and the padding is masked out of the loss and the metrics.

Models: ``gru`` (the question's ``GRU(1, 4, num_layers=2) → Linear → tanh``), ``transformer``
(project to d_model, rotary positions, causal self-attention, Linear head) and ``attentive_rnn``
(a GRU attending over its own past hidden states).

Metric ``mse``: the held-out next-step mean squared error over all valid (non-padding) steps of
the test series, every step counting once. The first step of a series cannot be predicted exactly
(from one value, neither the direction nor the frequency is known): with the default frequencies
this alone puts a floor of about 3·10⁻⁵ under ``mse``.

Figures: ``sine_rollout.png`` (free-running forecasts: the model sees the start of a test series,
then feeds back its own predictions, so its errors compound and are far larger than the one-step ``mse``)
and, for the attention models, ``sine_attention.png`` (causal attention weights over the first series of
the rollout figure, per layer and head, numbered from 1). The report's attention explorer opens on the same
series. ``baselines.json`` holds the one-step MSE of repeating the last value and of extrapolating a line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.catalog.sine import SPEC
from attnlab.data.synthetic import SeriesDataset, collate_next_step, make_sines
from attnlab.experiments.base import DataSplits, Experiment, model_device
from attnlab.nn.maps import AttentionSample, has_attention, layer_role, record_maps, samples_from_maps
from attnlab.nn.masking import sequence_mask
from attnlab.report.files import write_baselines
from attnlab.viz.heatmaps import save_figure, show_heatmaps
from attnlab.viz.sine import plot_rollouts


def masked_mse(prediction: Tensor, target: Tensor, lengths: Tensor) -> Tensor:
    """Mean squared error over the valid steps only.

    Args:
        prediction, target: (B, L, D).
        lengths: (B,) valid steps of each series; steps ``t >= lengths[b]`` are padding and ignored.

    Returns:
        A scalar: the sum of squared errors over valid steps divided by their number (× D).
    """
    valid = sequence_mask(lengths.to(prediction.device), prediction.shape[1]).unsqueeze(-1)  # (B, L, 1)
    squared = (prediction - target).pow(2) * valid  # (B, L, D), zero at padding
    return squared.sum() / (valid.sum() * prediction.shape[-1]).clamp_min(1)


@torch.no_grad()
def rollout(model: nn.Module, context: Tensor, steps: int) -> Tensor:
    """Forecast ``steps`` values free-running: each prediction is fed back as the next input.

    Args:
        model: a next-step model ``(B, L, 1) → (B, L, 1)``.
        context: (B, T, 1) observed start of each series (same length for all).
        steps: how many values to forecast.

    Returns:
        (B, steps, 1): the forecasts of steps T, T + 1, …, T + steps − 1.
    """
    series = context
    forecasts = []
    for _ in range(steps):
        step = model(series)[:, -1:]  # (B, 1, 1): the prediction of the next value
        forecasts.append(step)
        series = torch.cat([series, step], dim=1)  # (B, T + k + 1, 1)
    return torch.cat(forecasts, dim=1)  # (B, steps, 1)


def attention_maps(model: nn.Module, x: Tensor) -> tuple[Tensor, list[str]] | None:
    """Attention weights of ``model`` on one series x (1, L, 1), as a (rows, cols, L, L) stack.

    Multi-head layers give one row per layer and one column per head; a single
    :class:`~attnlab.nn.Attention` layer gives one panel. Returns ``None`` for a model without
    attnlab attention layers (the GRU).
    """
    _, maps = record_maps(model, lambda: model(x))
    if not maps:
        return None
    rows, titles = [], []
    for name, weights in maps.items():
        weights = weights[0]  # (H, L, L); H = 1 for Attention
        rows.append(weights)
        layer = layer_role(name, "self")
        titles += [f"{layer}, head {h + 1}" if weights.shape[0] > 1 else layer for h in range(weights.shape[0])]
    return torch.stack(rows), titles  # (layers, heads, L, L)


def one_step_baselines(series: list[Tensor]) -> dict[str, dict[str, float]]:
    """Next-step MSE over every step of ``series`` (each (L_i + 1,)) of two predictors that learn nothing:
    repeating the last value, and extrapolating the line through the last two values (the first step of a
    series repeats its value)."""
    squared = {"repeat the last value": 0.0, "extrapolate a line": 0.0}
    count = 0
    for s in series:
        inputs, targets = s[:-1].double(), s[1:].double()
        previous = torch.cat([inputs[:1], inputs[:-1]])
        squared["repeat the last value"] += float((targets - inputs).pow(2).sum())
        squared["extrapolate a line"] += float((targets - (2 * inputs - previous)).pow(2).sum())
        count += len(targets)
    return {name: {"mse": total / max(count, 1)} for name, total in squared.items()}


def figure_series(series: list[Tensor], n: int = 4) -> list[int]:
    """Indices of the ``n`` longest test series (ties in test order): the rollout figure's series, the first of
    which the attention figure and the report's explorer show."""
    return sorted(range(len(series)), key=lambda i: -len(series[i]))[:n]


class Sine(Experiment):
    """Next-step prediction of random sinusoids of random length (padded and masked)."""

    spec = SPEC



    def data(self, seed: int) -> DataSplits:
        """Three independent sets of series; split k is drawn from seed ``3·seed + k`` so that changing
        the size of one split leaves the others unchanged."""
        c = self.config
        splits = []
        for k, n in enumerate((c.n_train, c.n_val, c.n_test)):
            generator = torch.Generator().manual_seed(3 * seed + k)
            series = make_sines(n, generator, c.min_len, c.max_len, c.min_period, c.max_period, c.noise_std)
            splits.append(SeriesDataset(series))
        return DataSplits(*splits, collate_fn=collate_next_step)

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """Next-step MSE over the valid steps of the batch (padding ignored)."""
        x, y, lengths = batch
        return masked_mse(model(x, lengths), y, lengths)

    def evaluate(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """``mse`` (= ``loss``): next-step MSE over the valid steps of the batch."""
        mse = self.loss(model, batch)
        return {"loss": mse, "mse": mse}

    def batch_size_of(self, batch: Any) -> int:
        """The number of valid steps: the engine's weighted means are then exact means over all steps."""
        return int(batch[2].sum())

    def figures(self, model: nn.Module, data: DataSplits, out_dir: Path, history: list[dict[str, float]]) -> list[Path]:
        """``sine_rollout.png`` (the 4 longest test series, free-running forecasts vs truth) and, for the
        attention models, ``sine_attention.png`` (weights of every attention layer and head on the first
        80 steps of one test series)."""
        c = self.config
        model.eval()
        device = model_device(model)
        series = [data.test[i] for i in range(len(data.test))]  # (L_i + 1,) each
        order = figure_series(series)  # the longest test series show the most of the forecast
        picked = [series[i] for i in order]
        total = min(len(s) for s in picked)
        context_len = min(c.rollout_context, total - 1)
        steps = min(c.rollout_steps, total - context_len)
        context = torch.stack([s[:context_len] for s in picked]).unsqueeze(-1).to(device)  # (4, T, 1)
        forecast = rollout(model, context, steps)[..., 0].cpu()  # (4, steps)
        truth = torch.stack([s[: context_len + steps] for s in picked])  # (4, T + steps)
        titles = [f"test series {i}" for i in order]
        paths = [save_figure(plot_rollouts(truth, forecast, context_len, titles), out_dir / "sine_rollout.png")]

        first = series[order[0]][:-1][:80]  # the model's inputs of one series, ≤ 80 steps
        maps = attention_maps(model, first.view(1, -1, 1).to(device))
        if maps is not None:
            weights, panel_titles = maps
            rows, cols = weights.shape[:2]
            fig = show_heatmaps(weights, xlabel="key step (past)", ylabel="query step", titles=panel_titles,
                                figsize=(3.6 * cols + 1.0, 3.4 * rows), clip=0.99)
            fig.suptitle(f"causal attention on test series {order[0]} (first {len(first)} steps)", y=1.02)
            paths.append(save_figure(fig, out_dir / "sine_attention.png"))
        return paths

    def save_artifacts(self, model: nn.Module, data: DataSplits, run_dir: Path) -> None:
        """Write ``baselines.json``: the one-step test MSE of repeating the last value and of a line."""
        write_baselines(run_dir, one_step_baselines([data.test[i] for i in range(len(data.test))]))

    def attention_samples(self, model: nn.Module, data: DataSplits, limit: int = 4) -> list[AttentionSample]:
        """The series the attention figure draws (the longest test series), then the first test series, first
        80 steps each (the report's heatmaps stay readable): causal self-attention of every layer, time step ×
        time step (labels ``t0``, ``t1``, …)."""
        if not has_attention(model):
            return []
        device = model_device(model)
        series = [data.test[i] for i in range(len(data.test))]
        drawn = figure_series(series)[0]
        samples: list[AttentionSample] = []
        for i in list(dict.fromkeys([drawn, *range(len(series))]))[:limit]:
            inputs = series[i][:-1][:80]  # (L,) the model's inputs; the last value is only a target
            steps = [f"t{t}" for t in range(len(inputs))]
            _, maps = record_maps(model, lambda x=inputs: model(x.view(1, -1, 1).to(device)))
            samples += samples_from_maps(maps, [f"test series {i} (first {len(inputs)} steps)"],
                                         lambda *_, s=steps: (s, s), kind=lambda _: "self")
            samples[-1].in_figures = i == drawn
        return samples
