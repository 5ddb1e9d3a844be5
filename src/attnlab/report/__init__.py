"""The run report: one self-contained HTML page per run, with an interactive attention explorer.

Public API:

* :func:`build_report` — write ``RUN_DIR/report.html`` from the run folder alone.
* :func:`read_run` / :class:`RunContents` — what a run folder holds (errors vs missing parts).
* :func:`save_attention` / :func:`load_attention` — the attention saved with a run.
* :func:`collect_attention`, :func:`record_maps`, :func:`samples_from_maps` — helpers for
  ``Experiment.attention_samples``.
* :func:`write_demo_index` — the ``index.html`` of an ``attnlab demo`` folder.
"""

from attnlab.report.attention import (
    collect_attention,
    load_attention,
    merge_calls,
    record_maps,
    samples_from_maps,
    save_attention,
)
from attnlab.report.contents import RunContents, read_run
from attnlab.report.index import write_demo_index
from attnlab.report.page import build_report

__all__ = [
    "RunContents",
    "build_report",
    "collect_attention",
    "load_attention",
    "merge_calls",
    "read_run",
    "record_maps",
    "samples_from_maps",
    "save_attention",
    "write_demo_index",
]
