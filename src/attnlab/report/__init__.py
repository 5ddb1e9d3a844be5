"""The run report: one self-contained HTML page per run, with an attention model view and explorer.

Public API (imported on first use):

* :func:`build_report` — write ``RUN_DIR/report.html`` from the run folder alone.
* :func:`read_run` / :class:`RunContents` — what a run folder holds (errors vs missing parts).
* :func:`save_attention` / :func:`load_attention` — the attention saved with a run.
* :func:`collect_attention`, :func:`record_maps`, :func:`samples_from_maps` — helpers for
  ``Experiment.attention_samples``.
* :func:`export_attention` — the saved attention as a tidy CSV or Parquet table.
* :func:`write_demo_index` — the ``index.html`` of an ``attnlab demo`` folder.

Names are imported on first use, so that ``attnlab.report.command`` (the CLI) loads without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "collect_attention": "attention",
    "load_attention": "attention",
    "merge_calls": "attention",
    "record_maps": "attention",
    "samples_from_maps": "attention",
    "save_attention": "attention",
    "RunContents": "contents",
    "read_run": "contents",
    "export_attention": "export",
    "write_demo_index": "index",
    "build_report": "page",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
