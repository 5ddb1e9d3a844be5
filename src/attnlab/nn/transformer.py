"""Transformer parts: feed-forward, encoder and decoder blocks (pre- or post-norm), and stacks; and the
attention-free stand-in for self-attention (:class:`TokenMean`) that an encoder's ablation twin uses."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from attnlab.nn.dropout import Dropout
from attnlab.nn.mha import KVCache, MultiHeadAttention
from attnlab.nn.positional import RotaryEmbedding


class FeedForward(nn.Module):
    """Position-wise feed-forward network ``W₂ act(W₁ x)``: (..., D) → (..., D).

    Args:
        d_model: D.
        d_ff: hidden size (default 4·D).
        dropout: dropout after the activation.
        activation: activation class (default ``nn.GELU``).
    """

    def __init__(self, d_model: int, d_ff: int | None = None, dropout: float = 0.0,
                 activation: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.net = nn.Sequential(nn.Linear(d_model, d_ff), activation(), Dropout(dropout), nn.Linear(d_ff, d_model))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TokenMean(nn.Module):
    """Self-attention with its attention taken out: every token receives the mean of the tokens it could attend
    to (uniform weights, no projections, nothing learned), so a block keeps its residual paths, norms and
    feed-forward but cannot choose what to read. Not an attention layer: :func:`attnlab.nn.record_attention` does
    not see it.

    Forward (:class:`MultiHeadAttention`'s call, self-attention only): query, key, value (B, L, D) (only
    ``value`` is read); ``key_padding_mask`` (B, L) True = padding, left out of the mean; ``is_causal``: each
    token the mean of itself and the tokens before it → ``(output (B, L, D), None)``. An ``attn_mask`` or a KV
    ``cache`` is refused.
    """

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                attn_mask: Tensor | None = None, is_causal: bool = False, cache: object = None
                ) -> tuple[Tensor, None]:
        if attn_mask is not None or cache is not None:
            raise ValueError("TokenMean takes no attn_mask and no KV cache: use attention='full' for those")
        keep = torch.ones_like(value[..., :1])  # (B, L, 1)
        if key_padding_mask is not None:
            keep = (~key_padding_mask).unsqueeze(-1).to(value.dtype)
        if is_causal:  # running sums: token t reads tokens 0..t
            return (value * keep).cumsum(1) / keep.cumsum(1).clamp_min(1), None
        return ((value * keep).sum(1, keepdim=True) / keep.sum(1, keepdim=True).clamp_min(1)).expand_as(value), None


class _Residual(nn.Module):
    """``x + dropout(f(norm(x)))`` (pre-norm) or ``norm(x + dropout(f(x)))`` (post-norm)."""

    def __init__(self, d_model: int, dropout: float, norm_first: bool, norm_layer: type[nn.Module]) -> None:
        super().__init__()
        self.norm = norm_layer(d_model)
        self.dropout = Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: Tensor, f) -> Tensor:
        if self.norm_first:
            return x + self.dropout(f(self.norm(x)))
        return self.norm(x + self.dropout(f(x)))


class EncoderBlock(nn.Module):
    """Self-attention + feed-forward, each wrapped in a residual connection and layer norm.

    Args:
        d_model: D (divisible by ``num_heads``).
        num_heads: H.
        d_ff: feed-forward hidden size (default 4·D).
        dropout: dropout on residual branches (and on attention weights unless ``attn_dropout`` is given).
        norm_first: pre-norm (default; stable without warm-up) or post-norm (the original paper).
        activation: feed-forward activation class.
        norm_layer: normalisation class.
        rotary: use rotary position embeddings in self-attention.
        attn_dropout: dropout on attention weights (default: ``dropout``). Any non-zero value takes
            torch's unfused attention kernel on CPU, which is several times slower.
        attention: ``full`` (multi-head self-attention) or ``mean``: the attention-free twin, where
            ``self_attn`` is a :class:`TokenMean` and everything else (norms, feed-forward, dropout) is the same.

    Forward: x (B, L, D); ``key_padding_mask`` (B, L) True = padding; ``attn_mask`` (L, L) True = not
    allowed; ``is_causal``; ``cache`` a :class:`KVCache` for incremental (causal) decoding → (B, L, D).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int | None = None, dropout: float = 0.0,
                 norm_first: bool = True, activation: type[nn.Module] = nn.GELU,
                 norm_layer: type[nn.Module] = nn.LayerNorm, rotary: bool = False,
                 attn_dropout: float | None = None, attention: Literal["full", "mean"] = "full") -> None:
        super().__init__()
        if attention not in ("full", "mean"):
            raise ValueError(f"attention={attention!r} must be 'full' or 'mean'")
        rope = RotaryEmbedding(d_model // num_heads) if rotary and d_model % num_heads == 0 else None
        attn_dropout = dropout if attn_dropout is None else attn_dropout
        self.self_attn: nn.Module = (MultiHeadAttention(d_model, num_heads, dropout=attn_dropout, rotary=rope)
                                     if attention == "full" else TokenMean())
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.attn_res = _Residual(d_model, dropout, norm_first, norm_layer)
        self.ff_res = _Residual(d_model, dropout, norm_first, norm_layer)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None, attn_mask: Tensor | None = None,
                is_causal: bool = False, cache: KVCache | None = None) -> Tensor:
        def attend(h: Tensor) -> Tensor:
            return self.self_attn(h, h, h, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                                  is_causal=is_causal, cache=cache)[0]

        x = self.attn_res(x, attend)  # (B, L, D)
        return self.ff_res(x, self.ff)  # (B, L, D)


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention over an encoder memory, feed-forward.

    Same arguments as :class:`EncoderBlock`. Forward: x (B, T, D), memory (B, S, D);
    ``tgt_key_padding_mask`` (B, T) and ``memory_key_padding_mask`` (B, S), True = padding;
    ``cache`` a (self, cross) pair of :class:`KVCache` for incremental decoding → (B, T, D).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int | None = None, dropout: float = 0.0,
                 norm_first: bool = True, activation: type[nn.Module] = nn.GELU,
                 norm_layer: type[nn.Module] = nn.LayerNorm, rotary: bool = False,
                 attn_dropout: float | None = None) -> None:
        super().__init__()
        rope = RotaryEmbedding(d_model // num_heads) if rotary and d_model % num_heads == 0 else None
        attn_dropout = dropout if attn_dropout is None else attn_dropout
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=attn_dropout, rotary=rope)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout=attn_dropout)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.self_res = _Residual(d_model, dropout, norm_first, norm_layer)
        self.cross_res = _Residual(d_model, dropout, norm_first, norm_layer)
        self.ff_res = _Residual(d_model, dropout, norm_first, norm_layer)

    def forward(self, x: Tensor, memory: Tensor, tgt_key_padding_mask: Tensor | None = None,
                memory_key_padding_mask: Tensor | None = None, is_causal: bool = True,
                cache: tuple[KVCache, KVCache] | None = None) -> Tensor:
        self_cache, cross_cache = (None, None) if cache is None else cache

        def attend_self(h: Tensor) -> Tensor:
            return self.self_attn(h, h, h, key_padding_mask=tgt_key_padding_mask, is_causal=is_causal,
                                  cache=self_cache)[0]

        def attend_memory(h: Tensor) -> Tensor:
            return self.cross_attn(h, memory, memory, key_padding_mask=memory_key_padding_mask,
                                   cache=cross_cache)[0]

        x = self.self_res(x, attend_self)  # (B, T, D)
        x = self.cross_res(x, attend_memory)  # (B, T, D)
        return self.ff_res(x, self.ff)  # (B, T, D)


class Encoder(nn.Module):
    """A stack of :class:`EncoderBlock` (plus a final norm when pre-norm).

    Args:
        num_layers: number of blocks; the other arguments go to every :class:`EncoderBlock` (``attention="mean"``:
            the attention-free twin of the stack).

    Forward: x (B, L, D) with the block's masks; ``cache`` a list of one :class:`KVCache` per layer
    (see :meth:`new_cache`) → (B, L, D).
    """

    def __init__(self, num_layers: int, d_model: int, num_heads: int, d_ff: int | None = None,
                 dropout: float = 0.0, norm_first: bool = True, activation: type[nn.Module] = nn.GELU,
                 norm_layer: type[nn.Module] = nn.LayerNorm, rotary: bool = False,
                 attn_dropout: float | None = None, attention: Literal["full", "mean"] = "full") -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderBlock(d_model, num_heads, d_ff, dropout, norm_first, activation, norm_layer, rotary, attn_dropout,
                         attention)
            for _ in range(num_layers)
        )
        self.norm = norm_layer(d_model) if norm_first else nn.Identity()

    def new_cache(self) -> list[KVCache]:
        return [KVCache() for _ in self.layers]

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None, attn_mask: Tensor | None = None,
                is_causal: bool = False, cache: list[KVCache] | None = None) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x, key_padding_mask, attn_mask, is_causal, None if cache is None else cache[i])
        return self.norm(x)


class Decoder(nn.Module):
    """A stack of :class:`DecoderBlock` (plus a final norm when pre-norm).

    Forward: x (B, T, D), memory (B, S, D), masks as in :class:`DecoderBlock`; ``cache`` from
    :meth:`new_cache` for incremental decoding (feed one position at a time) → (B, T, D).
    """

    def __init__(self, num_layers: int, d_model: int, num_heads: int, d_ff: int | None = None,
                 dropout: float = 0.0, norm_first: bool = True, activation: type[nn.Module] = nn.GELU,
                 norm_layer: type[nn.Module] = nn.LayerNorm, rotary: bool = False,
                 attn_dropout: float | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderBlock(d_model, num_heads, d_ff, dropout, norm_first, activation, norm_layer, rotary, attn_dropout)
            for _ in range(num_layers)
        )
        self.norm = norm_layer(d_model) if norm_first else nn.Identity()

    def new_cache(self) -> list[tuple[KVCache, KVCache]]:
        return [(KVCache(), KVCache(static=True)) for _ in self.layers]

    def forward(self, x: Tensor, memory: Tensor, tgt_key_padding_mask: Tensor | None = None,
                memory_key_padding_mask: Tensor | None = None, is_causal: bool = True,
                cache: list[tuple[KVCache, KVCache]] | None = None) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, tgt_key_padding_mask, memory_key_padding_mask, is_causal,
                      None if cache is None else cache[i])
        return self.norm(x)
