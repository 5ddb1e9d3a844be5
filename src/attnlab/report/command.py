"""``attnlab report RUN_DIR [--open]`` and ``attnlab attention RUN_DIR --out FILE``.

``report`` (re)builds a run's ``report.html`` from its folder. Exit status: 0 when the report is written;
2 (one-line message) when the folder is not a run or a file in it is damaged (no report is written), and
also when the run has no saved attention: the partial report is still written and the message says so.
Other missing parts (figures, logs, an unfinished run's metrics) are named on the page only.

``attention`` writes the run's saved attention as a tidy table (:mod:`attnlab.report.export`).

This module is imported by the CLI at start-up: its top level uses only the standard library; the report's
modules (torch, numpy, safetensors) are imported when a command runs.
"""

from __future__ import annotations

import argparse
import logging
import webbrowser
from pathlib import Path

from attnlab.errors import UserError
from attnlab.paths import run_folder

log = logging.getLogger(__name__)

ATTENTION_EPILOG = """\
columns: sample, sample_title, layer (its role, e.g. "Decoder cross-attention, layer 2"), layer_name (the
module path), kind (self | cross | pooling), head, query, query_label, key, key_label, weight.
Samples, layers and heads are numbered from 1, as in the report; query and key are positions from 0.

examples:
  attnlab attention runs/squares-transformer-20250101-120000 --out weights.csv
  attnlab attention RUN --out weights.parquet
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` and ``attention`` sub-commands."""
    parser = subparsers.add_parser(
        "report",
        help="build RUN_DIR/report.html: results, figures, attention model view and explorer, curves (offline)",
        description="Build RUN_DIR/report.html from the run folder alone: headline metrics with their baselines, "
        "the task's figures, every attention layer and head, an interactive explorer with PNG/SVG export, the "
        "loss curves, outputs and the resolved config. One file, no network needed.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run folder written by `attnlab fit`")
    parser.add_argument("--open", action="store_true", help="open the report in the default web browser")
    parser.set_defaults(func=_run)

    export = subparsers.add_parser(
        "attention",
        help="write a run's saved attention as a tidy table: sample, layer, head, query, key, weight (+ labels)",
        description="Write the attention a run saved (attention.safetensors + attention.json) as one tidy table, "
        "one row per sample x layer x head x query x key.",
        epilog=ATTENTION_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run folder written by `attnlab fit`")
    export.add_argument("--out", "-o", required=True, type=Path, metavar="FILE",
                        help="FILE.csv or FILE.parquet; an existing file is replaced only "
                        "if it is a previous export")
    export.set_defaults(func=_run_attention)


def _run(args: argparse.Namespace) -> int:
    run_folder(args.run_dir, "RUN_DIR")
    from attnlab.report.contents import read_run
    from attnlab.report.page import write_report

    contents = read_run(args.run_dir)
    path = write_report(contents)
    if args.open:
        webbrowser.open(path.resolve().as_uri())
    others = [part for part in contents.missing if not part.startswith("attention")]
    if contents.attention is None:
        also = f"; also missing: {'; '.join(others)}" if others else ""
        print(path)
        raise UserError(f"{args.run_dir} has no saved attention (attention.json){also}; "
                        f"wrote a partial report to {path}")
    for part in others:
        log.warning("partial run, the report names what is missing: %s", part)
    print(path)
    return 0


def _run_attention(args: argparse.Namespace) -> int:
    from attnlab.report.export import export_attention

    path, rows = export_attention(args.run_dir, args.out)
    print(f"{rows:,} rows")
    print(path)
    return 0
