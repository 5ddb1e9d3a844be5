"""Record the attention weights of every layer and head of any model, only when asked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn

from attnlab.nn.attention import Attention
from attnlab.nn.mha import MultiHeadAttention

RECORDABLE = (MultiHeadAttention, Attention)


class AttentionRecord(dict[str, list[Tensor]]):
    """Maps a layer's qualified name (e.g. ``"layers.0.self_attn"``) to the weights of each call.

    Each entry is detached: (B, H, Q, K) for multi-head layers, (B, Q, K) for :class:`Attention`.
    """

    def last(self) -> dict[str, Tensor]:
        """The weights of the most recent call of each layer."""
        return {name: calls[-1] for name, calls in self.items()}


@contextmanager
def record_attention(model: nn.Module) -> Iterator[AttentionRecord]:
    """Record the attention weights of every attention layer in ``model`` while the block runs.

    Recorded layers take the reference path (weights must exist to be recorded); outside the block
    they go back to the fused path, and no hook or check beyond one attribute test remains.

    Example::

        with record_attention(model) as rec:
            model(x)
        rec["layers.0.self_attn"][0]  # (B, H, L, L)
    """
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, RECORDABLE)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no attnlab attention layers to record "
                         "(attnlab.nn.MultiHeadAttention or attnlab.nn.Attention)")
    record = AttentionRecord()
    previous = [m.recorder for _, m in layers]
    for name, module in layers:
        module.recorder = _appender(record, name or type(module).__name__)
    try:
        yield record
    finally:
        for (_, module), prev in zip(layers, previous, strict=True):
            module.recorder = prev


def _appender(record: AttentionRecord, name: str):
    def add(weights: Tensor) -> None:
        record.setdefault(name, []).append(weights)

    return add
