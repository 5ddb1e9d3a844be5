"""The ``attnlab`` command-line workbench: parses arguments and dispatches; no logic of its own.

Each sub-command lives in a module that exposes ``register(subparsers)``; the parser it adds sets
``func`` to the function that runs it (``func(args) -> int``).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from attnlab import __version__
from attnlab.errors import Interrupted, UserError

# Modules that add sub-commands, in the order `attnlab --help` lists them.
COMMAND_MODULES = (
    "attnlab.demo",
    "attnlab.train.command",
    "attnlab.bench.command",
    "attnlab.forecast.command",
    "attnlab.translate.command",
    "attnlab.report.command",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnlab", description="attnlab: attention on sequences, measured and shown.")
    parser.add_argument("--version", action="version", version=f"attnlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"attnlab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        hint = f"; {err}" if isinstance(err, Interrupted) and str(err) else ""
        print(f"attnlab: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
