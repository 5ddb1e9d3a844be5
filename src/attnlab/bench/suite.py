"""The forecasting suite, ``attnlab bench forecast --suite``: does attention earn its place on data it was not tuned on?

One command runs every model on three data sets from ``--data`` (the project's ``../shared/data``):

* **ETTh1** (``ett/ETTh1.csv``): the 12/4/4-month ETT split, all 7 channels, every test window;
* **exchange rates** (``ltsf/exchange_rate.csv``): the 70/10/20 split, 8 channels, every test window;
* **M4** (``m4/<Group>-train.csv`` and ``-test.csv``, Hourly by default): the competition's protocol;
* and, with ``--csv FILE --split ett|ratio``, any further CSV under the long-horizon protocol.

Every attention model is trained beside its attention-free twin (:class:`attnlab.registry.Twin`) under the same
input, seed and budget. Each data set gets one table with the naive, seasonal naive, ridge and linear forecasts
beside every model, the published figures measured on every test window where they exist (ETTh1: from
``../shared/data/README.md``; M4: the competition's table), and a last column "attention vs its twin": how much the
attention lowers the model's error (MSE per horizon, or OWA). Every setting is chosen inside the fits on each data
set's validation split, by the same rule everywhere: the suite has no per-data-set constants.

The checks at the end (PASS/FAIL; the exit status is 1 if any fails):

* ETTh1: the best attention model reaches the best published MSE on every test window at each horizon, and each
  attention model beats its twin at every horizon;
* every other CSV: each attention model against its twin, and the best attention model against the naive forecast;
* M4: the best attention model has a lower OWA than the best attention-free model (linear, ridge, the twins).

Example::

    attnlab bench forecast --suite --data ../shared/data
    attnlab bench forecast --suite --horizons 96 --models linear,ridge,patch_transformer
"""

from __future__ import annotations

import argparse
import csv as csv_module
import datetime
import math
from dataclasses import dataclass
from pathlib import Path

from attnlab.bench import forecast as one_csv
from attnlab.bench import m4 as m4_bench
from attnlab.catalog.forecast import MODELS
from attnlab.data.readers import M4_GROUPS
from attnlab.errors import UserError

SUITE_MODELS = ("linear", "ridge", "patch_transformer", "horizon_attention", "retrieval")
# Published ETTh1 test MSE on *every* test window (each paper's own code scores them all; ../shared/data/README.md).
EVERY_WINDOW: dict[str, dict[int, float]] = {
    "TimeBase": {96: 0.350, 192: 0.388, 336: 0.409, 720: 0.440},
    "DUET": {96: 0.352, 192: 0.398, 336: 0.414, 720: 0.429},
    "PDF": {96: 0.356, 192: 0.390, 336: 0.402, 720: 0.462},
    "SparseTSF": {96: 0.362, 192: 0.403, 336: 0.434, 720: 0.426},
    "CycleNet/Linear": {96: 0.374, 192: 0.407, 336: 0.431, 720: 0.451},
}
# Rows every table starts with, in this order, when they ran: the forecasts that learn nothing, then the
# attention-free maps.
ANCHOR_MODELS = ("linear", "ridge")


@dataclass
class CsvSet:
    """A CSV of the suite: its name in the tables, the file, and its split."""

    name: str
    path: Path
    split: str
    date_col: str = "date"


def run_suite(args: argparse.Namespace) -> int:
    """``attnlab bench forecast --suite``: plan every data set (bad input stops here, before any fit), fit, print
    one table per data set and the checks."""
    data = Path(args.data)
    models = one_csv._models(args.models) if args.models else list(SUITE_MODELS)
    sets = [CsvSet("ETTh1", data / "ett" / "ETTh1.csv", "ett"),
            CsvSet("exchange_rate", data / "ltsf" / "exchange_rate.csv", "ratio")]
    if args.m4_group not in M4_GROUPS:
        raise UserError(f"unknown M4 group {args.m4_group!r}; choose one of: {', '.join(M4_GROUPS)}")
    m4_files = [data / "m4" / f"{args.m4_group}-{part}.csv" for part in ("train", "test")]
    missing = [str(path) for path in [*(s.path for s in sets), *m4_files] if not path.is_file()]
    if missing:
        raise UserError(f"the suite needs {', '.join(missing)}; pass --data with the folder that holds ett/, ltsf/ "
                        "and m4/ (the project's ../shared/data)")
    if args.csv is not None:  # one more data set, the user's; load_panel names a missing or unreadable file
        name = Path(args.csv).stem
        name = name if name not in {s.name for s in sets} else f"{name}-csv"  # its own table and run folders
        sets.append(CsvSet(name, Path(args.csv), args.split, args.date_col))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    root = Path(args.runs_root) if args.runs_root else Path("runs") / f"bench-suite-{stamp}"
    plans = []
    for s in sets:
        options = argparse.Namespace(**{**vars(args), "csv": str(s.path), "split": s.split, "date_col": s.date_col,
                                        "twins": True, "runs_root": str(root / s.name)})
        plans.append((s, one_csv.plan(options, models)))
    panel_models = [m for m in models if MODELS[m].config.PANELS]  # retrieval fits one series, not a panel
    m4_parser = argparse.ArgumentParser()
    m4_bench.add_arguments(m4_parser)
    m4_plan = m4_bench.plan(m4_parser.parse_args(
        ["--data", str(data / "m4"), "--group", args.m4_group, "--twins", "--no-progress",
         "--runs-root", str(root / f"M4-{args.m4_group}"), *args.overrides,
         *([f"max_time_s={args.budget_s}"] if args.budget_s is not None else [])]), panel_models)
    skipped = [m for m in models if m not in panel_models]
    print(f"bench forecast --suite: {', '.join(s.name for s in sets)}, M4 {args.m4_group}; models "
          f"{', '.join(models)}, each attention model beside its attention-free twin; runs in {root}", flush=True)

    sections, checks, rows_out = [], [], []
    for s, p in plans:
        print(f"\n== {s.name}", flush=True)
        rows = one_csv.collect(p)
        sections.append((f"{s.name} ({s.split} split, every test window, standardised MSE)",
                         csv_table(rows, p.horizons, EVERY_WINDOW if s.name == "ETTh1" else {})))
        checks += [f"{s.name}: {line}" for line in csv_checks(rows, p.horizons, s.name == "ETTh1")]
        rows_out += [_csv_record(s.name, r) for r in rows]
    print(f"\n== M4 {args.m4_group}", flush=True)
    if skipped:
        print(f"  {', '.join(skipped)}: one series only, not run on the M4 panel", flush=True)
    m4_rows = m4_bench.collect(m4_plan)
    sections.append((f"M4 {args.m4_group} (the competition's protocol, {m4_plan.panel.n_series} series)",
                     m4_table(m4_rows, args.m4_group)))
    checks += [f"M4 {args.m4_group}: {line}" for line in m4_checks(m4_rows)]
    rows_out += [_m4_record(f"M4-{args.m4_group}", r) for r in m4_rows]

    for title, text in sections:
        print(f"\n### {title}\n\n{text}")
    print()
    for line in checks:
        print(line)
    if args.out_csv:
        _write(rows_out, Path(args.out_csv))
    return 1 if any(": FAIL" in line for line in checks) else 0


def twin_deltas(rows: list[one_csv.Row], horizons: list[int]) -> dict[str, list[float]]:
    """Attention model -> its MSE minus its twin's at each horizon (NaN where either did not run)."""
    by = {(r.model, r.horizon): r for r in rows}
    deltas: dict[str, list[float]] = {}
    for twin in (r for r in rows if r.twin_of is not None):
        deltas.setdefault(twin.twin_of, [math.nan] * len(horizons))
        model = by.get((twin.twin_of, twin.horizon))
        if model is not None and twin.horizon in horizons:
            deltas[twin.twin_of][horizons.index(twin.horizon)] = model.mse - twin.mse
    return deltas


def csv_table(rows: list[one_csv.Row], horizons: list[int], published: dict[str, dict[int, float]]) -> str:
    """Markdown: MSE per horizon (the best in bold), train seconds over the horizons, and "attention vs its twin"
    (Δ MSE per horizon; negative: the attention helps). Baselines first, then the attention-free maps, then each
    attention model followed by its twin, then the published rows."""
    labels = list(dict.fromkeys(r.model for r in rows))
    order = ([m for m in labels if _baseline(rows, m)] + [m for m in ANCHOR_MODELS if m in labels]
             + [m for m in labels if not _baseline(rows, m) and m not in ANCHOR_MODELS])
    by = {(r.model, r.horizon): r for r in rows}
    best = {h: min((r.mse for r in rows if r.horizon == h), default=math.inf) for h in horizons}
    deltas = twin_deltas(rows, horizons)
    lines = ["| model | " + " | ".join(f"H={h}" for h in horizons) + " | train s | attention vs its twin (Δ MSE) |",
             "|---|" + "---|" * (len(horizons) + 2)]
    for model in order:
        ran = {h: by[model, h] for h in horizons if (model, h) in by}
        cells = ["-" if h not in ran else f"**{ran[h].mse:.3f}**" if ran[h].mse == best[h] else f"{ran[h].mse:.3f}"
                 for h in horizons]
        seconds = "" if _baseline(rows, model) else f"{sum(r.train_s for r in ran.values()):.0f}"
        delta = " / ".join("-" if math.isnan(d) else f"{d:+.4f}" for d in deltas[model]) if model in deltas else ""
        lines.append(f"| {one_csv._row_label(rows, model)} | " + " | ".join(cells) + f" | {seconds} | {delta} |")
    for name, numbers in published.items():
        cells = [f"{numbers[h]:.3f}" if h in numbers else "" for h in horizons]
        lines.append(f"| *{name} (published, every window)* | " + " | ".join(cells) + " |  |  |")
    return "\n".join(lines)


def _baseline(rows: list[one_csv.Row], model: str) -> bool:
    return any(r.baseline for r in rows if r.model == model)


def csv_checks(rows: list[one_csv.Row], horizons: list[int], etth1: bool) -> list[str]:
    """PASS/FAIL lines: on ETTh1 the best attention model against the best published MSE on every test window at
    each horizon; everywhere each attention model against its twin and the best one against the naive forecast."""
    lines = []
    if etth1:
        for h in horizons:
            attention = [r for r in rows if r.horizon == h and r.attention]
            anchors = {name: numbers[h] for name, numbers in EVERY_WINDOW.items() if h in numbers}
            if not attention and any(r.horizon == h and r.attention_off for r in rows):
                lines.append(f"FAIL H={h}: no attention model uses its attention (each forecast as its twin)")
            if not attention or not anchors:
                continue
            best = min(attention, key=lambda r: r.mse)
            name, goal = min(anchors.items(), key=lambda item: item[1])
            ok = best.mse <= goal
            lines.append(f"{'PASS' if ok else 'FAIL'} H={h}: best attention model {best.model} {best.mse:.4f} "
                         f"{'≤' if ok else '>'} {goal:.3f}, the best published on every test window ({name})")
    return lines + one_csv.ablation(rows, horizons)


def m4_table(rows: list[m4_bench.Row], group: str) -> str:
    """The M4 benchmark's table with a last column: the attention model's OWA minus its twin's."""
    head, rule, *body = m4_bench.table(rows, group).splitlines()  # one line per row, then the published ones
    twins = {r.twin_of: r for r in rows if r.twin_of is not None}
    out = [head + " attention vs its twin (Δ OWA) |", rule + "---|"]
    for i, line in enumerate(body):
        twin = twins.get(rows[i].model) if i < len(rows) else None
        out.append(line + (f" {rows[i].owa - twin.owa:+.4f} |" if twin is not None else "  |"))
    return "\n".join(out)


def m4_checks(rows: list[m4_bench.Row]) -> list[str]:
    """Each attention model against its twin (the M4 benchmark's lines), then the best attention model's OWA against
    the best attention-free model's (linear, ridge and the twins: every trained row without attention)."""
    lines = m4_bench.ablation(rows)
    trained = [r for r in rows if r.run_dir]  # the naive forecasts have no run
    free = [r for r in trained if r.twin_of is not None or _base_name(r.model) in one_csv.NO_ATTENTION]
    attention = [r for r in trained if r not in free]
    if attention and free:
        best, rival = min(attention, key=lambda r: r.owa), min(free, key=lambda r: r.owa)
        ok = best.owa < rival.owa
        lines.append(f"{'PASS' if ok else 'FAIL'} best attention model {best.model} OWA {best.owa:.3f} "
                     f"{'<' if ok else '≥'} best attention-free model {rival.model} {rival.owa:.3f} "
                     f"(Δ {best.owa - rival.owa:+.3g})")
    return lines


def _base_name(label: str) -> str:
    """``linear (median of 3)`` -> ``linear``."""
    return label.split(" (", 1)[0]


def _csv_record(data_set: str, r: one_csv.Row) -> dict[str, object]:
    return {"data_set": data_set, "horizon": r.horizon, "model": r.model, "twin_of": r.twin_of or "",
            "mse": r.mse, "mae": r.mae, "train_s": r.train_s, "run_dir": "" if r.baseline else str(r.run_dir)}


def _m4_record(data_set: str, r: m4_bench.Row) -> dict[str, object]:
    return {"data_set": data_set, "model": r.model, "twin_of": r.twin_of or "", "smape": r.smape, "mase": r.mase,
            "owa": r.owa, "msis": r.msis, "coverage": r.coverage, "train_s": r.seconds, "run_dir": r.run_dir}


def _write(records: list[dict[str, object]], path: Path) -> None:
    """One CSV row per data set, model (and horizon): the union of the two kinds of record, blanks where a column
    does not apply."""
    columns = list(dict.fromkeys(key for record in records for key in record))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv_module.DictWriter(handle, columns)
        writer.writeheader()
        for record in records:
            writer.writerow({key: "" if isinstance(value, float) and math.isnan(value) else value
                             for key, value in record.items()})
