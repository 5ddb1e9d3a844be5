"""``attnlab report RUN_DIR [--open]``: (re)build a run's ``report.html`` from its folder.

Exit status: 0 when the report is written; 2 (one-line message) when the folder is not a run or a
file in it is damaged (no report is written), and also when the run has no saved attention: the
partial report is still written and the message says so. Other missing parts (figures, logs, an
unfinished run's metrics) are named on the page only.
"""

from __future__ import annotations

import argparse
import logging
import webbrowser
from pathlib import Path

from attnlab.errors import UserError
from attnlab.paths import run_folder

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` sub-command."""
    parser = subparsers.add_parser(
        "report",
        help="build RUN_DIR/report.html: config, metrics, curves, figures and an attention explorer (offline)",
        description="Build RUN_DIR/report.html from the run folder alone: resolved config, metrics, loss curves, "
        "the task's figures and outputs, and an interactive attention explorer. One file, no network needed.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run folder written by `attnlab fit`")
    parser.add_argument("--open", action="store_true", help="open the report in the default web browser")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    run_folder(args.run_dir, "RUN_DIR")
    from attnlab.report.contents import read_run
    from attnlab.report.page import write_report

    contents = read_run(args.run_dir)
    path = write_report(contents)
    print(path)
    if args.open:
        webbrowser.open(path.resolve().as_uri())
    others = [part for part in contents.missing if not part.startswith("attention")]
    if contents.attention is None:
        also = f"; also missing: {'; '.join(others)}" if others else ""
        raise UserError(f"{args.run_dir} has no saved attention (attention.json){also}; "
                        f"wrote a partial report to {path}")
    for part in others:
        log.warning("partial run, the report names what is missing: %s", part)
    return 0
