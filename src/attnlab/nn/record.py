"""Record the attention weights of every layer and head of any model, only when asked."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import Tensor, nn

from attnlab.nn.attention import Attention
from attnlab.nn.mha import MultiHeadAttention
from attnlab.nn.weights import LayerRecorder, QuerySelector, TopKWeights, WeightRequest

RECORDABLE = (MultiHeadAttention, Attention)


class AttentionRecord(dict[str, list[Tensor | TopKWeights]]):
    """Maps a layer's qualified name (e.g. ``"layers.0.self_attn"``) to the weights of each call.

    Each entry is detached: (B, H, Q, K) for multi-head layers, (B, Q, K) for :class:`Attention`, unless
    :func:`record_attention` was given filters (its docstring lists the shapes they give).
    """

    def last(self) -> dict[str, Tensor | TopKWeights]:
        """The weights of the most recent call of each layer."""
        return {name: calls[-1] for name, calls in self.items()}


@contextmanager
def record_attention(
    model: nn.Module,
    *,
    layers: str | Sequence[str] | None = None,
    heads: int | Sequence[int] | None = None,
    queries: QuerySelector = None,
    top_k: int | None = None,
    average_heads: bool = False,
) -> Iterator[AttentionRecord]:
    """Record the attention weights of the attention layers in ``model`` while the block runs.

    Multi-head layers keep running the fused kernel and form the weights from its log-sum-exp
    (:mod:`attnlab.nn.weights`), computing only what the filters ask for; outside the block nothing
    remains but one attribute test per layer.

    Args:
        model: any module holding :class:`~attnlab.nn.MultiHeadAttention` or :class:`~attnlab.nn.Attention`.
        layers: qualified layer names or glob patterns (``"encoder.*"``, ``"*.cross_attn"``) to record;
            None for all. A pattern that matches no attention layer raises a ValueError.
        heads: head indices to keep (negative from the end); None for all.
        queries: query rows of each call to keep: ``"last"``, an index, a slice (``slice(None, None, 8)``
            every 8th row) or a sequence of indices; None for all. The weights of one row cost O(S).
        top_k: keep only the ``top_k`` largest weights of each query row (at most S).
        average_heads: record the mean over the (kept) heads, built without a (B, H, Q, K) tensor.

    Yields:
        An :class:`AttentionRecord`. Per call, a multi-head layer records (B, H', Q', K) (H' kept heads,
        Q' kept queries), (B, Q', K) with ``average_heads``, or with ``top_k`` a
        :class:`~attnlab.nn.TopKWeights` ``(values, indices)`` of (B, H', Q', k) or (B, Q', k)
        (``.dense(K)`` scatters it back into zeros). :class:`~attnlab.nn.Attention` layers have no heads
        (``heads`` and ``average_heads`` do not apply): (B, Q', K) or top-k of (B, Q', k).

    Example::

        with record_attention(model) as rec:
            model(x)
        rec["layers.0.self_attn"][0]  # (B, H, L, L)
        with record_attention(model, layers="*.self_attn", queries="last", average_heads=True) as rec:
            model(x)
        rec["layers.0.self_attn"][0]  # (B, 1, L): the last query, mean over heads
    """
    request = WeightRequest(heads=heads, queries=queries, top_k=top_k, average_heads=average_heads)
    chosen = _select_layers(model, layers)
    record = AttentionRecord()
    previous = [m.recorder for _, m in chosen]
    for name, module in chosen:
        module.recorder = LayerRecorder(request, _appender(record, name))
    try:
        yield record
    finally:
        for (_, module), prev in zip(chosen, previous, strict=True):
            module.recorder = prev


def _select_layers(model: nn.Module, layers: str | Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    """The (record name, module) pairs of ``model``'s attention layers matching ``layers``."""
    found = [(name or type(m).__name__, m) for name, m in model.named_modules() if isinstance(m, RECORDABLE)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no attnlab attention layers to record "
                         "(attnlab.nn.MultiHeadAttention or attnlab.nn.Attention)")
    if layers is None:
        return found
    patterns = [layers] if isinstance(layers, str) else list(layers)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name, _ in found):
            names = ", ".join(name for name, _ in found)
            raise ValueError(f"layers={pattern!r} matches no attention layer of {type(model).__name__}; "
                             f"its layers are: {names}")
    return [(name, m) for name, m in found if any(fnmatch.fnmatchcase(name, p) for p in patterns)]


def _appender(record: AttentionRecord, name: str):
    def add(weights: Tensor | TopKWeights) -> None:
        record.setdefault(name, []).append(weights)

    return add
