"""The M4 competition benchmark: forecast every series of a group once, score it as the competition did.

For ``--group`` (Hourly by default) the benchmark reads ``<Group>-train.csv`` and ``<Group>-test.csv`` from
``--data`` (one series a row, ragged, no time stamps), forecasts the group's horizon after the end of every
training row with each model, and scores the forecasts against the test file:

* **sMAPE** = 200/h · Σ |y − ŷ| / (|y| + |ŷ|); **MASE** = mean |y − ŷ| over the in-sample mean absolute seasonal
  difference of the series' training values (the group's MASE period); both averaged over the series;
* **OWA** = ½ (sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2), with the group's published Naive2 averages;
* 95 % **MSIS** (over the same scale as MASE) and **coverage** of the prediction intervals.

Every setting is chosen on a validation split cut from the end of each training row (its last horizon): the
models train on the rest, stop early and calibrate their intervals on it, and never see the test file. The
settings themselves were compared with ``--validation``, which scores the last horizon of each training row instead
of the test file (docs/notes/m4.md). Each trained model is fitted once per input length (by default 3.5, 5 and 7
horizons in whole seasons) and per seed (``--seeds``), the fits taking the training objectives of ``--losses`` in
turn (by default MAE, sMAPE and MASE); its forecast is the median of those fits, as N-BEATS does with its
ensembles, and its intervals are calibrated on the median's own validation errors, each series' width following the
median's recent error on it and the fits' disagreement (:func:`_median_bounds`). The fits run ``--jobs`` at a time
(default 2) in worker processes, each on one thread, so the scores do not depend on ``--jobs``. Beside the models:
the naive forecast, seasonal naive, and Naive2 (the competition's benchmark: a seasonally adjusted last value,
seasonality tested at 90 %), and the published table of the group where the data README gives it. ``--twins`` adds
each attention model's attention-free twin under the same settings and seeds, and a line saying whether the
attention lowers the OWA.

Example::

    attnlab bench m4 --data ../shared/data/m4 --group Hourly --models patch_transformer,ridge
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import multiprocessing
import time
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from attnlab.bench.cli import choices
from attnlab.catalog.forecast import MODELS, ForecastConfig
from attnlab.data.forecasting import ForecastData
from attnlab.data.panel import Panel, load_panel
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
# Settings the benchmark gives every trained model on every M4 group, beside the data's own (season, horizon), chosen
# with `--validation` (the last horizon of each training row; docs/notes/m4.md has the figures): every training window
# whose forecast starts in the last {history} steps (10 horizons) of each series; 8 epochs with early stopping, in
# batches of 256. Closed-form models take none of them.
TRAINED_SETTINGS = ["data.train_stride=1", "data.train_history={history}", "max_epochs=8", "patience=2",
                    "batch_size=256"]
# And per model: the attention models' learning rate; the patch model's patches are whole seasons ({period} is the
# group's MASE period), LayerNorm, no dropout.
MODEL_SETTINGS: dict[str, list[str]] = {
    "patch_transformer": ["lr=1e-3", "model.patch_len={period}", "model.stride={period}", "model.d_model=64",
                          "model.num_layers=2", "model.d_ff=128", "model.dropout=0.0", "model.norm=layer",
                          "model.center=mean"],
    "horizon_attention": ["lr=1e-3"],
}
# The training objectives a trained model's fits take in turn (N-BEATS's ensemble over its losses): absolute
# errors, as sMAPE and MASE are; sMAPE and MASE themselves (`data.loss`). Chosen with `--validation`.
LOSSES = ("mae", "smape", "mase")
OBJECTIVES: tuple[str, ...] = typing.get_args(typing.get_type_hints(ForecastConfig)["loss"])  # data.loss's values
HISTORY_HORIZONS = 10  # training windows start in the last 10 horizons of each series (N-BEATS's history limit)
DEFAULT_SEEDS = 1
INPUT_HORIZONS = (3.5, 5, 7)  # default input lengths, in horizons (each rounded up to whole seasons)
# Each fit computes on one thread and `--jobs` fits run at once: two one-thread fits on two cores train 1.3× the
# steps of one two-thread fit (M4's patch_transformer: 26 ms a step each against 17.4 ms), and the scores do not
# depend on --jobs (the thread count changes a float sum's order). A `threads=N` override changes it.
FIT_THREADS = 1
DEFAULT_JOBS = 2
CALIBRATION_FILE = "calibration.parquet"  # each fit's forecasts of its validation and recent windows


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
    twin_of: str | None = None  # the row label of the attention model this row is the attention-free twin of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="../shared/data/m4", help="folder of <Group>-train.csv and <Group>-test.csv")
    parser.add_argument("--group", default="Hourly", help=f"one of {', '.join(M4_GROUPS)} (default Hourly)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma list of forecast models (default %(default)s)")
    parser.add_argument("--input-len", default=None, metavar="L[,L...]",
                        help="input steps; several lengths fit one model each (× --seeds), and the forecast is their "
                             "median (default: " + ", ".join(f"{k:g}" for k in INPUT_HORIZONS) + " horizons, each "
                             "rounded up to whole seasons)")
    parser.add_argument("--level", type=float, default=95.0, help="the prediction interval's level (default 95)")
    parser.add_argument("--runs-root", default=None, help="where the run folders go (default runs/bench-m4-<time>)")
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                        help="fits of each trained model, seeds --seed, --seed + 1, …; the forecast is their median "
                             "(default %(default)s; closed-form models fit once)")
    parser.add_argument("--seed", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--losses", default=",".join(LOSSES), metavar="LOSS[,LOSS...]",
                        help="training objectives the fits of each trained model take in turn, from "
                             f"{', '.join(OBJECTIVES)} (default %(default)s)")
    parser.add_argument("--twins", action="store_true",
                        help="also fit each attention model's attention-free twin with the same settings and seeds, "
                             "and say whether the attention lowers the OWA")
    parser.add_argument("--validation", action="store_true",
                        help="score on the last horizon of each training row instead of the test file (the test file's "
                             "values are not used): the split every setting of this benchmark is chosen on")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS,
                        help="fits run at once, in worker processes, each on one thread (default %(default)s: the "
                             "cores of a small machine; the scores do not depend on it)")
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


@dataclass
class Plan:
    """The benchmark on one M4 group, checked and read: the panel to fit and what its forecasts are scored on."""

    args: argparse.Namespace
    models: list[str]
    horizon: int
    period: int
    naive2_scores: tuple[float, float]  # the group's published Naive2 sMAPE and MASE
    input_lens: list[int]
    losses: tuple[str, ...]  # the training objectives the fits of a trained model take in turn
    panel: Panel
    histories: list[np.ndarray]  # each series' training values, in panel order
    truth: np.ndarray  # (S, h) the values the forecasts are scored against
    root: Path


def plan(args: argparse.Namespace, models: list[str] | None = None) -> Plan:
    """Check the options and read the group's files (one-line errors before anything is printed or trained).
    ``models`` overrides ``--models``."""
    if args.group not in M4_GROUPS:
        raise UserError(f"unknown M4 group {args.group!r}; choose one of: {', '.join(M4_GROUPS)}")
    if models is None:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise UserError(f"unknown forecast model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if args.seeds < 1:
        raise UserError(f"--seeds {args.seeds} must be at least 1")
    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs} must be at least 1")
    if not 0 < args.level < 100:
        raise UserError(f"--level {args.level:g} must be a percentage in (0, 100)")
    losses = choices("losses", args.losses, OBJECTIVES)
    horizon, period, *naive2_scores = M4_GROUPS[args.group]
    input_lens = _input_lens(args.input_len, horizon, period)
    train, test = read_m4(args.data, args.group)
    if args.validation:
        train, test = _hold_out_last(train, horizon)
    panel = load_panel(pd.concat([train, test], ignore_index=True))
    by_id = {sid: part.to_numpy() for sid, part in train.groupby("unique_id", sort=False).y}
    ahead = {sid: part.to_numpy() for sid, part in test.groupby("unique_id", sort=False).y}
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    root = Path(args.runs_root) if args.runs_root else Path("runs") / f"bench-m4-{stamp}"
    return Plan(args, models, horizon, period, tuple(naive2_scores), input_lens, losses,  # type: ignore[arg-type]
                panel, [by_id[s] for s in panel.ids], np.stack([ahead[s] for s in panel.ids]), root)


@dataclass
class Fit:
    """One fit of the benchmark: a model at one input length, seed and training objective."""

    row: int  # the row it belongs to (an index of the models in `collect`)
    label: str  # that row's model label (a twin's names its attention-free setting)
    model: str
    member: str  # its folder's name among the row's fits, e.g. L240-smape-seed0
    input_len: int
    overrides: list[str]
    run_dir: Path
    closed_form: bool


def collect(p: Plan) -> list[Row]:
    """The naive forecasts' rows, then one row per model (and twin, with ``--twins``): the median of its fits
    over the input lengths and seeds. The fits run ``--jobs`` at a time, each on one thread. Prints a line per fit
    and per row."""
    from attnlab.console import setup_logging
    from attnlab.models.capabilities import ClosedFormFit
    from attnlab.train.rundir import check, check_path

    args, horizon, period, naive2_scores, histories, truth = (p.args, p.horizon, p.period, p.naive2_scores,
                                                              p.histories, p.truth)
    setup_logging()
    # (label, model, its overrides, the model it is a twin of), one per row
    models = [(name, name, (), None) for name in p.models]
    if args.twins:  # each attention model's attention-free twin, right after it, under the same settings and seeds
        for name in p.models:
            twin = MODELS[name].twin
            if twin is not None:
                models.insert([m[0] for m in models].index(name) + 1, (twin.label, twin.model, twin.overrides, name))
    fits: list[Fit] = []
    for j, (label, name, twin_overrides, twin_of) in enumerate(models):
        built_by = MODELS[name].model_class  # a class, or a function that builds one (gru, lstm: trained models)
        closed = isinstance(built_by, type) and issubclass(built_by, ClosedFormFit)  # seeds, objectives: no change
        settings = [item.format(period=period, history=HISTORY_HORIZONS * horizon)
                    for item in ([] if closed else TRAINED_SETTINGS) + MODEL_SETTINGS.get(name, [])]
        seeds = 1 if closed else args.seeds
        members = [(length, args.seed + k, None if closed else p.losses[i % len(p.losses)])  # (L, seed, objective)
                   for i, (length, k) in enumerate(itertools.product(p.input_lens, range(seeds)))]
        folder = p.root / (name if twin_of is None else f"{twin_of}-twin")
        for length, seed, loss in members:  # one fit per input length and seed; their median is the forecast
            objective = [] if loss is None else [f"data.loss={loss}"]
            member = f"L{length}-seed{seed}" if loss is None else f"L{length}-{loss}-seed{seed}"
            fits.append(Fit(j, label, name, member, length, [*settings, *objective, *twin_overrides, f"seed={seed}",
                                                      f"threads={FIT_THREADS}", *args.overrides],
                            folder if len(members) == 1 else folder / member, closed))
    check_path(p.root, "--runs-root")  # before anything is printed or trained: never into a finished run, a file
    for fit in fits:  # or a folder of the user's own files
        check(check_path(fit.run_dir, "--runs-root"), resume=False, flag="--runs-root")
    scored_on = "the last horizon of each training row (--validation)" if args.validation else "the test file"
    print(f"bench m4: {args.group}, {p.panel.n_series} series, horizon {horizon}, MASE period {period}, input "
          f"{','.join(map(str, p.input_lens))}, objectives {','.join(p.losses)}, {args.level:g} % intervals, "
          f"scored on {scored_on}; fits {args.jobs} at a time; runs in {p.root}", flush=True)
    rows = [score("naive (last value)", histories, truth, np.stack([np.repeat(x[-1], horizon) for x in histories]),
                  period, naive2_scores),
            score(f"seasonal naive ({period})", histories, truth,
                  np.stack([np.resize(x[-period:], horizon) for x in histories]), period, naive2_scores),
            score("Naive2", histories, truth, np.stack([naive2(x, horizon, period) for x in histories]), period,
                  naive2_scores)]
    for row in rows:
        print(f"  {row.model:<34} sMAPE {row.smape:7.3f}  MASE {row.mase:6.3f}  OWA {row.owa:6.3f}", flush=True)
    forecasts, fit_seconds, fit_owa = _run_fits(p, fits)
    scale = np.array([_mase_scale(x, period) for x in histories])  # (S,)
    labels: dict[str, str] = {}  # model name -> its row's label (a twin's row names the row it is the twin of)
    for j, (label, name, _twin_overrides, twin_of) in enumerate(models):
        mine = [i for i, f in enumerate(fits) if f.row == j]
        member_owa, member_seconds = [fit_owa[i] for i in mine], [fit_seconds[i] for i in mine]
        if len(mine) == 1:  # one fit: its own forecast and intervals
            median = forecasts[mine[0]]
        else:  # the median of the fits, with intervals calibrated on the median's own validation errors
            median = _median_bounds([fits[i].run_dir for i in mine], list(map(str, p.panel.ids)),
                                    np.stack([forecasts[i][0] for i in mine]), scale, args.level)
        point, lo, hi, short = _fill_short(median, histories, horizon, period)
        folder = fits[mine[0]].run_dir if len(mine) == 1 else fits[mine[0]].run_dir.parent
        row = score(label if len(mine) == 1 else f"{label} (median of {len(mine)})", histories, truth, point,
                    period, naive2_scores, (lo, hi), args.level, sum(member_seconds), str(folder))
        row.extra = {"series_too_short": float(short), "member_owa_min": min(member_owa),
                     "member_owa_max": max(member_owa), "member_seconds_max": max(member_seconds)}
        row.twin_of = labels.get(twin_of) if twin_of else None  # the attention model's row label
        labels.setdefault(name, row.model)
        rows.append(row)
        print(f"  {row.model:<34} sMAPE {row.smape:7.3f}  MASE {row.mase:6.3f}  OWA {row.owa:6.3f}  MSIS "
              f"{row.msis:6.3f}  coverage {row.coverage:.3f}  {row.seconds:6.1f} s", flush=True)
        if len(mine) > 1:
            print(f"    each of the {len(mine)} fits alone: OWA {min(member_owa):.3f} to {max(member_owa):.3f}, "
                  f"{min(member_seconds):.0f} to {max(member_seconds):.0f} s", flush=True)
        if short:
            print(f"    {short} series too short for every input length: seasonal naive forecasts them", flush=True)
    return rows


def _run_fits(p: Plan, fits: list[Fit]
              ) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], list[float], list[float]]:
    """Run ``fits``, ``--jobs`` at a time (in worker processes when more than one), the longest first; print a
    line as each ends. Returns each fit's test forecasts and bounds (:func:`_read_forecasts`), its seconds and
    its OWA, in the order of ``fits``."""
    args = p.args
    # The longest first, so the last ones to end are short: trained models before closed-form ones, in the order
    # of their rows (the attention models, the slowest, come first by default), longer inputs first.
    order = sorted(range(len(fits)), key=lambda i: (fits[i].closed_form, fits[i].row, -fits[i].input_len))
    forecasts: list[typing.Any] = [None] * len(fits)
    seconds, owas = [math.nan] * len(fits), [math.nan] * len(fits)

    def done(i: int, took: float) -> None:
        forecasts[i], seconds[i] = _read_forecasts(fits[i].run_dir / "forecasts.csv", p.panel, args.level), took
        owas[i] = score("", p.histories, p.truth, _fill_short(forecasts[i], p.histories, p.horizon, p.period)[0],
                        p.period, p.naive2_scores).owa
        finished = sum(not math.isnan(t) for t in seconds)
        print(f"    fit {finished}/{len(fits)}: {fits[i].label} {fits[i].member}  OWA {owas[i]:.3f}  {took:.0f} s",
              flush=True)

    if args.jobs == 1 or len(fits) == 1:  # in this process, with progress bars
        for i in order:
            done(i, _fit(p.panel, fits[i], p.horizon, p.period, args.level, args.progress))
        return forecasts, seconds, owas
    # Fresh interpreters (no forked OpenMP or Lightning state). The first failed fit (a bad override, Ctrl-C)
    # stops the others at once rather than after their training.
    with multiprocessing.get_context("spawn").Pool(min(args.jobs, len(fits)), initializer=_worker_start) as pool:
        tasks = [(i, p.panel, fits[i], p.horizon, p.period, args.level) for i in order]
        for i, took in pool.imap_unordered(_fit_in_worker, tasks):
            done(i, took)
    return forecasts, seconds, owas


def _fit_in_worker(task: tuple[int, Panel, Fit, int, int, float]) -> tuple[int, float]:
    i, panel, fit, horizon, period, level = task
    return i, _fit(panel, fit, horizon, period, level, False)


def _worker_start() -> None:
    from attnlab.console import setup_logging

    setup_logging()


def _fit(panel: Panel, fit: Fit, horizon: int, period: int, level: float, progress: bool) -> float:
    """Train and test one fit into its run folder, with its :data:`CALIBRATION_FILE`; its seconds."""
    from attnlab.forecast.api import forecast

    start = time.perf_counter()
    result = forecast(panel, fit.model, fit.overrides, run_dir=fit.run_dir, progress=progress, figures=False,
                      forecast_windows=None, split="last", horizon=horizon, season=period, input_len=fit.input_len,
                      levels=(level,))
    _write_calibration(result.run_dir, result.data)
    return time.perf_counter() - start


def _write_calibration(run_dir: Path, data: ForecastData) -> None:
    """Write a fit's point forecasts of its validation and ``recent`` windows (the last training windows, a
    horizon apart) beside their true values, one row per window and step: ``split, unique_id, origin, step,
    point, truth`` (:data:`CALIBRATION_FILE`), for the intervals of the fits' median (:func:`_median_bounds`)."""
    from attnlab.experiments.forecast import Forecast
    from attnlab.train import load_model

    model, config = load_model(run_dir)
    task = Forecast(config.experiment_config, data)
    task.complete_model_config(config.model_config)
    frames = []
    for split in ("val", "recent"):
        windows, out = task.forecasts(model, split)  # (N, H, C[, Q]) original units
        series, origin = data.locate(split, windows)
        point = (out[..., 0] if out.ndim == 4 else out)[..., 0]  # (N, H): the one target
        truth = data.truth(series, origin)[..., 0]  # (N, H)
        n, h = point.shape
        frames.append(pd.DataFrame({"split": split, "unique_id": np.repeat(np.asarray(data.panel.ids)[series], h),
                                    "origin": np.repeat(origin, h), "step": np.tile(np.arange(h), n),
                                    "point": point.ravel(), "truth": truth.ravel()}))
    pd.concat(frames).to_parquet(run_dir / CALIBRATION_FILE, index=False)


def _median_bounds(run_dirs: list[Path], ids: list[str], forecasts: np.ndarray, scale: np.ndarray, level: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The median of the fits' test forecasts ``forecasts`` (M, S, h) and its interval bounds, each (S, h),
    calibrated on the median's own validation errors (split conformal, locally weighted). Each series' width is a
    per-step multiple of its *ensemble scale*: the median's mean absolute error on the series' recent training
    windows, + :data:`~attnlab.experiments.forecast_scores.SCALE_FLOOR` × its MASE scale ``scale`` (S,), + the fits'
    disagreement there (the standard deviation of their forecasts, averaged over the horizon); the multiple
    covers ``level`` % of the validation windows at that step (the ⌈(n + 1)·level⌉-th smallest of n). The fits
    read from :data:`CALIBRATION_FILE` in ``run_dirs``; a series no fit forecasts (too short for every input)
    gets NaN."""
    from attnlab.experiments.forecast_scores import SCALE_FLOOR, conformal_quantile

    frame = pd.concat([pd.read_parquet(d / CALIBRATION_FILE) for d in run_dirs])
    by_window = frame.groupby(["split", "unique_id", "origin", "step"], sort=False)
    windows = by_window.agg(point=("point", "median"), truth=("truth", "first"))
    windows["spread"] = by_window["point"].std(ddof=0)  # the fits' disagreement (0 where one fit has the window)
    windows["error"] = (windows["truth"] - windows["point"]).abs()
    floor = pd.Series(SCALE_FLOOR * scale, index=ids)
    recent = windows.loc["recent"].groupby(level="unique_id")["error"].mean()  # (S',) the median's recent error
    val = windows.loc["val"]
    spread_val = val.groupby(level=["unique_id", "origin"])["spread"].transform("mean")  # per window
    sid = val.index.get_level_values("unique_id")
    score = val["error"] / (recent.reindex(sid).to_numpy() + floor.reindex(sid).to_numpy() + spread_val.to_numpy())
    multiplier = conformal_quantile(score.unstack("step").to_numpy(), level)  # (validation windows, h) -> (h,)
    with warnings.catch_warnings():  # a series no fit forecasts: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        point = np.nanmedian(forecasts, axis=0)  # (S, h)
        spread = np.nanstd(forecasts, axis=0).mean(axis=1)  # (S,)
    width = (recent.reindex(ids).to_numpy() + floor.to_numpy() + np.nan_to_num(spread))[:, None] * multiplier
    return point, point - width, point + width


def run(args: argparse.Namespace) -> int:
    rows = collect(plan(args))
    print()
    print(table(rows, "" if args.validation else args.group))  # published figures are test figures
    for line in ablation(rows):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps([vars(r) for r in rows], indent=1) + "\n")
    return 0


def ablation(rows: list[Row]) -> list[str]:
    """One PASS/FAIL line per attention model with a twin: its OWA is below its attention-free twin's."""
    lines = []
    for twin in (r for r in rows if r.twin_of is not None):
        model = next(r for r in rows if r.model == twin.twin_of)
        verdict = "PASS" if model.owa < twin.owa else "FAIL"
        lines.append(f"{verdict} attention vs its attention-free twin: {model.model} OWA {model.owa:.3f}, "
                     f"{twin.model} {twin.owa:.3f} (Δ {model.owa - twin.owa:+.3g})")
    return lines


def _fill_short(forecasts: tuple[np.ndarray, ...], histories: list[np.ndarray], horizon: int, period: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Forecast and bounds (S, h) with the series a model left out (too short for its input: NaN rows) given the
    seasonal naive forecast, and bounds of the median width, relative to each series' MASE scale, of the others.
    Returns them and how many series were filled."""
    point, lo, hi = (np.array(a, dtype=np.float64) for a in forecasts)
    missing = np.isnan(point).any(axis=1)
    if missing.any():
        scale = np.array([_mase_scale(x, period) for x in histories])[:, None]  # (S, 1)
        half = np.nanmedian((hi - lo)[~missing] / 2 / scale[~missing], axis=0) if (~missing).any() else 0.0
        naive = np.stack([np.resize(x[-period:], horizon) for x in histories])
        point[missing] = naive[missing]
        lo[missing], hi[missing] = (naive - half * scale)[missing], (naive + half * scale)[missing]
    return point, lo, hi, int(missing.sum())


def _input_lens(option: str | None, horizon: int, period: int) -> list[int]:
    """The input lengths of ``--input-len``, or the default: :data:`INPUT_HORIZONS` horizons in whole seasons."""
    if option is None:
        return list(dict.fromkeys(math.ceil(k * horizon / period) * period for k in INPUT_HORIZONS))
    try:
        lengths = [int(item) for item in option.split(",") if item.strip()]
    except ValueError:
        lengths = []
    if not lengths or min(lengths) < 1:
        raise UserError(f"--input-len {option!r} must be one or more whole numbers of steps, e.g. 168,240")
    return list(dict.fromkeys(lengths))


def _read_forecasts(path: Path, panel: Panel, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A run's test forecasts and its interval bounds at ``level``, each (S, h) in the panel's series order; NaN
    rows for the series the run left out (too short for its input)."""
    frame = pd.read_csv(path, dtype={"unique_id": str})
    target = panel.target_names[0]
    by_id = {s: part for s, part in frame.groupby("unique_id", sort=False)}
    horizon = int(frame.groupby("unique_id").size().max())
    return tuple(np.stack([by_id[str(s)][column].to_numpy(dtype=np.float64) if str(s) in by_id
                           else np.full(horizon, np.nan) for s in panel.ids])  # type: ignore[return-value]
                 for column in (f"{target}_forecast", f"{target}_lo_{level:g}", f"{target}_hi_{level:g}"))


def _hold_out_last(train: pd.DataFrame, horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training rows without their last ``horizon`` values, and those values as the part to score."""
    from_end = train.groupby("unique_id", sort=False).cumcount(ascending=False)  # 0 on each series' last row
    return train[from_end >= horizon], train[from_end < horizon]


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
