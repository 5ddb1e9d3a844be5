"""Corners of squares: the sequence-to-sequence toy task of Godoy's *Deep Learning with PyTorch
Step-by-Step* (ch. 9).

Each sequence is the four corners of the square with corners (±1, ±1), drawn clockwise or
counter-clockwise from a random first corner, plus Gaussian noise. A model sees the first two
corners and must produce the last two. The first two corners also decide the direction: from
(−1, −1), going to (−1, 1) is clockwise and going to (1, −1) is counter-clockwise.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

# The corners in clockwise order (x right, y up): bottom-left, top-left, top-right, bottom-right.
CORNERS = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, 1.0], [1.0, -1.0]])
CLOCKWISE, COUNTER_CLOCKWISE = 1, 0
DIRECTION_NAMES = {CLOCKWISE: "clockwise", COUNTER_CLOCKWISE: "counter-clockwise"}


def make_squares(n: int, noise: float = 0.1, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Draw ``n`` squares.

    Args:
        n: number of squares.
        noise: standard deviation of the Gaussian noise added to every coordinate.
        generator: random source (for reproducible data).

    Returns:
        ``(points, clean, direction)``: noisy corners (n, 4, 2), the same corners without noise
        (n, 4, 2), and the direction (n,) int64, 1 = clockwise, 0 = counter-clockwise.
    """
    first = torch.randint(4, (n,), generator=generator)  # (n,) index of the first corner
    direction = torch.randint(2, (n,), generator=generator)  # (n,)
    step = torch.where(direction == CLOCKWISE, 1, -1)  # clockwise walks CORNERS forwards
    order = (first[:, None] + step[:, None] * torch.arange(4)) % 4  # (n, 4)
    clean = CORNERS[order]  # (n, 4, 2)
    points = clean + noise * torch.randn(n, 4, 2, generator=generator)  # (n, 4, 2)
    return points, clean, direction


def signed_area(points: Tensor) -> Tensor:
    """Shoelace signed area of polygons (..., N, 2): negative when the vertices run clockwise."""
    x, y = points[..., 0], points[..., 1]
    return 0.5 * (x * y.roll(-1, dims=-1) - x.roll(-1, dims=-1) * y).sum(-1)


def square_splits(
    n_train: int, n_val: int, n_test: int, noise: float, seed: int
) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    """Train / validation / test sets of squares, deterministic for a given seed.

    Each item is ``(source, target, direction, clean_target)``: the first two noisy corners (2, 2),
    the last two noisy corners (2, 2), the direction (), and the last two corners without noise (2, 2).
    """
    generator = torch.Generator().manual_seed(seed)
    points, clean, direction = make_squares(n_train + n_val + n_test, noise, generator)
    dataset = TensorDataset(points[:, :2], points[:, 2:], direction, clean[:, 2:])
    bounds = (0, n_train, n_train + n_val, n_train + n_val + n_test)
    splits = [
        TensorDataset(*(t[lo:hi] for t in dataset.tensors)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return splits[0], splits[1], splits[2]
