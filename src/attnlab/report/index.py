"""The index page of an ``attnlab demo`` folder: per task what it tests, each run's held-out metrics with their
direction, a link to each run's report, and the targets. One offline file, styled like the run reports."""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from attnlab import registry
from attnlab.errors import UserError
from attnlab.report.contents import REPORT_FILE
from attnlab.report.page import BETTER, metric_direction, static_text

if TYPE_CHECKING:
    from attnlab.train import RunResult

INDEX_FILE = "index.html"
SHOWN_METRICS = 6  # other held-out metrics listed in a row before the rest fold into "N more"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _value(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def _arrow(metric: str, monitor: tuple[str, str]) -> str:
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
    report = Path(result.run_dir) / REPORT_FILE
    if not report.is_file():
        return "no report"
    return f'<a href="{_e(Path(os.path.relpath(report, out)).as_posix())}">report</a>'


def _task(out: Path, experiment: str, runs: list[RunResult]) -> str:
    """One task: what it tests, then a row per model."""
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
