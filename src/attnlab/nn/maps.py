"""Attention maps with labelled axes, and the one rule every task uses to capture them from a model.

:func:`attnlab.nn.record_attention` gives raw weights per layer and call. This module turns them into what a
run saves and a report draws: :class:`AttentionMap` (one layer's (H, Q, K) weights for one example, with
query and key labels and a kind) and :class:`AttentionSample` (one example's maps). Tasks build their samples
with :func:`record_maps` (run a forward pass recorded, join repeated decoder-step calls) and
:func:`samples_from_maps` (split the batch into examples, attach labels, crop padding), or both at once with
:func:`collect_attention`. The kind of a layer comes from :func:`infer_kind` everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.nn.attention import Attention
from attnlab.nn.record import RECORDABLE, record_attention

KINDS = ("self", "cross", "pooling")
ROLE_WORDS = {"self": "self-attention", "cross": "cross-attention", "pooling": "attention pooling"}

# labels(i, layer, kind) -> (query labels, key labels) of example i of a batch
Labels = Callable[[int, str, str], tuple[Sequence[Any], Sequence[Any]]]


@dataclass
class AttentionMap:
    """The weights of one attention layer for one example, with what its axes mean.

    Attributes:
        layer: the layer's qualified name in the model (e.g. ``"decoder.layers.0.cross_attn"``).
        kind: ``"self"``, ``"cross"`` or ``"pooling"``.
        weights: (H, Q, K) float32 — one row per query, summing to 1 over keys (H = 1 for single-head).
        query_labels: Q labels (tokens, time stamps, patch indices, …).
        key_labels: K labels.
        full_shape: (Q, K) of the whole map when the saved weights are its top-left corner (a run keeps its
            saved attention under a byte budget); None when nothing was cropped.
    """

    layer: str
    kind: str
    weights: Tensor
    query_labels: list[str]
    key_labels: list[str]
    full_shape: tuple[int, int] | None = None


@dataclass
class AttentionSample:
    """One held-out example whose attention a report shows: a title and one map per attention layer.

    Attributes:
        title: what the example is (``"test series 3 (first 80 steps)"``).
        maps: one map per attention layer, in the model's order.
        in_figures: the task's figures draw this example; the report's explorer opens on the first such sample.
    """

    title: str
    maps: list[AttentionMap]
    in_figures: bool = False


def has_attention(model: nn.Module) -> bool:
    """True if ``model`` holds an attnlab attention layer that :func:`attnlab.nn.record_attention` can see."""
    return any(isinstance(m, RECORDABLE) for m in model.modules())


def infer_kind(layer: str, module: nn.Module | None = None, queries: int | None = None,
               keys: int | None = None) -> str:
    """The kind of an attention layer — one rule for every task and the report.

    The layer's name decides first: ``cross`` if it says ``cross``, ``self`` if it says ``self``. Otherwise an
    :class:`~attnlab.nn.Attention` module (or, with no module to look at, any layer) is ``pooling`` — a query
    that is not one of the keys, e.g. a learned pooling query or a decoder state — and a multi-head layer is
    ``cross`` when its queries and keys differ in number, else ``self``.

    Args:
        layer: the layer's qualified name (``"encoder.layers.0.self_attn"``).
        module: the layer itself, when known.
        queries, keys: Q and K of its recorded weights, when known.

    Returns:
        ``"self"``, ``"cross"`` or ``"pooling"``.
    """
    name = layer.lower()
    if "cross" in name:
        return "cross"
    if "self" in name:
        return "self"
    if module is None or isinstance(module, Attention):
        return "pooling"
    return "cross" if queries is not None and keys is not None and queries != keys else "self"


def layer_role(layer: str, kind: str) -> str:
    """What a layer is, for people: ``"Decoder cross-attention, layer 2"`` for ``decoder.layers.1.cross_attn``.

    The part (encoder / decoder) comes from the name's first component (cross-attention is the decoder's);
    the layer number is the first integer component of the name plus 1 (layers count from 1); a channel
    suffix (``"encoder.layers.0.self_attn [OT]"``, a channel-independent forecaster) becomes ``", channel OT"``.

    Args:
        layer: the module path the map was recorded from (with an optional ``" [suffix]"``).
        kind: ``"self"``, ``"cross"`` or ``"pooling"``.

    Returns:
        The role, capitalised.
    """
    match = re.fullmatch(r"(.*?)(?: \[(.+)\])?", layer)
    path, suffix = (match.group(1), match.group(2)) if match else (layer, None)
    first = path.split(".")[0].lower()
    part = first if first in ("encoder", "decoder") else ("decoder" if kind == "cross" else "")
    number = re.search(r"(?:^|\.)(\d+)(?:\.|$)", path)
    role = " ".join(w for w in (part, ROLE_WORDS.get(kind, kind)) if w)
    if number:
        role += f", layer {int(number.group(1)) + 1}"
    if suffix:
        role += f", {suffix}" if suffix.startswith("row ") else f", channel {suffix}"
    return role[:1].upper() + role[1:]


def layer_roles(maps: Sequence[AttentionMap]) -> list[str]:
    """:func:`layer_role` of each map of one example; two maps with the same role get their module path added."""
    roles = [layer_role(m.layer, m.kind) for m in maps]
    return [f"{r} ({m.layer})" if roles.count(r) > 1 else r for r, m in zip(roles, maps, strict=True)]


def merge_calls(calls: Sequence[Tensor], newest_only: bool = False) -> Tensor:
    """Join the weights of the calls of one layer during one forward pass into one map per example.

    A decoder that generates step by step calls its layers once per step: with a KV cache, step t
    gives one query row over t + 1 self-attention keys (or over all S encoder keys for
    cross-attention). The rows are stacked along the query axis; a row with fewer keys than the
    longest is padded with zeros on the right (the keys it could not see yet).

    Args:
        calls: the recorded weights of each call, (B, H, Q_i, K_i) for multi-head layers or
            (B, Q_i, K_i) for :class:`attnlab.nn.Attention` (read as H = 1).
        newest_only: keep only the last query row of each call: for a decoder without a cache that
            re-runs its whole prefix at every step (call t holds t + 1 rows; the earlier ones repeat).

    Returns:
        (B, H, ΣQ_i, max K_i) float32 (ΣQ_i = number of calls when ``newest_only``).
    """
    if not calls:
        raise ValueError("merge_calls needs at least one recorded call")
    rows = []
    for weights in calls:
        if weights.dim() == 3:
            weights = weights.unsqueeze(1)  # (B, Q, K) -> (B, 1, Q, K)
        if weights.dim() != 4:
            raise ValueError(f"attention weights must be (B, H, Q, K) or (B, Q, K), got shape {tuple(weights.shape)}")
        rows.append(weights[:, :, -1:] if newest_only else weights)
    keys = max(w.shape[-1] for w in rows)
    rows = [F.pad(w, (0, keys - w.shape[-1])) for w in rows]  # right-pad keys with zeros
    return torch.cat(rows, dim=2).float()  # (B, H, ΣQ, K)


class LayerMaps(dict[str, Tensor]):
    """Layer name -> its weights (B, H, Q, K), in order of first call, with each layer's kind in ``kinds``
    (:func:`infer_kind` from the name, the module and the shape)."""

    def __init__(self, maps: Mapping[str, Tensor] = (), kinds: Mapping[str, str] = ()) -> None:
        super().__init__(maps)
        self.kinds = dict(kinds)


def record_maps(model: nn.Module, forward: Callable[[], Any], newest_only: bool = False) -> tuple[Any, LayerMaps]:
    """Run ``forward()`` once with every attention layer of ``model`` recorded, in eval mode, without gradients.

    Args:
        model: the model ``forward`` calls (its training mode is restored afterwards).
        forward: a function of no arguments that runs the model on a batch, e.g. ``lambda: model(x)``.
        newest_only: see :func:`merge_calls`.

    Returns:
        ``(output, maps)``: what ``forward()`` returned, and for each attention layer in order of first
        call, its weights (B, H, Q, K) with repeated calls joined along Q (:func:`merge_calls`), with the
        layers' kinds. ``maps`` is empty for a model without attnlab attention layers.
    """
    was_training = model.training
    model.eval()
    try:
        if not has_attention(model):
            with torch.no_grad():
                return forward(), LayerMaps()
        with torch.no_grad(), record_attention(model) as record:
            output = forward()
    finally:
        model.train(was_training)
    maps = {name: merge_calls(calls, newest_only).cpu() for name, calls in record.items()}
    modules = dict(model.named_modules())
    kinds = {name: infer_kind(name, modules.get(name), w.shape[2], w.shape[3]) for name, w in maps.items()}
    return output, LayerMaps(maps, kinds)


def samples_from_maps(
    maps: Mapping[str, Tensor],
    titles: Sequence[str],
    labels: Labels,
    kind: Callable[[str], str] | None = None,
) -> list[AttentionSample]:
    """Split batched maps into one :class:`AttentionSample` per example, with labelled axes.

    Args:
        maps: layer name -> (B, H, Q, K) weights (what :func:`record_maps` returns).
        titles: B titles, one per example (e.g. ``"test sentence 3: BLEU 41.2"``).
        labels: ``labels(i, layer, kind) -> (query_labels, key_labels)`` for example ``i`` of the
            batch. Labels are turned into strings. Fewer labels than rows or columns crop the map
            to its top-left corner: return only the real tokens of a padded example to drop the padding.
        kind: layer name -> ``"self"``, ``"cross"`` or ``"pooling"``; None = the kinds :func:`record_maps`
            found (:func:`infer_kind` from the name alone for maps of another origin).

    Returns:
        B samples; each holds one :class:`AttentionMap` per layer, weights (H, Q, K) float32 on the CPU.
    """
    samples = [AttentionSample(str(title), []) for title in titles]
    kinds = maps.kinds if isinstance(maps, LayerMaps) else {}
    for layer, weights in maps.items():
        if weights.dim() != 4 or weights.shape[0] != len(titles):
            raise ValueError(f"layer {layer}: expected weights (B={len(titles)}, H, Q, K), got {tuple(weights.shape)}")
        layer_kind = kind(layer) if kind is not None else kinds.get(layer) or infer_kind(layer)
        if layer_kind not in KINDS:
            raise ValueError(f"layer {layer}: kind {layer_kind!r} is not one of {', '.join(KINDS)}")
        for i, sample in enumerate(samples):
            queries, keys = (list(map(str, axis)) for axis in labels(i, layer, layer_kind))
            if len(queries) > weights.shape[2] or len(keys) > weights.shape[3]:
                raise ValueError(f"layer {layer}, example {i}: {len(queries)} query and {len(keys)} key labels "
                                 f"for a map of {weights.shape[2]} queries and {weights.shape[3]} keys")
            w = weights[i, :, : len(queries), : len(keys)].detach().float().cpu().contiguous()  # (H, Q, K)
            sample.maps.append(AttentionMap(layer, layer_kind, w, queries, keys))
    return samples


def collect_attention(
    model: nn.Module,
    forward: Callable[[], Any],
    titles: Sequence[str],
    labels: Labels,
    kind: Callable[[str], str] | None = None,
    newest_only: bool = False,
) -> list[AttentionSample]:
    """:func:`record_maps` then :func:`samples_from_maps`: the common case of ``Experiment.attention_samples``.

    Example (a Transformer encoder over token ids ``x`` (B, L))::

        tokens = [[vocab[t] for t in row] for row in x.tolist()]
        return collect_attention(model, lambda: model(x), [f"test {i}" for i in range(len(x))],
                                 lambda i, layer, kind: (tokens[i], tokens[i]))

    Returns [] for a model without attention layers.
    """
    _, maps = record_maps(model, forward, newest_only)
    return samples_from_maps(maps, titles, labels, kind) if maps else []
