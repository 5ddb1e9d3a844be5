"""``kernel_regression``: Nadaraya–Watson pooling on y = 2 sin x + x + noise (d2l, "Attention Pooling").

Attention from first principles: the training points are keys (inputs) and values (targets), a
query is a new input, and the kernel κ((x − xᵢ)/σ) is the score. ``nadaraya_watson`` uses a fixed
kernel and width (nothing to train: the engine only evaluates it); ``nadaraya_watson_learned``
fits σ by gradient descent with leave-one-out (each training point is predicted from the others).

The metric ``mse`` is the validation MSE against the noise-free f on the grid 0, 0.1, …, 4.9 (the
test split: fresh uniform points, also noise-free). Every evaluation also reports the sweep of the
four kernels × σ ∈ {0.1, 0.2, 0.5, 1} as ``mse_<kernel>_s<σ>``, so one run compares the model
with all 16 fixed choices; the figures plot the fits, the attention matrices and the sweep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.catalog.kernel_regression import SPEC, NadarayaWatsonConfig
from attnlab.data.kernel_regression import X_MAX, CollateWithKeys, regression_splits, true_function
from attnlab.errors import UserError
from attnlab.experiments.base import DataSplits, Experiment, model_device
from attnlab.models.kernel_regression import (
    NadarayaWatson,
    leave_one_out_mask,
)
from attnlab.nn import KERNELS, record_attention
from attnlab.nn.maps import AttentionSample, record_maps, samples_from_maps
from attnlab.viz.heatmaps import save_figure, show_heatmaps
from attnlab.viz.kernel_regression import plot_fits, plot_sweep

SWEEP_SIGMAS = (0.1, 0.2, 0.5, 1.0)


def sweep_key(kernel: str, sigma: float) -> str:
    """Metric name of one fixed kernel and width, e.g. ``mse_gaussian_s0.5``."""
    return f"mse_{kernel}_s{sigma:g}"


class KernelRegression(Experiment):
    """Nadaraya–Watson kernel regression with fixed and learned kernel widths."""

    spec = SPEC



    def __init__(self, config: Any) -> None:
        super().__init__(config)
        # The 16 fixed models every evaluation compares with (no parameters, nothing to save).
        self.sweep = {sweep_key(k, s): NadarayaWatson(NadarayaWatsonConfig(k, s)) for k in KERNELS
                      for s in SWEEP_SIGMAS}

    def data(self, seed: int) -> DataSplits:
        c = self.config
        if c.n_train < 2 or min(c.n_val, c.n_test) < 1 or c.noise < 0:
            raise UserError(f"kernel_regression needs n_train >= 2 (leave-one-out), n_val, n_test >= 1 and noise >= 0, "
                            f"got n_train={c.n_train} n_val={c.n_val} n_test={c.n_test} noise={c.noise}")
        train, val, test = regression_splits(c.n_train, c.n_val, c.n_test, c.noise, seed)
        return DataSplits(train, val, test, collate_fn=CollateWithKeys(train.keys, train.values))

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """MSE of the predictions; a training point never attends to itself (leave-one-out)."""
        x, y, key_index, keys, values = batch
        mask = leave_one_out_mask(key_index, keys.shape[0])  # (B, K); all True for held-out points
        return F.mse_loss(model(x, keys, values, mask), y)

    def evaluate(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """``mse`` of the model (= ``loss`` on held-out points), its width ``sigma``, and the MSE
        of each of the 16 fixed kernels and widths (``mse_<kernel>_s<σ>``)."""
        x, y, key_index, keys, values = batch
        mask = leave_one_out_mask(key_index, keys.shape[0])
        mse = F.mse_loss(model(x, keys, values, mask), y)
        metrics = {"loss": mse, "mse": mse}
        if isinstance(model, NadarayaWatson):
            metrics["sigma"] = model.sigma.detach()
        for key, fixed in self.sweep.items():
            metrics[key] = F.mse_loss(fixed.to(x.device)(x, keys, values, mask), y)
        return metrics

    def figures(self, model: nn.Module, data: DataSplits, out_dir: Path, history: list[dict[str, float]]) -> list[Path]:
        """``kernel_fits.png`` (curves of every kernel and width, and of the model),
        ``kernel_attention.png`` (validation queries × training keys, per kernel and width),
        ``kernel_model_attention.png`` (the model's weights) and ``kernel_sweep.png`` (validation MSE
        of the 16 fixed choices and of the model)."""
        val = data.val
        device = model_device(model)
        x, f, keys, values = val.x.to(device), val.y.to(device), val.keys.to(device), val.values.to(device)
        dense = torch.linspace(0.0, X_MAX, 250, device=device)  # smooth curves for the fits figure
        model.eval()
        with torch.no_grad():
            with record_attention(model) as record:
                prediction = model(x, keys, values)  # (Q,)
            model_weights = record.last()["attention"][0]  # (Q, K)
            label = _describe(model)
            panels: dict[str, dict[str, Tensor]] = {f"{k} kernel": {} for k in KERNELS}
            fixed_weights = []
            mse = {f"model: {label}": float(F.mse_loss(prediction, f))}  # distinct from an equal fixed choice
            for kernel in KERNELS:
                for sigma in SWEEP_SIGMAS:
                    fixed = self.sweep[sweep_key(kernel, sigma)].to(device)
                    with record_attention(fixed) as rec:
                        mse[f"{kernel} σ={sigma:g}"] = float(F.mse_loss(fixed(x, keys, values), f))
                    fixed_weights.append(rec.last()["attention"][0])  # (Q, K)
                    panels[f"{kernel} kernel"][f"σ={sigma:g}"] = fixed(dense, keys, values)
            panels[f"model: {label}"] = {label: model(dense, keys, values)}
        fig = plot_fits(keys, values, dense, true_function(dense), panels)
        paths = [save_figure(fig, out_dir / "kernel_fits.png")]

        grid = torch.stack(fixed_weights).reshape(len(KERNELS), len(SWEEP_SIGMAS), *model_weights.shape)
        titles = [f"{k}, σ={s:g}" for k in KERNELS for s in SWEEP_SIGMAS]
        fig = show_heatmaps(grid, xlabel="training keys (sorted x)", ylabel="validation queries", titles=titles)
        paths.append(save_figure(fig, out_dir / "kernel_attention.png"))
        fig = show_heatmaps(model_weights, xlabel="training keys (sorted x)", ylabel="validation queries",
                            titles=[label], figsize=(5.0, 4.0))
        paths.append(save_figure(fig, out_dir / "kernel_model_attention.png"))

        mine = f"model: {label}"
        fig = plot_sweep(mse, highlight=mine)
        worse = sum(v > mse[mine] for k, v in mse.items() if k != mine)
        fig.axes[0].set_title(f"{label}: better than {worse} of {len(mse) - 1} fixed kernel/width choices", fontsize=9)
        paths.append(save_figure(fig, out_dir / "kernel_sweep.png"))
        return paths


    def attention_samples(self, model: nn.Module, data: DataSplits, limit: int = 4) -> list[AttentionSample]:
        """Two examples (within ``limit``): the validation grid and the test queries (sorted by x), each
        over all training keys; axes are the x values, rounded to 2 decimals."""
        device = model_device(model)
        keys, values = data.val.keys.to(device), data.val.values.to(device)  # (K,) sorted training points
        key_labels = [f"{k:.2f}" for k in data.val.keys.tolist()]
        sets = [("validation grid", data.val.x), ("test queries, sorted", torch.sort(data.test.x).values)]
        samples: list[AttentionSample] = []
        for name, x in sets[:limit]:
            _, maps = record_maps(model, lambda x=x: model(x.to(device), keys, values))
            title = f"{name}: {len(x)} queries × {len(key_labels)} training keys ({_describe(model)})"
            query_labels = [f"{q:.2f}" for q in x.tolist()]
            samples += samples_from_maps(maps, [title], lambda *_, q=query_labels: (q, key_labels))
        if samples:
            samples[0].in_figures = True  # kernel_model_attention.png draws the validation grid
        return samples


def _describe(model: nn.Module) -> str:
    if isinstance(model, NadarayaWatson):
        learned = model.attention.score.log_sigma.requires_grad
        return f"{model.kernel} σ={model.sigma.item():.3g}" + (" (learned)" if learned else "")
    return type(model).__name__
