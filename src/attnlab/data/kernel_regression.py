"""Data for Nadaraya–Watson kernel regression (d2l, "Attention Pooling"): y = 2 sin x + x + ε.

Training: ``n_train`` inputs drawn uniformly in [0, 5] and sorted, with noisy targets
(ε ~ N(0, noise²), noise = 0.5 as in d2l). The training points are also the keys and values of
the attention pooling, so every batch carries all of them (see :class:`CollateWithKeys`).

Held out (both with the noise-free f(x), so the MSE measures how far the estimate is from the
function itself, not from noise the estimator cannot predict):

* validation: ``n_val`` points on the grid 0, 0.1, …, 4.9 (d2l's ``x_val = arange(0, 5, 0.1)``);
* test: ``n_test`` fresh uniform points in [0, 5].
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

X_MAX = 5.0


def true_function(x: Tensor) -> Tensor:
    """f(x) = 2 sin x + x."""
    return 2 * torch.sin(x) + x


class RegressionPoints(Dataset):
    """Points (x, y) of one split plus the training set that every query attends over.

    Item i is ``(x_i, y_i, key_index_i)``: ``key_index`` is the position of x_i among the
    training keys (so leave-one-out can hide it), or −1 for a held-out point.

    Attributes:
        x, y: (N,) inputs and targets of the split.
        keys, values: (K,) the training inputs and targets.
    """

    def __init__(self, x: Tensor, y: Tensor, keys: Tensor, values: Tensor, is_train: bool) -> None:
        self.x, self.y, self.keys, self.values = x, y, keys, values
        self.key_index = torch.arange(len(x)) if is_train else torch.full((len(x),), -1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        return self.x[i], self.y[i], self.key_index[i]


class CollateWithKeys:
    """Collate function: batches are ``(x, y, key_index, keys, values)`` with x, y, key_index (B,)
    and the training keys and values (K,) that every query attends over. (A class, not a closure,
    so DataLoader workers can pickle it.)"""

    def __init__(self, keys: Tensor, values: Tensor) -> None:
        self.keys, self.values = keys, values

    def __call__(self, items: list[tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        x, y, index = (torch.stack(column) for column in zip(*items, strict=True))  # 3 × (B,)
        return x, y, index, self.keys, self.values


def regression_splits(
    n_train: int, n_val: int, n_test: int, noise: float, seed: int
) -> tuple[RegressionPoints, RegressionPoints, RegressionPoints]:
    """Train / validation / test splits (see the module docstring), deterministic for a given seed."""
    generator = torch.Generator().manual_seed(seed)
    x_train, _ = torch.sort(torch.rand(n_train, generator=generator) * X_MAX)  # (n_train,)
    y_train = true_function(x_train) + noise * torch.randn(n_train, generator=generator)
    x_val = torch.arange(n_val, dtype=torch.float32) * (X_MAX / n_val)  # grid 0, 0.1, …, 4.9 for n_val = 50
    x_test = torch.rand(n_test, generator=generator) * X_MAX
    train = RegressionPoints(x_train, y_train, x_train, y_train, is_train=True)
    val = RegressionPoints(x_val, true_function(x_val), x_train, y_train, is_train=False)
    test = RegressionPoints(x_test, true_function(x_test), x_train, y_train, is_train=False)
    return train, val, test
