"""``attnlab forecast``, ``attnlab predict`` and ``attnlab backtest``: thin wrappers over
:mod:`attnlab.forecast.api` and :mod:`attnlab.forecast.forecaster`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from attnlab.catalog.forecast import DEFAULT_FORECAST_WINDOWS
from attnlab.console import add_run_options, is_rank_zero, parse_tail, setup_logging
from attnlab.errors import UserError
from attnlab.paths import readable_file, run_folder
from attnlab.train.command import check_run_request

FORECAST_EPILOG = """\
Data: a CSV or Parquet file, long (one row per series id and time: --id-col, default unique_id; a target
column, default y; any covariate columns) or wide (a time column and numeric columns: one series, each column
a channel; --target chooses the channels scored). The time column holds datetimes or integer periods.
Covariates: columns of long data are historical (known up to the forecast origin) unless named in
--futr-cols (known for the horizon too); --static-csv gives one row per series; --calendar adds calendar
features. Splits: --split last (default for many series) = the last horizon of each series is the test, the
one before it validation; ratio (default for one series) = chronological fractions (--ratios); ett = rows
0-8639 / 8640-11519 / 11520-14399 (the published ETT protocol). Each series is standardised with its own
training statistics; every test window is evaluated, beside the naive, seasonal naive and ridge baselines.

overrides: KEY=VALUE sets a train or model setting as in `attnlab fit` (see `attnlab list forecast`),
e.g. lr=3e-4 max_epochs=20 patience=5 model.d_model=64.

examples:
  attnlab forecast --csv ../shared/data/ett/ETTh1.csv --split ett --input-len 336 --horizon 96 --model linear
  attnlab forecast --csv panel.csv --horizon 24 --levels 80,95 --model patch_transformer
  attnlab forecast --csv sales.parquet --id-col store --date-col day --target units --futr-cols price,promo \\
      --static-csv stores.csv --horizon 14 --model transformer
  attnlab predict --run runs/forecast-linear-20250101-120000 --csv ETTh1.csv --out next.csv
  attnlab backtest --csv panel.csv --horizon 24 --n-windows 3 --models ridge,patch_transformer --out cv.csv
"""


def _add_data_options(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    def d(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--csv", metavar="FILE", default=d(None), help="the data: a CSV or Parquet file (required)")
    parser.add_argument("--id-col", metavar="COL", default=d(None),
                        help="series id column of long data (default: unique_id, id or series if present)")
    parser.add_argument("--date-col", metavar="COL", default=d(None),
                        help="time column (default: ds, date, time, … or the pandas index of a to_csv file)")
    parser.add_argument("--target", metavar="COL", action="append", default=d(None),
                        help="long data: the target column (default y); wide data: a channel to score and write "
                        "out; repeat or comma-separate (default: all)")
    parser.add_argument("--all", dest="all_channels", action="store_true", default=d(False),
                        help="wide data: score every channel (the default when no --target is given)")
    parser.add_argument("--inputs", metavar="COLS", default=d(None), help="comma list of the columns to use "
                        "(default: every numeric column)")
    parser.add_argument("--exclude", metavar="COLS", default=d(None), help="comma list of columns to leave out")
    parser.add_argument("--futr-cols", metavar="COLS", default=d(None),
                        help="comma list of future-known covariates (given for the horizon at predict time)")
    parser.add_argument("--static-csv", metavar="FILE", default=d(None),
                        help="static covariates: one row per series id, numeric columns")
    parser.add_argument("--calendar", metavar="FEATURES", default=d(None),
                        help="calendar features as future-known covariates: comma list of hour, dayofweek, day, "
                        "month, dayofyear, weekofyear")
    parser.add_argument("--split", choices=("auto", "last", "ratio", "ett"), default=d("auto"),
                        help="last (default for many series), ratio (default for one), ett")
    parser.add_argument("--val-size", type=int, metavar="N", default=d(None),
                        help="steps of each series that validate in a last split (default: the horizon; with fewer "
                        "than 100 series, enough for 100 validation windows, at most 4 horizons)")
    parser.add_argument("--ratios", metavar="R,R,R", default=d("0.7,0.1,0.2"),
                        help="train,val,test fractions of a ratio split (default 0.7,0.1,0.2)")
    parser.add_argument("--input-len", type=int, metavar="L", default=d(None),
                        help="input steps per window (default: at least 3 horizons and 2 seasons, whole seasons)")
    parser.add_argument("--horizon", type=int, metavar="H", default=d(None),
                        help="steps to forecast (required; 96 with --split ett)")
    parser.add_argument("--season", type=int, metavar="M", default=d(None),
                        help="steps per season (default from the frequency: hourly 24, daily 7, weekly 52, monthly 12)")
    parser.add_argument("--fill", choices=("none", "ffill", "interpolate"), default=d("none"),
                        help="fill empty cells and rows added by --freq (default: none = report them as an error)")
    parser.add_argument("--freq", metavar="FREQ", default=d(None),
                        help="the frequency as a pandas alias (h, D, W, MS, ...; a whole step for integer periods): "
                        "missing time stamps become rows for --fill (default: inferred; irregular stamps are an error)")
    parser.add_argument("--decimal", choices=(".", ","), default=d("."),
                        help="the numbers' decimal mark (default '.'; ',' reads 1.234,5 as 1234.5)")
    parser.add_argument("--levels", metavar="L,L", default=d(None),
                        help="prediction interval levels in percent, e.g. 80,95 (default: none)")


def _add_forecast_options(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    def d(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    _add_data_options(parser, suppress)
    parser.add_argument("--model", "-m", default=d("linear"), help="model name (default: linear; see `attnlab list "
                        "forecast`)")
    parser.add_argument("--run-dir", metavar="DIR", default=d(None),
                        help="run folder (default: runs/forecast-<model>-<timestamp>)")
    parser.add_argument("--forecast-windows", type=_windows, metavar="N|all", default=d(DEFAULT_FORECAST_WINDOWS),
                        help=f"test windows written to forecasts.csv, spread over the split (default "
                        f"{DEFAULT_FORECAST_WINDOWS}; all = every window; 0 = no file)")
    parser.add_argument("--plot-window", metavar="I", action="append", default=d(None),
                        help="test window to draw in forecast.png, by index (forecasts.csv's window column; -1 = the "
                        "last); repeat or comma-separate (default: 3 spread over the split)")
    parser.add_argument("--plot-channel", metavar="COL", action="append", default=d(None),
                        help="target channel to draw; repeat or comma-separate (default: the first 4 targets)")
    parser.add_argument("--attention-window", type=int, metavar="I", default=d(None),
                        help="test window of the attention figure (default: the middle drawn window)")
    add_run_options(parser, suppress)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``forecast``, ``predict`` and ``backtest`` sub-commands."""
    parser = subparsers.add_parser(
        "forecast",
        help="train a forecaster on a CSV or panel, test every window, write forecasts, intervals and figures",
        description="Forecast one series or a panel of many: split chronologically, standardise each series with "
        "its training statistics, train with early stopping, test every window beside the baselines, write "
        "metrics, forecasts.csv, intervals and figures.",
        epilog=FORECAST_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_forecast_options(parser)
    parser.add_argument("rest", nargs=argparse.REMAINDER, metavar="KEY=VALUE", help="train/model overrides")
    parser.set_defaults(func=_run_forecast, forecast_parser=parser)

    predict_parser = subparsers.add_parser(
        "predict",
        help="forecast the next horizon of every series of a CSV with a forecast run",
        description="Forecast the horizon after the last step of every series of --csv with the model of --run, "
        "scaling known series with the run's training statistics; time stamps continue the series' frequency. "
        "Prints CSV (unique_id, ds, the forecasts and interval bounds), or writes --out.",
    )
    predict_parser.add_argument("--run", required=True, metavar="RUN", help="run folder of `attnlab forecast`")
    predict_parser.add_argument("--csv", required=True, metavar="FILE", help="the series to continue")
    predict_parser.add_argument("--futr-csv", metavar="FILE",
                                help="future-known covariates for the horizon (series id, time, the columns)")
    predict_parser.add_argument("--out", metavar="FILE", help="write the forecast to this CSV instead of printing it")
    predict_parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    predict_parser.add_argument("--fill", choices=("none", "ffill", "interpolate"), default=None,
                                help="fill empty/NaN cells (default: the run's setting)")
    predict_parser.add_argument("--levels", metavar="L,L", default=None,
                                help="interval levels (default: the run's)")
    predict_parser.set_defaults(func=_run_predict)

    backtest = subparsers.add_parser(
        "backtest",
        help="rolling-origin cross-validation of forecast models: one table of forecasts, metrics per cutoff",
        description="Backtest forecast models: for each of --n-windows cutoffs, --step-size apart, ending one horizon "
        "before the end of every series, forecast the horizon after the cutoff from the history before it. Models "
        "are trained once at the first cutoff, or again every --refit windows.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_data_options(backtest)
    backtest.add_argument("--models", default="ridge", help="comma list of forecast models (default: ridge)")
    backtest.add_argument("--n-windows", type=int, default=3, help="cutoffs (default 3)")
    backtest.add_argument("--step-size", type=int, default=None, help="steps between cutoffs (default: the horizon)")
    backtest.add_argument("--refit", default="never", help="never (default), always, or a number k: retrain every k "
                          "cutoffs")
    backtest.add_argument("--out", metavar="FILE", help="write the forecasts table to this CSV")
    backtest.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    backtest.add_argument("--runs-root", metavar="DIR", default="runs", help="where the run folders go (default runs)")
    backtest.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bars")
    backtest.add_argument("rest", nargs=argparse.REMAINDER, metavar="KEY=VALUE", help="train/model overrides")
    backtest.set_defaults(func=_run_backtest)


def _windows(text: str) -> int | None:
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of windows or 'all'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give 0 (no file), a number of windows, or 'all'")
    return value


def _numbers(text: str | None, flag: str, kind: type = float, count: int | None = None) -> tuple:
    if text is None:
        return ()
    try:
        values = tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"{flag} {text!r} is not a comma list of numbers") from None
    if count is not None and len(values) != count:
        raise UserError(f"{flag} {text!r} needs {count} comma-separated numbers")
    return values


def _levels(text: str | None) -> tuple[float, ...]:
    """``--levels``: percentages in (0, 100); () when not given."""
    levels = _numbers(text, "--levels")
    if any(not 0 < level < 100 for level in levels):
        raise UserError(f"--levels {text!r}: each level is a percentage in (0, 100), e.g. 80,95")
    return levels


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def data_options(args: argparse.Namespace) -> dict[str, Any]:
    """The data options of the parsed flags, as :func:`attnlab.forecast.api.forecast` takes them."""
    if args.all_channels and args.target:
        raise UserError("--all and --target exclude each other; give one of them")
    levels = _levels(args.levels)
    for flag, value, default in (("--input-len", args.input_len, True), ("--horizon", args.horizon, False),
                                 ("--season", args.season, True), ("--val-size", args.val_size, True)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value} is out of range; it must be at least 1 step"
                            + (f" (or leave {flag} out for the default)" if default else ""))
    return {
        "id_col": args.id_col, "date_col": args.date_col,
        "target": tuple(t.strip() for item in (args.target or []) for t in item.split(",") if t.strip()),
        "inputs": _names(args.inputs), "exclude": _names(args.exclude), "futr_cols": _names(args.futr_cols),
        "static_csv": args.static_csv or "", "calendar": _names(args.calendar), "split": args.split,
        "ratios": _numbers(args.ratios, "--ratios", float, 3), "input_len": args.input_len, "horizon": args.horizon,
        "season": args.season, "val_size": args.val_size, "fill": args.fill, "freq": args.freq,
        "decimal": args.decimal, "levels": levels,
    }


def _check_files(args: argparse.Namespace) -> None:
    if args.csv is None:
        raise UserError("no data given; pass --csv FILE")
    readable_file(args.csv, "CSV or Parquet file", "--csv")
    if args.static_csv:
        readable_file(args.static_csv, "CSV or Parquet file", "--static-csv")


def _run_forecast(args: argparse.Namespace) -> int:
    overrides = parse_tail(args, args.forecast_parser, "attnlab forecast", _add_forecast_options,
                           extend=("target", "plot_window", "plot_channel"))
    _check_files(args)
    options = data_options(args)
    figure_options = {"plot_window": ",".join(args.plot_window or []),
                      "plot_channel": ",".join(args.plot_channel or []), "attention_window": args.attention_window}
    overrides += [f"data.{key}={value}" for key, value in figure_options.items() if value not in ("", None)]
    check_run_request("forecast", args.model, overrides, args.run_dir, False, flag="--run-dir")
    from attnlab.forecast.api import forecast as run_forecast
    from attnlab.forecast.api import format_metrics

    setup_logging()
    result = run_forecast(args.csv, args.model, overrides, run_dir=args.run_dir, progress=args.progress,
                          figures=args.figures, keep_checkpoints=args.keep_checkpoints,
                          forecast_windows=args.forecast_windows, **options)
    if is_rank_zero():  # under DDP only rank 0 has the run folder's files (baselines, forecasts) to report
        print("\n".join(format_metrics(result)))
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    run_folder(args.run, "--run")
    readable_file(args.csv, "CSV or Parquet file", "--csv")
    if args.futr_csv:
        readable_file(args.futr_csv, "CSV or Parquet file", "--futr-csv")
    levels = _levels(args.levels) or None
    from attnlab.forecast.api import predict

    setup_logging()
    frame = predict(args.run, args.csv, out=args.out, fill=args.fill, futr=args.futr_csv, overwrite=args.overwrite,
                    levels=levels)
    if args.out is None:
        try:
            frame.to_csv(sys.stdout, index=False, float_format="%.6g")
            sys.stdout.flush()
        except BrokenPipeError:  # `attnlab predict ... | head`: the reader left, which is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    else:
        print(f"forecast of {frame['unique_id'].nunique()} series x {frame.groupby('unique_id').size().iloc[0]} "
              f"steps written to {args.out}")
    return 0


def _refit(text: str) -> bool | int:
    value = text.strip().lower()
    if value in ("never", "false", "no", "0"):
        return False
    if value in ("always", "true", "yes", "1"):
        return True
    try:
        k = int(value)
    except ValueError:
        raise UserError(f"--refit {text!r} is not never, always or a number of cutoffs") from None
    if k < 1:
        raise UserError(f"--refit {k} is out of range; it must be at least 1 (or never)")
    return k


def _run_backtest(args: argparse.Namespace) -> int:
    overrides = list(args.rest)
    _check_files(args)
    options = data_options(args)
    models = list(_names(args.models))
    if not models:
        raise UserError("--models is empty; name at least one forecast model")
    if args.n_windows < 1:
        raise UserError(f"--n-windows {args.n_windows} is out of range; it must be at least 1")
    if args.step_size is not None and args.step_size < 1:
        raise UserError(f"--step-size {args.step_size} is out of range; it must be at least 1")
    refit = _refit(args.refit)
    for model in models:
        check_run_request("forecast", model, overrides, None, False)
    if args.out:
        from pathlib import Path

        out = Path(args.out)
        if out.exists() and (out.is_dir() or not args.overwrite):
            raise UserError(f"--out {out} exists; choose another file, or pass --overwrite to replace it")
    from attnlab.forecast.forecaster import Forecaster

    setup_logging()
    horizon = options.pop("horizon")
    if horizon is None:
        raise UserError("pass --horizon H, the steps each backtest window forecasts")
    names = {"time_col": options.pop("date_col"), "target_col": options.pop("target")}  # Forecaster's names
    forecaster = Forecaster(models, h=horizon, overrides=overrides, runs_root=args.runs_root, progress=args.progress,
                            **names, **{k: v for k, v in options.items() if k not in ("split", "ratios")})
    table = forecaster.cross_validation(args.csv, n_windows=args.n_windows, step_size=args.step_size, refit=refit)
    print("\n".join(forecaster.cv_summary(table)))
    if args.out:
        table.to_csv(args.out, index=False, float_format="%.6g")
        print(f"forecasts of {table['window'].nunique()} cutoffs written to {args.out}")
    return 0
