"""``attnlab demo``: every seed task solved by an RNN and by attention, side by side, in one run folder.

Trains every model of every registered experiment with its default budget (through the one engine,
:func:`attnlab.train.fit`), prints one table (task, model, metric, parameters, train seconds), checks
the targets the project promises, and writes everything (each run's folder with its figures and
``report.html``, plus ``summary.md``, ``summary.json`` and ``index.html`` linking the reports) under
one demo folder.
"""

from __future__ import annotations

import argparse
import datetime
import html
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from attnlab import registry
from attnlab.errors import UserError

if TYPE_CHECKING:
    from attnlab.train.result import RunResult


@dataclass
class Target:
    """A promise the demo checks on its own held-out numbers."""

    description: str
    check: Callable[[dict[tuple[str, str], RunResult]], tuple[bool, str]]  # -> (met, measured figures)
    needs: tuple[tuple[str, str], ...]  # (experiment, model) runs the check reads


def _metric(results: dict[tuple[str, str], RunResult], experiment: str, model: str, name: str) -> float:
    return results[(experiment, model)].metrics.get(name, math.nan)


def _sine(r: dict[tuple[str, str], RunResult]) -> tuple[bool, str]:
    t, g = _metric(r, "sine", "transformer", "mse"), _metric(r, "sine", "gru", "mse")
    return t < g and t <= 1e-4, f"transformer {t:.3g} vs gru {g:.3g}"


def _count(r: dict[tuple[str, str], RunResult]) -> tuple[bool, str]:
    acc = _metric(r, "count", "attention_pooling", "accuracy")
    mass = _metric(r, "count", "attention_pooling", "mass_on_2_4")
    return acc >= 0.99 and mass >= 0.9, f"accuracy {acc:.4f}, mass on 2s and 4s {mass:.3f}"


def _squares(r: dict[tuple[str, str], RunResult]) -> tuple[bool, str]:
    a, s = _metric(r, "squares", "seq2seq_attention", "mse"), _metric(r, "squares", "seq2seq", "mse")
    return a <= s, f"seq2seq_attention {a:.4g} vs seq2seq {s:.4g}"


def _kernel(r: dict[tuple[str, str], RunResult]) -> tuple[bool, str]:
    run = r[("kernel_regression", "nadaraya_watson_learned")]
    sweep = {k: v for k, v in run.metrics.items() if k.startswith("mse_")}
    if not sweep:
        return False, "no fixed-width sweep in the metrics"
    worst = max(sweep, key=sweep.__getitem__)
    learned = run.metrics.get("mse", math.nan)
    return learned < sweep[worst], f"learned σ {learned:.4g} vs worst fixed {worst} {sweep[worst]:.4g}"


def _digits(r: dict[tuple[str, str], RunResult]) -> tuple[bool, str]:
    acc = _metric(r, "digits_vit", "vit", "accuracy")
    return acc >= 0.97, f"vit accuracy {acc:.4f}"


TARGETS = (
    Target("sine: transformer MSE < gru MSE and <= 1e-4", _sine, (("sine", "transformer"), ("sine", "gru"))),
    Target("count: attention_pooling accuracy >= 99 % with >= 0.9 attention mass on 2s and 4s", _count,
           (("count", "attention_pooling"),)),
    Target("squares: seq2seq_attention MSE <= seq2seq MSE", _squares,
           (("squares", "seq2seq_attention"), ("squares", "seq2seq"))),
    Target("kernel_regression: learned σ beats the worst fixed σ", _kernel,
           (("kernel_regression", "nadaraya_watson_learned"),)),
    Target("digits_vit: vit >= 97 % test accuracy", _digits, (("digits_vit", "vit"),)),
)


def plan(only: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """(experiment, model) pairs the demo trains: every model of every (selected) self-contained experiment.

    Tasks that read the user's data (forecast, translate) have their own commands and are not in the demo.
    """
    table = {name: cls for name, cls in registry.experiments().items() if cls.in_demo}
    names = list(table) if not only else list(only)
    for name in names:
        registry.get_experiment(name)  # UserError with the valid names if unknown
        if name not in table:
            raise UserError(f"{name} needs a data file, so it is not part of the demo; train it with its own "
                            f"command (attnlab {name} --help); demo experiments: {', '.join(table)}")
    return [(name, model) for name in names for model in table[name].models]


def run_demo(
    out: Path | None = None, only: Sequence[str] | None = None, progress: bool = False
) -> tuple[Path, dict[tuple[str, str], RunResult], float]:
    """Fit every planned model; return the demo folder, the results and the total seconds."""
    from attnlab.train.engine import fit

    pairs = plan(only)
    out = out or Path("runs") / f"demo-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty; choose another --out")
    results: dict[tuple[str, str], RunResult] = {}
    start = time.perf_counter()
    for i, (experiment, model) in enumerate(pairs, 1):
        print(f"[{i}/{len(pairs)}] {experiment} / {model} ...", file=sys.stderr, flush=True)
        result = fit(experiment, model, run_dir=out / f"{experiment}-{model}", progress=progress)
        name, value = result.metric
        print(f"        {name} = {value:.4g}  ({result.train_seconds:.1f} s)", file=sys.stderr, flush=True)
        results[(experiment, model)] = result
    return out, results, time.perf_counter() - start


def format_table(results: dict[tuple[str, str], RunResult]) -> str:
    """The demo's one table: task, model, headline metric, other metrics, parameters, train seconds."""
    header = ("task", "model", "metric", "value", "other held-out metrics", "params", "train s")
    rows = []
    for (experiment, model), r in results.items():
        name, value = r.metric
        others = ", ".join(
            f"{k} {v:.4g}" for k, v in r.metrics.items()
            if k not in (name, "loss") and not k.startswith("mse_")
        )
        rows.append((experiment, model, name, f"{value:.4g}", others or "-", f"{r.params:,}", f"{r.train_seconds:.1f}"))
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def check_targets(results: dict[tuple[str, str], RunResult]) -> list[tuple[str, str, str]]:
    """(status, target, measured) for each target; status PASS, FAIL or 'not run'."""
    rows = []
    for target in TARGETS:
        if not all(pair in results for pair in target.needs):
            rows.append(("not run", target.description, ""))
            continue
        met, figures = target.check(results)
        rows.append(("PASS" if met else "FAIL", target.description, figures))
    return rows


def _write_summary(out: Path, results: dict[tuple[str, str], RunResult], targets, seconds: float) -> None:
    figures = [p for r in results.values() for p in r.figures]
    lines = ["# attnlab demo", "", f"Total wall time: {seconds:.0f} s", "", "```", format_table(results), "```", "",
             "## Targets", ""]
    lines += [f"- **{status}** {desc}: {measured}" for status, desc, measured in targets]
    lines += ["", "## Figures", ""] + [f"- {p.relative_to(out)}" for p in figures if p.is_relative_to(out)]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    data = {
        "seconds": seconds,
        "runs": [
            {"experiment": e, "model": m, "metrics": r.metrics, "params": r.params, "train_seconds": r.train_seconds,
             "epochs": r.epochs, "run_dir": str(r.run_dir)}
            for (e, m), r in results.items()
        ],
        "targets": [{"status": s, "target": d, "measured": f} for s, d, f in targets],
    }
    (out / "summary.json").write_text(json.dumps(data, indent=2, allow_nan=True) + "\n")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="train every seed task with an RNN and with attention; one table, all figures (about 10 min)",
        description="Train every model of every experiment with its default budget, print one table of "
        "held-out metrics, check the targets, and write all runs and figures under one folder.",
    )
    parser.add_argument("--out", "-o", type=Path, default=None, help="demo folder (default: runs/demo-<timestamp>)")
    parser.add_argument("--only", default=None, help="comma list of experiments to run (default: all)")
    parser.add_argument("--progress", action="store_true", help="show Lightning's progress bar for each run")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    out, results, seconds = run_demo(args.out, only, args.progress)
    targets = check_targets(results)
    _write_summary(out, results, targets, seconds)
    write_demo_index(out, results, targets, seconds)  # links each run's report.html
    print(format_table(results))
    print()
    for status, desc, measured in targets:
        print(f"{status:8} {desc}" + (f": {measured}" if measured else ""))
    n_figures = sum(len(r.figures) for r in results.values())
    print(f"\n{len(results)} runs in {seconds:.0f} s. Run folder: {out}  "
          f"({n_figures} PNG figures in its */figures/, summary in {out / 'summary.md'}, "
          f"reports linked from {out / 'index.html'})")
    return 0


# ---------------------------------------------------------------------------------------------- index.html

INDEX_FILE = "index.html"
SHOWN_METRICS = 6  # other held-out metrics listed in a row before the rest fold into "N more"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _value(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def _arrow(metric: str, monitor: tuple[str, str]) -> str:
    from attnlab.report.page import metric_direction

    return {"max": " ↑", "min": " ↓", "": ""}[metric_direction(metric, monitor)]


def _others(result: RunResult, headline: str) -> str:
    """Every other held-out test metric of a run, with its direction; a ``loss`` equal to the headline is left
    out; beyond ``SHOWN_METRICS`` they fold into a ``<details>``."""
    value = result.metrics.get(headline)
    items = [f"{_e(k)}{_arrow(k, result.monitor)} {_e(_value(v))}" for k, v in result.metrics.items()
             if k != headline and not (k == "loss" and v == value)]
    if len(items) <= SHOWN_METRICS:
        return ", ".join(items) or "-"
    rest = ", ".join(items[SHOWN_METRICS:])
    return (", ".join(items[:SHOWN_METRICS])
            + f"<details><summary>{len(items) - SHOWN_METRICS} more</summary>{rest}</details>")


def _link(out: Path, result: RunResult) -> str:
    report = Path(result.run_dir) / "report.html"
    if not report.is_file():
        return "no report"
    return f'<a href="{_e(Path(os.path.relpath(report, out)).as_posix())}">report</a>'


def _task(out: Path, experiment: str, runs: list[RunResult]) -> str:
    """One task: what it tests, then a row per model."""
    from attnlab.report.page import BETTER, metric_direction

    try:
        about = registry.get_experiment(experiment).summary
    except UserError:  # a task this installation does not register
        about = ""
    name = runs[0].metric[0]
    better = BETTER[metric_direction(name, runs[0].monitor)]
    header = "".join(f"<th>{h}</th>" for h in (
        "model", f"test {_e(name)} <span class=\"better\">{better}</span>", "other held-out metrics (test)",
        "params", "train s", "report"))
    rows = []
    for r in runs:
        cells = [_e(r.model), _e(_value(r.metric[1])), _others(r, name), f"{r.params:,}", f"{r.train_seconds:.1f}",
                 _link(out, r)]
        rows.append("<tr>" + "".join(f'<td class="num">{c}</td>' if i in (1, 3, 4) else f"<td>{c}</td>"
                                     for i, c in enumerate(cells)) + "</tr>")
    return (f'<section class="task" id="task-{_e(experiment)}" data-experiment="{_e(experiment)}"><h3>{_e(experiment)}'
            f"</h3><p>{_e(about)}</p><table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            "</section>")


def write_demo_index(
    out: str | Path,
    results: Mapping[tuple[str, str], RunResult],
    targets: Sequence[tuple[str, str, str]] = (),
    seconds: float | None = None,
) -> Path:
    """Write ``out/index.html``: per task one line saying what it tests and a table of its runs (model, headline
    metric with its direction, every other held-out metric, parameters, train seconds, a link to the run's
    ``report.html`` or "no report"), then the demo's targets.

    Args:
        out: the demo folder.
        results: (experiment, model) -> the run's :class:`~attnlab.train.RunResult`.
        targets: (status, target, measured) rows, as :func:`attnlab.demo.check_targets` returns them.
        seconds: total wall time of the demo.

    Returns:
        The path of ``index.html``.
    """
    from attnlab.report.page import static_text

    out = Path(out)
    tasks: dict[str, list[RunResult]] = {}
    for (experiment, _), result in results.items():
        tasks.setdefault(experiment, []).append(result)
    items = "".join(f'<li><span class="{_e(s.replace(" ", "-"))}">{_e(s)}</span> '
                    f"{_e(d)}{': ' + _e(m) if m else ''}</li>" for s, d, m in targets)
    facts = [f"{len(results)} runs"] + ([f"total wall time {seconds:.0f} s"] if seconds is not None else [])
    facts += [f"targets: {sum(s == 'PASS' for s, _, _ in targets)} of {len(targets)} met"] if targets else []
    page = ('<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>attnlab demo</title><style>{static_text('report.css')}</style></head><body>"
            f'<header><h1>attnlab demo</h1><p class="sub">{" · ".join(facts)}. Held-out (test) metrics; ↓ lower '
            "is better, ↑ higher is better. Each report opens offline.</p></header>"
            + (f'<h2>Targets</h2><ul id="targets">{items}</ul>' if targets else "")
            + '<h2>Tasks</h2><div id="summary">' + "".join(_task(out, e, r) for e, r in tasks.items()) + "</div>"
            + "</body></html>\n")
    path = out / INDEX_FILE
    path.write_text(page, encoding="utf-8")
    return path
