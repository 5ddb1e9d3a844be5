"""Nadaraya–Watson kernel regression as attention pooling (d2l, "Attention Pooling").

The prediction at a query x is ``Σᵢ κ((x − xᵢ)/σ) yᵢ / Σⱼ κ((x − xⱼ)/σ)``: attention whose keys are
the training inputs xᵢ, whose values are the training targets yᵢ and whose score is
:class:`attnlab.nn.KernelScore`. With a fixed σ there is nothing to train; with a learned σ, each
training point must be predicted from the *other* points (leave-one-out), otherwise every point
attends to itself and σ shrinks towards 0 (interpolating the noise).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from attnlab.catalog.kernel_regression import LearnedNadarayaWatsonConfig, NadarayaWatsonConfig
from attnlab.nn import Attention, KernelScore


class NadarayaWatson(nn.Module):
    """Nadaraya–Watson regression with a fixed kernel and width: attention pooling of training targets with a
    kernel score (no parameters; :class:`LearnedNadarayaWatson` learns the width).

    Args:
        config: ``kernel`` (gaussian | boxcar | constant | epanechikov; a ValueError lists them otherwise) and
            width ``sigma`` (:class:`~attnlab.catalog.kernel_regression.NadarayaWatsonConfig`).

    Forward: queries (Q,) or (B, Q); keys and values (K,) or (B, K) (the training inputs and
    targets); ``mask`` bool (Q, K) or (B, Q, K), True = the query may attend that key →
    predictions (Q,) or (B, Q). A query with no key inside the kernel's support predicts 0.
    The pooling module is ``self.attention`` (:func:`attnlab.nn.record_attention` records its
    (B, Q, K) weights).
    """

    learns_sigma: ClassVar[bool] = False  # σ is a parameter (stored as log σ), trained by gradient descent

    def __init__(self, config: NadarayaWatsonConfig | LearnedNadarayaWatsonConfig) -> None:
        super().__init__()
        self.attention = Attention(KernelScore(config.kernel, config.sigma, self.learns_sigma))

    @property
    def kernel(self) -> str:
        return self.attention.score.kernel

    @property
    def sigma(self) -> Tensor:
        """The kernel width σ (a 0-d tensor)."""
        return self.attention.score.sigma

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None = None) -> Tensor:
        single = queries.dim() == 1
        if single:
            queries, keys, values = queries[None], keys[None], values[None]  # (1, Q), (1, K), (1, K)
            mask = None if mask is None else mask[None]  # (1, Q, K)
        prediction, _ = self.attention(queries, keys, values, mask=mask)  # (B, Q)
        return prediction[0] if single else prediction


class LearnedNadarayaWatson(NadarayaWatson):
    """Nadaraya–Watson regression whose kernel width σ is learned (one parameter, stored as log σ; train it
    leave-one-out, see :func:`leave_one_out_mask`).

    Args:
        config: ``kernel`` and the initial width ``sigma``
            (:class:`~attnlab.catalog.kernel_regression.LearnedNadarayaWatsonConfig`).

    Forward: as :class:`NadarayaWatson`.
    """

    learns_sigma = True

    def __init__(self, config: LearnedNadarayaWatsonConfig) -> None:
        super().__init__(config)


def leave_one_out_mask(key_index: Tensor, num_keys: int) -> Tensor:
    """Mask that hides each query's own key.

    Args:
        key_index: (Q,) position of each query among the keys, or −1 for a query that is not a key.
        num_keys: K.

    Returns:
        (Q, K) bool, True = may attend; row q is False only at column ``key_index[q]``.
    """
    return torch.arange(num_keys, device=key_index.device)[None, :] != key_index[:, None]  # (Q, K)

