"""Synthetic tasks of the seeds: next-step prediction of sinusoids, and "more 2s than 4s" digit counting.

Every generator takes a ``torch.Generator``, so a task is deterministic given its seed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.data import Dataset

# ---------------------------------------------------------------------------------------------- sine


def make_sines(
    n: int,
    generator: torch.Generator,
    min_len: int = 60,
    max_len: int = 300,
    min_period: float = 40.0,
    max_period: float = 120.0,
    noise_std: float = 0.0,
) -> list[Tensor]:
    """Sinusoids ``sin(ω t + φ) + ε`` with random length, frequency and phase.

    Each series has ``L + 1`` points with ``L`` uniform in ``[min_len, max_len]``: ``L`` inputs and
    their ``L`` next-step targets. The frequency ``ω / 2π`` is uniform between ``1 / max_period``
    and ``1 / min_period`` (cycles per step), the phase φ uniform in [0, 2π), the noise ε Gaussian
    with std ``noise_std`` (0 = clean).

    Returns:
        ``n`` float32 tensors of shapes (L_i + 1,).
    """
    if n < 0:
        raise ValueError(f"number of series must be >= 0, got {n}")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    if not 2.0 <= min_period <= max_period:
        raise ValueError(
            f"need 2 <= min_period <= max_period (a period under 2 steps aliases), got {min_period}, {max_period}"
        )
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=generator)  # (N,)
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    cycles = 1.0 / max_period + u * (1.0 / min_period - 1.0 / max_period)  # (N,) cycles per step
    omega = 2 * math.pi * cycles
    phase = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)  # (N,)
    t = torch.arange(max_len + 1, dtype=torch.float64)  # (T,)
    table = torch.sin(omega[:, None] * t + phase[:, None])  # (N, T)
    noise = torch.randn(table.shape, generator=generator, dtype=torch.float64)
    table = (table + noise_std * noise).float()
    return [table[i, : int(lengths[i]) + 1].clone() for i in range(n)]


class SeriesDataset(Dataset):
    """A list of 1-D series of different lengths; item i is series i, (L_i + 1,)."""

    def __init__(self, series: list[Tensor]) -> None:
        self.series = series

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, index: int) -> Tensor:
        return self.series[index]


def collate_next_step(batch: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Pad series into a next-step batch.

    Args:
        batch: B series, (L_i + 1,) each.

    Returns:
        ``(x, y, lengths)``: inputs x (B, L, 1) with x[b, t] = s_b[t], targets y (B, L, 1) with
        y[b, t] = s_b[t + 1], both zero beyond ``lengths[b] = L_b`` (L = max L_b), lengths (B,) int64.
    """
    lengths = torch.tensor([len(s) - 1 for s in batch], dtype=torch.long)  # (B,)
    if (lengths < 1).any():
        raise ValueError("every series needs at least 2 points (one input and its next-step target)")
    L = int(lengths.max())
    x = torch.zeros(len(batch), L, 1)
    y = torch.zeros(len(batch), L, 1)
    for b, s in enumerate(batch):
        n = len(s) - 1
        x[b, :n, 0] = s[:-1]
        y[b, :n, 0] = s[1:]
    return x, y, lengths


# --------------------------------------------------------------------------------------------- count

DIGITS = 10


def make_count_batch(n: int, generator: torch.Generator, seq_len: int = 10) -> tuple[Tensor, Tensor]:
    """The "more 2s than 4s" task: uniform random digits; label 1 iff the sequence holds more 2s than 4s.

    Returns:
        ``(X, y)``: X (n, seq_len) int64 digits 0–9; y (n, 1) float32 in {0, 1}.
    """
    if n < 0 or seq_len < 1:
        raise ValueError(f"need n >= 0 and seq_len >= 1, got n={n}, seq_len={seq_len}")
    X = torch.randint(0, DIGITS, (n, seq_len), generator=generator)  # (n, seq_len)
    y = ((X == 2).sum(dim=1) > (X == 4).sum(dim=1)).float().unsqueeze(1)  # (n, 1)
    return X, y


make_batch = make_count_batch  # the exercise's name: make_batch(N, generator) -> X (N, 10), y (N, 1)
