"""What the commands share on the console: logging to stderr, options mixed with ``key=value`` overrides,
and the lines that end every run's summary. Standard library only, so importing it costs nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

_RANK_ENV = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


def is_rank_zero() -> bool:
    """True unless the environment says this process is not global rank 0 (DDP children, other nodes)."""
    return all(os.environ.get(name, "0") == "0" for name in _RANK_ENV)


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (which tests and notebooks may swap)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_logging() -> None:
    """Show attnlab's info messages (one line each, ``attnlab: ...``) on stderr, from rank 0 only."""
    logger = logging.getLogger("attnlab")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("attnlab: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if is_rank_zero() else logging.WARNING)


def parse_tail(args: argparse.Namespace, parser: argparse.ArgumentParser, prog: str,
               add_options: Callable[..., None], extend: tuple[str, ...] = ()) -> list[str]:
    """Split ``args.rest`` (the tail after the positional arguments) into options, merged into ``args``,
    and the ``key=value`` overrides it returns; ``-h`` anywhere prints ``parser``'s help. Options named in
    ``extend`` are lists appended to what came before the tail instead of replacing it."""
    if any(item in ("-h", "--help") for item in args.rest):
        parser.print_help()
        raise SystemExit(0)
    tail = argparse.ArgumentParser(prog=prog, add_help=False)
    add_options(tail, suppress=True)
    tail.add_argument("overrides", nargs="*")
    parsed = vars(tail.parse_intermixed_args(args.rest))
    overrides = parsed.pop("overrides")
    for name in extend:
        more = parsed.pop(name, None)
        if more:
            setattr(args, name, (getattr(args, name) or []) + more)
    vars(args).update(parsed)
    return overrides


def add_run_options(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    """Options every training command takes: ``--keep-checkpoints``, ``--no-progress``, ``--no-figures``."""
    parser.add_argument("--keep-checkpoints", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="keep checkpoints/last.ckpt (weights + optimiser state) when the run completes, so it can "
                        "be resumed for more epochs (default: keep the best weights only)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        default=argparse.SUPPRESS if suppress else True, help="hide the progress bar")
    parser.add_argument("--no-figures", dest="figures", action="store_false",
                        default=argparse.SUPPRESS if suppress else True, help="do not draw figures")


def run_footer(result: Any) -> list[str]:
    """The last lines of a run's summary: how training stopped, its warnings, and the report's path (last)."""
    lines = [f"  stopped by {result.stopped_by.replace('_', ' ')} after {result.epochs} epoch(s), {result.steps} steps"]
    lines += [f"  warning: {text}" for text in result.warnings]
    report = result.run_dir / "report.html"
    if report.is_file():
        lines.append(f"  report: {report}")
    return lines
