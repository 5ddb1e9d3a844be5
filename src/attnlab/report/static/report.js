/* attnlab run report: line charts (SVG), the attention model view and explorer (canvas), PNG/SVG export.
 * No library, no network: the data is the JSON in #report-data; see attnlab/report/page.py for its layout.
 * Layers, heads and samples are numbered from 1 on the page; query and key positions from 0. */
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var report = window.attnlabReport = {ready: false, data: DATA, lastExport: null};
  var $ = function (id) { return document.getElementById(id); };
  var SVGNS = "http://www.w3.org/2000/svg";
  var FONT = '11px system-ui,-apple-system,"Segoe UI",Roboto,sans-serif';
  var TITLE_FONT = '600 12px system-ui,-apple-system,"Segoe UI",Roboto,sans-serif';

  // ------------------------------------------------------------------------------------------ colours and numbers
  // matplotlib's viridis at 17 evenly spaced points, the figures' colour map too.
  var VIRIDIS = ["440154", "48186a", "472d7b", "424086", "3b528b", "33638d", "2c728e", "26828e", "21918c",
                 "1fa088", "28ae80", "3fbc73", "5ec962", "84d44b", "addc30", "d8e219", "fde725"].map(function (h) {
    return [parseInt(h.slice(0, 2), 16), parseInt(h.slice(2, 4), 16), parseInt(h.slice(4, 6), 16)];
  });
  var SERIES = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

  function rgb(t) {  // t in [0, 1] -> [r, g, b]
    t = Math.min(1, Math.max(0, isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
    var i = Math.min(VIRIDIS.length - 2, Math.floor(t)), f = t - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
    return [0, 1, 2].map(function (c) { return Math.round(a[c] + f * (b[c] - a[c])); });
  }
  function css(c) { return "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")"; }
  report.colour = function (t) { return rgb(t); };

  function fmt(v) {  // short, readable numbers for ticks and cards
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (a >= 1e-3 && a < 1e5) return String(Number(v.toPrecision(3)));
    return v.toExponential(1).replace(/\.0e/, "e").replace("e+", "e");
  }
  function niceStep(span, count) {
    var raw = span / Math.max(1, count), mag = Math.pow(10, Math.floor(Math.log10(raw))), r = raw / mag;
    return (r <= 1 ? 1 : r <= 2 ? 2 : r <= 5 ? 5 : 10) * mag;
  }
  function linearTicks(lo, hi, count, integer) {
    var step = niceStep(hi - lo || Math.abs(hi) || 1, count);
    if (integer) step = Math.max(1, Math.round(step));
    var out = [];
    for (var v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
    return out;
  }
  function logTicks(lo, hi) {  // 1-2-5 per decade; 1-9 when that gives fewer than 3; linear inside a decade
    var sets = [[1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]];
    for (var s = 0; s < sets.length; s++) {
      var out = [];
      for (var e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
        sets[s].forEach(function (m) {
          var v = Number((m * Math.pow(10, e)).toPrecision(6));
          if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push(v);
        });
      }
      if (out.length >= 3) return out.length > 9 ? out.filter(function (v, i) { return i % 2 === 0; }) : out;
    }
    return linearTicks(lo, hi, 4, false).filter(function (v) { return v > 0; });
  }

  // ------------------------------------------------------------------------------------------ line charts (SVG)
  function el(name, attrs, parent) {
    var node = document.createElementNS(SVGNS, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }
  function text(parent, x, y, str, attrs) {
    var t = el("text", Object.assign({x: x, y: y}, attrs || {}), parent);
    t.textContent = str;
    return t;
  }

  function drawChart(box, spec) {
    var W = 540, H = 300, m = {l: 62, r: 14, t: 40, b: 44};
    var xs = [], ys = [];
    spec.series.forEach(function (s) { xs = xs.concat(s.x); ys = ys.concat(s.y); });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    if (x0 === x1) { x0 -= 0.5; x1 += 0.5; }
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys), log = spec.log && y0 > 0;
    if (y0 === y1) { y0 = log ? y0 / 1.5 : y0 - Math.abs(y0 || 1) * 0.1; y1 = log ? y1 * 1.5 : y1 + Math.abs(y1 || 1) * 0.1; }
    var f = log ? Math.log10 : function (v) { return v; };
    var pad = (f(y1) - f(y0)) * 0.06, fy0 = f(y0) - pad, fy1 = f(y1) + pad;
    var X = function (v) { return m.l + (v - x0) / (x1 - x0) * (W - m.l - m.r); };
    var Y = function (v) { return H - m.b - (f(v) - fy0) / (fy1 - fy0) * (H - m.t - m.b); };
    var svg = el("svg", {viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": spec.title}, box);
    text(svg, m.l, 16, spec.title, {"class": "title"});
    var yt = log ? logTicks(Math.pow(10, fy0), Math.pow(10, fy1)) : linearTicks(fy0, fy1, 5, false);
    yt.forEach(function (v) {
      el("line", {x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v), "class": "grid"}, svg);
      text(svg, m.l - 6, Y(v) + 4, fmt(v), {"text-anchor": "end"});
    });
    linearTicks(x0, x1, 7, spec.integer_x).forEach(function (v) {
      if (v < x0 || v > x1) return;
      el("line", {x1: X(v), x2: X(v), y1: H - m.b, y2: H - m.b + 4, "class": "axis"}, svg);
      text(svg, X(v), H - m.b + 16, fmt(v), {"text-anchor": "middle"});
    });
    el("line", {x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, "class": "axis"}, svg);
    el("line", {x1: m.l, x2: m.l, y1: m.t, y2: H - m.b, "class": "axis"}, svg);
    text(svg, (m.l + W - m.r) / 2, H - 8, spec.x_label, {"text-anchor": "middle"});
    text(svg, 14, (m.t + H - m.b) / 2, spec.y_label + (log ? " (log scale)" : ""),
         {"text-anchor": "middle", transform: "rotate(-90 14 " + (m.t + H - m.b) / 2 + ")"});
    var legendX = m.l;
    spec.series.forEach(function (s, i) {
      var colour = SERIES[i % SERIES.length], pts = s.x.map(function (x, j) { return X(x) + "," + Y(s.y[j]); });
      el("polyline", {points: pts.join(" "), fill: "none", stroke: colour, "stroke-width": 1.8,
                      "stroke-dasharray": s.dash ? "5 3" : "none"}, svg);
      if (s.x.length <= 40) s.x.forEach(function (x, j) { el("circle", {cx: X(x), cy: Y(s.y[j]), r: 2.6, fill: colour}, svg); });
      el("line", {x1: legendX, x2: legendX + 18, y1: 30, y2: 30, stroke: colour, "stroke-width": 2,
                  "stroke-dasharray": s.dash ? "5 3" : "none"}, svg);
      legendX += 24 + text(svg, legendX + 22, 34, s.name).getComputedTextLength() + 10;
    });
    chartHover(box, svg, spec, X, m, W, H, x0, x1);
  }

  function chartHover(box, svg, spec, X, m, W, H, x0, x1) {
    var tip = document.createElement("div"), cursor = el("line", {y1: m.t, y2: H - m.b, "class": "axis",
                                                                    visibility: "hidden"}, svg);
    tip.className = "tooltip";
    box.appendChild(tip);
    var all = [];
    spec.series.forEach(function (s) { s.x.forEach(function (x) { if (all.indexOf(x) < 0) all.push(x); }); });
    all.sort(function (a, b) { return a - b; });
    svg.addEventListener("mousemove", function (ev) {
      var r = svg.getBoundingClientRect(), vx = (ev.clientX - r.left) / r.width * W;
      var x = x0 + (vx - m.l) / (W - m.l - m.r) * (x1 - x0);
      var best = all.reduce(function (b, v) { return Math.abs(v - x) < Math.abs(b - x) ? v : b; }, all[0]);
      var lines = [spec.x_label + " " + fmt(best)];
      spec.series.forEach(function (s) {
        var j = s.x.indexOf(best);
        if (j >= 0) lines.push(s.name + " " + Number(s.y[j].toPrecision(5)));
      });
      cursor.setAttribute("x1", X(best)); cursor.setAttribute("x2", X(best)); cursor.setAttribute("visibility", "visible");
      tip.textContent = lines.join(" · ");
      tip.style.display = "block";
      tip.style.left = Math.min(box.clientWidth - tip.offsetWidth, Math.max(0, X(best) / W * r.width + 8)) + "px";
      tip.style.top = "22px";
      box.dataset.hoverX = String(best);
    });
    svg.addEventListener("mouseleave", function () { tip.style.display = "none"; cursor.setAttribute("visibility", "hidden"); });
  }

  (DATA.charts || []).forEach(function (spec) {
    var box = $(spec.id);
    if (box) { drawChart(box, spec); box.dataset.rendered = "true"; }
  });

  // ------------------------------------------------------------------------------------------ attention data
  var samples = DATA.attention.samples;
  function weights(map) {  // (H, Q, K) float32, row-major, decoded once
    if (!map.w) {
      var bin = atob(map.b64), bytes = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      map.w = new Float32Array(bytes.buffer);
    }
    return map.w;
  }
  function matrix(map, head) {  // (Q·K) values of head (1-based) or the mean over heads, as numbers
    var w = weights(map), n = map.q * map.k, out = new Float64Array(n);
    if (head === "mean") {
      for (var h = 0; h < map.heads; h++) for (var i = 0; i < n; i++) out[i] += w[h * n + i] / map.heads;
    } else {
      for (var j = 0; j < n; j++) out[j] = w[(head - 1) * n + j];
    }
    return out;
  }
  report.matrix = function (sample, layer, head) { return Array.from(matrix(samples[sample].maps[layer], head)); };

  var SCALES = {
    clip: "clipped at the 99th percentile (top 1 % of cells)",
    max: "0 to the map's maximum",
    row: "each row 0 to its own maximum"
  };
  function colourScale(z, q, k, mode) {  // -> {norm(value, row), top, label, clipped}
    var max = 0, i;
    for (i = 0; i < z.length; i++) if (z[i] > max) max = z[i];
    if (mode === "row") {
      var rowMax = new Float64Array(q);
      for (i = 0; i < z.length; i++) { var r = Math.floor(i / k); if (z[i] > rowMax[r]) rowMax[r] = z[i]; }
      return {norm: function (v, row) { return rowMax[row] > 0 ? v / rowMax[row] : 0; }, top: 1, max: max,
              label: "share of the row's maximum", row: true};
    }
    var top = max;
    if (mode === "clip") {
      // The cell below the top 1 % of cells: a map of under 100 cells is not clipped.
      var sorted = Array.from(z).sort(function (a, b) { return a - b; });
      var p99 = sorted[Math.ceil(0.99 * sorted.length) - 1];
      if (p99 > 0 && p99 < max) top = p99;
    }
    top = top || 1;
    return {norm: function (v) { return v / top; }, top: top, max: max, clipped: top < max,
            label: top < max ? "weight, clipped at " + fmt(top) + " (99th percentile: the top 1 % of cells share the top colour; max " +
                   fmt(max) + ")" : "weight, 0 to the map's maximum"};
  }

  // ------------------------------------------------------------------------------------------ heatmap figure
  // One layout, two painters: canvas (page, PNG export) and SVG (SVG export).
  var measureCtx = document.createElement("canvas").getContext("2d");
  measureCtx.font = FONT;
  function width(s) { return measureCtx.measureText(s).width; }
  function titleWidth(s) {
    measureCtx.font = TITLE_FONT;
    var w = measureCtx.measureText(s).width;
    measureCtx.font = FONT;
    return w;
  }
  function clip(s, n) { return s.length > n ? s.slice(0, n - 1) + "…" : s; }

  function layoutFigure(sample, map, head, mode, maxWidth) {
    var z = matrix(map, head), scale = colourScale(z, map.q, map.k, mode);
    var qLabels = map.query_labels.map(function (s) { return clip(s, 28); });
    var kLabels = map.key_labels.map(function (s) { return clip(s, 28); });
    var left = Math.min(220, 30 + Math.max.apply(null, qLabels.map(width).concat([10])));
    var kWidest = Math.max.apply(null, kLabels.map(width).concat([10]));
    var right = 96, top = 40;
    var cell = Math.floor(Math.min((maxWidth - left - right) / map.k, 620 / map.q, 48));
    cell = Math.max(2, cell);
    var vertical = kWidest > cell * Math.max(1, Math.ceil(20 / cell)) - 4;
    var bottom = 34 + (vertical ? Math.min(170, kWidest) : 14);
    var plotW = cell * map.k, plotH = cell * map.q, barH = Math.max(140, plotH);
    var heading = sample.title + " — " + map.role + ", " + (head === "mean" ? "mean of " + map.heads + " heads" : "head " + head);
    return {
      z: z, scale: scale, map: map, cell: cell, left: left, top: top, plotW: plotW, plotH: plotH, vertical: vertical,
      qLabels: qLabels, kLabels: kLabels, title: clip(heading, 150),
      width: Math.max(left + plotW + right, Math.min(maxWidth, titleWidth(clip(heading, 150)) + 20)),
      height: top + Math.max(plotH + bottom, barH + 20),
      qStep: Math.max(1, Math.ceil(14 / cell)), kStep: Math.max(1, Math.ceil((vertical ? 14 : kWidest + 6) / cell)),
      bar: {x: left + plotW + 16, y: top, w: 14, h: barH},
      xTitle: map.kind === "cross" ? "keys (encoder)" : "keys", yTitle: map.kind === "cross" ? "queries (decoder)" : "queries"
    };
  }
  function barTicks(L) {
    if (L.scale.row) return [[0, "0"], [1, "row max"]];
    var count = Math.max(2, Math.floor(L.bar.h / 40)), gap = 16 / L.bar.h;  // ticks at least 16 px apart
    var ticks = linearTicks(0, L.scale.top, count, false).filter(function (v) { return v / L.scale.top < 1 - gap; })
      .map(function (v) { return [v / L.scale.top, fmt(v)]; });
    return ticks.concat([[1, (L.scale.clipped ? "≥ " : "") + fmt(L.scale.top)]]);  // the top: the cut, named
  }
  function cellImage(L) {  // the cells at one pixel each, as an offscreen canvas
    var map = L.map, c = document.createElement("canvas");
    c.width = map.k; c.height = map.q;
    var ctx = c.getContext("2d"), img = ctx.createImageData(map.k, map.q);
    for (var q = 0; q < map.q; q++) {
      for (var k = 0; k < map.k; k++) {
        var col = rgb(L.scale.norm(L.z[q * map.k + k], q)), o = 4 * (q * map.k + k);
        img.data[o] = col[0]; img.data[o + 1] = col[1]; img.data[o + 2] = col[2]; img.data[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    return c;
  }
  function paintCanvas(canvas, L, ratio) {
    canvas.width = Math.round(L.width * ratio); canvas.height = Math.round(L.height * ratio);
    canvas.style.width = L.width + "px"; canvas.style.height = L.height + "px";
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, L.width, L.height);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(cellImage(L), L.left, L.top, L.plotW, L.plotH);
    ctx.fillStyle = "#1d232a"; ctx.font = TITLE_FONT; ctx.textBaseline = "alphabetic";
    ctx.fillText(L.title, 4, 16);
    ctx.font = FONT; ctx.fillStyle = "#3d4750"; ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (var q = 0; q < L.map.q; q += L.qStep) ctx.fillText(L.qLabels[q], L.left - 4, L.top + (q + 0.5) * L.cell);
    for (var k = 0; k < L.map.k; k += L.kStep) {
      var x = L.left + (k + 0.5) * L.cell, y = L.top + L.plotH + 4;
      ctx.save(); ctx.translate(x, y);
      if (L.vertical) { ctx.rotate(-Math.PI / 2); ctx.textAlign = "right"; } else { ctx.textAlign = "center"; ctx.textBaseline = "top"; }
      ctx.fillText(L.kLabels[k], 0, 0);
      ctx.restore();
    }
    ctx.textAlign = "center"; ctx.textBaseline = "bottom";
    ctx.fillText(L.xTitle, L.left + L.plotW / 2, L.height - 4);
    ctx.save(); ctx.translate(10, L.top + L.plotH / 2); ctx.rotate(-Math.PI / 2); ctx.textBaseline = "top";
    ctx.fillText(L.yTitle, 0, -6); ctx.restore();
    var grad = ctx.createLinearGradient(0, L.bar.y + L.bar.h, 0, L.bar.y);
    VIRIDIS.forEach(function (c, i) { grad.addColorStop(i / (VIRIDIS.length - 1), css(c)); });
    ctx.fillStyle = grad; ctx.fillRect(L.bar.x, L.bar.y, L.bar.w, L.bar.h);
    ctx.fillStyle = "#3d4750"; ctx.textAlign = "left"; ctx.textBaseline = "middle";
    barTicks(L).forEach(function (t) { ctx.fillText(t[1], L.bar.x + L.bar.w + 4, L.bar.y + L.bar.h * (1 - t[0])); });
  }
  function esc(s) { return String(s).replace(/[&<>"]/g, function (c) { return {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;"}[c]; }); }
  function figureSVG(L) {
    var out = ['<svg xmlns="' + SVGNS + '" width="' + L.width + '" height="' + L.height + '" viewBox="0 0 ' + L.width +
               " " + L.height + '" font-family="system-ui,sans-serif" font-size="11">',
               '<rect width="100%" height="100%" fill="#fff"/>',
               '<text x="4" y="16" font-size="12" font-weight="600">' + esc(L.title) + "</text>", '<g shape-rendering="crispEdges">'];
    for (var q = 0; q < L.map.q; q++) {
      for (var k = 0; k < L.map.k; k++) {
        var v = L.z[q * L.map.k + k];
        out.push('<rect x="' + (L.left + k * L.cell) + '" y="' + (L.top + q * L.cell) + '" width="' + L.cell + '" height="' +
                 L.cell + '" fill="' + css(rgb(L.scale.norm(v, q))) + '" data-q="' + q + '" data-k="' + k + '" data-weight="' + v + '"/>');
      }
    }
    out.push("</g>");
    for (q = 0; q < L.map.q; q += L.qStep) {
      out.push('<text x="' + (L.left - 4) + '" y="' + (L.top + (q + 0.5) * L.cell + 4) + '" text-anchor="end">' + esc(L.qLabels[q]) + "</text>");
    }
    for (k = 0; k < L.map.k; k += L.kStep) {
      var x = L.left + (k + 0.5) * L.cell, y = L.top + L.plotH + 6;
      out.push(L.vertical ? '<text transform="translate(' + (x + 4) + " " + y + ') rotate(-90)" text-anchor="end">' + esc(L.kLabels[k]) + "</text>"
                          : '<text x="' + x + '" y="' + (y + 9) + '" text-anchor="middle">' + esc(L.kLabels[k]) + "</text>");
    }
    out.push('<text x="' + (L.left + L.plotW / 2) + '" y="' + (L.height - 6) + '" text-anchor="middle">' + L.xTitle + "</text>");
    out.push('<text transform="translate(14 ' + (L.top + L.plotH / 2) + ') rotate(-90)" text-anchor="middle">' + L.yTitle + "</text>");
    out.push('<defs><linearGradient id="bar" x1="0" y1="1" x2="0" y2="0">' + VIRIDIS.map(function (c, i) {
      return '<stop offset="' + (i / (VIRIDIS.length - 1)) + '" stop-color="' + css(c) + '"/>';
    }).join("") + "</linearGradient></defs>");
    out.push('<rect x="' + L.bar.x + '" y="' + L.bar.y + '" width="' + L.bar.w + '" height="' + L.bar.h + '" fill="url(#bar)"/>');
    barTicks(L).forEach(function (t) {
      out.push('<text x="' + (L.bar.x + L.bar.w + 4) + '" y="' + (L.bar.y + L.bar.h * (1 - t[0]) + 4) + '">' + esc(t[1]) + "</text>");
    });
    out.push("<desc>" + esc(L.scale.label) + "</desc></svg>");
    return out.join("\n");
  }

  // ------------------------------------------------------------------------------------------ explorer
  var sampleSel = $("attn-sample"), layerSel = $("attn-layer"), headSel = $("attn-head"), scaleSel = $("attn-scale");
  var heatmap = $("attn-heatmap"), readout = $("attn-readout"), view = $("model-view"), current = null;
  function option(value, label) {
    var o = document.createElement("option");
    o.value = value; o.textContent = label;
    return o;
  }
  function chosen() {
    var s = samples[+sampleSel.value], m = s.maps[+layerSel.value];
    return {s: s, m: m, head: headSel.value === "mean" ? "mean" : +headSel.value};
  }
  function fillLayers() {
    var previous = layerSel.selectedIndex >= 0 ? layerSel.options[layerSel.selectedIndex].dataset.layer : null;
    layerSel.innerHTML = "";
    samples[+sampleSel.value].maps.forEach(function (m, i) {
      var o = option(i, (i + 1) + ". " + m.role + " (" + m.heads + (m.heads > 1 ? " heads, " : " head, ") + m.q + "×" + m.k + ")");
      o.dataset.layer = m.layer; o.dataset.kind = m.kind; o.dataset.role = m.role;
      layerSel.appendChild(o);
      if (m.layer === previous) layerSel.value = String(i);
    });
    fillHeads();
  }
  function fillHeads() {
    var previous = headSel.value, m = chosen().m;
    headSel.innerHTML = "";
    if (m.heads > 1) headSel.appendChild(option("mean", "mean of " + m.heads + " heads"));
    for (var h = 1; h <= m.heads; h++) headSel.appendChild(option(String(h), "head " + h));
    if (previous && Array.prototype.some.call(headSel.options, function (o) { return o.value === previous; })) headSel.value = previous;
  }
  function renderExplorer() {
    var c = chosen(), box = heatmap.querySelector("canvas");
    current = layoutFigure(c.s, c.m, c.head, scaleSel.value, Math.max(360, heatmap.clientWidth || 1000));
    paintCanvas(box, current, window.devicePixelRatio || 1);
    var d = heatmap.dataset;
    d.sample = sampleSel.value; d.layer = c.m.layer; d.role = c.m.role; d.head = headSel.value; d.scale = scaleSel.value;
    d.cell = String(current.cell); d.queries = String(c.m.q); d.keys = String(c.m.k); d.vmax = String(current.scale.top);
    d.rendered = [sampleSel.value, layerSel.value, headSel.value].join("/");
    $("attn-scale-note").textContent = "Colour: " + current.scale.label + ".";
    Array.prototype.forEach.call(view.querySelectorAll(".thumb"), function (t) {
      t.classList.toggle("current", t.dataset.map === layerSel.value && t.dataset.head === headSel.value);
    });
  }
  function cellAt(ev) {
    var r = heatmap.querySelector("canvas").getBoundingClientRect(), L = current;
    var k = Math.floor((ev.clientX - r.left - L.left) / L.cell), q = Math.floor((ev.clientY - r.top - L.top) / L.cell);
    return q >= 0 && k >= 0 && q < L.map.q && k < L.map.k ? {q: q, k: k} : null;
  }
  report.cellCenter = function (q, k) {  // client coordinates of a cell's centre (tests move the mouse there)
    var r = heatmap.querySelector("canvas").getBoundingClientRect();
    return {x: r.left + current.left + (k + 0.5) * current.cell, y: r.top + current.top + (q + 0.5) * current.cell};
  };
  function hover(ev) {
    var at = cellAt(ev), boxEl = heatmap.querySelector(".cell-box"), tip = heatmap.querySelector(".tooltip");
    if (!at) { boxEl.style.display = "none"; tip.style.display = "none"; return; }
    var c = chosen(), L = current, v = L.z[at.q * c.m.k + at.k], d = readout.dataset;
    d.sample = sampleSel.value; d.layer = c.m.layer; d.role = c.m.role; d.head = headSel.value;
    d.queryIndex = at.q; d.keyIndex = at.k; d.query = c.m.query_labels[at.q]; d.key = c.m.key_labels[at.k]; d.weight = String(v);
    var text = "query " + at.q + " “" + c.m.query_labels[at.q] + "” → key " + at.k + " “" + c.m.key_labels[at.k] + "”: weight " +
      v.toPrecision(6) + " (" + c.m.role + ", " + (c.head === "mean" ? "mean of heads" : "head " + c.head) + ")";
    readout.textContent = text;
    boxEl.style.display = "block";
    boxEl.style.left = (L.left + at.k * L.cell - 2) + "px"; boxEl.style.top = (L.top + at.q * L.cell - 2) + "px";
    boxEl.style.width = boxEl.style.height = (L.cell + 4) + "px";
    tip.textContent = c.m.query_labels[at.q] + " → " + c.m.key_labels[at.k] + ": " + v.toPrecision(4);
    tip.style.display = "block";
    tip.style.left = Math.min(L.width - 10, L.left + (at.k + 1) * L.cell + 8) + "px";
    tip.style.top = (L.top + at.q * L.cell) + "px";
  }

  // ------------------------------------------------------------------------------------------ model view
  var THUMB = 76;
  function thumbnail(map, head) {
    var side = Math.max(map.q, map.k), w = Math.max(6, Math.round(THUMB * map.k / side)), h = Math.max(6, Math.round(THUMB * map.q / side));
    var z = matrix(map, head), L = {map: map, z: z, scale: colourScale(z, map.q, map.k, scaleSel.value)};
    var c = document.createElement("canvas"), ctx = c.getContext("2d");
    c.width = w; c.height = h;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(cellImage(L), 0, 0, w, h);
    return c;
  }
  function renderModelView() {
    var s = samples[+sampleSel.value], cols = Math.max.apply(null, s.maps.map(function (m) { return m.heads; }));
    view.innerHTML = "";
    view.style.gridTemplateColumns = "minmax(150px, 230px) repeat(" + (cols + (cols > 1 ? 1 : 0)) + ", max-content)";
    s.maps.forEach(function (m, i) {
      var role = document.createElement("div");
      role.className = "role";
      role.title = m.layer;
      role.appendChild(document.createTextNode(m.role));
      var small = document.createElement("small");
      small.textContent = m.q + "×" + m.k + " · " + m.layer;
      role.appendChild(small);
      view.appendChild(role);
      var heads = [];
      for (var h = 1; h <= m.heads; h++) heads.push(String(h));
      if (m.heads > 1) heads.push("mean");
      for (var j = 0; j < cols + (cols > 1 ? 1 : 0); j++) {
        if (j >= heads.length) { view.appendChild(document.createElement("div")); continue; }
        var b = document.createElement("button"), head = heads[j];
        b.className = "thumb"; b.type = "button"; b.dataset.map = String(i); b.dataset.head = head;
        b.title = m.role + " · " + (head === "mean" ? "mean of heads" : "head " + head) + " — open in the explorer";
        b.appendChild(thumbnail(m, head === "mean" ? "mean" : +head));
        b.appendChild(document.createTextNode(head === "mean" ? "mean" : "head " + head));
        b.addEventListener("click", openThumb);
        view.appendChild(b);
      }
    });
  }
  function openThumb(ev) {
    var b = ev.currentTarget;
    layerSel.value = b.dataset.map;
    fillHeads();
    headSel.value = b.dataset.head;
    renderExplorer();
    heatmap.scrollIntoView({block: "nearest"});
  }

  // ------------------------------------------------------------------------------------------ export
  function exportName(ext) {
    var c = chosen();
    var parts = [DATA.run, "sample" + (+sampleSel.value + 1), c.m.role, c.head === "mean" ? "mean" : "head" + c.head];
    return parts.join("-").replace(/[^A-Za-z0-9._-]+/g, "_").replace(/_+/g, "_") + "." + ext;
  }
  function download(blob, name, info) {
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob); a.download = name;
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(function () { URL.revokeObjectURL(a.href); }, 10000);
    report.lastExport = Object.assign({name: name, bytes: blob.size}, info);
  }
  function exportPNG() {
    var canvas = document.createElement("canvas"), ratio = 2;
    paintCanvas(canvas, current, ratio);
    canvas.toBlob(function (blob) {
      download(blob, exportName("png"), {format: "png", width: canvas.width, height: canvas.height, ratio: ratio,
                                         left: current.left, top: current.top, cell: current.cell});
    }, "image/png");
  }
  function exportSVG() {
    var svg = figureSVG(current);
    download(new Blob([svg], {type: "image/svg+xml"}), exportName("svg"), {format: "svg", width: current.width, height: current.height});
  }

  // ------------------------------------------------------------------------------------------ start
  if (samples.length && sampleSel) {
    samples.forEach(function (s, i) {
      sampleSel.appendChild(option(i, (i + 1) + ". " + s.title + (s.in_figures ? " (drawn in the figures)" : "")));
    });
    sampleSel.value = String(DATA.attention.default_sample || 0);
    Object.keys(SCALES).forEach(function (k) { scaleSel.appendChild(option(k, SCALES[k])); });
    fillLayers();
    renderModelView();
    renderExplorer();
    sampleSel.addEventListener("change", function () { fillLayers(); renderModelView(); renderExplorer(); });
    layerSel.addEventListener("change", function () { fillHeads(); renderExplorer(); });
    headSel.addEventListener("change", renderExplorer);
    scaleSel.addEventListener("change", function () { renderModelView(); renderExplorer(); });
    heatmap.addEventListener("mousemove", hover);
    heatmap.addEventListener("mouseleave", function () {
      heatmap.querySelector(".cell-box").style.display = "none"; heatmap.querySelector(".tooltip").style.display = "none";
    });
    $("attn-export-png").addEventListener("click", exportPNG);
    $("attn-export-svg").addEventListener("click", exportSVG);
    var resized = null;
    window.addEventListener("resize", function () { clearTimeout(resized); resized = setTimeout(renderExplorer, 150); });
  }
  report.ready = true;
  document.body.dataset.ready = "true";
})();
