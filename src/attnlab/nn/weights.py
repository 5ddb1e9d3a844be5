"""Attention weights from the fused kernel: ``exp(scale·q kᵀ + mask − lse)``, formed block by block.

The fused attention kernel never stores the (L, S) weights, but it computes, for each query row, the
log-sum-exp ``lse`` of its scores (the softmax normaliser) and can return it. With it the weights need
no second softmax and no product with the values: ``w = exp(scale·q kᵀ + mask − lse)``, one matrix
product and one exponential per block of query rows, written straight into the result. That is what
:class:`~attnlab.nn.MultiHeadAttention` does when weights are asked for (``need_weights=True`` or
:func:`~attnlab.nn.record_attention`), keeping the fused kernel's output.

Which kernel gives the log-sum-exp (:func:`fused_attention_with_lse`):

* CPU: ``aten::_scaled_dot_product_flash_attention_for_cpu`` (the kernel behind
  ``F.scaled_dot_product_attention`` on CPU; float32, float64, bfloat16, float16; no dropout);
* CUDA: ``aten::_scaled_dot_product_flash_attention`` (half types, no mask) or
  ``aten::_scaled_dot_product_efficient_attention`` with ``compute_log_sumexp=True``. Not tested by
  this project (it has no GPU): a CUDA kernel that refuses the inputs sends the layer to the reference
  path.

Anything else (dropout while training, a mask that requires grad, another device, an older torch
without the op) returns ``None`` and the caller takes the reference path, which gives the same numbers.

:class:`WeightRequest` says what to compute: which heads, which query rows, per head or averaged over
heads, all keys or the top k. Averaged weights are summed over heads block by block into a (B, Q, S)
buffer; nothing of size (B, H, Q, S) is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from attnlab.nn.masking import additive_mask, causal_mask

# What `queries=` selects: None (every row), "last", one row index, a slice (e.g. slice(None, None, 8):
# every 8th row), or a sequence of row indices.
QuerySelector = None | str | int | slice | Sequence[int]

LOG2E = 1.0 / math.log(2.0)  # exp(x) = exp2(x·log2 e); torch's exp2 is about twice as fast as exp on CPU
# Weights computed per step: 4 MiB of float32, which stays in the L3 cache between the product and the exp2.
# Smaller steps make more, smaller products and cost more (docs/notes/attention-recording.md).
BLOCK_ELEMENTS = 1 << 20
CAUSAL_ROWS = 64  # causal layers step by at most max(CAUSAL_ROWS, Q / 8) rows: the keys past a step are skipped
_LSE_DTYPES = {"cpu": (torch.float32, torch.float64, torch.bfloat16, torch.float16),
               "cuda": (torch.float32, torch.bfloat16, torch.float16)}
CPU_FLASH = "_scaled_dot_product_flash_attention_for_cpu"
CUDA_FLASH = "_scaled_dot_product_flash_attention"
CUDA_EFFICIENT = "_scaled_dot_product_efficient_attention"


class TopKWeights(NamedTuple):
    """The ``k`` largest weights of each query row and the keys they belong to.

    ``values`` (…, Q, k) in decreasing order and ``indices`` (…, Q, k) int64 key positions, where …
    is (B, H), or (B,) for head-averaged weights and pooling layers.
    """

    values: Tensor
    indices: Tensor

    def dense(self, num_keys: int) -> Tensor:
        """The weights as a (…, Q, num_keys) tensor, zero outside the top k."""
        out = self.values.new_zeros(*self.values.shape[:-1], num_keys)
        return out.scatter_(-1, self.indices, self.values)


@dataclass(frozen=True)
class WeightRequest:
    """Which attention weights a layer computes.

    Args:
        heads: head indices to keep (negative counts from the end), or None for all.
        queries: query rows to keep: None (all), ``"last"``, an index, a slice, or a sequence of indices.
        top_k: keep the ``top_k`` largest weights of each row (as :class:`TopKWeights`; at most S).
        average_heads: average over the (kept) heads: (B, Q, S) instead of (B, H, Q, S).
    """

    heads: tuple[int, ...] | None = None
    queries: QuerySelector = None
    top_k: int | None = None
    average_heads: bool = False

    def __post_init__(self) -> None:
        if self.heads is not None:
            heads = (self.heads,) if isinstance(self.heads, int) else tuple(self.heads)
            if not heads or not all(isinstance(h, int) for h in heads):
                raise ValueError(f"heads must be a head index or a non-empty sequence of them, got {self.heads!r}")
            object.__setattr__(self, "heads", heads)
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ValueError(f"top_k must be a positive integer, got {self.top_k!r}")
        q = self.queries
        ok = q is None or q == "last" or isinstance(q, int | slice) or (
            isinstance(q, Sequence) and not isinstance(q, str) and all(isinstance(i, int) for i in q))
        if not ok:
            raise ValueError(f"queries must be None, 'last', an index, a slice or a sequence of indices, got {q!r}")
        if isinstance(q, slice) and q.step is not None and q.step < 1:
            raise ValueError(f"queries: a slice needs a positive step, got {q!r}; use e.g. slice(None, None, 8)")
        if isinstance(q, Sequence) and not isinstance(q, str):
            object.__setattr__(self, "queries", tuple(q))

    def head_index(self, num_heads: int) -> list[int] | None:
        """The kept heads as indices in 0 … num_heads − 1, or None for all."""
        if self.heads is None:
            return None
        bad = [h for h in self.heads if not -num_heads <= h < num_heads]
        if bad:
            raise ValueError(f"heads {bad} out of range for a layer with {num_heads} heads; "
                             f"pass indices from {-num_heads} to {num_heads - 1}")
        return [h % num_heads for h in self.heads]

    def row_index(self, num_queries: int) -> slice | Tensor:
        """The kept query rows of a call with ``num_queries`` queries, as a slice or an index tensor."""
        q = self.queries
        if q is None:
            return slice(None)
        if q == "last":
            return slice(max(num_queries - 1, 0), num_queries)
        if isinstance(q, slice):
            return q
        rows = (q,) if isinstance(q, int) else q
        bad = [i for i in rows if not -num_queries <= i < num_queries]
        if bad:
            raise ValueError(f"queries {bad} out of range for a call with {num_queries} queries; "
                             f"pass indices from {-num_queries} to {num_queries - 1}, or 'last'")
        if isinstance(q, int):
            return slice(q % num_queries, q % num_queries + 1)
        return torch.tensor([i % num_queries for i in rows], dtype=torch.long)


def filter_weights(weights: Tensor, request: WeightRequest) -> Tensor | TopKWeights:
    """Apply ``request`` to weights that exist already (the reference path, pooling layers).

    Args:
        weights: (B, H, Q, S), or (B, Q, S) for a layer without heads (``heads`` and
            ``average_heads`` then do not apply).
        request: what to keep.

    Returns:
        (B, H', Q', S) per head, (B, Q', S) averaged, or :class:`TopKWeights` of (…, Q', k).
    """
    if weights.dim() == 4:
        heads = request.head_index(weights.shape[1])
        if heads is not None:
            weights = weights[:, heads]  # (B, H', Q, S)
    rows = request.row_index(weights.shape[-2])
    weights = weights[..., rows, :]  # (…, Q', S)
    if weights.dim() == 4 and request.average_heads:
        weights = weights.mean(dim=1)  # (B, Q', S)
    if request.top_k is None:
        return weights
    return TopKWeights(*weights.topk(min(request.top_k, weights.shape[-1]), dim=-1))


class LayerRecorder:
    """What a recorded layer computes (``request``) and where its weights go (``sink``).

    A layer that forms the weights itself applies ``request`` and calls :meth:`add`; a layer that has the
    full weights already calls the recorder with them and the request is applied here.
    """

    def __init__(self, request: WeightRequest, sink: Callable[[Tensor | TopKWeights], None]) -> None:
        self.request = request
        self.sink = sink

    def add(self, weights: Tensor | TopKWeights) -> None:
        """Record weights that already are what ``request`` asks for."""
        self.sink(weights)

    def __call__(self, weights: Tensor) -> None:
        """Record the requested part of full weights, (B, H, Q, S) or (B, Q, S)."""
        self.sink(filter_weights(weights, self.request))


# ---------------------------------------------------------------------------------------------- the fused kernel
def _aten(name: str) -> Callable | None:
    """``torch.ops.aten.<name>``, or None if this torch has no such operator."""
    return getattr(torch.ops.aten, name, None)


def fused_attention_with_lse(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool, dropout_p: float
) -> tuple[Tensor, Tensor] | None:
    """The fused kernel's output and per-row log-sum-exp, or None where no such kernel serves the inputs.

    Args:
        q: (B, H, L, D); k: (B, H, S, D); v: (B, H, S, D).
        mask: additive float mask of q's dtype (``-inf`` = masked), broadcastable to (B, H, L, S), or None.
        is_causal: the kernel's own causal mask (query i sees keys 0 … i; meant for L == S).
        dropout_p: the kernels with a log-sum-exp take no dropout: anything above 0 gives None.

    Returns:
        ``(out, lse)``: (B, H, L, D), differentiable as ``F.scaled_dot_product_attention``'s, and
        (B, H, L) log-sum-exp of ``scale·q kᵀ + mask`` per row (0 for a row with every key masked).
    """
    device = q.device.type
    applies = (
        dropout_p == 0.0
        and q.dtype in _LSE_DTYPES.get(device, ())
        and q.shape[-2] > 0 and k.shape[-2] > 0
        and q.shape[-1] == v.shape[-1]
        and all(t.stride(-1) == 1 for t in (q, k, v))
        and (mask is None or not mask.requires_grad)
    )
    if not applies:
        return None
    if device == "cpu":
        op = _aten(CPU_FLASH)
        return None if op is None else tuple(op(q, k, v, 0.0, is_causal, attn_mask=mask))  # type: ignore[return-value]
    return _cuda_attention_with_lse(q, k, v, mask, is_causal)


def _cuda_attention_with_lse(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool
) -> tuple[Tensor, Tensor] | None:
    """CUDA: flash attention (half types, no mask), else memory-efficient attention. Untested here (no GPU);
    a kernel that rejects the inputs (head size, alignment) gives None, so the caller takes the reference path."""
    B, H, L, _ = q.shape
    flash, efficient = _aten(CUDA_FLASH), _aten(CUDA_EFFICIENT)
    try:
        if flash is not None and mask is None and q.dtype != torch.float32:
            out, lse = flash(q, k, v, 0.0, is_causal)[:2]
            return out, lse
        if efficient is not None:
            bias = None if mask is None else mask.expand(B, H, L, k.shape[-2])
            out, lse = efficient(q, k, v, bias, True, 0.0, is_causal)[:2]
            return out, lse[..., :L]  # the kernel may pad the rows of its log-sum-exp
    except RuntimeError:
        return None
    return None


# ---------------------------------------------------------------------------------------------- weights from lse
def weights_for_request(
    q: Tensor, k: Tensor, lse: Tensor, mask: Tensor | None, is_causal: bool, request: WeightRequest
) -> Tensor | TopKWeights:
    """The weights ``request`` asks for, from the fused kernel's log-sum-exp, computing only those.

    Args:
        q: (B, H, L, D) queries; k: (B, H, S, D) keys (as given to the kernel).
        lse: (B, H, L) from :func:`fused_attention_with_lse`.
        mask: the kernel's additive mask, broadcastable to (B, H, L, S), or None.
        is_causal: the kernel's own causal flag (L == S).
        request: heads, query rows, averaging and top-k.

    Returns:
        As :func:`filter_weights`: (B, H', Q', S), (B, Q', S) or :class:`TopKWeights`.
    """
    heads = request.head_index(q.shape[1])
    if heads is not None:
        q, k, lse = q[:, heads], k[:, heads], lse[:, heads]  # (B, H', ·, D), (B, H', L)
        if mask is not None and mask.shape[1] > 1:
            mask = mask[:, heads]
    if request.queries is not None:
        rows = request.row_index(q.shape[2])
        if is_causal:  # explicit rows of the causal triangle, as an additive mask
            allowed = causal_mask(q.shape[2], k.shape[2], device=q.device)[rows]  # (Q', S)
            mask = additive_mask(allowed, q.dtype)  # (1, 1, Q', S)
            is_causal = False
        elif mask is not None and mask.shape[2] > 1:
            mask = mask[:, :, rows]
        q, lse = q[:, :, rows], lse[:, :, rows]  # (B, H', Q', D), (B, H', Q')
    return weights_from_lse(q, k, lse, mask, is_causal, request.average_heads, request.top_k)


@torch.no_grad()
def weights_from_lse(
    q: Tensor, k: Tensor, lse: Tensor, mask: Tensor | None = None, is_causal: bool = False,
    average: bool = False, top_k: int | None = None,
) -> Tensor | TopKWeights:
    """``exp(q kᵀ/√D + mask − lse)`` in blocks of query rows, without a softmax and without the values.

    Args:
        q: (B, H, Q, D); k: (B, H, S, D).
        lse: (B, H, Q) log-sum-exp of each row's scores (the softmax normaliser).
        mask: additive, broadcastable to (B, H, Q, S) (``-inf`` entries give exactly 0), or None.
        is_causal: query i sees keys 0 … i only (Q == S); the masked half is neither multiplied nor exponentiated.
        average: the mean over heads, summed block by block into a (B, Q, S) buffer.
        top_k: keep the ``top_k`` largest weights of each row.

    Returns:
        Detached weights of q's dtype: (B, H, Q, S), (B, Q, S) if ``average``, or :class:`TopKWeights`
        of (…, Q, k) with k = min(top_k, S). A row whose log-sum-exp is ``-inf`` or whose keys are all
        masked is all zeros.
    """
    B, H, Q, D = q.shape
    S = k.shape[2]
    work = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype  # accumulate in fp32
    shift = math.log2(H) if average else 0.0  # exp2(x − log2 H) = exp2(x) / H: the mean for free
    bias = -(lse.to(work).masked_fill(torch.isneginf(lse), 0.0) * LOG2E + shift)  # (B, H, Q), log2 units
    scores = _Scores(q.to(work), k.to(work).transpose(-2, -1), bias, mask, LOG2E / math.sqrt(D), is_causal)
    heads_per_step, rows_per_step = _block_shape(H, Q, S, is_causal)
    k_kept = None if top_k is None else min(top_k, S)
    lead = (B, Q) if average else (B, H, Q)
    if k_kept is None:
        result = q.new_empty((*lead, S))  # (B, [H,] Q, S)
    else:
        result = TopKWeights(q.new_empty((*lead, k_kept)),
                             torch.empty((*lead, k_kept), dtype=torch.long, device=q.device))
    direct = k_kept is None and work == q.dtype  # blocks written straight into the result
    scratch = None if direct and not average else q.new_empty((heads_per_step, rows_per_step, S), dtype=work)
    steps = [(b, i0, min(Q, i0 + rows_per_step)) for b in range(B) for i0 in range(0, Q, rows_per_step)]
    heads = [(h0, min(H, h0 + heads_per_step)) for h0 in range(0, H, heads_per_step)]
    if average:
        _average_heads(scores, result, scratch, steps, heads, direct)
    else:
        _per_head(scores, result, scratch, steps, heads)
    return result


class _Scores:
    """Forms blocks of ``exp2(alpha·q kᵀ + bias + mask·log2 e)``; the inputs are (B, H, ·, ·) as in
    :func:`weights_from_lse`, in the working dtype."""

    def __init__(self, q: Tensor, kt: Tensor, bias: Tensor, mask: Tensor | None, alpha: float, causal: bool):
        self.q, self.kt, self.bias, self.mask, self.alpha, self.causal = q, kt, bias, mask, alpha, causal

    def into(self, block: Tensor, b: int, h0: int, h1: int, i0: int, i1: int) -> None:
        """Fill ``block`` (h1 − h0, i1 − i0, S) with the weights of batch b, heads h0:h1, query rows i0:i1."""
        m = None if self.mask is None else _mask_block(self.mask, b, h0, h1, i0, i1)
        _exp_scores(block, self.q[b, h0:h1, i0:i1], self.kt[b, h0:h1], self.bias[b, h0:h1, i0:i1, None], m,
                    self.alpha, i0 if self.causal else None)


def _per_head(scores: _Scores, result: Tensor | TopKWeights, scratch: Tensor | None, steps: list, heads: list) -> None:
    """Per-head weights (B, H, Q, S) or their top k: each block straight into the result, or via ``scratch``."""
    for b, i0, i1 in steps:
        for h0, h1 in heads:
            where = (b, slice(h0, h1), slice(i0, i1))
            block = result[where] if scratch is None else scratch[: h1 - h0, : i1 - i0]  # (g, r, S)
            scores.into(block, b, h0, h1, i0, i1)
            if isinstance(result, TopKWeights):
                _store_top_k(result, where, block)
            elif scratch is not None:
                result[where] = block  # into the result's dtype


def _average_heads(scores: _Scores, result: Tensor | TopKWeights, scratch: Tensor, steps: list, heads: list,
                   direct: bool) -> None:
    """Head-averaged weights (B, Q, S) or their top k: the heads of each block of rows summed in a (r, S) buffer
    (the result itself when ``direct``); nothing of size (B, H, Q, S) exists."""
    total = None if direct else scratch.new_empty(scratch.shape[1:])  # (rows, S)
    for b, i0, i1 in steps:
        acc = result[b, i0:i1] if direct else total[: i1 - i0]  # type: ignore[index]  # (r, S)
        for h0, h1 in heads:
            if h0 == 0 and h1 == 1:
                block = acc.unsqueeze(0)  # the first head is the start of the sum
                scores.into(block, b, h0, h1, i0, i1)
                continue
            block = scratch[: h1 - h0, : i1 - i0]  # (g, r, S)
            scores.into(block, b, h0, h1, i0, i1)
            heads_sum = block[0] if h1 - h0 == 1 else block.sum(dim=0)  # (r, S)
            if h0 == 0:
                acc.copy_(heads_sum)
            else:
                acc.add_(heads_sum)
        if isinstance(result, TopKWeights):
            _store_top_k(result, (b, slice(i0, i1)), acc)
        elif not direct:
            result[b, i0:i1] = acc  # into the result's dtype


def _block_shape(heads: int, queries: int, keys: int, causal: bool) -> tuple[int, int]:
    """(heads, rows) per step so that one step's weights are about BLOCK_ELEMENTS: whole heads at a time
    when a head's (Q, S) weights are small, else a block of rows of one head. Causal layers go by blocks
    of rows (about Q / 8), so that the keys after a block's last row are neither multiplied nor exponentiated."""
    per_head = max(1, queries * keys)
    if per_head <= BLOCK_ELEMENTS and not causal:
        return max(1, min(heads, BLOCK_ELEMENTS // per_head)), max(1, queries)
    rows = min(queries, BLOCK_ELEMENTS // max(1, keys))
    if causal:
        rows = min(rows, max(CAUSAL_ROWS, queries // 8))
    return 1, max(1, rows)


def _mask_block(mask: Tensor, b: int, h0: int, h1: int, i0: int, i1: int) -> Tensor:
    """The part of a (B|1, H|1, Q|1, S) mask for batch b, heads h0:h1, rows i0:i1: (g|1, r|1, S)."""
    mb, mh, mq, _ = mask.shape
    return mask[b if mb > 1 else 0, slice(h0, h1) if mh > 1 else slice(None), slice(i0, i1) if mq > 1 else slice(None)]


def _exp_scores(
    block: Tensor, q: Tensor, kt: Tensor, bias: Tensor, mask: Tensor | None, alpha: float, causal_row0: int | None
) -> None:
    """``block = exp2(alpha·q kᵀ + bias + mask·log2 e)`` in place.

    block (g, r, S); q (g, r, D); kt (g, D, S); bias (g, r, 1) (already in log2 units); mask (g|1, r|1, S).
    With ``causal_row0`` (rows are queries causal_row0 … causal_row0 + r − 1 of a causal layer, Q == S)
    only keys up to the last row are computed, the rest set to 0.
    """
    if causal_row0 is None:
        torch.baddbmm(bias, q, kt, alpha=alpha, out=block)
    else:
        end = causal_row0 + block.shape[1]  # keys ≥ end are in every row's future
        block[..., end:] = 0.0
        block = block[..., :end]
        torch.baddbmm(bias, q, kt[..., :end], alpha=alpha, out=block)
    if mask is not None:
        block.add_(mask, alpha=LOG2E)
    block.exp2_()
    if causal_row0 is not None:
        block[..., causal_row0:].tril_()  # the diagonal square: zero above it


def _store_top_k(result: TopKWeights, where: tuple, block: Tensor) -> None:
    """Write the top k (k = result's last size) of each row of ``block`` into ``result`` at index ``where``."""
    values, indices = block.topk(result.values.shape[-1], dim=-1)
    result.values[where] = values
    result.indices[where] = indices
