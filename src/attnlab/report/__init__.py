"""The run report: one self-contained HTML page per run, with an interactive attention explorer.

Public API (imported on first use):

* :func:`build_report` — write ``RUN_DIR/report.html`` from the run folder alone.
* :func:`read_run` / :class:`RunContents` — what a run folder holds (errors vs missing parts).
* :func:`save_attention` / :func:`load_attention` — the attention saved with a run.
* :func:`collect_attention`, :func:`record_maps`, :func:`samples_from_maps` — helpers for
  ``Experiment.attention_samples``.
* :func:`write_demo_index` — the ``index.html`` of an ``attnlab demo`` folder.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    **{name: "attnlab.report.attention" for name in
       ("collect_attention", "load_attention", "merge_calls", "record_maps", "samples_from_maps", "save_attention")},
    "RunContents": "attnlab.report.contents",
    "read_run": "attnlab.report.contents",
    "write_demo_index": "attnlab.report.index",
    "build_report": "attnlab.report.page",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
