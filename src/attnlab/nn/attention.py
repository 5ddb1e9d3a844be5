"""Attention pooling with any scoring function: ``softmax(score(q, k)) · v``."""

from __future__ import annotations

from torch import Tensor, nn

from attnlab.nn.dropout import Dropout
from attnlab.nn.masking import masked_softmax


class Attention(nn.Module):
    """Attention pooling: ``context = softmax(score(queries, keys)) · values``.

    Args:
        score: a scoring module mapping (B, Q, d_q), (B, K, d_k) to (B, Q, K), e.g.
            :class:`~attnlab.nn.ScaledDotScore`, :class:`~attnlab.nn.AdditiveScore` or
            :class:`~attnlab.nn.KernelScore`.
        dropout: dropout on the attention weights (training only).

    Forward:
        queries (B, Q, d_q); keys (B, K, d_k); values (B, K, d_v) (for kernel scores, queries and
        keys may be (B, Q) and (B, K), values (B, K)); ``mask`` bool broadcastable to (B, Q, K),
        True = attend; ``valid_lens`` (B,) or (B, Q).

    Returns:
        ``(context, weights)``: context (B, Q, d_v) (or (B, Q) for (B, K) values), weights
        (B, Q, K) if ``need_weights`` else ``None``. A query with no key to attend gets a zero
        context.
    """

    def __init__(self, score: nn.Module, dropout: float = 0.0) -> None:
        super().__init__()
        self.score = score
        self.dropout = Dropout(dropout)
        self.recorder = None  # set by attnlab.nn.record_attention

    def forward(
        self,
        queries: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor | None = None,
        valid_lens: Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        scores = self.score(queries, keys)  # (B, Q, K)
        weights = masked_softmax(scores, mask=mask, valid_lens=valid_lens)  # (B, Q, K)
        if self.recorder is not None:
            self.recorder(weights.detach())
        if values.dim() == 2:
            context = (self.dropout(weights) @ values.unsqueeze(-1)).squeeze(-1)  # (B, Q)
        else:
            context = self.dropout(weights) @ values  # (B, Q, d_v)
        return context, (weights if need_weights else None)
