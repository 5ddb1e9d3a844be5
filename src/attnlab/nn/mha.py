"""Multi-head attention with a fused fast path that still gives weights on request, and a KV cache."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.nn.dropout import fast_dropout
from attnlab.nn.masking import additive_mask, causal_mask, softmax_allowed, torch_masks_to_allowed
from attnlab.nn.positional import RotaryEmbedding
from attnlab.nn.switch import reference_attention_enabled
from attnlab.nn.weights import (
    LayerRecorder,
    WeightRequest,
    fused_attention_with_lse,
    weights_for_request,
)


def check_heads(embed_dim: int, num_heads: int) -> None:
    """Raise a ValueError that names both numbers when heads cannot split ``embed_dim`` evenly."""
    if num_heads <= 0 or embed_dim <= 0:
        raise ValueError(f"embed_dim and num_heads must be positive, got embed_dim={embed_dim}, num_heads={num_heads}")
    if embed_dim % num_heads:
        fit = num_heads * max(1, round(embed_dim / num_heads))
        raise ValueError(
            f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}: every head needs "
            f"embed_dim / num_heads features. Project the input to a d_model that num_heads divides "
            f"first (e.g. nn.Linear({embed_dim}, {fit}) then num_heads={num_heads}); a series whose input "
            f"dimension is 1 must be projected to d_model before attention."
        )


class KVCache:
    """Keys and values of the positions already seen by one attention layer, for incremental decoding.

    Self-attention caches grow by one step per call; storage doubles when full, so appending is
    amortised O(1) and decoding step t costs O(t) attention, not O(t) re-projection of the prefix.
    A ``static`` cache (cross-attention over an encoder memory) is filled on the first call and
    then reused without projecting the memory again.

    Shapes: keys and values are (B, H, T, D_h).
    """

    def __init__(self, static: bool = False) -> None:
        self.static = static
        self._k: Tensor | None = None
        self._v: Tensor | None = None
        self.length = 0
        self.queries_seen = 0  # queries already attended: their rotary offset with a static cache

    @property
    def keys(self) -> Tensor | None:
        return None if self._k is None else self._k[:, :, : self.length]

    @property
    def values(self) -> Tensor | None:
        return None if self._v is None else self._v[:, :, : self.length]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add (B, H, T_new, D_h) keys and values; return all cached ones, (B, H, T, D_h)."""
        if self.static and self.length:
            raise RuntimeError("a static KVCache is filled once; call reset() before reusing it")
        new_len = self.length + k.shape[2]
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad):
            # Training through the cache: keep the autograd graph, no in-place writes.
            self._k = k if self._k is None else torch.cat([self.keys, k], dim=2)
            self._v = v if self._v is None else torch.cat([self.values, v], dim=2)
        else:
            if self._k is None or new_len > self._k.shape[2] or self._k.requires_grad:
                capacity = new_len if self.static else max(16, 2 * new_len)
                self._k = self._grow(self._k, k, capacity)
                self._v = self._grow(self._v, v, capacity)
            self._k[:, :, self.length : new_len] = k
            self._v[:, :, self.length : new_len] = v
        self.length = new_len
        return self.keys, self.values  # type: ignore[return-value]

    def _grow(self, old: Tensor | None, like: Tensor, capacity: int) -> Tensor:
        buf = like.new_empty(like.shape[0], like.shape[1], capacity, like.shape[3])
        if old is not None and self.length:
            buf[:, :, : self.length] = old[:, :, : self.length]
        return buf

    def reset(self) -> None:
        self._k = self._v = None
        self.length = 0
        self.queries_seen = 0


class MultiHeadAttention(nn.Module):
    """Multi-head attention, a drop-in for ``torch.nn.MultiheadAttention`` that can show its weights.

    Without weights it runs :func:`torch.nn.functional.scaled_dot_product_attention` (fused, never
    materialises the (L, S) weights). With ``need_weights=True`` or inside
    :func:`attnlab.nn.record_attention` it still runs the fused kernel for the output, takes each query's
    log-sum-exp from it and forms the weights as ``exp(q kᵀ / √d_h + mask − lse)`` block by block
    (:mod:`attnlab.nn.weights`); head-averaged weights never build (B, H, L, S). With the reference switch
    on (:func:`attnlab.nn.use_reference_attention`), with dropout while training, where no fused kernel
    returns the log-sum-exp, or when the returned weights must carry gradients (``need_weights=True``
    with inputs that require grad), it runs the textbook path ``softmax(q kᵀ / √d_h + mask) v``. All
    agree to 1e-5 in fp32.

    Args:
        embed_dim: model size E; must be divisible by ``num_heads``.
        num_heads: number of heads H; each head has D_h = E / H features.
        kdim: key feature size (default E).
        vdim: value feature size (default E).
        dropout: dropout on the attention weights during training.
        bias: add biases to the input and output projections.
        batch_first: inputs are (B, L, E) (default) rather than (L, B, E).
        rotary: optional :class:`~attnlab.nn.RotaryEmbedding` of size D_h applied to queries and keys.

    Masks follow ``torch.nn.MultiheadAttention``: ``key_padding_mask`` (B, S) with ``True`` = ignore
    that key (or float, added); ``attn_mask`` (L, S) or (B·H, L, S) with ``True`` = not allowed (or
    float, added). ``is_causal=True`` applies a causal mask itself (queries aligned to the end of the
    keys, so it also holds while decoding with a cache). A query with nothing left to attend gets a
    zero context (torch.nn.MultiheadAttention gives NaN on its default and inference paths).

    Returns ``(output, weights)``: output (B, L, E) ((L, B, E) if not ``batch_first``); weights
    (B, L, S) averaged over heads, or (B, H, L, S) with ``average_attn_weights=False``; ``None`` unless
    ``need_weights``. Weights are taken before dropout.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        kdim: int | None = None,
        vdim: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = True,
        rotary: RotaryEmbedding | None = None,
    ) -> None:
        super().__init__()
        check_heads(embed_dim, num_heads)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self.dropout = dropout
        self.batch_first = batch_first
        self.packed = self.kdim == embed_dim and self.vdim == embed_dim
        if self.packed:
            # One (3E, E) projection: a single matmul for self-attention, as in torch.
            self.in_proj = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        else:
            self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
            self.k_proj = nn.Linear(self.kdim, embed_dim, bias=bias)
            self.v_proj = nn.Linear(self.vdim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        if rotary is not None and rotary.dim != self.head_dim:
            raise ValueError(f"rotary embedding has dim {rotary.dim}, but head_dim is {self.head_dim}")
        self.rotary = rotary
        self.recorder: LayerRecorder | None = None  # set by attnlab.nn.record_attention

    # ------------------------------------------------------------------ projections
    def _project_q(self, query: Tensor) -> Tensor:
        if not self.packed:
            return self.q_proj(query)
        E = self.embed_dim
        b = self.in_proj.bias
        return F.linear(query, self.in_proj.weight[:E], None if b is None else b[:E])

    def _project_kv(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        if not self.packed:
            return self.k_proj(key), self.v_proj(value)
        E = self.embed_dim
        w, b = self.in_proj.weight, self.in_proj.bias
        if key is value:
            kv = F.linear(key, w[E:], None if b is None else b[E:])  # (B, S, 2E)
            k, v = kv.chunk(2, dim=-1)
            return k, v
        k = F.linear(key, w[E : 2 * E], None if b is None else b[E : 2 * E])
        v = F.linear(value, w[2 * E :], None if b is None else b[2 * E :])
        return k, v

    def _heads(self, x: Tensor) -> Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2).contiguous()  # (B, H, L, D_h)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        need_weights: bool = False,
        average_attn_weights: bool = True,
        is_causal: bool = False,
        cache: KVCache | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        if query.dim() != 3:
            raise ValueError(f"query must be 3-D ({'B, L, E' if self.batch_first else 'L, B, E'}), "
                             f"got shape {tuple(query.shape)}")
        self_attention = query is key and key is value  # decided before any transpose
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))  # -> (B, L, E)
        B, L, _ = query.shape

        if self.packed and self_attention and cache is None:
            qkv = self.in_proj(query).view(B, L, 3, self.num_heads, self.head_dim)  # (B, L, 3, H, D_h)
            # One copy into head-major layout: the fused kernel is ~15 % faster on contiguous q, k, v.
            q, k, v = qkv.permute(2, 0, 3, 1, 4).contiguous().unbind(0)  # 3 × (B, H, L, D_h)
        else:
            q = self._heads(self._project_q(query))  # (B, H, L, D_h)
            if cache is not None and cache.static and cache.length:
                k, v = cache.keys, cache.values  # memory already projected
            else:
                k, v = self._project_kv(key, value)
                k, v = self._heads(k), self._heads(v)  # (B, H, S_new, D_h)
        # Absolute position of query[:, 0]: the keys seen so far, or for a static (cross-attention)
        # cache the queries seen so far.
        past = 0 if cache is None else (cache.queries_seen if cache.static else cache.length)
        if self.rotary is not None:
            q = self.rotary(q, offset=past)
            if not (cache is not None and cache.static and cache.length):
                k = self.rotary(k, offset=past)
        if cache is not None:
            cache.queries_seen += L
        if cache is not None and not (cache.static and cache.length):
            k, v = cache.append(k, v)  # (B, H, S, D_h): past + new
        S = k.shape[2]

        mask = torch_masks_to_allowed(key_padding_mask, attn_mask, B, self.num_heads, L, S, q.dtype)
        sdpa_causal = False
        if is_causal and L > 1:  # a single query at the end of the keys sees them all
            if mask is None and L == S:
                sdpa_causal = True
            else:
                causal = causal_mask(L, S, device=q.device)  # (L, S)
                if mask is None:
                    mask = causal
                elif mask.dtype == torch.bool:
                    mask = mask & causal
                else:
                    mask = mask.masked_fill(~causal, float("-inf"))

        dropout_p = self.dropout if self.training else 0.0
        weights = None
        if need_weights or self.recorder is not None or reference_attention_enabled():
            out, weights = self._attend_with_weights(q, k, v, mask, sdpa_causal, dropout_p, need_weights,
                                                     average_attn_weights)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=sdpa_causal)
        out = out.transpose(1, 2).reshape(B, L, self.embed_dim)  # (B, L, E)
        out = self.out_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)  # (L, B, E)
        return out, weights

    def _attend_with_weights(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, sdpa_causal: bool, dropout_p: float,
        need_weights: bool, average: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """The attention output (B, H, L, D_h) and, if ``need_weights``, the weights to return; feeds the recorder.

        The fused kernel gives the output and the log-sum-exp the weights are formed from; the reference path
        runs when forced, when the returned weights must carry gradients, or when no fused kernel with a
        log-sum-exp serves these inputs (dropout while training, for one).
        """
        returned = WeightRequest(average_heads=average) if need_weights else None
        differentiable = need_weights and torch.is_grad_enabled() and (q.requires_grad or k.requires_grad)
        fused = None
        if not (reference_attention_enabled() or differentiable):
            mask = additive_mask(mask, q.dtype)  # (B|1, H|1, L|1, S): the kernel takes no boolean mask
            fused = fused_attention_with_lse(q, k, v, mask, sdpa_causal, dropout_p)
        if fused is None:
            if sdpa_causal:
                mask = causal_mask(q.shape[2], k.shape[2], device=q.device)
            out, weights = reference_attention(q, k, v, mask, dropout_p)  # (B, H, L, D_h), (B, H, L, S)
            if self.recorder is not None:
                self.recorder(weights.detach())
            if returned is None:
                return out, None
            return out, (weights.mean(dim=1) if average else weights)
        out, lse = fused  # (B, H, L, D_h), (B, H, L)
        q, k = q.detach(), k.detach()
        result = None if returned is None else weights_for_request(q, k, lse, mask, sdpa_causal, returned)
        if self.recorder is not None:
            request = self.recorder.request
            same = request == returned
            self.recorder.add(result if same else weights_for_request(q, k, lse, mask, sdpa_causal, request))
        return out, result  # type: ignore[return-value]

    # ------------------------------------------------------------------ interop
    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy a ``torch.nn.MultiheadAttention`` (same weights, device, dtype and conventions)."""
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("from_torch does not support add_bias_kv=True or add_zero_attn=True")
        has_bias = mha.in_proj_bias is not None
        ref = mha.out_proj.weight
        new = cls(mha.embed_dim, mha.num_heads, kdim=mha.kdim, vdim=mha.vdim, dropout=mha.dropout,
                  bias=has_bias, batch_first=mha.batch_first).to(device=ref.device, dtype=ref.dtype)
        E = mha.embed_dim
        with torch.no_grad():
            if new.packed:
                if mha._qkv_same_embed_dim:
                    new.in_proj.weight.copy_(mha.in_proj_weight)
                else:
                    new.in_proj.weight.copy_(torch.cat([mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight]))
                if has_bias:
                    new.in_proj.bias.copy_(mha.in_proj_bias)
            else:
                for i, (proj, w) in enumerate(
                    [(new.q_proj, mha.q_proj_weight), (new.k_proj, mha.k_proj_weight), (new.v_proj, mha.v_proj_weight)]
                ):
                    proj.weight.copy_(w)
                    if has_bias:
                        proj.bias.copy_(mha.in_proj_bias[i * E : (i + 1) * E])
            new.out_proj.weight.copy_(mha.out_proj.weight)
            if has_bias:
                new.out_proj.bias.copy_(mha.out_proj.bias)
        return new

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, kdim={self.kdim}, vdim={self.vdim}, "
                f"dropout={self.dropout}, batch_first={self.batch_first}")


def reference_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Scaled dot-product attention written out: ``softmax(q kᵀ / √d + mask) v``.

    Args:
        q: (B, H, L, D); k: (B, H, S, D); v: (B, H, S, D_v).
        mask: bool (``True`` = attend) or additive float, broadcastable to (B, H, L, S).
        dropout_p: dropout on the weights.

    Returns:
        ``(out, weights)``: (B, H, L, D_v) and the pre-dropout weights (B, H, L, S).
    """
    scores = (q / math.sqrt(q.shape[-1])) @ k.transpose(-2, -1)  # (B, H, L, S); scale the smaller operand
    if mask is not None and mask.dtype != torch.bool:
        scores = scores + mask  # additive mask: -inf entries are excluded keys
        mask = ~torch.isneginf(mask)
    weights = softmax_allowed(scores, mask)  # (B, H, L, S)
    dropped = fast_dropout(weights, dropout_p)  # the weights themselves when dropout_p is 0
    return dropped @ v, weights  # (B, H, L, D_v)
