"""The M4 competition benchmark: forecast every series of a group once, score it as the competition did.

For ``--group`` (Hourly by default) the benchmark reads ``<Group>-train.csv`` and ``<Group>-test.csv`` from
``--data`` (one series a row, ragged, no time stamps), forecasts the group's horizon after the end of every
training row with each model, and scores the forecasts against the test file:

* **sMAPE** = 200/h · Σ |y − ŷ| / (|y| + |ŷ|); **MASE** = mean |y − ŷ| over the in-sample mean absolute seasonal
  difference of the series' training values (the group's MASE period); both averaged over the series;
* **OWA** = ½ (sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2), with the group's published Naive2 averages;
* 95 % **MSIS** (over the same scale as MASE) and **coverage** of the prediction intervals.

Every setting is chosen on a validation split cut from the end of each training row (its last horizon): the
models train on the rest, stop early and calibrate their intervals on it, and never see the test file. Beside
the models: the naive forecast, seasonal naive, and Naive2 (the competition's benchmark: a seasonally adjusted
last value, seasonality tested at 90 %), and the published table of the group where the data README gives it.

Example::

    attnlab bench m4 --data ../shared/data/m4 --group Hourly --models patch_transformer,ridge
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from attnlab.catalog.forecast import MODELS
from attnlab.data.panel import load_panel
from attnlab.data.readers import M4_GROUPS, read_m4
from attnlab.errors import UserError
from attnlab.metrics import interval_scores, owa, smape_values

# The published Hourly table (M4 paper, "Evaluation and Ranks"; ../shared/data/README.md): sMAPE, MASE, OWA,
# and the best 95 % MSIS.
PUBLISHED = {
    "Hourly": {
        "best method (M4)": (8.913, 0.801, 0.410),
        "ES-RNN (M4 winner)": (9.328, 0.893, 0.440),
        "seasonal naive (M4)": (13.912, 1.193, 0.627),
        "MLP (M4 benchmark)": (math.nan, math.nan, 0.921),
        "RNN (M4 benchmark)": (math.nan, math.nan, 1.036),
        "Naive2 (M4)": (18.383, 2.395, 1.000),
    },
}
PUBLISHED_MSIS = {"Hourly": {"best 95 % intervals (M4)": 6.139, "ARIMA (M4)": 7.538}}
DEFAULT_MODELS = ("patch_transformer", "ridge", "linear")
# Settings the benchmark gives each model on every M4 group, beside the data's own (season, horizon), chosen on
# the validation split (the last horizon of each training row; docs/notes/m4.md has the figures): the MAE
# objective (sMAPE and MASE are absolute errors), every 4th training window, 8 epochs with early stopping; the
# patch model's patches are whole seasons ({period} is the group's MASE period), pre-norm layers without dropout.
MODEL_SETTINGS: dict[str, list[str]] = {
    "patch_transformer": ["data.loss=mae", "data.train_stride=4", "max_epochs=8", "patience=2", "batch_size=256",
                          "lr=1e-3", "model.patch_len={period}", "model.stride={period}", "model.d_model=64",
                          "model.num_layers=2", "model.d_ff=128", "model.dropout=0.0", "model.norm=layer",
                          "model.center=mean"],
    "horizon_attention": ["data.loss=mae", "data.train_stride=4", "max_epochs=8", "patience=2", "batch_size=256",
                          "lr=1e-3"],
    "linear": ["data.loss=mae", "data.train_stride=4", "max_epochs=8", "patience=2", "batch_size=256"],
}
INPUT_SEASONS = 14  # input length in seasons (336 steps of hourly data: two weeks)


@dataclass
class Row:
    """One model's scores on the test file."""

    model: str
    smape: float
    mase: float
    owa: float
    msis: float = math.nan
    coverage: float = math.nan
    seconds: float = math.nan
    run_dir: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="../shared/data/m4", help="folder of <Group>-train.csv and <Group>-test.csv")
    parser.add_argument("--group", default="Hourly", help=f"one of {', '.join(M4_GROUPS)} (default Hourly)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma list of forecast models (default %(default)s)")
    parser.add_argument("--input-len", type=int, default=None,
                        help=f"input steps (default {INPUT_SEASONS} seasons, at least 3 horizons)")
    parser.add_argument("--level", type=float, default=95.0, help="the prediction interval's level (default 95)")
    parser.add_argument("--runs-root", default=None, help="where the run folders go (default runs/bench-m4-<time>)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide training progress bars")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="train/model overrides for every model")


def naive2(history: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """The M4 benchmark Naive2: when the series is seasonal (its autocorrelation at lag ``period`` is significant
    at 90 %), the last value of the seasonally adjusted series (classical multiplicative decomposition) times the
    seasonal indices; else the last value."""
    n = len(history)
    if period > 1 and n >= 3 * period and _seasonal(history, period):
        series = pd.Series(history)
        trend = series.rolling(period, center=True).mean()
        if period % 2 == 0:
            trend = trend.rolling(2).mean().shift(-1)
        ratio = (series / trend).to_numpy()
        index = np.array([np.nanmean(ratio[i::period]) for i in range(period)])
        index = index / index.mean()
        adjusted = history / index[np.arange(n) % period]
        return adjusted[-1] * index[np.arange(n, n + horizon) % period]
    return np.repeat(history[-1], horizon)


def _seasonal(x: np.ndarray, period: int) -> bool:
    centred = x - x.mean()
    denominator = float(np.sum(centred * centred))
    if denominator == 0:
        return False
    acf = [float(np.sum(centred[k:] * centred[:-k]) / denominator) for k in range(1, period + 1)]
    limit = 1.645 * math.sqrt((1 + 2 * sum(a * a for a in acf[:-1])) / len(x))
    return abs(acf[-1]) > limit


def score(name: str, histories: list[np.ndarray], truth: np.ndarray, forecast: np.ndarray, period: int,
          naive2_scores: tuple[float, float], bounds: tuple[np.ndarray, np.ndarray] | None = None,
          level: float = 95.0, seconds: float = math.nan, run_dir: str = "") -> Row:
    """The competition's scores of (S, h) ``forecast`` against ``truth``, per series then averaged."""
    scale = np.array([_mase_scale(x, period) for x in histories])  # (S,)
    smape = float(smape_values(truth, forecast).mean())
    mase = float((np.abs(truth - forecast).mean(axis=1) / scale).mean())
    row = Row(name, smape, mase, owa(smape, mase, *naive2_scores), seconds=seconds, run_dir=run_dir)
    if bounds is not None:
        s = interval_scores(truth[..., None], bounds[0][..., None], bounds[1][..., None], level, scale[:, None])
        row.msis, row.coverage = s["msis"], s["coverage"]
    return row


def _mase_scale(history: np.ndarray, period: int) -> float:
    lag = period if len(history) > period else 1
    return float(np.mean(np.abs(history[lag:] - history[:-lag])))


def run(args: argparse.Namespace) -> int:
    from attnlab.console import setup_logging
    from attnlab.forecast.api import forecast

    if args.group not in M4_GROUPS:
        raise UserError(f"unknown M4 group {args.group!r}; choose one of: {', '.join(M4_GROUPS)}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise UserError(f"unknown forecast model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if not 0 < args.level < 100:
        raise UserError(f"--level {args.level:g} must be a percentage in (0, 100)")
    horizon, period, *naive2_scores = M4_GROUPS[args.group]
    setup_logging()
    train, test = read_m4(args.data, args.group)
    panel = load_panel(pd.concat([train, test], ignore_index=True))
    histories = [train.y[train.unique_id == s].to_numpy() for s in panel.ids]
    truth = np.stack([test.y[test.unique_id == s].to_numpy() for s in panel.ids])  # (S, h)
    input_len = args.input_len or max(INPUT_SEASONS * period, 3 * horizon)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    root = Path(args.runs_root) if args.runs_root else Path("runs") / f"bench-m4-{stamp}"
    print(f"bench m4: {args.group}, {panel.n_series} series, horizon {horizon}, MASE period {period}, input "
          f"{input_len}, {args.level:g} % intervals; runs in {root}", flush=True)
    rows = [score("naive (last value)", histories, truth, np.stack([np.repeat(x[-1], horizon) for x in histories]),
                  period, naive2_scores),
            score(f"seasonal naive ({period})", histories, truth,
                  np.stack([np.resize(x[-period:], horizon) for x in histories]), period, naive2_scores),
            score("Naive2", histories, truth, np.stack([naive2(x, horizon, period) for x in histories]), period,
                  naive2_scores)]
    for row in rows:
        print(f"  {row.model:<28} sMAPE {row.smape:7.3f}  MASE {row.mase:6.3f}  OWA {row.owa:6.3f}", flush=True)
    for name in models:
        start = time.perf_counter()
        settings = [item.format(period=period) for item in MODEL_SETTINGS.get(name, [])]
        result = forecast(panel, name, [*settings, *args.overrides], run_dir=root / name,
                          progress=args.progress, figures=False, forecast_windows=None, split="last",
                          horizon=horizon, season=period, input_len=input_len, levels=(args.level,))
        seconds = time.perf_counter() - start
        frame = pd.read_csv(result.run_dir / "forecasts.csv")
        column = f"{panel.target_names[0]}_forecast"
        by_id = {s: part for s, part in frame.groupby("unique_id", sort=False)}
        forecast_values = np.stack([by_id[str(s)][column].to_numpy() for s in panel.ids])
        lo = np.stack([by_id[str(s)][f"{panel.target_names[0]}_lo_{args.level:g}"].to_numpy() for s in panel.ids])
        hi = np.stack([by_id[str(s)][f"{panel.target_names[0]}_hi_{args.level:g}"].to_numpy() for s in panel.ids])
        row = score(name, histories, truth, forecast_values, period, naive2_scores, (lo, hi), args.level, seconds,
                    str(result.run_dir))
        rows.append(row)
        print(f"  {row.model:<28} sMAPE {row.smape:7.3f}  MASE {row.mase:6.3f}  OWA {row.owa:6.3f}  MSIS "
              f"{row.msis:6.3f}  coverage {row.coverage:.3f}  {seconds:6.1f} s", flush=True)
    print()
    print(table(rows, args.group))
    if args.json:
        Path(args.json).write_text(json.dumps([vars(r) for r in rows], indent=1) + "\n")
    return 0


def table(rows: list[Row], group: str) -> str:
    """Markdown table: the benchmark's rows, then the group's published ones."""
    lines = ["| model | sMAPE | MASE | OWA | 95 % MSIS | coverage | seconds |", "|---|---|---|---|---|---|---|"]

    def cell(value: float, fmt: str) -> str:
        return "" if math.isnan(value) else format(value, fmt)

    for r in rows:
        lines.append(f"| {r.model} | {cell(r.smape, '.3f')} | {cell(r.mase, '.3f')} | {cell(r.owa, '.3f')} | "
                     f"{cell(r.msis, '.3f')} | {cell(r.coverage, '.3f')} | {cell(r.seconds, '.0f')} |")
    for name, (smape, mase, value) in PUBLISHED.get(group, {}).items():
        lines.append(f"| *{name}* | {cell(smape, '.3f')} | {cell(mase, '.3f')} | {value:.3f} |  |  |  |")
    for name, msis in PUBLISHED_MSIS.get(group, {}).items():
        lines.append(f"| *{name}* |  |  |  | {msis:.3f} |  |  |")
    return "\n".join(lines)
