"""``attnlab forecast`` and ``attnlab predict``: thin wrappers over :mod:`attnlab.forecast.api`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from attnlab.catalog.forecast import DEFAULT_FORECAST_WINDOWS
from attnlab.console import add_run_options, parse_tail, setup_logging
from attnlab.errors import UserError
from attnlab.paths import readable_file, run_folder
from attnlab.train.command import check_run_request

FORECAST_EPILOG = """\
The CSV needs a time stamp column (--date-col) and numeric columns; every numeric column is an input
channel, --target chooses the channels scored and written out (default: all of them).
Splits: --split ett = rows 0-8639 train, 8640-11519 val, 11520-14399 test (the published ETT protocol);
--split ratio = chronological fractions (--ratios, default 0.7,0.1,0.2). Columns are standardised with
train-row statistics; every test window is evaluated.

overrides: KEY=VALUE sets a train or model setting as in `attnlab fit` (see `attnlab list forecast`),
e.g. lr=3e-4 max_epochs=20 patience=5 model.d_model=64.

examples:
  attnlab forecast --csv ../shared/data/ett/ETTh1.csv --split ett --input-len 336 --horizon 96 --model linear
  attnlab forecast --csv sales.csv --date-col day --target units --input-len 56 --horizon 14 --model transformer
  attnlab forecast --csv ETTh1.csv --split ett --model patch_transformer --plot-channel OT --plot-window 0,-1 \\
      --attention-window 1000
  attnlab predict --run runs/forecast-linear-20250101-120000 --csv ETTh1.csv --out next.csv
"""


def _add_forecast_options(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    def d(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--csv", metavar="FILE", default=d(None), help="the CSV file (required)")
    parser.add_argument("--date-col", metavar="COL", default=d("date"), help="time stamp column (default: date)")
    parser.add_argument("--target", metavar="COL", action="append", default=d(None),
                        help="channel to score and write out; repeat or comma-separate (default: all)")
    parser.add_argument("--all", dest="all_channels", action="store_true", default=d(False),
                        help="score every numeric column (the default when no --target is given)")
    parser.add_argument("--split", choices=("ett", "ratio"), default=d("ratio"),
                        help="ett (published ETT borders) or ratio (default)")
    parser.add_argument("--ratios", metavar="R,R,R", default=d("0.7,0.1,0.2"),
                        help="train,val,test fractions of a ratio split (default 0.7,0.1,0.2)")
    parser.add_argument("--input-len", type=int, metavar="L", default=d(336), help="input rows per window (336)")
    parser.add_argument("--horizon", type=int, metavar="H", default=d(96), help="rows to forecast (96)")
    parser.add_argument("--model", "-m", default=d("linear"), help="model name (default: linear; see `attnlab list "
                        "forecast`)")
    parser.add_argument("--fill", choices=("none", "ffill", "interpolate"), default=d("none"),
                        help="fill empty/NaN cells and rows added by --freq (default: none = report them as an error)")
    parser.add_argument("--freq", metavar="FREQ", default=d(None),
                        help="the series' frequency as a pandas alias (h, D, W, MS, ...): missing time stamps become "
                        "rows for --fill (default: inferred; irregular time stamps are an error)")
    parser.add_argument("--decimal", choices=(".", ","), default=d("."),
                        help="the numbers' decimal mark (default '.'; ',' reads 1.234,5 as 1234.5)")
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
    """Add the ``forecast`` and ``predict`` sub-commands."""
    parser = subparsers.add_parser(
        "forecast",
        help="train a forecaster on a CSV, test every window, write forecasts and figures",
        description="Forecast a multivariate CSV: split chronologically, standardise with train statistics, "
        "train with early stopping, test every window, write metrics, forecasts.csv and figures.",
        epilog=FORECAST_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_forecast_options(parser)
    parser.add_argument("rest", nargs=argparse.REMAINDER, metavar="KEY=VALUE", help="train/model overrides")
    parser.set_defaults(func=_run_forecast, forecast_parser=parser)

    predict_parser = subparsers.add_parser(
        "predict",
        help="forecast the next horizon after the last row of a CSV with a forecast run",
        description="Forecast the horizon after the last row of --csv with the model of --run, using the run's "
        "saved train statistics; time stamps continue the CSV's frequency. Prints CSV, or writes --out.",
    )
    predict_parser.add_argument("--run", required=True, metavar="RUN", help="run folder of `attnlab forecast`")
    predict_parser.add_argument("--csv", required=True, metavar="FILE", help="the series to continue")
    predict_parser.add_argument("--out", metavar="FILE", help="write the forecast to this CSV instead of printing it")
    predict_parser.add_argument("--fill", choices=("none", "ffill", "interpolate"), default=None,
                                help="fill empty/NaN cells (default: the run's setting)")
    predict_parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    predict_parser.set_defaults(func=_run_predict)


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


def _ratios(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--ratios {text!r} is not three comma-separated numbers, e.g. 0.7,0.1,0.2") from None


def _run_forecast(args: argparse.Namespace) -> int:
    overrides = parse_tail(args, args.forecast_parser, "attnlab forecast", _add_forecast_options,
                           extend=("target", "plot_window", "plot_channel"))
    if args.csv is None:
        raise UserError("no CSV given; pass --csv FILE")
    readable_file(args.csv, "CSV file", "--csv")
    if args.all_channels and args.target:
        raise UserError("--all and --target exclude each other; give one of them")
    figure_options = {"plot_window": ",".join(args.plot_window or []),
                      "plot_channel": ",".join(args.plot_channel or []), "attention_window": args.attention_window}
    overrides += [f"data.{key}={value}" for key, value in figure_options.items() if value not in ("", None)]
    check_run_request("forecast", args.model, overrides, args.run_dir, False, flag="--run-dir")
    from attnlab.forecast.api import forecast as run_forecast
    from attnlab.forecast.api import format_metrics

    setup_logging()
    result = run_forecast(
        args.csv,
        args.model,
        overrides,
        date_col=args.date_col,
        target=args.target,
        split=args.split,
        ratios=_ratios(args.ratios),
        input_len=args.input_len,
        horizon=args.horizon,
        fill=args.fill,
        freq=args.freq,
        decimal=args.decimal,
        run_dir=args.run_dir,
        progress=args.progress,
        figures=args.figures,
        forecast_windows=args.forecast_windows,
        keep_checkpoints=args.keep_checkpoints,
    )
    print("\n".join(format_metrics(result)))
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    run_folder(args.run, "--run")
    readable_file(args.csv, "CSV file", "--csv")
    from attnlab.forecast.api import predict

    setup_logging()
    frame = predict(args.run, args.csv, out=args.out, fill=args.fill, overwrite=args.overwrite)
    if args.out is None:
        try:
            frame.to_csv(sys.stdout, index=False, float_format="%.6g")
            sys.stdout.flush()
        except BrokenPipeError:  # `attnlab predict ... | head`: the reader left, which is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    else:
        print(f"forecast of {len(frame)} steps ({frame.iloc[0, 0]} .. {frame.iloc[-1, 0]}) written to {args.out}")
    return 0
