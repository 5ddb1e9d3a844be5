"""Encoder–decoder models for sequences of points (the squares task): a GRU encoder–decoder
(:class:`Seq2Seq`), the same with a decoder that attends over the encoder states with one scaled
dot-product head (:class:`Seq2SeqAttention`) or several heads (:class:`MultiHeadSeq2Seq`), and a
Transformer that generates autoregressively with a KV cache (:class:`PointTransformer`). Each is built
from its config dataclass (:mod:`attnlab.catalog.squares`).

Every model maps ``source`` (B, S, P) to ``(B, T, P)`` predicted points. While training, if the
true ``target`` (B, T, P) is given, the decoder is fed true previous points (teacher forcing); in
eval mode it always runs free, feeding back its own predictions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.catalog.squares import MultiHeadSeq2SeqConfig, PointTransformerConfig, Seq2SeqConfig
from attnlab.nn import (
    Attention,
    Decoder,
    Encoder,
    MultiHeadAttention,
    ScaledDotScore,
    SinusoidalPositionalEncoding,
    check_heads,
)


class ScaledDotAttention(nn.Module):
    """The decoder's attention of Godoy's chapter 9: a projected query (the decoder state) scores
    projected keys (the encoder states) by scaled dot product; the values are the encoder states.

    Forward: query (B, Q, H), states (B, S, H) → context (B, Q, H). The pooling module is
    ``self.pool`` (an :class:`attnlab.nn.Attention`), so :func:`attnlab.nn.record_attention` sees
    its (B, Q, S) weights.
    """

    def __init__(self, hidden_dim: int) -> None:
        super().__init__()
        self.linear_query = nn.Linear(hidden_dim, hidden_dim)
        self.linear_key = nn.Linear(hidden_dim, hidden_dim)
        self.pool = Attention(ScaledDotScore())

    def forward(self, query: Tensor, states: Tensor) -> Tensor:
        return self.pool(self.linear_query(query), self.linear_key(states), states)[0]  # (B, Q, H)


class HeadsAttention(nn.Module):
    """Multi-head attention of a query over encoder states. query (B, Q, D), states (B, S, D) → (B, Q, D)."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.mha = MultiHeadAttention(d_model, num_heads)

    def forward(self, query: Tensor, states: Tensor) -> Tensor:
        return self.mha(query, states, states)[0]  # (B, Q, D)


def _num_steps(target: Tensor | None, steps: int | None, default: int) -> int:
    if steps is not None:
        return steps
    return default if target is None else target.shape[1]


class PointSeq2Seq(nn.Module):
    """GRU encoder–decoder on points, optionally attending over the encoder states (the building block of
    :class:`Seq2Seq`, :class:`Seq2SeqAttention` and :class:`MultiHeadSeq2Seq`).

    The encoder GRU reads the (embedded) source points; its last hidden state starts the decoder,
    whose first input is the last source point. At each step the decoder GRU cell updates its
    hidden state h; with attention, the context ``attend(h, encoder states)`` is concatenated with h
    before the output layer, which regresses the next point.

    Args:
        hidden_dim: GRU hidden size H (= the embedding size when ``embed`` is given).
        point_dim: size P of a point.
        teacher_forcing: probability of feeding the true previous point at each training step.
        target_len: default number of points to generate.
        embed: maps points (..., P) to GRU inputs (..., H); ``None`` feeds raw points.
        cross_attn: module mapping (query (B, 1, H), states (B, S, H)) to a context (B, 1, H), or
            ``None`` for the plain encoder–decoder.

    Forward: source (B, S, P); target (B, T, P) used for teacher forcing while training only;
    ``steps`` points to generate (default: the target's length, else ``target_len``) → (B, T, P).
    """

    def __init__(self, hidden_dim: int, point_dim: int, teacher_forcing: float, target_len: int,
                 embed: nn.Module | None = None, cross_attn: nn.Module | None = None) -> None:
        super().__init__()
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing is a probability in [0, 1], got {teacher_forcing}")
        input_dim = point_dim if embed is None else hidden_dim
        self.embed = nn.Identity() if embed is None else embed
        self.encoder = nn.GRU(input_dim, hidden_dim, batch_first=True)
        self.decoder = nn.GRUCell(input_dim, hidden_dim)
        self.cross_attn = cross_attn
        self.head = nn.Linear(hidden_dim * (1 if cross_attn is None else 2), point_dim)
        self.teacher_forcing = teacher_forcing
        self.target_len = target_len

    def forward(self, source: Tensor, target: Tensor | None = None, steps: int | None = None) -> Tensor:
        states, hidden = self.encoder(self.embed(source))  # (B, S, H), (1, B, H)
        hidden = hidden[0]  # (B, H)
        steps = _num_steps(target, steps, self.target_len)
        teacher = self.training and target is not None and self.teacher_forcing > 0
        prev = source[:, -1]  # (B, P): the last known point starts the decoder
        outputs = []
        for t in range(steps):
            hidden = self.decoder(self.embed(prev), hidden)  # (B, H)
            features = hidden
            if self.cross_attn is not None:
                context = self.cross_attn(hidden.unsqueeze(1), states).squeeze(1)  # (B, 1, H) -> (B, H)
                features = torch.cat([context, hidden], dim=-1)  # (B, 2H)
            point = self.head(features)  # (B, P)
            outputs.append(point)
            use_true = teacher and bool(torch.rand(()) < self.teacher_forcing)
            prev = target[:, t] if use_true else point  # type: ignore[index]
        return torch.stack(outputs, dim=1)  # (B, T, P)


class Seq2Seq(PointSeq2Seq):
    """GRU encoder–decoder without attention: the decoder sees only the encoder's last state.

    Args:
        config: its sizes (:class:`~attnlab.catalog.squares.Seq2SeqConfig`).

    Forward: source (B, S, P); target (B, T, P) (teacher forcing, training only); ``steps`` → (B, T, P).
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        c = config
        super().__init__(c.hidden_dim, c.point_dim, c.teacher_forcing, c.target_len)


class Seq2SeqAttention(PointSeq2Seq):
    """The GRU encoder–decoder of :class:`Seq2Seq` whose decoder attends over all encoder states (one scaled
    dot-product head, :class:`ScaledDotAttention`, at ``cross_attn.pool``).

    Args:
        config: its sizes (:class:`~attnlab.catalog.squares.Seq2SeqConfig`).

    Forward: source (B, S, P); target (B, T, P) (teacher forcing, training only); ``steps`` → (B, T, P).
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        c = config
        super().__init__(c.hidden_dim, c.point_dim, c.teacher_forcing, c.target_len,
                         cross_attn=ScaledDotAttention(c.hidden_dim))


class MultiHeadSeq2Seq(PointSeq2Seq):
    """GRU encoder–decoder on points projected to d_model, whose decoder attends with ``num_heads`` heads
    (:class:`HeadsAttention`, at ``cross_attn.mha``).

    Args:
        config: its sizes (:class:`~attnlab.catalog.squares.MultiHeadSeq2SeqConfig`); ``num_heads`` must divide
            ``d_model`` (a ValueError says so).

    Forward: source (B, S, P); target (B, T, P) (teacher forcing, training only); ``steps`` → (B, T, P).
    """

    def __init__(self, config: MultiHeadSeq2SeqConfig) -> None:
        c = config
        check_heads(c.d_model, c.num_heads)
        super().__init__(c.d_model, c.point_dim, c.teacher_forcing, c.target_len,
                         embed=nn.Linear(c.point_dim, c.d_model), cross_attn=HeadsAttention(c.d_model, c.num_heads))


class PointTransformer(nn.Module):
    """Transformer encoder–decoder on points (pre-norm), generating one point at a time.

    Points are projected to d_model and given sinusoidal positions (source and target each
    from position 0). The decoder's first input is the last source point. While training with a
    target, all steps run in parallel under a causal mask (teacher forcing); otherwise
    :meth:`generate` feeds back each prediction, reusing keys and values through a KV cache.

    Args:
        config: its hyper-parameters (:class:`~attnlab.catalog.squares.PointTransformerConfig`).

    Forward: source (B, S, P); target (B, T, P) (training only); ``steps`` → (B, T, P).
    """

    def __init__(self, config: PointTransformerConfig) -> None:
        super().__init__()
        c = config
        check_heads(c.d_model, c.num_heads)
        self.embed = nn.Linear(c.point_dim, c.d_model)
        self.pos = SinusoidalPositionalEncoding(c.d_model, max_len=64)
        self.encoder = Encoder(c.num_layers, c.d_model, c.num_heads, c.d_ff, c.dropout, norm_first=True)
        self.decoder = Decoder(c.num_layers, c.d_model, c.num_heads, c.d_ff, c.dropout, norm_first=True)
        self.head = nn.Linear(c.d_model, c.point_dim)
        self.target_len = c.target_len

    def encode(self, source: Tensor) -> Tensor:
        """source (B, S, P) → memory (B, S, D)."""
        return self.encoder(self.pos(self.embed(source)))

    def forward(self, source: Tensor, target: Tensor | None = None, steps: int | None = None) -> Tensor:
        if self.training and target is not None:
            memory = self.encode(source)  # (B, S, D)
            inputs = torch.cat([source[:, -1:], target[:, :-1]], dim=1)  # (B, T, P): shifted right
            hidden = self.decoder(self.pos(self.embed(inputs)), memory)  # (B, T, D), causal
            return self.head(hidden)  # (B, T, P)
        return self.generate(source, _num_steps(target, steps, self.target_len))

    def generate(self, source: Tensor, steps: int, use_cache: bool = True) -> Tensor:
        """Free-running generation of ``steps`` points: source (B, S, P) → (B, steps, P).

        With ``use_cache`` each step feeds only the newest point and the decoder reuses the cached
        keys and values of earlier steps (and the projected memory); without it every step re-runs
        the whole prefix. Both give the same points.
        """
        memory = self.encode(source)  # (B, S, D)
        prev = source[:, -1:]  # (B, 1, P)
        if use_cache:
            cache = self.decoder.new_cache()
            outputs = []
            for t in range(steps):
                hidden = self.decoder(self.pos(self.embed(prev), offset=t), memory, cache=cache)  # (B, 1, D)
                prev = self.head(hidden)  # (B, 1, P)
                outputs.append(prev)
            return torch.cat(outputs, dim=1)  # (B, steps, P)
        inputs = prev
        for _ in range(steps):
            hidden = self.decoder(self.pos(self.embed(inputs)), memory)  # (B, t + 1, D)
            inputs = torch.cat([inputs, self.head(hidden[:, -1:])], dim=1)  # (B, t + 2, P)
        return inputs[:, 1:]  # (B, steps, P)
