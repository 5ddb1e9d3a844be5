"""``attnlab bench complexity``: its options, checked into a :class:`ComplexityConfig`, and the run."""

from __future__ import annotations

import argparse
import sys
import time

import torch

from attnlab.bench.cli import choices, number, output_path
from attnlab.bench.complexity.config import DEFAULT_LENGTHS, DEVICES, LAYERS, ComplexityConfig, default_heads
from attnlab.bench.complexity.measurement import run_complexity_bench
from attnlab.bench.complexity.plot import write_plot
from attnlab.bench.complexity.report import evaluate_targets, format_report, write_csv
from attnlab.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``attnlab bench complexity``. Values are checked in :func:`config_from_args`."""
    add = parser.add_argument
    add("--lengths", help=f"comma list of sequence lengths L (default {','.join(map(str, DEFAULT_LENGTHS))})")
    add("--d-model", help="feature size d of every layer (default 64)")
    add("--batch", help="batch size B (default 8)")
    add("--heads", help="attention heads; must divide --d-model (default: 4 for d_model 64, heads of >= 16 features)")
    add("--device", help="cpu or cuda (default cpu)")
    add("--layers", help=f"comma list of layers to measure (default all: {','.join(LAYERS)})")
    add("--repeats", help="measured samples per cell and round, at most (default 10)")
    add("--budget-s", help="seconds of measured samples per cell and round before it stops repeating (default 0.5)")
    add("--rounds", help="passes over all cells; each cell keeps its fastest round (default 2)")
    add("--max-memory-gb", help="skip a cell whose estimated memory exceeds this (default 70%% of available memory)")
    add("--keep-freed-memory", action=argparse.BooleanOptionalAction, default=True,
        help="reuse freed memory in the process instead of returning it to the OS, so that layers with large "
             "tensors are not timed paging it in again on every call (glibc; default on)")
    add("--plot", metavar="FILE.png", help="write the log-log plot (png, svg or pdf)")
    add("--csv", metavar="FILE", help="write one row per cell as CSV")


def config_from_args(args: argparse.Namespace) -> ComplexityConfig:
    """Build the config from parsed options, raising UserError on a bad value."""
    cfg = ComplexityConfig()
    if args.lengths is not None:
        lengths = [number("lengths", s) for s in args.lengths.split(",")]
        cfg.lengths = tuple(sorted(set(lengths)))  # type: ignore[arg-type]
    if args.d_model is not None:
        cfg.d_model = int(number("d-model", args.d_model))
    if args.batch is not None:
        cfg.batch = int(number("batch", args.batch))
    if args.heads is not None:
        cfg.heads = int(number("heads", args.heads))
        if cfg.d_model % cfg.heads:
            raise UserError(f"--heads {cfg.heads} does not divide --d-model {cfg.d_model}; pick a divisor "
                            f"(e.g. --heads {default_heads(cfg.d_model)})")
    if args.layers is not None:
        names = choices("layers", args.layers, tuple(LAYERS))
        cfg.layers = tuple(name for name in LAYERS if name in names)  # table order
    if args.repeats is not None:
        cfg.repeats = int(number("repeats", args.repeats))
    if args.rounds is not None:
        cfg.rounds = int(number("rounds", args.rounds))
    if args.budget_s is not None:
        cfg.budget_s = float(number("budget-s", args.budget_s, float))
    if args.max_memory_gb is not None:
        cfg.max_memory_gb = float(number("max-memory-gb", args.max_memory_gb, float))
    cfg.keep_freed_memory = args.keep_freed_memory
    if args.device is not None:
        if args.device not in DEVICES:
            raise UserError(f"--device must be cpu or cuda, got {args.device!r}")
        if args.device == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device cuda: CUDA is not available (torch {torch.__version__}, "
                            f"CUDA build: {torch.version.cuda or 'no'}); use --device cpu")
        cfg.device = args.device
    return cfg


def run(args: argparse.Namespace) -> int:
    """``attnlab bench complexity``: measure, write the plot and CSV if asked, print the report."""
    start = time.perf_counter()
    cfg = config_from_args(args)
    plot_path = output_path("plot", args.plot, (".png", ".svg", ".pdf"))
    csv_path = output_path("csv", args.csv)
    result = run_complexity_bench(cfg, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    if csv_path is not None:
        write_csv(result, csv_path)
    if plot_path is not None:
        write_plot(result, plot_path)
    result.elapsed_s = time.perf_counter() - start
    targets = evaluate_targets(result)
    print(format_report(result, targets))
    return 0
