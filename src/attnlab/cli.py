"""The ``attnlab`` command-line workbench: parses arguments and dispatches; no logic of its own.

Each sub-command lives in a module that exposes ``register(subparsers)``; the parser it adds sets
``func`` to the function that runs it (``func(args) -> int``). Command modules import only the standard
library and attnlab's torch-free modules at the top, so ``--help``, ``--version``, ``list`` and argument
errors answer without loading torch; what a command needs is imported when it runs.
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
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import MODULE first (repeatable): a module that registers your own models or "
                        "experiments with attnlab.register_model / register_experiment")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        if args.imports:
            from attnlab.registry import import_modules

            import_modules(args.imports)
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
