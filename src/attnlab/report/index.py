"""The index page of an ``attnlab demo`` folder: the summary table, the targets, a link to each run's report."""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from attnlab.report.contents import REPORT_FILE

if TYPE_CHECKING:
    from attnlab.train import RunResult

INDEX_FILE = "index.html"

_CSS = """body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:0 auto;padding:0 18px 40px;color:#1d232a}
h1{font-size:22px}table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #dde2e7;padding:3px 8px;
text-align:left}th{background:#f3f5f7}td{font-variant-numeric:tabular-nums}a{color:#2a62a8}
.PASS{color:#1a7f37;font-weight:600}.FAIL{color:#cf222e;font-weight:600}"""


def write_demo_index(
    out: str | Path,
    results: Mapping[tuple[str, str], RunResult],
    targets: Sequence[tuple[str, str, str]] = (),
    seconds: float | None = None,
) -> Path:
    """Write ``out/index.html``: one row per run (task, model, headline metric, parameters, train seconds,
    link to its ``report.html``, or "no report" when the run has none) and the demo's targets.

    Args:
        out: the demo folder.
        results: (experiment, model) -> the run's :class:`~attnlab.train.RunResult`.
        targets: (status, target, measured) rows, as :func:`attnlab.demo.check_targets` returns them.
        seconds: total wall time of the demo.

    Returns:
        The path of ``index.html``.
    """
    out = Path(out)
    rows = []
    for (experiment, model), result in results.items():
        name, value = result.metric
        report = Path(result.run_dir) / REPORT_FILE
        link = (f'<a href="{html.escape(Path(os.path.relpath(report, out)).as_posix())}">report</a>'
                if report.is_file() else "no report")
        shown = f"{value:.4g}" if math.isfinite(value) else str(value)
        cells = [experiment, model, name, shown, f"{result.params:,}", f"{result.train_seconds:.1f}"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + f"<td>{link}</td></tr>")
    header = "".join(f"<th>{h}</th>" for h in ("task", "model", "metric", "value", "params", "train s", "report"))
    items = "".join(f'<li><span class="{html.escape(s.replace(" ", "-"))}">{html.escape(s)}</span> '
                    f"{html.escape(d)}{': ' + html.escape(m) if m else ''}</li>" for s, d, m in targets)
    total = f"<p>Total wall time: {seconds:.0f} s</p>" if seconds is not None else ""
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
            f"<title>attnlab demo</title><style>{_CSS}</style></head><body><h1>attnlab demo</h1>{total}"
            f'<table id="summary"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            + (f'<h2>Targets</h2><ul id="targets">{items}</ul>' if targets else "") + "</body></html>\n")
    path = out / INDEX_FILE
    path.write_text(page, encoding="utf-8")
    return path
