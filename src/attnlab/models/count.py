"""Classifiers of digit sequences for "more 2s than 4s?": attention pooling, a Transformer, a GRU.

Every model maps X (B, L) int64 digits to one logit per sequence (B, 1); the probability of
"more 2s than 4s" is its sigmoid (the loss applies it, as ``BCEWithLogitsLoss``).

The two attention models pool the sequence with one learned query through an
:class:`attnlab.nn.Attention` layer called ``pool`` (class flag ``pools_with_attention``).
``model(X, need_weights=True)`` also returns the pooling weights (B, L), with their gradient (a
loss may penalise them), and :meth:`values` gives one scalar per position whose attention-weighted
sum is what the classifier reads, so the pooling can be drawn and measured.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnlab.catalog.count import AttentionPoolingConfig, CountGRUConfig, CountTransformerConfig
from attnlab.models.rnn import GRURegressor
from attnlab.nn.attention import Attention
from attnlab.nn.mha import check_heads
from attnlab.nn.positional import SinusoidalPositionalEncoding
from attnlab.nn.scoring import ScaledDotScore
from attnlab.nn.transformer import Encoder

VOCAB = 10  # digits 0-9


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name}={value} must be at least 1")


class AttentionPoolingClassifier(nn.Module):
    """The exercise's model: one learned query pools scalar values, a small MLP classifies the result.

    ``e_i = Embedding(x_i)`` (embed_dim), ``k_i = W_K e_i`` (attn_dim), ``v_i = W_V e_i`` (a scalar),
    ``a = softmax(q · k / √attn_dim)`` over the L positions with a learned query q,
    ``c = Σ_i a_i v_i``, logit = ``MLP(c)`` with one hidden layer of ``mlp_hidden`` ReLU units.
    Counting 2s against 4s works by attending only to 2s and 4s and giving them values of opposite
    sign: c is then (n₂ − n₄) / (n₂ + n₄).

    Args:
        config: its sizes (:class:`~attnlab.catalog.count.AttentionPoolingConfig`): ``embed_dim`` (digit
            embedding), ``attn_dim`` (query and keys), ``mlp_hidden`` (hidden units of the classifier on c).

    Forward: X (B, L) int64 → logits (B, 1); with ``need_weights=True`` → ``(logits, weights)``,
    weights (B, L) of the pooling query.
    """

    pools_with_attention = True

    def __init__(self, config: AttentionPoolingConfig) -> None:
        super().__init__()
        E, A, M = config.embed_dim, config.attn_dim, config.mlp_hidden
        _check_sizes(embed_dim=E, attn_dim=A, mlp_hidden=M)
        self.embedding = nn.Embedding(VOCAB, E)
        self.W_K = nn.Linear(E, A, bias=False)
        self.W_V = nn.Linear(E, 1, bias=False)
        self.query = nn.Parameter(torch.randn(A) / math.sqrt(A))
        self.pool = Attention(ScaledDotScore())
        self.mlp = nn.Sequential(nn.Linear(1, M), nn.ReLU(), nn.Linear(M, 1))

    def values(self, X: Tensor) -> Tensor:
        """The scalar value v_i of every position, (B, L)."""
        return self.W_V(self.embedding(X)).squeeze(-1)  # (B, L, E) -> (B, L)

    def forward(self, X: Tensor, need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        e = self.embedding(X)  # (B, L, E)
        keys = self.W_K(e)  # (B, L, A)
        values = self.W_V(e)  # (B, L, 1)
        query = self.query.expand(X.shape[0], 1, -1)  # (B, 1, A)
        context, weights = self.pool(query, keys, values, need_weights=need_weights)  # (B, 1, 1), (B, 1, L)
        logits = self.mlp(context[:, 0])  # (B, 1)
        return (logits, weights[:, 0]) if need_weights else logits


class TransformerClassifier(nn.Module):
    """Digit embedding + sinusoidal positions → Transformer encoder → one-query attention pooling → Linear.

    The pooling query is learned; the logit is ``w · Σ_i a_i h_i + b``, so :meth:`values` returns
    ``w · h_i`` per position (the pooled value is their a-weighted sum).

    Args:
        config: its hyper-parameters (:class:`~attnlab.catalog.count.CountTransformerConfig`): ``d_model``
            (model width, divisible by ``num_heads``), ``num_heads``, ``num_layers`` (encoder blocks), ``d_ff``
            (feed-forward hidden size, None = 4·d_model), ``dropout`` (in the encoder).

    Forward: X (B, L) int64 → logits (B, 1); with ``need_weights=True`` → ``(logits, weights)``,
    weights (B, L) of the pooling query.
    """

    pools_with_attention = True

    def __init__(self, config: CountTransformerConfig) -> None:
        super().__init__()
        c = config
        _check_sizes(num_layers=c.num_layers)
        check_heads(c.d_model, c.num_heads)
        self.embedding = nn.Embedding(VOCAB, c.d_model)
        self.positional = SinusoidalPositionalEncoding(c.d_model, max_len=64)
        self.encoder = Encoder(c.num_layers, c.d_model, c.num_heads, d_ff=c.d_ff, dropout=c.dropout)
        self.query = nn.Parameter(torch.randn(c.d_model) / math.sqrt(c.d_model))
        self.pool = Attention(ScaledDotScore())
        self.head = nn.Linear(c.d_model, 1)

    def _encode(self, X: Tensor) -> Tensor:
        h = self.positional(self.embedding(X) * math.sqrt(self.embedding.embedding_dim))  # (B, L, D)
        return self.encoder(h)  # (B, L, D)

    def values(self, X: Tensor) -> Tensor:
        """``w · h_i`` for every position, (B, L)."""
        return self._encode(X) @ self.head.weight[0]  # (B, L, D) @ (D,) -> (B, L)

    def forward(self, X: Tensor, need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        h = self._encode(X)  # (B, L, D)
        query = self.query.expand(X.shape[0], 1, -1)  # (B, 1, D)
        context, weights = self.pool(query, h, h, need_weights=need_weights)  # (B, 1, D), (B, 1, L)
        logits = self.head(context[:, 0])  # (B, 1)
        return (logits, weights[:, 0]) if need_weights else logits


class GRUClassifier(nn.Module):
    """Digit embedding → GRU → Linear on the last step's state → logit.

    Args:
        config: its sizes (:class:`~attnlab.catalog.count.CountGRUConfig`): ``embed_dim`` (digit embedding),
            ``hidden_dim`` (GRU state), ``num_layers`` (stacked GRU layers).

    Forward: X (B, L) int64 → logits (B, 1).
    """

    def __init__(self, config: CountGRUConfig) -> None:
        super().__init__()
        c = config
        _check_sizes(embed_dim=c.embed_dim, hidden_dim=c.hidden_dim, num_layers=c.num_layers)
        self.embedding = nn.Embedding(VOCAB, c.embed_dim)
        self.rnn = GRURegressor(c.embed_dim, c.hidden_dim, c.num_layers, output_dim=1)

    def forward(self, X: Tensor) -> Tensor:
        return self.rnn(self.embedding(X))[:, -1]  # (B, L, E) -> (B, L, 1) -> (B, 1)

