"""The ``attnlab bench`` sub-command: one sub-command per benchmark module.

To add a benchmark, write a module with ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int`` and
list it in :data:`BENCHMARKS`.
"""

from __future__ import annotations

import argparse
import importlib

# name -> module implementing it
BENCHMARKS: dict[str, str] = {
    "attention": "attnlab.bench.attention",
    "complexity": "attnlab.bench.complexity",
    "dropout": "attnlab.bench.dropout",
    "forecast": "attnlab.bench.forecast",
    "translate": "attnlab.bench.translate",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench`` and its sub-commands; each sets ``func`` to its module's ``run``."""
    bench = subparsers.add_parser("bench", help="measure speed and memory", description=__doc__.splitlines()[0])
    names = bench.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        parser = names.add_parser(name, help=module.HELP, description=module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(parser)
        parser.set_defaults(func=module.run)
