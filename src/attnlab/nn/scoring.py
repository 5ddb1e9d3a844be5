"""Attention scoring functions: how much should query q look at key k?

Every score module maps queries (B, Q, d_q) and keys (B, K, d_k) to scores (B, Q, K). Softmax of
the scores over K gives the attention weights (:func:`attnlab.nn.masked_softmax`).

==================  =======================================  ========================
score               formula                                  sizes
==================  =======================================  ========================
``DotScore``        q · k                                    d_q = d_k
``ScaledDotScore``  q · k / √d                               d_q = d_k
``AdditiveScore``   wᵥᵀ tanh(W_q q + W_k k)  (Bahdanau)       any d_q, d_k
``GeneralScore``    qᵀ W k                   (Luong)          any d_q, d_k
``KernelScore``     log κ(‖q − k‖ / σ)      (Nadaraya–Watson) d_q = d_k (or scalars)
==================  =======================================  ========================
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _check_same_dim(name: str, queries: Tensor, keys: Tensor) -> None:
    if queries.shape[-1] != keys.shape[-1]:
        raise ValueError(
            f"{name} needs queries and keys of the same size, got {queries.shape[-1]} and {keys.shape[-1]}; "
            "use GeneralScore or AdditiveScore for different sizes"
        )


class DotScore(nn.Module):
    """Dot-product score ``q · k``. queries (B, Q, d), keys (B, K, d) → (B, Q, K)."""

    def forward(self, queries: Tensor, keys: Tensor) -> Tensor:
        _check_same_dim("DotScore", queries, keys)
        return queries @ keys.transpose(-2, -1)  # (B, Q, K)


class ScaledDotScore(nn.Module):
    """Scaled dot-product score ``q · k / √d`` (Vaswani et al.). (B, Q, d), (B, K, d) → (B, Q, K)."""

    def forward(self, queries: Tensor, keys: Tensor) -> Tensor:
        _check_same_dim("ScaledDotScore", queries, keys)
        return queries @ keys.transpose(-2, -1) / math.sqrt(queries.shape[-1])  # (B, Q, K)


class AdditiveScore(nn.Module):
    """Additive (Bahdanau) score ``wᵥᵀ tanh(W_q q + W_k k)``.

    Args:
        query_dim: d_q.
        key_dim: d_k (may differ from d_q).
        hidden_dim: size h of the tanh layer.

    Shapes: queries (B, Q, d_q), keys (B, K, d_k) → (B, Q, K). Memory is O(B·Q·K·h).
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.W_q = nn.Linear(query_dim, hidden_dim, bias=False)
        self.W_k = nn.Linear(key_dim, hidden_dim, bias=False)
        self.w_v = nn.Linear(hidden_dim, 1, bias=False)

    def forward(self, queries: Tensor, keys: Tensor) -> Tensor:
        q = self.W_q(queries).unsqueeze(2)  # (B, Q, 1, h)
        k = self.W_k(keys).unsqueeze(1)  # (B, 1, K, h)
        return self.w_v(torch.tanh(q + k)).squeeze(-1)  # (B, Q, K, 1) -> (B, Q, K)


class GeneralScore(nn.Module):
    """General (Luong) score ``qᵀ W k`` with a learned (d_q, d_k) matrix W.

    Shapes: queries (B, Q, d_q), keys (B, K, d_k) → (B, Q, K).
    """

    def __init__(self, query_dim: int, key_dim: int) -> None:
        super().__init__()
        self.W = nn.Linear(key_dim, query_dim, bias=False)  # k -> W k, of size d_q

    def forward(self, queries: Tensor, keys: Tensor) -> Tensor:
        return queries @ self.W(keys).transpose(-2, -1)  # (B, Q, d_q) @ (B, d_q, K) -> (B, Q, K)


KERNELS = ("gaussian", "boxcar", "constant", "epanechikov")


class KernelScore(nn.Module):
    """Nadaraya–Watson kernel as an attention score: ``log κ(‖q − k‖ / σ)``.

    Softmax of these scores over the keys is exactly the Nadaraya–Watson weight
    ``κ(‖q − kᵢ‖/σ) / Σⱼ κ(‖q − kⱼ‖/σ)``. Kernels with bounded support (boxcar, Epanechikov) give
    ``-inf`` outside it; a query with no key inside the support gets all-zero weights.

    =============  ============================
    kernel         κ(u)
    =============  ============================
    gaussian       exp(−u²/2)
    boxcar         1 if |u| ≤ 1 else 0
    constant       1 (plain averaging)
    epanechikov    max(0, 1 − u²)
    =============  ============================

    Args:
        kernel: one of ``gaussian``, ``boxcar``, ``constant``, ``epanechikov``.
        sigma: kernel width σ > 0.
        learnable: learn σ by gradient descent (stored as log σ so it stays positive).

    Shapes: queries (B, Q) or (B, Q, d), keys (B, K) or (B, K, d) → (B, Q, K).
    """

    def __init__(self, kernel: str = "gaussian", sigma: float = 1.0, learnable: bool = False) -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
        if not sigma > 0:
            raise ValueError(f"kernel width sigma must be > 0, got {sigma}")
        self.kernel = kernel
        log_sigma = torch.tensor(math.log(sigma))
        if learnable:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)

    @property
    def sigma(self) -> Tensor:
        return self.log_sigma.exp()

    def forward(self, queries: Tensor, keys: Tensor) -> Tensor:
        if queries.dim() == 2:
            queries = queries.unsqueeze(-1)  # (B, Q, 1)
        if keys.dim() == 2:
            keys = keys.unsqueeze(-1)  # (B, K, 1)
        _check_same_dim("KernelScore", queries, keys)
        diff = queries.unsqueeze(2) - keys.unsqueeze(1)  # (B, Q, K, d)
        sq_dist = diff.pow(2).sum(-1)  # (B, Q, K)
        u2 = sq_dist / self.sigma.to(sq_dist.dtype) ** 2  # (‖q − k‖ / σ)²
        if self.kernel == "gaussian":
            return -u2 / 2
        if self.kernel == "constant":
            return torch.zeros_like(u2)
        inside = u2 <= 1
        if self.kernel == "boxcar":
            return torch.zeros_like(u2).masked_fill(~inside, float("-inf"))
        # Epanechikov: log(1 − u²) inside the support; keep log away from 0 so gradients stay finite.
        safe = torch.where(inside, 1 - u2, torch.ones_like(u2)).clamp_min(torch.finfo(u2.dtype).tiny)
        return torch.log(safe).masked_fill(~inside, float("-inf"))

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, sigma={self.sigma.item():.4g}, learnable={self.log_sigma.requires_grad}"
