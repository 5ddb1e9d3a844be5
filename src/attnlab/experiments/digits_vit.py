"""``digits_vit``: a Vision Transformer on scikit-learn's 8×8 digits, against an MLP baseline.

The images come with scikit-learn (no download); the train / validation / test split is stratified
and fixed by the seed, and training images get small random rotations, zooms and sub-pixel shifts
(the ViT overfits the 1257 training images without them). The loss is label-smoothed cross-entropy.
The metric is test ``accuracy``. Figures: the test confusion matrix, and for the ViT, the class
token's attention over the patches in the last block (mean over heads) next to each digit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.catalog.digits_vit import SPEC
from attnlab.data.digits import NUM_CLASSES, RandomAffine, digit_splits
from attnlab.errors import UserError
from attnlab.experiments.base import DataSplits, Experiment, model_device
from attnlab.models.vit import ViT, class_token_attention
from attnlab.nn.maps import AttentionSample, collect_attention
from attnlab.report.files import write_baselines
from attnlab.viz.digits_vit import plot_class_token_attention, plot_confusion
from attnlab.viz.heatmaps import save_figure


class DigitsViT(Experiment):
    """Classify 8×8 digits with a ViT or an MLP."""

    spec = SPEC



    def data(self, seed: int) -> DataSplits:
        c = self.config
        augment = RandomAffine(c.rotate_deg, c.scale, c.translate_px)
        try:
            train, val, test = digit_splits(c.val_fraction, c.test_fraction, seed, augment)
        except ValueError as err:
            raise UserError(f"digits_vit: {err}") from None
        return DataSplits(train, val, test)

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        images, labels = batch
        return F.cross_entropy(model(images), labels, label_smoothing=self.config.label_smoothing)

    def evaluate(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """Cross-entropy ``loss`` and ``accuracy`` (share of correctly classified images)."""
        images, labels = batch
        logits = model(images)  # (B, classes)
        accuracy = (logits.argmax(dim=-1) == labels).float().mean()
        return {"loss": F.cross_entropy(logits, labels), "accuracy": accuracy}

    def figures(self, model: nn.Module, data: DataSplits, out_dir: Path, history: list[dict[str, float]]) -> list[Path]:
        """``digits_confusion.png`` (test set) and, for the ViT, ``digits_cls_attention.png``
        (one test digit of each class with the class token's last-block attention over patches)."""
        test = data.test
        device = model_device(model)
        model.eval()
        with torch.no_grad():
            predicted = torch.cat([model(test.images[i : i + 256].to(device)).argmax(-1).cpu()
                                   for i in range(0, len(test), 256)])  # (N,)
        confusion = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long)
        confusion.index_put_((test.labels, predicted), torch.ones_like(predicted), accumulate=True)
        accuracy = (predicted == test.labels).float().mean().item()
        paths = [save_figure(plot_confusion(confusion, title=f"test accuracy {accuracy:.2%}"),
                             out_dir / "digits_confusion.png")]
        if isinstance(model, ViT):
            picks = [int((test.labels == k).nonzero()[0, 0]) for k in range(NUM_CLASSES) if (test.labels == k).any()]
            images = test.images[picks]  # (n, 1, 8, 8)
            _, attention = class_token_attention(model, images.to(device))  # (n, g, g)
            titles = [f"label {int(test.labels[i])} → {int(predicted[i])}" for i in picks]
            fig = plot_class_token_attention(images, attention, titles, pairs_per_row=5)
            paths.append(save_figure(fig, out_dir / "digits_cls_attention.png"))
        return paths

    def save_artifacts(self, model: nn.Module, data: DataSplits, run_dir: Path) -> None:
        """Write ``baselines.json``: the test accuracy of always answering the training set's most common digit."""
        majority = int(torch.bincount(data.train.labels, minlength=NUM_CLASSES).argmax())
        accuracy = float((data.test.labels == majority).float().mean())
        write_baselines(run_dir, {"the most common digit": {"accuracy": accuracy}})

    def attention_samples(self, model: nn.Module, data: DataSplits, limit: int = 4) -> list[AttentionSample]:
        """For the ViT, one test image of each of the first ``limit`` classes (the figure's first digits): every
        block's self-attention over the class token (``cls``) and the patches (``p5 (r1,c1)``: patch 5, grid
        row 1, column 1)."""
        if not isinstance(model, ViT):
            return []
        test = data.test
        picks = [int((test.labels == k).nonzero()[0, 0]) for k in range(NUM_CLASSES) if (test.labels == k).any()]
        picks = picks[:limit]
        images = test.images[picks].to(model_device(model))  # (n, 1, 8, 8)
        with torch.no_grad():
            predicted = model(images).argmax(-1).tolist()
        g = model.grid_size
        tokens = ["cls"] + [f"p{n} (r{n // g},c{n % g})" for n in range(g * g)]
        titles = [f"test image {i}: label {int(test.labels[i])} → predicted {p}"
                  for i, p in zip(picks, predicted, strict=True)]
        samples = collect_attention(model, lambda: model(images), titles, lambda *_: (tokens, tokens))
        for sample in samples:
            sample.in_figures = True  # the class-token figure draws one test image of every class
        return samples
