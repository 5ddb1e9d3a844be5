"""Dropout that is fast on CPU.

``torch.nn.Dropout`` on CPU draws one Bernoulli sample per element (``bernoulli_``), which is slow:
``attnlab bench dropout`` times its forward + backward on the patch forecaster's feed-forward activations
(38,528 × 128 per batch) at 54.7 ms on the project's 2-core machine. :func:`fast_dropout` draws 64 random bits per
four elements instead (``random_`` on an int64 tensor) and keeps an element when its 16 bits fall under the keep
probability: 16.0 ms for the same call (3.4 times faster), and a patch forecaster training step 1.56 times faster.

The keep probability is rounded to a multiple of 2⁻¹⁶ (``p = 0.3`` drops with probability 0.300003) and the kept
values are scaled by the inverse of the rounded probability, so the output's expectation is exactly the input,
as with torch's dropout. Off the CPU (CUDA has a fused kernel) it calls ``torch.nn.functional.dropout``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LEVELS = 1 << 16  # the resolution of the keep probability: one 16-bit draw per element
_INT16_MIN = -(1 << 15)


def keep_level(p: float) -> int:
    """How many of the 2¹⁶ values of a 16-bit draw keep an element when dropping with probability ``p``."""
    return round((1.0 - p) * _LEVELS)


def check_probability(p: float) -> None:
    """Raise a ValueError unless ``p`` is a probability (0 ≤ p ≤ 1), as ``torch.nn.Dropout`` does."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be between 0 and 1, got {p}")


def fast_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Zero each element of ``x`` with probability ``p`` and scale the rest by 1 / (1 − p): any shape → same shape.

    Draws from torch's default generator (so ``torch.manual_seed`` makes it repeatable). Gradients flow through
    the kept elements, scaled the same way.
    """
    check_probability(p)
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    level = keep_level(p)
    if level == 0:
        return x * 0.0
    if level >= _LEVELS:
        return x
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(1 << 63), (1 << 63) - 1)  # 4 draws per int64
    draws = bits.view(torch.int16)[:n].view(x.shape)  # (*x.shape) uniform over the 2¹⁶ int16 values
    mask = (draws < _INT16_MIN + level).to(x.dtype).mul_(_LEVELS / level)  # (*x.shape): 0 or 1 / keep-probability
    return x * mask


class Dropout(nn.Module):
    """A drop-in for ``torch.nn.Dropout`` using :func:`fast_dropout`: (*) → (*), the identity in eval mode."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        check_probability(p)
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return fast_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
