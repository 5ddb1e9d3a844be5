"""Render a run's contents as one self-contained HTML page (no network needed to view it).

Everything is inline: styles, the data, the page's script and plotly.js (the offline bundle shipped
with the ``plotly`` Python package). Plotly draws the loss curves and the attention heatmap (hover,
zoom, colour bar, thinned tick labels); PNG figures are embedded as base64.

Size caps keep a report near or under 10 MB however large the run: plotly.js (≈ 4.8 MB), attention
weights up to ``ATTENTION_BUDGET`` bytes of float32 (maps cropped to ``MAX_SIDE`` queries and keys;
maps beyond the budget are named, not embedded), PNG figures up to ``FIGURE_BUDGET`` bytes (larger
ones are linked relatively, ``figures/NAME.png``), task outputs as samples of ``OUTPUT_ROWS`` rows.

Stable DOM for tests and scripts: sections ``#config``, ``#metrics``, ``#curves``, ``#figures``,
``#outputs``, ``#attention``, ``#missing``; selectors ``#attn-sample``, ``#attn-layer``, ``#attn-head``;
the heatmap ``#attn-heatmap`` (``data-rendered="<sample>/<layer>/<head>"`` once drawn) and the hover
readout ``#attn-readout`` (``data-query-index``, ``data-key-index``, ``data-query``, ``data-key``,
``data-weight``). ``window.attnlabReport.ready`` is true once every plot is drawn.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from attnlab import registry
from attnlab.errors import UserError
from attnlab.experiments.base import AttentionSample
from attnlab.report.contents import REPORT_FILE, RunContents, TaskOutput, read_run

ATTENTION_BUDGET = 2_000_000  # bytes of float32 attention weights embedded in one report
FIGURE_BUDGET = 1_500_000  # bytes of PNG figures embedded in one report
MAX_SIDE = 160  # queries and keys of one embedded attention map (cells stay >= 3 px on a screen)


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


def render(contents: RunContents) -> str:
    """The report page of a run as one HTML string."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    attention, skipped = attention_payload(contents.attention or [])
    data = {"curves": _curves(contents), "attention": attention}
    sections = [
        _header(contents),
        _missing(contents),
        _config(contents.config),
        _metrics(contents.metrics),
        _curves_section(contents, data["curves"]),
        _figures(contents),
        _outputs(contents.outputs),
        _attention_section(contents, attention, skipped),
    ]
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    footer = (f"<footer>attnlab report of <code>{_e(contents.run_dir.name)}</code>, built {stamp}. "
              f"Works offline: plotly.js {_e(get_plotlyjs_version())} and all data are inside this file.</footer>")
    return "\n".join([
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{_e(contents.title)} — attnlab report</title>",
        f"<style>{_CSS}</style></head><body>",
        *sections,
        footer,
        f"<script>{get_plotlyjs()}</script>",
        f'<script type="application/json" id="report-data">{_json(data)}</script>',
        f"<script>{_JS}</script>",
        "</body></html>",
    ])


# ---------------------------------------------------------------------------------------------- data


def attention_payload(samples: list[AttentionSample]) -> tuple[dict[str, Any], list[str]]:
    """What the explorer embeds: per sample and map, labels and base64 little-endian float32 weights
    (H, Q, K), cropped to ``MAX_SIDE`` queries and keys, within ``ATTENTION_BUDGET`` bytes in order.

    Returns:
        ``(payload, skipped)``: the JSON-able payload and the ``"sample / layer"`` names left out.
    """
    budget = ATTENTION_BUDGET
    out, skipped = [], []
    for index, sample in enumerate(samples):
        maps = []
        for m in sample.maps:
            w = m.weights.detach().float().cpu()
            w = (w.unsqueeze(0) if w.dim() == 2 else w)[:, :MAX_SIDE, :MAX_SIDE]  # (H, Q, K)
            if w.numel() * 4 > budget:
                skipped.append(f"{sample.title} / {m.layer}")
                continue
            budget -= w.numel() * 4
            heads, q, k = w.shape
            maps.append({
                "layer": m.layer, "kind": m.kind, "heads": heads, "q": q, "k": k,
                "query_labels": m.query_labels[:q], "key_labels": m.key_labels[:k],
                "full_shape": [len(m.query_labels), len(m.key_labels)],
                "b64": base64.b64encode(np.ascontiguousarray(w.numpy(), dtype="<f4").tobytes()).decode("ascii"),
            })
        if maps:
            out.append({"title": sample.title, "index": index, "maps": maps})
    return {"samples": out}, skipped


def _curve_figure(curves: dict[str, list[tuple[float, float]]], xtitle: str, monitor: str | None) -> dict[str, Any]:
    traces, secondary = [], False
    for name, points in curves.items():
        trace = {"type": "scatter", "mode": "lines+markers" if len(points) < 60 else "lines", "name": name,
                 "x": [p[0] for p in points], "y": [p[1] for p in points]}
        if name == monitor and "loss" not in name:
            trace["yaxis"] = "y2"
            secondary = True
        traces.append(trace)
    losses = [y for t in traces if t.get("yaxis") != "y2" for y in t["y"]]
    layout: dict[str, Any] = {
        "height": 320, "margin": {"l": 60, "r": 60 if secondary else 20, "t": 30, "b": 45},
        "xaxis": {"title": {"text": xtitle}},
        "yaxis": {"title": {"text": "loss"}, **({"type": "log", "dtick": "D2"} if losses and min(losses) > 0 else {})},
        "legend": {"orientation": "h", "y": 1.12}, "hovermode": "x unified",
    }
    if secondary:
        layout["yaxis2"] = {"title": {"text": monitor}, "overlaying": "y", "side": "right"}
    return {"data": traces, "layout": layout}


def _curves(contents: RunContents) -> dict[str, Any]:
    monitor = ((contents.metrics or {}).get("monitor") or contents.config.get("monitor") or [None])[0]
    figures: dict[str, Any] = {}
    if contents.epoch_curves:
        figures["curve-epochs"] = _curve_figure(contents.epoch_curves, "epoch", monitor)
    if contents.step_curve:
        figures["curve-steps"] = _curve_figure({"train_loss_step": contents.step_curve}, "step", None)
    return figures


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


def _table(rows: list[list[str]], header: list[str] | None = None, table_id: str = "") -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead>{head}</thead><tbody>{body}</tbody></table>"


def _note(text: str) -> str:
    return f'<p class="missing-note">{_e(text)}</p>'


def _header(contents: RunContents) -> str:
    metrics = contents.metrics or {}
    monitor = (metrics.get("monitor") or contents.config.get("monitor") or ["val_loss"])[0]
    headline, name = "", str(monitor).removeprefix("val_")
    try:  # the experiment's headline metric if it is registered here, else the monitor's
        name = registry.get_experiment(str(contents.config["experiment"])).headline or name
    except UserError:
        pass
    if name in metrics.get("test", {}):
        headline = f" · test {_e(name)} <b>{_e(_fmt(metrics['test'][name]))}</b>"
    sections = ["config", "metrics", "curves", "figures"] + (["outputs"] if contents.outputs else []) + ["attention"]
    nav = " ".join(f'<a href="#{s}">{s}</a>' for s in sections)
    return (f"<header><h1>{_e(contents.title)}</h1>"
            f'<p class="sub">run <code>{_e(contents.run_dir.name)}</code>{headline}</p><nav>{nav}</nav></header>')


def _missing(contents: RunContents) -> str:
    if not contents.missing:
        return '<div id="missing" data-missing-count="0" hidden></div>'
    items = "".join(f"<li>{_e(m)}</li>" for m in contents.missing)
    return (f'<div id="missing" class="warning" data-missing-count="{len(contents.missing)}">'
            f"<b>Partial run.</b> Missing from the run folder:<ul>{items}</ul></div>")


def _config(config: dict[str, Any]) -> str:
    top = [[k, _fmt(v)] for k, v in config.items() if not isinstance(v, dict)]
    parts = [_table(top, ["run", ""])]
    for key, value in config.items():
        if isinstance(value, dict):
            parts.append(_table([[k, _fmt(v)] for k, v in value.items()], [key, ""]))
    return f'<section id="config"><h2>Resolved configuration</h2><div class="tables">{"".join(parts)}</div></section>'


def _metrics(metrics: dict[str, Any] | None) -> str:
    if metrics is None:
        note = _note("No metrics.json: the run did not finish.")
        return f'<section id="metrics"><h2>Metrics</h2>{note}</section>'
    test, val = metrics.get("test", {}), metrics.get("val", {})
    names = list(test) + [k for k in val if k not in test]
    rows = [[name, _fmt(test.get(name, "")), _fmt(val.get(name, ""))] for name in names]
    facts = [[label, _fmt(metrics[key])] for key, label in (
        ("params", "parameters"), ("trainable_params", "trainable parameters"), ("epochs", "epochs"),
        ("train_seconds", "train seconds"), ("monitor", "best checkpoint by")) if key in metrics]
    return ('<section id="metrics"><h2>Metrics</h2><div class="tables">'
            f'{_table(rows, ["metric", "test", "validation"], "metrics-table")}{_table(facts, ["run", ""])}'
            "</div></section>")


def _curves_section(contents: RunContents, figures: dict[str, Any]) -> str:
    body = "".join(f'<div id="{key}" class="plot"></div>' for key in figures)
    if not figures:
        body = _note("No loss history: no logs/*/metrics.csv and no history in metrics.json.")
    elif not contents.step_curve:
        body += _note("No per-step training loss (logs/*/metrics.csv missing): per-epoch curves from metrics.json.")
    return f'<section id="curves"><h2>Training and validation loss</h2>{body}</section>'


def _figures(contents: RunContents) -> str:
    if not contents.figures:
        return '<section id="figures"><h2>Figures</h2>' + _note("No figures in figures/.") + "</section>"
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


def _attention_section(contents: RunContents, payload: dict[str, Any], skipped: list[str]) -> str:
    head = '<section id="attention"><h2>Attention explorer</h2>'
    if contents.attention is None:
        return head + _note("No attention saved in this run (attention.json missing).") + "</section>"
    if not payload["samples"]:
        reason = contents.attention_note or "nothing to show"
        if contents.attention and skipped:
            reason = "every map is over the report's size cap"
        return head + f'<p class="note" id="attn-note">No attention to show: {_e(reason)}.</p></section>'
    notes = ""
    if skipped:
        notes = _note(f"Not embedded (over the {ATTENTION_BUDGET / 1e6:.0f} MB size cap): " + "; ".join(skipped))
    if any(m["full_shape"] != [m["q"], m["k"]] for s in payload["samples"] for m in s["maps"]):
        notes += _note(f"Large maps are cropped to their first {MAX_SIDE} queries and keys.")
    controls = (
        '<div class="controls">'
        '<label>sample <select id="attn-sample"></select></label>'
        '<label>layer <select id="attn-layer"></select></label>'
        '<label>head <select id="attn-head"></select></label></div>'
    )
    return (head + '<p class="sub">Rows are queries, columns keys; each row sums to 1. Hover a cell to read it.</p>'
            + controls + '<div id="attn-heatmap" class="plot"></div>'
            + '<div id="attn-readout" class="readout">hover a cell</div>' + notes + "</section>")


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;
padding:0 18px 40px;color:#1d232a;background:#fff}
header{border-bottom:1px solid #dde2e7;margin-bottom:12px}h1{font-size:22px;margin:18px 0 2px}
h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #eef1f4;padding-bottom:3px}
h3{font-size:14px;margin:14px 0 4px}
nav a{margin-right:12px;color:#2a62a8;text-decoration:none}.sub{color:#5b6670;margin:2px 0 8px}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
pre{background:#f6f8fa;padding:8px;overflow:auto;max-height:320px}
.tables{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #dde2e7;padding:3px 8px;text-align:left}
th{background:#f3f5f7}td{font-variant-numeric:tabular-nums}
.output table{display:block;overflow-x:auto;max-width:100%}
figure{margin:10px 0 18px}figure img{max-width:100%;height:auto;border:1px solid #eef1f4}
figcaption{color:#5b6670;font-size:12px}
.warning{background:#fff6e0;border:1px solid #f0c36d;padding:8px 12px;border-radius:4px}.warning ul{margin:4px 0}
.missing-note{color:#8a5a00;font-style:italic}.note{color:#5b6670}
.controls{display:flex;flex-wrap:wrap;gap:14px;margin:6px 0}.controls select{margin-left:4px;max-width:420px}
.readout{font-family:ui-monospace,monospace;font-size:13px;background:#f6f8fa;padding:6px 10px;min-height:1.5em}
.plot{width:100%}footer{margin-top:30px;color:#8a949d;font-size:12px}
"""

_JS = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var CONFIG = {displaylogo: false, responsive: true, showLink: false, showSendToCloud: false,
                showEditInChartStudio: false};
  var report = window.attnlabReport = {ready: false, data: DATA};
  var drawn = [];
  Object.keys(DATA.curves).forEach(function (id) {
    var fig = DATA.curves[id];
    drawn.push(Plotly.newPlot(document.getElementById(id), fig.data, fig.layout, CONFIG));
  });

  var samples = DATA.attention.samples;
  var $ = function (id) { return document.getElementById(id); };
  var sampleSel = $("attn-sample"), layerSel = $("attn-layer"), headSel = $("attn-head");
  var plot = $("attn-heatmap"), readout = $("attn-readout");

  function weights(map) {  // (H, Q, K) float32, row-major, decoded once
    if (!map.w) {
      var bin = atob(map.b64), bytes = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      map.w = new Float32Array(bytes.buffer);
    }
    return map.w;
  }
  function matrix(map, head) {  // (Q, K) of one head, or the mean over heads
    var w = weights(map), Q = map.q, K = map.k, H = map.heads, z = [];
    for (var q = 0; q < Q; q++) {
      var row = new Array(K);
      for (var k = 0; k < K; k++) {
        if (head === "mean") {
          var s = 0;
          for (var h = 0; h < H; h++) s += w[(h * Q + q) * K + k];
          row[k] = s / H;
        } else {
          row[k] = w[(head * Q + q) * K + k];
        }
      }
      z.push(row);
    }
    return z;
  }
  function ticks(labels) {  // at most ~40 tick labels per axis
    var step = Math.max(1, Math.ceil(labels.length / 40)), vals = [], text = [];
    for (var i = 0; i < labels.length; i += step) { vals.push(i); text.push(labels[i]); }
    return {tickvals: vals, ticktext: text, tickmode: "array"};
  }
  function range(n) { var r = []; for (var i = 0; i < n; i++) r.push(i); return r; }
  function longest(labels) { return labels.reduce(function (m, s) { return Math.max(m, s.length); }, 0); }
  function option(value, text) {
    var o = document.createElement("option");
    o.value = value; o.textContent = text;
    return o;
  }
  var KIND = {self: "self-attention", cross: "cross-attention", pooling: "attention pooling"};

  function current() {
    var s = samples[+sampleSel.value], m = s.maps[+layerSel.value];
    return {sample: s, map: m, head: headSel.value === "mean" ? "mean" : +headSel.value};
  }
  function fillLayers() {
    var previous = layerSel.selectedIndex >= 0 ? layerSel.options[layerSel.selectedIndex].dataset.layer : null;
    layerSel.innerHTML = "";
    samples[+sampleSel.value].maps.forEach(function (m, i) {
      var size = " (" + m.heads + (m.heads > 1 ? " heads, " : " head, ") + m.q + "×" + m.k + ")";
      var o = option(i, m.layer + " — " + (KIND[m.kind] || m.kind) + size);
      o.dataset.layer = m.layer; o.dataset.kind = m.kind;
      layerSel.appendChild(o);
      if (m.layer === previous) layerSel.value = String(i);
    });
    fillHeads();
  }
  function fillHeads() {
    var previous = headSel.value, m = samples[+sampleSel.value].maps[+layerSel.value];
    headSel.innerHTML = "";
    if (m.heads > 1) headSel.appendChild(option("mean", "mean of " + m.heads + " heads"));
    for (var h = 0; h < m.heads; h++) headSel.appendChild(option(String(h), "head " + h));
    if (previous && Array.prototype.some.call(headSel.options, function (o) { return o.value === previous; })) {
      headSel.value = previous;
    }
  }
  function render() {
    var c = current(), m = c.map, z = matrix(m, c.head), text = [], top = 0;
    z.forEach(function (row) { row.forEach(function (v) { if (v > top) top = v; }); });
    for (var q = 0; q < m.q; q++) {
      var row = new Array(m.k);
      for (var k = 0; k < m.k; k++) row[k] = m.query_labels[q] + " → " + m.key_labels[k];
      text.push(row);
    }
    var xt = ticks(m.key_labels), yt = ticks(m.query_labels);
    var left = Math.min(240, 20 + 7 * longest(yt.ticktext)), bottom = Math.min(200, 30 + 6 * longest(xt.ticktext));
    var trace = {type: "heatmap", z: z, x: range(m.k), y: range(m.q), text: text, colorscale: "Viridis",
                 zmin: 0, zmax: top || 1, colorbar: {title: {text: "weight"}},
                 hovertemplate: "%{text}<br>weight %{z:.4g}<extra></extra>"};
    var layout = {
      height: Math.max(260, Math.min(760, 120 + bottom + 16 * m.q)),
      margin: {l: left + 40, r: 20, t: 40, b: bottom + 30},
      title: {text: c.sample.title, font: {size: 13}},
      xaxis: Object.assign({title: {text: m.kind === "cross" ? "keys (encoder)" : "keys"}, tickangle: -45}, xt),
      yaxis: Object.assign({title: {text: m.kind === "cross" ? "queries (decoder)" : "queries"},
                            autorange: "reversed"}, yt)
    };
    var key = sampleSel.value + "/" + layerSel.value + "/" + headSel.value;
    plot.dataset.rendered = "";
    return Plotly.react(plot, [trace], layout, CONFIG).then(function () {
      plot.dataset.sample = sampleSel.value; plot.dataset.layer = m.layer; plot.dataset.head = headSel.value;
      plot.dataset.rendered = key;
    });
  }
  function hover(event) {
    var p = event.points[0], c = current(), q = p.y, k = p.x, m = c.map;
    var d = readout.dataset;
    d.sample = sampleSel.value; d.layer = m.layer; d.head = headSel.value;
    d.queryIndex = q; d.keyIndex = k; d.query = m.query_labels[q]; d.key = m.key_labels[k]; d.weight = String(p.z);
    readout.textContent = "query #" + q + " “" + m.query_labels[q] + "” → key #" + k + " “" + m.key_labels[k]
      + "”: weight " + p.z.toPrecision(6) + " (" + (c.head === "mean" ? "mean of heads" : "head " + c.head) + ")";
  }

  if (samples.length && sampleSel) {
    samples.forEach(function (s, i) { sampleSel.appendChild(option(i, s.title)); });
    fillLayers();
    sampleSel.addEventListener("change", function () { fillLayers(); render(); });
    layerSel.addEventListener("change", function () { fillHeads(); render(); });
    headSel.addEventListener("change", render);
    drawn.push(render().then(function () { plot.on("plotly_hover", hover); }));
  }
  Promise.all(drawn).then(function () { report.ready = true; document.body.dataset.ready = "true"; });
})();
"""
