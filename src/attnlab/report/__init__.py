"""The run report: one self-contained HTML page per run, with an attention model view and explorer.

Public API (imported on first use):

* :func:`build_report` — write ``RUN_DIR/report.html`` from the run folder alone.
* :func:`read_run` / :class:`RunContents` — what a run folder holds (errors vs missing parts).
* :func:`save_attention` / :func:`load_attention` — the attention saved with a run.
* :func:`export_attention` — the saved attention as a tidy CSV or Parquet table.

Tasks capture the attention a run saves with :mod:`attnlab.nn.maps` (``collect_attention``, ``record_maps``,
``samples_from_maps``).

Names are imported on first use, so that ``attnlab.report.command`` (the CLI) loads without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "load_attention": "attention",
    "save_attention": "attention",
    "RunContents": "contents",
    "read_run": "contents",
    "export_attention": "export",
    "build_report": "page",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
