"""How fast the ``attnlab`` command answers before any work: ``--version``, ``--help``, ``list``, an unknown
experiment and a missing file, each in a fresh Python process, against ``python -c "import torch"``.

Each command runs ``--repeats`` times, alternating with the torch import so both see the same machine load;
the table gives the median seconds and the ratio to the median torch import. The target: every command at
most 0.3x the torch import, i.e. none of them loads torch, Lightning, pandas or matplotlib (see
``python -X importtime -m attnlab --version`` for what one does import).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from attnlab.errors import UserError

TARGET = 0.3  # each command's median time / the median time of `import torch`
HEAVY = ("torch", "lightning", "pandas", "matplotlib")

COMMANDS: dict[str, list[str]] = {
    "--version": ["--version"],
    "--help": ["--help"],
    "list": ["list"],
    "list sine": ["list", "sine"],
    "fit nope (error)": ["fit", "nope"],
    "forecast --csv missing.csv (error)": ["forecast", "--csv", "/nonexistent/missing.csv"],
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=7, help="runs of each command (default 7; the median counts)")


def _seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def heavy_imports(args: list[str]) -> list[str]:
    """The heavy top-level packages a fresh ``python -m attnlab ARGS`` imports (from ``-X importtime``)."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "attnlab", *args], capture_output=True,
                         text=True, check=False)
    names = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in run.stderr.splitlines() if "|" in line}
    return sorted(names & set(HEAVY))


def run(args: argparse.Namespace) -> int:
    if args.repeats < 1:
        raise UserError(f"--repeats {args.repeats} must be at least 1")
    torch_times: list[float] = []
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, argv in COMMANDS.items():
            torch_times.append(_seconds([sys.executable, "-c", "import torch"]))
            times[name].append(_seconds([sys.executable, "-m", "attnlab", *argv]))
    base = statistics.median(torch_times)
    print(f"python -c 'import torch': {base * 1e3:.0f} ms (median of {len(torch_times)})")
    print(f"{'command':<44}{'median ms':>10}{'ratio':>8}  heavy imports")
    failed = 0
    for name, samples in times.items():
        ratio = statistics.median(samples) / base
        heavy = heavy_imports(COMMANDS[name])
        ok = ratio <= TARGET and not heavy
        failed += not ok
        print(f"attnlab {name:<36}{statistics.median(samples) * 1e3:>10.0f}{ratio:>8.2f}  "
              f"{', '.join(heavy) or '-'}{'' if ok else '   <- FAIL'}")
    print(f"\ntarget: each command <= {TARGET}x the torch import and no heavy import: "
          f"{'PASS' if not failed else f'FAIL ({failed} command(s))'}")
    return 0
