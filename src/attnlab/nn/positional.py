"""Positional encodings: sinusoidal (Vaswani / d2l), learned, and rotary (RoPE)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.nn.dropout import Dropout


def sinusoidal_table(length: int, d_model: int, base: float = 10000.0, device=None) -> Tensor:
    """The (length, d_model) table P with P[t, 2i] = sin(t / base^(2i/d)), P[t, 2i+1] = cos(same)."""
    positions = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)  # (T, 1)
    freqs = torch.pow(base, -torch.arange(0, d_model, 2, dtype=torch.float32, device=device) / d_model)
    angles = positions * freqs  # (T, ceil(d/2))
    table = torch.zeros(length, d_model, device=device)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : d_model // 2])  # odd d_model: one cosine fewer
    return table  # (T, d_model)


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal encoding of Vaswani et al. (the d2l formula) to its input.

    The table is computed for ``max_len`` positions and grows (doubling) when a longer sequence
    arrives, so any length works and nothing is truncated. It is not part of the state dict.

    Args:
        d_model: feature size D.
        max_len: positions precomputed at construction.
        dropout: dropout applied after adding the encoding.
        base: the wavelength base (10000 in the paper).

    Forward: x (B, L, D), ``offset`` = absolute position of x[:, 0] (for incremental decoding)
    → (B, L, D).
    """

    def __init__(self, d_model: int, max_len: int = 1024, dropout: float = 0.0, base: float = 10000.0) -> None:
        super().__init__()
        self.d_model = d_model
        self.base = base
        self.dropout = Dropout(dropout)
        self.register_buffer("table", sinusoidal_table(max_len, d_model, base), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        end = offset + x.shape[1]
        if end > self.table.shape[0]:
            self.table = sinusoidal_table(max(end, 2 * self.table.shape[0]), self.d_model, self.base,
                                          device=self.table.device)
        return self.dropout(x + self.table[offset:end].to(x.dtype))  # (B, L, D)


class LearnedPositionalEncoding(nn.Module):
    """A learned embedding per position, added to the input (BERT, ViT).

    Args:
        d_model: feature size D.
        max_len: number of positions learned; longer inputs raise a ValueError (a learned table
            cannot be extended — use the sinusoidal or rotary encoding for unbounded lengths).
        dropout: dropout applied after adding the encoding.

    Forward: x (B, L, D), ``offset`` → (B, L, D).
    """

    def __init__(self, d_model: int, max_len: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        end = offset + x.shape[1]
        if end > self.max_len:
            raise ValueError(
                f"position {end - 1} is beyond LearnedPositionalEncoding(max_len={self.max_len}); "
                "build it with a larger max_len, or use SinusoidalPositionalEncoding or RotaryEmbedding"
            )
        return self.dropout(x + self.embedding[offset:end])  # (B, L, D)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE, Su et al.) for queries and keys of one head.

    Pairs of features (x_i, x_{i+D/2}) at position t are rotated by angle t·θ_i with
    θ_i = base^(−2i/D), so ``q_t · k_s`` depends only on t − s. Pass it to
    :class:`~attnlab.nn.MultiHeadAttention` (``rotary=``); the cos/sin tables grow on demand.

    Args:
        dim: head size D_h (even).
        base: wavelength base.

    Forward: x (B, H, L, D_h), ``offset`` = absolute position of x[..., 0, :] → (B, H, L, D_h).
    """

    def __init__(self, dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"RotaryEmbedding needs an even head size, got {dim}")
        self.dim = dim
        self.base = base
        self._cos: Tensor | None = None
        self._sin: Tensor | None = None

    def _tables(self, end: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        if self._cos is None or self._cos.shape[0] < end or self._cos.device != device:
            length = max(end, 2 * (0 if self._cos is None else self._cos.shape[0]), 64)
            exponents = torch.arange(0, self.dim, 2, dtype=torch.float32, device=device) / self.dim
            inv_freq = torch.pow(self.base, -exponents)  # (D/2,)
            angles = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1) * inv_freq  # (T, D/2)
            angles = torch.cat([angles, angles], dim=-1)  # (T, D)
            self._cos, self._sin = angles.cos(), angles.sin()
        return self._cos.to(dtype), self._sin.to(dtype)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        L = x.shape[-2]
        cos, sin = self._tables(offset + L, x.device, x.dtype)
        cos, sin = cos[offset : offset + L], sin[offset : offset + L]  # (L, D_h)
        half = self.dim // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)  # (B, H, L, D_h)
        return x * cos + rotated * sin

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base}"


