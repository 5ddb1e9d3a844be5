"""Render a run's contents as one self-contained HTML page (no network needed to view it).

The page reads as people read a run: results first (headline metrics with their direction, scale and
baselines; the run's warnings; how training stopped), then the task's figures, the attention (a model view
of every layer and head, and an explorer of one map), the loss curves, the task's outputs, and the
configuration last, collapsed.

Everything is inline: the stylesheet and the script are package files (``static/report.css``,
``static/report.js``: SVG line charts, canvas heatmaps, PNG and SVG export, no library), the data is one
JSON block, PNG figures are base64.

Size caps keep a report small however large the run: attention weights up to ``ATTENTION_BUDGET`` bytes
of float32 (maps cropped to ``MAX_SIDE`` queries and keys; maps beyond the budget are named, not
embedded), PNG figures up to ``FIGURE_BUDGET`` bytes (larger ones are linked relatively,
``figures/NAME.png``), task outputs as samples of ``OUTPUT_ROWS`` rows.

Stable DOM for tests and scripts: sections ``#results``, ``#figures``, ``#attention``, ``#curves``,
``#outputs``, ``#config``, ``#missing``; the headline ``#headline`` (cards ``.card[data-metric]``) and
``#warnings``; selectors ``#attn-sample``, ``#attn-layer`` (options carry ``data-layer``, ``data-kind``,
``data-role``), ``#attn-head`` (``mean``, ``1``, ``2``, …: heads from 1), ``#attn-scale``; the model view
``#model-view`` (buttons ``.thumb[data-map][data-head]``); the heatmap ``#attn-heatmap``
(``data-rendered="<sample>/<layer>/<head>"`` once drawn); the hover readout ``#attn-readout``
(``data-query-index``, ``data-key-index``, ``data-query``, ``data-key``, ``data-weight``); export buttons
``#attn-export-png`` and ``#attn-export-svg``. ``window.attnlabReport.ready`` is true once everything is
drawn.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from attnlab import registry
from attnlab.errors import UserError
from attnlab.nn.maps import AttentionSample, layer_roles
from attnlab.registry import ExperimentSpec
from attnlab.report.contents import REPORT_FILE, RunContents, TaskOutput, read_run

ATTENTION_BUDGET = 1_200_000  # bytes of float32 attention weights embedded in one report (base64: x 4/3)
FIGURE_BUDGET = 1_500_000  # bytes of PNG figures embedded in one report
MAX_SIDE = 160  # queries and keys of one embedded attention map
HEADLINE_CARDS = 4  # metrics shown as cards at the top
HIGHER_IS_BETTER = ("acc", "bleu", "chrf", "mass", "f1", "r2")  # name fragments of metrics to maximise
LOWER_IS_BETTER = ("mse", "mae", "loss", "bce", "err", "nll", "ppl")  # name fragments of errors
BETTER = {"max": "↑ higher is better", "min": "↓ lower is better", "": ""}
STOPPED_BY = {
    "max_epochs": "reached max_epochs",
    "max_steps": "reached max_steps",
    "early_stopping": "early stopping (the monitored metric stopped improving)",
    "time": "the time cap (max_time_s)",
    "no_training": "nothing to train (closed form or no trainable parameters)",
}


def build_report(run_dir: str | Path) -> Path:
    """Write ``RUN_DIR/report.html`` from the run folder alone and return its path.

    A partial run gives a report of what exists with the missing parts named on the page (see
    :mod:`attnlab.report.contents` for what is an error and what is missing).

    Raises:
        UserError: not a run folder, or damaged config / metrics / attention files.
    """
    return write_report(read_run(run_dir))


def write_report(contents: RunContents) -> Path:
    """Render ``contents`` and write it to ``report.html`` in its run folder."""
    path = contents.run_dir / REPORT_FILE
    path.write_text(render(contents), encoding="utf-8")
    return path


def static_text(name: str) -> str:
    """A file of the report's static assets (``report.css``, ``report.js``), read from the installed package."""
    return resources.files("attnlab.report").joinpath("static", name).read_text(encoding="utf-8")


def render(contents: RunContents) -> str:
    """The report page of a run as one HTML string."""
    attention, skipped = attention_payload(contents.attention or [])
    charts = chart_specs(contents)
    data = {"run": contents.run_dir.name, "charts": charts, "attention": attention}
    sections = [
        _header(contents),
        _missing(contents),
        _results(contents),
        _figures(contents),
        _attention_section(contents, attention, skipped),
        _curves_section(contents, charts),
        _outputs(contents.outputs),
        _config(contents.config),
    ]
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    footer = (f"<footer>attnlab report of <code>{_e(contents.run_dir.name)}</code>, built {stamp}. "
              "One file, works offline: its script, styles and data are inside it.</footer>")
    return "\n".join([
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{_e(contents.title)} — attnlab report</title>",
        f"<style>{static_text('report.css')}</style></head><body>",
        *sections,
        footer,
        f'<script type="application/json" id="report-data">{_json(data)}</script>',
        f"<script>{static_text('report.js')}</script>",
        "</body></html>",
    ])


# ---------------------------------------------------------------------------------------------- data


def attention_payload(samples: list[AttentionSample]) -> tuple[dict[str, Any], list[str]]:
    """What the explorer embeds: per sample and map, its role, labels and base64 little-endian float32 weights
    (H, Q, K), cropped to ``MAX_SIDE`` queries and keys, within ``ATTENTION_BUDGET`` bytes in order.

    Returns:
        ``(payload, skipped)``: the JSON-able payload (``samples``, and ``default_sample``: the first sample the
        figures draw, else 0) and the ``"sample / layer"`` names left out.
    """
    budget = ATTENTION_BUDGET
    out, skipped = [], []
    for index, sample in enumerate(samples):
        maps = []
        for m, role in zip(sample.maps, layer_roles(sample.maps), strict=True):
            w = m.weights.detach().float().cpu()
            w = (w.unsqueeze(0) if w.dim() == 2 else w)[:, :MAX_SIDE, :MAX_SIDE]  # (H, Q, K)
            if w.numel() * 4 > budget:
                skipped.append(f"{sample.title} / {m.layer}")
                continue
            budget -= w.numel() * 4
            heads, q, k = w.shape
            maps.append({
                "layer": m.layer, "role": role, "kind": m.kind, "heads": heads, "q": q, "k": k,
                "query_labels": m.query_labels[:q], "key_labels": m.key_labels[:k],
                "full_shape": list(m.full_shape or (len(m.query_labels), len(m.key_labels))),
                "b64": base64.b64encode(np.ascontiguousarray(w.numpy(), dtype="<f4").tobytes()).decode("ascii"),
            })
        if maps:
            out.append({"title": sample.title, "index": index, "in_figures": sample.in_figures, "maps": maps})
    default = next((i for i, s in enumerate(out) if s["in_figures"]), 0)
    return {"samples": out, "default_sample": default}, skipped


def _same_values(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> bool:
    """True if two curves have the same epochs and (to 1e-9) the same values."""
    if len(a) != len(b):
        return False
    return all(x[0] == y[0] and math.isclose(x[1], y[1], rel_tol=1e-9) for x, y in zip(a, b, strict=True))


def _chart(ident: str, title: str, x_label: str, y_label: str, series: list[dict[str, Any]], log: bool,
           integer_x: bool) -> dict[str, Any]:
    return {"id": ident, "title": title, "x_label": x_label, "y_label": y_label, "series": series, "log": log,
            "integer_x": integer_x}


def _wants_log(values: list[float]) -> bool:
    """A log axis for positive values spanning more than a factor of 4 (losses that fall fast)."""
    return bool(values) and min(values) > 0 and max(values) / min(values) > 4


def chart_specs(contents: RunContents) -> list[dict[str, Any]]:
    """The page's line charts, one y-axis per quantity: the loss per epoch (training and validation), the
    monitored validation metric when it is not the loss (a metric equal to ``val_loss`` at every epoch is drawn
    once, named in the legend), and the training loss per logged step.

    Returns:
        Chart specs for ``report.js``: id, title, axis labels, series (name, x, y, dash), log, integer_x.
    """
    curves, charts = contents.epoch_curves, []
    same = [n for n in curves if n not in ("train_loss", "val_loss") and "val_loss" in curves
            and _same_values(curves[n], curves["val_loss"])]
    losses = []
    for name in ("train_loss", "val_loss"):
        if name in curves:
            label = name + "".join(f" (= {n})" for n in same) if name == "val_loss" else name
            losses.append({"name": label, "x": [p[0] for p in curves[name]], "y": [p[1] for p in curves[name]],
                           "dash": name == "val_loss"})
    if losses:
        charts.append(_chart("curve-epochs", "Loss per epoch", "epoch", "loss (training objective)", losses,
                             _wants_log([y for s in losses for y in s["y"]]), True))
    for name in curves:
        if name in ("train_loss", "val_loss") or name in same:
            continue
        ys = [p[1] for p in curves[name]]
        better = direction(name.removeprefix("val_"), contents)
        title = f"{name} per epoch" + (f" ({BETTER[better][2:]})" if better else "")
        charts.append(_chart(f"curve-{name}", title, "epoch", name,
                             [{"name": name, "x": [p[0] for p in curves[name]], "y": ys}],
                             better == "min" and _wants_log(ys), True))
    if contents.step_curve:
        ys = [p[1] for p in contents.step_curve]
        charts.append(_chart("curve-steps", "Training loss per logged step", "optimiser step", "training loss",
                             [{"name": "train_loss_step", "x": [p[0] for p in contents.step_curve], "y": ys}],
                             _wants_log(ys), True))
    return charts


# ---------------------------------------------------------------------------------------------- metrics


def _experiment(contents: RunContents) -> ExperimentSpec | None:
    try:
        return registry.get_experiment(str(contents.config["experiment"]))
    except UserError:  # a run of an experiment this installation does not register
        return None


def _notes(cls: Any) -> dict[str, str]:
    """The experiment's ``metric_notes`` (test metric -> what it measures), {} when it has none."""
    return dict(getattr(cls, "metric_notes", None) or {})


def _monitor(contents: RunContents) -> tuple[str, str]:
    monitor = (contents.metrics or {}).get("monitor") or contents.config.get("monitor") or ["val_loss", "min"]
    return str(monitor[0]), str(monitor[1] if len(monitor) > 1 else "min")


def metric_direction(metric: str, monitor: tuple[str, str] = ("val_loss", "min")) -> str:
    """Whether a test metric is better high or low.

    Args:
        metric: its name (``mse``, ``accuracy``, ``mass_on_2_4``, …).
        monitor: the run's ``(validation metric, mode)``; its metric takes the mode.

    Returns:
        ``"max"`` for accuracy-like names (``HIGHER_IS_BETTER``), ``"min"`` for errors and losses
        (``LOWER_IS_BETTER``), ``""`` for anything else (a fitted width, a count).
    """
    if metric == monitor[0].removeprefix("val_"):
        return monitor[1]
    name = metric.lower()
    if any(part in name for part in HIGHER_IS_BETTER):
        return "max"
    return "min" if any(part in name for part in LOWER_IS_BETTER) else ""


def direction(metric: str, contents: RunContents) -> str:
    """:func:`metric_direction` of a metric of this run."""
    return metric_direction(metric, _monitor(contents))


def headline_metrics(contents: RunContents) -> list[str]:
    """The test metrics shown as cards: the experiment's headline (else the monitor's), then the metrics the
    experiment describes, then the others; the ``loss`` (often the same number as the headline ``mse``) only
    when it is the only metric. At most ``HEADLINE_CARDS``."""
    test = (contents.metrics or {}).get("test") or {}
    cls = _experiment(contents)
    first = (cls.headline if cls else None) or _monitor(contents)[0].removeprefix("val_")
    notes = _notes(cls)
    order = [first] + [n for n in notes if n != first] + [n for n in test if n not in notes and n != first]
    shown = [n for n in dict.fromkeys(order) if n in test and (n != "loss" or len(test) == 1)]
    return shown[:HEADLINE_CARDS]


# ---------------------------------------------------------------------------------------------- sections


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _json(data: Any) -> str:
    """JSON safe inside a <script> element ("<" escaped, so no "</script>" can appear)."""
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "none"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _short(value: Any) -> str:
    """A metric value for a card: 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else _fmt(value)


def _table(rows: list[list[str]], header: list[str] | None = None, table_id: str = "") -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead>{head}</thead><tbody>{body}</tbody></table>"


def _note(text: str) -> str:
    return f'<p class="missing-note">{_e(text)}</p>'


def _header(contents: RunContents) -> str:
    sections = ["results", "figures", "attention", "curves"] + (["outputs"] if contents.outputs else []) + ["config"]
    nav = " ".join(f'<a href="#{s}">{s}</a>' for s in sections)
    cls = _experiment(contents)
    about = f'<p class="sub">{_e(cls.summary)}</p>' if cls else ""
    return (f"<header><h1>{_e(contents.title)}</h1>{about}"
            f'<p class="sub">run <code>{_e(contents.run_dir.name)}</code></p><nav>{nav}</nav></header>')


def _missing(contents: RunContents) -> str:
    parts = list(contents.missing)
    parts += [f"{name}: a symbolic link or a path leading outside the run folder, not read"
              for name in contents.skipped]
    if not parts:
        return '<div id="missing" data-missing-count="0" hidden></div>'
    items = "".join(f"<li>{_e(m)}</li>" for m in parts)
    return (f'<div id="missing" class="warning" data-missing-count="{len(contents.missing)}">'
            f"<b>Partial run.</b> Missing from the run folder:<ul>{items}</ul></div>")


def _card(name: str, contents: RunContents, notes: dict[str, str]) -> str:
    metrics = contents.metrics or {}
    value = metrics["test"][name]
    val = (metrics.get("val") or {}).get(name)
    lines = [f'<div class="name">test {_e(name)}</div><div class="value">{_e(_short(value))}</div>',
             f'<div class="better">{BETTER[direction(name, contents)]}</div>']
    if name in notes:
        lines.append(f'<div class="what">{_e(notes[name])}</div>')
    base = [f"{_e(b)} {_e(_short(m[name]))}" for b, m in contents.baselines.items() if name in m]
    if val is not None:
        base.insert(0, f"validation {_e(_short(val))}")
    if base:
        lines.append(f'<div class="base">{" · ".join(base)}</div>')
    return f'<div class="card" data-metric="{_e(name)}" data-value="{_e(repr(value))}">{"".join(lines)}</div>'


def _facts(contents: RunContents) -> str:
    metrics = contents.metrics or {}
    facts = []
    if "epochs" in metrics:
        epochs, steps = int(metrics["epochs"]), metrics.get("steps")
        facts.append(f"{epochs} epoch{'s' * (epochs != 1)}" + (f", {int(steps):,} steps" if steps is not None else ""))
    if "train_seconds" in metrics:
        facts.append(f"{_fmt(round(float(metrics['train_seconds']), 1))} s of training")
    stop = metrics.get("stopped_by")
    if stop:
        facts.append(f"stopped by {_e(STOPPED_BY.get(stop, stop))}")
    if "params" in metrics:
        facts.append(f"{int(metrics['params']):,} parameters")
    name, mode = _monitor(contents)
    facts.append(f"best checkpoint by {_e(name)} ({'lowest' if mode == 'min' else 'highest'})")
    return f'<p class="facts" id="run-facts">{" · ".join(facts)}</p>'


def _warnings(metrics: dict[str, Any]) -> str:
    warnings = [str(w) for w in metrics.get("warnings") or []]
    if not warnings:
        return ""
    items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
    return f'<div id="warnings" class="warning"><b>Warnings about this run:</b><ul>{items}</ul></div>'


def _metrics_table(contents: RunContents, notes: dict[str, str]) -> str:
    metrics = contents.metrics or {}
    test, val = metrics.get("test", {}), metrics.get("val", {})
    baselines = list(contents.baselines)
    header = ["metric", "better", "test", "validation", *[f"baseline: {b} (test)" for b in baselines], "what it is"]
    rows = []
    for name in list(test) + [k for k in val if k not in test]:
        row = [name, BETTER[direction(name, contents)][2:], _fmt(test.get(name, "")), _fmt(val.get(name, ""))]
        row += [_fmt(contents.baselines[b].get(name, "")) for b in baselines]
        rows.append(row + [notes.get(name, "")])
    return _table(rows, header, "metrics-table")


def _results(contents: RunContents) -> str:
    head = '<section id="results"><h2>Results</h2>'
    if contents.metrics is None:
        return head + _note("No metrics.json: the run did not finish.") + "</section>"
    notes = _notes(_experiment(contents))
    cards = "".join(_card(n, contents, notes) for n in headline_metrics(contents))
    return (head + _warnings(contents.metrics) + f'<div class="cards" id="headline">{cards}</div>' + _facts(contents)
            + _metrics_table(contents, notes) + "</section>")


def _config(config: dict[str, Any]) -> str:
    top = [[k, _fmt(v)] for k, v in config.items() if not isinstance(v, dict)]
    parts = [_table(top, ["run", ""])]
    for key, value in config.items():
        if isinstance(value, dict):
            parts.append(_table([[k, _fmt(v)] for k, v in value.items()], [key, ""]))
    return (f'<section id="config"><h2>Configuration</h2><details><summary>Resolved configuration (every setting '
            f'of the run)</summary><div class="tables">{"".join(parts)}</div></details></section>')


def _curves_section(contents: RunContents, charts: list[dict[str, Any]]) -> str:
    body = '<div class="charts">' + "".join(f'<div id="{c["id"]}" class="chart"></div>' for c in charts) + "</div>"
    if not charts:
        body = _note("No loss history: no logs/*/metrics.csv and no history in metrics.json.")
    elif not contents.step_curve:
        body += _note("No per-step training loss (logs/*/metrics.csv missing): per-epoch curves from metrics.json.")
    return f'<section id="curves"><h2>Training curves</h2>{body}</section>'


def _figures(contents: RunContents) -> str:
    if not contents.figures:
        drawn = (contents.metrics or {}).get("figures")
        why = ("This run drew no figures (trained with --no-figures, or its task draws none)."
               if contents.metrics is not None and not drawn else "No figures in figures/.")
        return '<section id="figures"><h2>Figures</h2>' + _note(why) + "</section>"
    budget, parts = FIGURE_BUDGET, []
    for path in contents.figures:
        relative = path.relative_to(contents.run_dir).as_posix()
        size = path.stat().st_size
        if size <= budget:
            budget -= size
            src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
            caption = _e(path.name)
        else:
            src = _e(relative)
            caption = f"{_e(path.name)} (linked, not embedded: over the report's size cap; needs the run folder)"
        parts.append(f'<figure data-name="{_e(path.name)}"><img src="{src}" alt="{_e(path.name)}" loading="lazy">'
                     f"<figcaption>{caption}</figcaption></figure>")
    return f'<section id="figures"><h2>Figures</h2>{"".join(parts)}</section>'


def _output(output: TaskOutput) -> str:
    parts = [f"<h3>{_e(output.name)}</h3>"]
    if output.header or output.rows:
        shown = len(output.rows)
        parts.append(f'<p class="sub">{shown} of {output.total_rows} rows</p>')
        parts.append(_table(output.rows, output.header))
    if output.text:
        parts.append(f"<pre>{_e(output.text)}</pre>")
    return f'<div class="output" data-name="{_e(output.name)}">{"".join(parts)}</div>'


def _outputs(outputs: list[TaskOutput]) -> str:
    if not outputs:
        return ""
    return f'<section id="outputs"><h2>Task outputs</h2>{"".join(_output(o) for o in outputs)}</section>'


def _attention_notes(contents: RunContents, payload: dict[str, Any], skipped: list[str]) -> str:
    notes = ""
    if contents.attention_dropped:
        notes += _note("Not saved by the run (over its attention budget): " + "; ".join(contents.attention_dropped))
    if skipped:
        notes += _note(f"Not embedded (over the report's {ATTENTION_BUDGET / 1e6:.1f} MB of weights): "
                       + "; ".join(skipped))
    cropped = [m for s in payload["samples"] for m in s["maps"] if m["full_shape"] != [m["q"], m["k"]]]
    if cropped:
        m = cropped[0]
        notes += _note(f"Large maps show their first queries and keys only (e.g. {m['q']}×{m['k']} of "
                       f"{m['full_shape'][0]}×{m['full_shape'][1]}); rows of a cropped map need not sum to 1.")
    return notes


def _attention_section(contents: RunContents, payload: dict[str, Any], skipped: list[str]) -> str:
    head = '<section id="attention"><h2>Attention</h2>'
    if contents.attention is None:
        return head + _note("No attention saved in this run (attention.json missing).") + "</section>"
    if not payload["samples"]:
        reason = contents.attention_note or "nothing to show"
        if contents.attention and skipped:
            reason = "every map is over the report's size cap"
        return head + f'<p class="note" id="attn-note">No attention to show: {_e(reason)}.</p></section>'
    intro = ('<p class="sub">Held-out examples; layers are named by their role and, like heads and examples, '
             "numbered from 1. Rows are queries, columns keys; each row of a map sums to 1.</p>")
    sample = '<div class="controls"><label>example <select id="attn-sample"></select></label></div>'
    model_view = ('<h3>Model view: every layer and head of this example</h3>'
                  '<p class="sub">Click a map to open it in the explorer below.</p><div id="model-view"></div>')
    controls = (
        '<div class="controls">'
        '<label>layer <select id="attn-layer"></select></label>'
        '<label>head <select id="attn-head"></select></label>'
        '<label>colour <select id="attn-scale"></select></label>'
        '<span>export <button type="button" id="attn-export-png">PNG</button> '
        '<button type="button" id="attn-export-svg">SVG</button></span></div>'
    )
    explorer = ('<h3>Explorer</h3>' + controls
                + '<div id="attn-heatmap" class="heatmap"><canvas></canvas><div class="cell-box"></div>'
                '<div class="tooltip"></div></div><p class="note" id="attn-scale-note"></p>'
                '<div id="attn-readout" class="readout">hover a cell to read its weight</div>')
    return (head + intro + sample + model_view + explorer + _attention_notes(contents, payload, skipped)
            + "</section>")
