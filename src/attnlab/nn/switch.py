"""One switch for the whole library: fused attention kernels or the readable reference path.

The fused path calls :func:`torch.nn.functional.scaled_dot_product_attention` and never
materialises the (Q, K) weight matrix. The reference path computes ``softmax(q kᵀ/√d) v`` step by
step, exactly as a textbook writes it. Both give the same numbers; the reference path is what
teaching code and tests compare against.

The reference path is forced by, in increasing priority:

* the environment variable ``ATTNLAB_REFERENCE_ATTENTION=1`` (read once, at import);
* :func:`set_reference_attention` (process-wide);
* the context manager :func:`use_reference_attention` (restores the previous setting on exit).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

_TRUE = {"1", "true", "yes", "on"}
_reference: bool = os.environ.get("ATTNLAB_REFERENCE_ATTENTION", "").strip().lower() in _TRUE


def reference_attention_enabled() -> bool:
    """True when every attention layer must take the reference (weights-materialising) path."""
    return _reference


def set_reference_attention(enabled: bool) -> None:
    """Force (``True``) or release (``False``) the reference path for the whole process."""
    global _reference
    _reference = bool(enabled)


@contextmanager
def use_reference_attention(enabled: bool = True) -> Iterator[None]:
    """Within the block, every attention layer takes the reference path (or the fused one if
    ``enabled=False``); the previous setting is restored on exit.

    Example::

        with use_reference_attention():
            out_ref = model(x)
        out_fast = model(x)
    """
    previous = _reference
    set_reference_attention(enabled)
    try:
        yield
    finally:
        set_reference_attention(previous)
