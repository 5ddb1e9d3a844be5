"""Translation from a trained run folder, and the ``attnlab translate`` command.

:func:`load_run` rebuilds a ``translate`` run's model and vocabularies from its folder (JSON + safetensors,
no pickle); :class:`RunTranslator` translates sentences and traces their attention. Imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"RunTranslator": "attnlab.translate.run", "load_run": "attnlab.translate.run"}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
