"""Dropout benchmark: attnlab's :class:`~attnlab.nn.Dropout` against ``torch.nn.Dropout`` on CPU.

Two measurements, each timed for both dropouts in the same run (median of repeats, see
:func:`attnlab.bench.measure.time_call`):

* ``dropout``: forward + backward of one dropout call on a (N, D) tensor, by default the shape of the patch
  forecaster's feed-forward activations in a training batch on ETTh1 (128 windows × 7 channels × 43 patches,
  d_ff 128);
* ``patch step``: one training step of ``patch_transformer`` with its ETTh1 defaults (batch 128, input 336,
  horizon 96, 7 channels: forward, MSE loss, backward, AdamW step), once as attnlab builds it and once with
  every attnlab ``Dropout`` module replaced by ``torch.nn.Dropout`` of the same probability.

It prints milliseconds per call and attnlab's speed-up, and checks that both dropouts keep the expected
fraction of elements and the mean of the input.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

import torch
from torch import Tensor, nn

from attnlab.bench.measure import time_call
from attnlab.errors import UserError
from attnlab.nn import Dropout


def _parse_shape(text: str) -> tuple[int, int]:
    try:
        rows, cols = (int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--shape must be two integers N,D such as 38528,128, got {text!r}") from None
    if rows < 1 or cols < 1:
        raise UserError(f"--shape must be two positive integers, got {text!r}")
    return rows, cols


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shape", default="38528,128", help="N,D of the tensor dropped (default: 38528,128)")
    parser.add_argument("--p", type=float, default=0.3, help="drop probability (default 0.3, the patch model's)")
    parser.add_argument("--repeats", type=int, default=10, help="measured samples per cell (default 10)")
    parser.add_argument("--budget-s", type=float, default=10.0, help="seconds of samples per cell at most")
    parser.add_argument("--no-step", action="store_true", help="skip the patch_transformer training step")


def _with_torch_dropout(model: nn.Module) -> nn.Module:
    """Replace every attnlab Dropout in ``model`` by torch's of the same probability (in place)."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, Dropout):
                setattr(module, name, nn.Dropout(child.p))
    return model


def _dropout_call(layer: nn.Module, x: Tensor) -> Callable[[], None]:
    def call() -> None:
        layer(x).sum().backward()

    return call


def _patch_step(torch_dropout: bool) -> Callable[[], None]:
    from attnlab.models.patch import PatchTransformer, PatchTransformerConfig

    torch.manual_seed(0)
    model = PatchTransformer(PatchTransformerConfig(seq_len=336, pred_len=96, n_channels=7))
    if torch_dropout:
        _with_torch_dropout(model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2.5e-4)
    x, y = torch.randn(128, 336, 7), torch.randn(128, 96, 7)  # (B, L, C), (B, H, C)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()

    return step


def run(args: argparse.Namespace) -> int:
    rows, cols = _parse_shape(args.shape)
    if not 0.0 < args.p < 1.0:
        raise UserError(f"--p must be between 0 and 1 (exclusive), got {args.p}")
    if args.repeats < 1:
        raise UserError(f"--repeats {args.repeats} is out of range; it must be at least 1")
    if not args.budget_s > 0 or not math.isfinite(args.budget_s):
        raise UserError(f"--budget-s {args.budget_s:g} is out of range; it must be a positive number of seconds")
    torch.manual_seed(0)
    x = torch.randn(rows, cols, requires_grad=True)  # (N, D)
    layers = {"torch": nn.Dropout(args.p), "attnlab": Dropout(args.p)}
    ones = torch.ones(rows, cols)
    print(f"dropout p={args.p} on CPU, {torch.get_num_threads()} threads")
    print(f"{'cell':<34}{'torch ms':>10}{'attnlab ms':>12}{'speed-up':>10}")
    ok = True
    for name, layer in layers.items():
        kept = layer(ones)
        keep_fraction, mean = (kept != 0).float().mean().item(), kept.mean().item()
        if abs(keep_fraction - (1 - args.p)) > 0.01 or abs(mean - 1) > 0.01:
            print(f"FAIL {name}: kept {keep_fraction:.4f} of the elements (expected {1 - args.p:.4f}), mean {mean:.4f}")
            ok = False
    cells: list[tuple[str, Callable[[bool], Callable[[], None]]]] = [
        (f"dropout fwd+bwd ({rows}×{cols})",
         lambda use_torch: _dropout_call(layers["torch" if use_torch else "attnlab"], x)),
    ]
    if not args.no_step:
        cells.append(("patch_transformer train step", _patch_step))
    for label, make in cells:
        ms = {}
        for use_torch in (True, False):
            timing = time_call(make(use_torch), warmup=2, repeats=args.repeats, budget_s=args.budget_s,
                               measure_memory=False)
            ms[use_torch] = timing.median_s * 1e3
        print(f"{label:<34}{ms[True]:>10.1f}{ms[False]:>12.1f}{ms[True] / ms[False]:>9.2f}×")
        sys.stdout.flush()
    return 0 if ok else 1
