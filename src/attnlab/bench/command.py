"""The ``attnlab bench`` sub-command: one sub-command per benchmark module.

A benchmark is a module with ``add_arguments(parser)`` and ``run(args) -> int``, listed in :data:`BENCHMARKS`
with its one-line help. The module is imported only when its benchmark runs (or shows its ``--help``), so
``attnlab --help`` and ``attnlab bench --help`` need no torch.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

# name -> (module implementing it, one-line help)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "attention": ("attnlab.bench.attention",
                  "time attnlab's multi-head attention against torch's, a naive one and a matrix product"),
    "complexity": ("attnlab.bench.complexity",
                   "how time and memory grow with sequence length: GRU, LSTM, convolution, self-attention"),
    "dropout": ("attnlab.bench.dropout",
                "time attnlab's CPU dropout against torch's, alone and in a patch_transformer training step"),
    "forecast": ("attnlab.bench.forecast",
                 "forecast models on a CSV under the ETT protocol, next to published numbers"),
    "m4": ("attnlab.bench.m4",
           "the M4 competition's protocol on one group (sMAPE, MASE, OWA, MSIS), next to its published table"),
    "scale": ("attnlab.bench.scale",
              "a generated panel of many series trained on 1 and N processes (DDP): rows/s, peak RSS, equal losses, "
              "MASE"),
    "translate": ("attnlab.bench.translate",
                  "train each translation model for a fixed number of epochs; BLEU, chrF, parameters, decoding speed"),
    "startup": ("attnlab.bench.startup",
                "how fast the CLI answers (--version, --help, list, an error) against `python -c 'import torch'`"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench`` and one sub-command per benchmark; its options are parsed when it runs."""
    bench = subparsers.add_parser("bench", help="measure speed and memory", description=__doc__.splitlines()[0])
    names = bench.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, (module_name, help_text) in BENCHMARKS.items():
        parser = names.add_parser(name, help=help_text, add_help=False,
                                  description=f"{help_text}. `attnlab bench {name} --help` lists its options.")
        parser.set_defaults(func=_runner(name, module_name, help_text), extra_args=True)


def benchmark_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    """The full argument parser of benchmark ``name`` and its module (imported here)."""
    module_name, help_text = BENCHMARKS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"attnlab bench {name}", description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    return parser, module


def _runner(name: str, module_name: str, help_text: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        parser, module = benchmark_parser(name)
        return module.run(parser.parse_args(args.extra))

    return run
