"""``count``: does a sequence of 10 digits hold more 2s than 4s? Attention pooling learns where to look.

The exercise: one learned query attends over the digits (embedding 5, attention 5), each digit
carries a scalar value, and a small MLP (1 → 200 → 1, sigmoid) reads the attention-weighted value.
To count 2s against 4s the query must attend to the 2s and 4s only and give them values of
opposite sign. Models: ``attention_pooling`` (the exercise), ``transformer`` (a Transformer encoder
pooled by a learned query) and ``gru``.

Training objective: binary cross-entropy plus, for the attention models, ``entropy_weight`` times
the mean entropy of the pooling attention. Cross-entropy alone has many zero-loss solutions, and
the one training finds leaves about 30 % of the attention on the other digits (they carry real
information early on: the more other digits, the likelier a 0-0 tie), paying for it with values
tuned to the leak. A small entropy penalty (default 1e-3) selects the solution that looks at 2s
and 4s only — the one the exercise draws — at no cost in accuracy; ``entropy_weight=0`` gives
the plain exercise.

Metrics (test split): ``accuracy``, ``bce`` (binary cross-entropy), ``loss`` (the training
objective: ``bce`` + the entropy penalty) and, for the two attention models, ``mass_on_2_4``: the
share of the pooling query's attention that lands on positions holding a 2 or a 4, averaged over
the test sequences that hold at least one 2 or 4 (for the others the share is 0 by definition and
says nothing). The engine averages metrics batch by batch, weighting batches by their number of
sequences, so ``mass_on_2_4`` is the batch-size-weighted mean of per-batch averages: equal to the
mean over all such test sequences up to the batch-to-batch variation of their share (about 89 %
of the sequences hold a 2 or a 4).

Figure: ``count_attention.png`` — the exercise's three panels for 12 test sequences (attention per
position, the values where attention > 0.1, and the loss per epoch), digits in the cells, 2s and
4s in red; ``count_loss.png`` (the loss only) for the GRU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from attnlab.catalog.count import SPEC
from attnlab.data.synthetic import make_count_batch
from attnlab.experiments.base import DataSplits, Experiment, model_device
from attnlab.models.capabilities import PoolsWithAttention
from attnlab.nn.maps import AttentionSample, collect_attention
from attnlab.report.files import write_baselines
from attnlab.viz.count import plot_count_attention, plot_loss_only
from attnlab.viz.heatmaps import save_figure

COUNTED = (2, 4)


def mass_on_digits(weights: Tensor, X: Tensor, digits: tuple[int, ...] = COUNTED) -> tuple[Tensor, Tensor]:
    """Share of each sequence's attention that lands on positions holding one of ``digits``.

    Args:
        weights: (B, L) attention weights of one query per sequence (rows sum to 1).
        X: (B, L) the digits.
        digits: the digits whose positions count.

    Returns:
        ``(mass, holds)``: mass (B,) the summed weight on those positions; holds (B,) bool, True where
        the sequence holds at least one of ``digits``.
    """
    on = torch.zeros_like(X, dtype=torch.bool)
    for d in digits:
        on |= X == d  # (B, L)
    mass = (weights * on).sum(dim=-1)  # (B,)
    return mass, on.any(dim=-1)


def mean_mass_on_2_4(weights: Tensor, X: Tensor) -> Tensor:
    """Mean over the sequences holding a 2 or a 4 of the attention share on their 2s and 4s (a scalar).

    A batch without any 2 or 4 gives 0 (nothing to look at).
    """
    mass, holds = mass_on_digits(weights, X, COUNTED)
    if not holds.any():
        return mass.new_zeros(())
    return mass[holds].mean()


def attention_entropy(weights: Tensor) -> Tensor:
    """Mean entropy (nats) of attention rows: weights (B, L) → a scalar (0 for one-hot rows)."""
    return -(weights * weights.clamp_min(1e-12).log()).sum(dim=-1).mean()


def pooling_weights(model: nn.Module, X: Tensor) -> tuple[Tensor, Tensor | None]:
    """Run ``model`` on X (B, L) and read its pooling attention.

    Returns:
        ``(logits, weights)``: logits (B, 1) and the weights (B, L) of the pooling query (they carry
        gradients), or ``None`` for a model that does not pool with attention (the GRU).
    """
    if isinstance(model, PoolsWithAttention):
        return model(X, need_weights=True)
    return model(X), None


class Count(Experiment):
    """Binary classification of digit sequences: more 2s than 4s?"""

    spec = SPEC



    def data(self, seed: int) -> DataSplits:
        """Three independent splits; split k is drawn from seed ``3·seed + k``."""
        c = self.config
        splits = []
        for k, n in enumerate((c.n_train, c.n_val, c.n_test)):
            X, y = make_count_batch(n, torch.Generator().manual_seed(3 * seed + k), c.seq_len)
            splits.append(TensorDataset(X, y))
        return DataSplits(*splits)

    def _objective(self, logits: Tensor, weights: Tensor | None, y: Tensor) -> tuple[Tensor, Tensor]:
        bce = F.binary_cross_entropy_with_logits(logits, y)  # sigmoid applied inside, stably
        if weights is None or self.config.entropy_weight == 0:
            return bce, bce
        return bce + self.config.entropy_weight * attention_entropy(weights), bce

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """Binary cross-entropy of the logits, plus the entropy penalty on the pooling attention."""
        X, y = batch
        logits, weights = pooling_weights(model, X)
        return self._objective(logits, weights, y)[0]

    def evaluate(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """``loss``, ``bce``, ``accuracy`` and, for attention models, ``mass_on_2_4`` (module docstring)."""
        X, y = batch
        logits, weights = pooling_weights(model, X)
        loss, bce = self._objective(logits, weights, y)
        metrics = {"loss": loss, "bce": bce, "accuracy": ((logits > 0).float() == y).float().mean()}
        if weights is not None:
            metrics["mass_on_2_4"] = mean_mass_on_2_4(weights, X)
        return metrics

    def figures(self, model: nn.Module, data: DataSplits, out_dir: Path, history: list[dict[str, float]]) -> list[Path]:
        """``count_attention.png`` (attention models) or ``count_loss.png`` (GRU)."""
        model.eval()
        n = min(self.config.figure_rows, len(data.test))
        X, y = data.test[:n]  # (n, L), (n, 1)
        with torch.no_grad():
            logits, weights = pooling_weights(model, X.to(model_device(model)))
        if weights is None:
            return [save_figure(plot_loss_only(history, "count: GRU"), out_dir / "count_loss.png")]
        with torch.no_grad():
            values = model.values(X.to(model_device(model))).cpu()  # (n, L)
        probs = torch.sigmoid(logits[:, 0]).cpu()
        labels = [f"y={int(t)} p={p:.2f}" for t, p in zip(y[:, 0].tolist(), probs.tolist(), strict=True)]
        fig = plot_count_attention(X, weights.cpu(), values, history, labels)
        return [save_figure(fig, out_dir / "count_attention.png")]

    def save_artifacts(self, model: nn.Module, data: DataSplits, run_dir: Path) -> None:
        """Write ``baselines.json``: the test accuracy of always answering the training set's majority label."""
        train_y, test_y = data.train[:][1], data.test[:][1]
        majority = float(train_y.mean() >= 0.5)
        write_baselines(run_dir, {"the majority label": {"accuracy": float((test_y == majority).float().mean())}})

    def attention_samples(self, model: nn.Module, data: DataSplits, limit: int = 4) -> list[AttentionSample]:
        """The first ``limit`` test sequences (the first rows of the figure): the pooling query over the digits
        (``pool``) and, for the Transformer, each encoder layer's digits × digits self-attention. Axis labels
        are the digits."""
        X, y = data.test[: min(limit, len(data.test))]  # (n, L), (n, 1)
        X = X.to(model_device(model))
        with torch.no_grad():
            p = torch.sigmoid(model(X)[:, 0]).cpu()  # (n,) probability of "more 2s than 4s"
        digits = X.cpu().tolist()
        titles = [f"test sequence {i}: {row.count(2)} twos, {row.count(4)} fours (label {int(t)}, p={q:.2f})"
                  for i, (row, t, q) in enumerate(zip(digits, y[:, 0].tolist(), p.tolist(), strict=True))]

        def labels(i: int, layer: str, kind: str) -> tuple[list[str], list[int]]:
            return (["query"] if kind == "pooling" else digits[i]), digits[i]

        samples = collect_attention(model, lambda: model(X), titles, labels)
        for i, sample in enumerate(samples):
            sample.in_figures = i < self.config.figure_rows
        return samples
