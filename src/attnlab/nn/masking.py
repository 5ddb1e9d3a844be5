"""Masks and the masked softmax.

Convention inside attnlab: a boolean mask is ``True`` where a query **may attend** (the
``scaled_dot_product_attention`` convention). :class:`~attnlab.nn.MultiHeadAttention` also accepts
the masks of ``torch.nn.MultiheadAttention`` (``True`` = ignore) and converts them with
:func:`torch_masks_to_allowed`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sequence_mask(lengths: Tensor, max_len: int) -> Tensor:
    """Boolean mask of valid positions.

    Args:
        lengths: (B,) or (B, Q) integer lengths.
        max_len: number of key positions K.

    Returns:
        (*lengths.shape, K) bool, ``True`` at positions ``< length``.
    """
    positions = torch.arange(max_len, device=lengths.device)
    return positions < lengths.unsqueeze(-1)  # (..., K)


def causal_mask(q_len: int, k_len: int | None = None, device: torch.device | None = None) -> Tensor:
    """Boolean (Q, K) mask, ``True`` where query i may attend key j.

    Queries are aligned to the **end** of the keys (bottom-right), which is what incremental
    decoding needs: with ``k_len = past + q_len``, query i sits at absolute position ``past + i``
    and sees keys ``0 … past + i``. For ``q_len == k_len`` this is the usual lower triangle.
    """
    k_len = q_len if k_len is None else k_len
    offset = k_len - q_len
    rows = torch.arange(q_len, device=device).unsqueeze(1)  # (Q, 1)
    cols = torch.arange(k_len, device=device).unsqueeze(0)  # (1, K)
    return cols <= rows + offset  # (Q, K)


def masked_softmax(scores: Tensor, mask: Tensor | None = None, valid_lens: Tensor | None = None) -> Tensor:
    """Softmax over the last axis that ignores masked keys.

    Args:
        scores: (..., Q, K) attention scores. Entries equal to ``-inf`` count as masked.
        mask: boolean, ``True`` = attend; broadcastable to ``scores``.
        valid_lens: (B,) or (B, Q) number of valid keys per batch element (or per query), as in d2l.
            ``scores`` must then be (B, Q, K) or (B, H, Q, K).

    Returns:
        Weights of the shape of ``scores``. A row whose keys are all masked gets all-zero
        weights (never NaN, never uniform) and a zero, finite gradient.
    """
    allowed = _combine(scores, mask, valid_lens)
    neg_inf = torch.isneginf(scores)  # scores may exclude keys themselves (bounded kernels)
    if neg_inf.any():
        allowed = ~neg_inf if allowed is None else allowed & ~neg_inf
    return softmax_allowed(scores, allowed)


def softmax_allowed(scores: Tensor, allowed: Tensor | None) -> Tensor:
    """Softmax over the last axis restricted to ``allowed`` keys (bool, broadcastable to ``scores``).

    The fused ``torch.softmax`` does the work; rows with no allowed key are filled with zeros
    before and after it, so they get zero weights and zero (finite) gradients instead of NaN.
    Assumes ``scores`` is finite wherever ``allowed`` is True (use :func:`masked_softmax` otherwise).
    """
    if allowed is None:
        return torch.softmax(scores, dim=-1)
    empty = ~allowed.any(dim=-1, keepdim=True)  # (..., Q, 1): rows with nothing to attend
    scores = scores.masked_fill(~allowed, float("-inf"))
    if not empty.any():
        return torch.softmax(scores, dim=-1)
    weights = torch.softmax(scores.masked_fill(empty, 0.0), dim=-1)
    return weights.masked_fill(empty, 0.0)


def _combine(scores: Tensor, mask: Tensor | None, valid_lens: Tensor | None) -> Tensor | None:
    """Merge a boolean mask and valid lengths into one ``True`` = attend mask (or None)."""
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True = attend), got dtype {mask.dtype}")
    if valid_lens is None:
        return mask
    if valid_lens.dim() not in (1, 2):
        raise ValueError(f"valid_lens must have shape (B,) or (B, Q), got {tuple(valid_lens.shape)}")
    lens_mask = sequence_mask(valid_lens, scores.shape[-1])  # (B, K) or (B, Q, K)
    if valid_lens.dim() == 1:
        lens_mask = lens_mask.unsqueeze(-2)  # (B, 1, K)
    if scores.dim() == 4:
        lens_mask = lens_mask.unsqueeze(1)  # (B, 1, Q|1, K): same for every head
    return lens_mask if mask is None else lens_mask & mask


def torch_masks_to_allowed(
    key_padding_mask: Tensor | None,
    attn_mask: Tensor | None,
    batch: int,
    num_heads: int,
    q_len: int,
    k_len: int,
    dtype: torch.dtype,
) -> Tensor | None:
    """Convert ``torch.nn.MultiheadAttention``-style masks into one mask for (B, H, Q, K) scores.

    Args:
        key_padding_mask: (B, K); bool ``True`` = ignore that key, or float added to the scores.
        attn_mask: (Q, K) or (B·H, Q, K); bool ``True`` = not allowed, or float added.

    Returns:
        ``None`` if there is no mask; a bool mask (``True`` = attend) if all masks are boolean;
        otherwise an additive float mask (``-inf`` = masked) of dtype ``dtype``.
        Broadcastable to (B, H, Q, K).
    """
    parts: list[Tensor] = []
    if attn_mask is not None:
        if attn_mask.dim() == 2:
            _check_shape("attn_mask", attn_mask, (q_len, k_len))
            parts.append(attn_mask.view(1, 1, q_len, k_len))
        elif attn_mask.dim() == 3:
            _check_shape("attn_mask", attn_mask, (batch * num_heads, q_len, k_len))
            parts.append(attn_mask.view(batch, num_heads, q_len, k_len))
        else:
            raise ValueError(
                f"attn_mask must be (L, S) or (N*num_heads, L, S), got shape {tuple(attn_mask.shape)}"
            )
    if key_padding_mask is not None:
        _check_shape("key_padding_mask", key_padding_mask, (batch, k_len))
        parts.append(key_padding_mask.view(batch, 1, 1, k_len))
    if not parts:
        return None
    if all(p.dtype == torch.bool for p in parts):
        blocked = parts[0]
        for p in parts[1:]:
            blocked = blocked | p
        return ~blocked
    additive = None
    for p in parts:
        term = torch.zeros(p.shape, dtype=dtype, device=p.device).masked_fill(p, float("-inf")) \
            if p.dtype == torch.bool else p.to(dtype)
        additive = term if additive is None else additive + term
    return additive


def additive_mask(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """A mask as fused kernels take it: additive, of ``dtype``, 4-D.

    Args:
        mask: bool (``True`` = attend) or additive float, broadcastable to (B, H, Q, K) with at most 4 dims.
        dtype: the scores' dtype.

    Returns:
        ``None`` for ``None``; else a float mask (0 = attend, ``-inf`` = masked, other values added),
        (B|1, H|1, Q|1, K).
    """
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
    else:
        mask = mask.to(dtype)
    return mask[(None,) * (4 - mask.dim())]  # (B|1, H|1, Q|1, K)


def _check_shape(name: str, t: Tensor, expected: tuple[int, ...]) -> None:
    if tuple(t.shape) != expected:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {expected}")
