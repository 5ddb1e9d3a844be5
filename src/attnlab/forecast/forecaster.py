"""``Forecaster``: fit forecast models on a pandas DataFrame, predict the future, backtest, save and load.

The conventions are NeuralForecast's: a long DataFrame ``unique_id, ds, y`` (plus covariate columns), forecasts
in columns named after each model, interval bounds ``<model>-lo-95`` / ``<model>-hi-95``::

    fc = Forecaster(["patch_transformer", "ridge"], h=48, levels=(80, 95))
    fc.fit(train_df)
    future = fc.predict()                                 # unique_id, ds, patch_transformer, …-lo-95, …
    cv = fc.cross_validation(df, n_windows=3, step_size=48)  # unique_id, ds, cutoff, window, y, the models
    fc.save("runs/my-forecaster"); fc = Forecaster.load("runs/my-forecaster")

Each model is trained by the one engine (:func:`attnlab.train.fit`): the last ``h`` steps of every series
validate (early stopping, the conformal intervals); its run folder holds the report, metrics and attention.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from attnlab import registry
from attnlab.data.columns import long_id_column
from attnlab.data.panel import Panel, future_covariates, load_panel
from attnlab.errors import UserError
from attnlab.experiments.forecast import Forecast, split_data
from attnlab.forecast.api import data_config, forecast_future
from attnlab.metrics import point_scores
from attnlab.train.config import parse_overrides
from attnlab.train.engine import fit, prepare_run

log = logging.getLogger(__name__)

STATE_FILE = "forecaster.json"
# The CLI options that the shared data errors name, and what a Python caller passes instead.
PYTHON_NAMES = {"--id-col": "id_col=", "--date-col": "time_col=", "--target": "target_col=", "--freq": "freq=",
                "--fill": "fill=", "--input-len": "input_len=", "--horizon": "h=", "--season": "season=",
                "--futr-csv": "futr_df=", "--static-csv": "static_df=", "--exclude": "exclude=", "--inputs": "inputs=",
                "--levels": "levels=", "--decimal": "decimal=", "--val-size": "val_size=", "--csv": "df"}


def _python_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Re-raise the method's UserErrors with the CLI options they name given as the Forecaster's arguments."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except UserError as error:
            text = str(error).replace("leave --id-col out", "pass id_col=None")
            text = re.sub(r"--[a-z][a-z-]*", lambda m: PYTHON_NAMES.get(m.group(0), m.group(0)), text)
            raise UserError(text) from None

    return wrapper


class Forecaster:
    """Several forecast models over one panel, pandas in and out.

    Args:
        models: model names (``attnlab list forecast``); each becomes a forecast column.
        h: the horizon, steps to forecast.
        freq: the frequency (pandas alias; a whole step for integer periods); None = inferred.
        input_len, season: see :class:`attnlab.catalog.forecast.ForecastConfig` (None = from the data).
        levels: prediction interval levels in percent; empty = none.
        intervals: ``conformal`` (any model) or ``quantile`` (quantile heads).
        id_col, time_col, target_col: column names of the DataFrames (``unique_id``, ``ds``, ``y``).
        futr_cols: future-known covariate columns; other non-target columns are historical covariates.
        calendar: calendar features added as future-known covariates.
        fill: how missing values are filled (``none``, ``ffill``, ``interpolate``).
        overrides: train / model overrides for every model (a list of ``key=value`` or a mapping), or a
            mapping model name -> overrides.
        runs_root: where the models' run folders go.
        progress: show training progress bars.
    """

    @_python_errors
    def __init__(
        self,
        models: Sequence[str] = ("patch_transformer",),
        h: int | None = None,
        freq: str | None = None,
        *,
        input_len: int | None = None,
        season: int | None = None,
        levels: Sequence[float] = (),
        intervals: str = "conformal",
        loss: str = "mse",
        id_col: str = "unique_id",
        time_col: str = "ds",
        target_col: str | Sequence[str] = "y",
        futr_cols: Sequence[str] = (),
        calendar: Sequence[str] = (),
        fill: str = "none",
        overrides: Mapping[str, Any] | Iterable[str] | None = None,
        runs_root: str | Path = "runs",
        progress: bool = False,
        **options: Any,
    ) -> None:
        if h is None or h < 1:
            raise UserError(f"h={h!r}: pass the horizon, the number of steps to forecast (h=24, say)")
        self.models = [registry.get_model(Forecast.spec, name)[0] for name in models]
        if len(set(self.models)) != len(self.models):
            raise UserError(f"models {list(models)} name a model twice")
        target = (target_col,) if isinstance(target_col, str) else tuple(target_col)
        self.options: dict[str, Any] = dict(
            id_col=id_col, date_col=time_col, target=target, futr_cols=tuple(futr_cols), calendar=tuple(calendar),
            freq=freq, fill=fill, horizon=h, input_len=input_len, season=season, levels=tuple(levels),
            intervals=intervals, loss=loss, split="last", **options)
        data_config(**self.options)  # every option checked now
        self.overrides = overrides
        self.runs_root = Path(runs_root)
        self.progress = progress
        self.runs: dict[str, Path] = {}
        self.history: Panel | None = None
        self._skipped: set[str] = set()
        self._id_values: pd.Series | None = None  # the input's ids, by their text (the panel's ids)

    @property
    def h(self) -> int:
        return int(self.options["horizon"])

    @property
    def _names(self) -> tuple[str, str, str]:
        """The output tables' id, time and target column names (``unique_id``, ``ds``, ``y`` where the options
        leave the input's columns to be found)."""
        o = self.options
        return o["id_col"] or "unique_id", o["date_col"] or "ds", (o["target"] or ("y",))[0]

    def _overrides(self, model: str) -> dict[str, Any]:
        if isinstance(self.overrides, Mapping) and model in self.overrides:
            return parse_overrides(self.overrides[model])
        if isinstance(self.overrides, Mapping) and set(self.overrides) & set(self.models):
            return {}
        return parse_overrides(self.overrides or ())

    def _panel(self, df: pd.DataFrame | str | Path, static_df: pd.DataFrame | None = None) -> Panel:
        o = self.options
        self._remember_ids(df)
        return load_panel(df, id_col=o["id_col"], time_col=o["date_col"], target=o["target"],
                          inputs=o.get("inputs", ()), exclude=o.get("exclude", ()), futr=o["futr_cols"],
                          freq=o["freq"], fill=o["fill"], decimal=o.get("decimal", "."), calendar=o["calendar"],
                          static=static_df if static_df is not None else o.get("static_csv") or None)

    def _remember_ids(self, df: pd.DataFrame | str | Path) -> None:
        """Keep a DataFrame's series ids (the panel holds them as text), so the returned tables give them back
        with the input's values and dtype (integer ids stay integers, as in NeuralForecast)."""
        column = self.options["id_col"] or (long_id_column(df) if isinstance(df, pd.DataFrame) else None)
        if not isinstance(df, pd.DataFrame) or column not in df.columns:
            self._id_values = None
            return
        ids = df[column].drop_duplicates()
        self._id_values = pd.Series(ids.to_numpy(), index=ids.astype(str).to_numpy(), dtype=ids.dtype)

    def _restore_ids(self, table: pd.DataFrame, column: str) -> pd.DataFrame:
        """``table`` with its id column (text) mapped back to the input DataFrame's ids and their dtype."""
        values = self._id_values
        if values is None or column not in table.columns:
            return table
        text = table[column].astype(str)
        if not text.isin(values.index).all():  # ids of another source: keep the text
            return table
        table = table.copy()
        table[column] = values.reindex(text.to_numpy()).to_numpy()
        table[column] = table[column].astype(values.dtype)
        return table

    # ------------------------------------------------------------------ fit and predict

    @_python_errors
    def fit(self, df: pd.DataFrame | str | Path, static_df: pd.DataFrame | None = None,
            val_size: int | None = None) -> Forecaster:
        """Train every model on ``df``; the last ``val_size`` steps of each series validate (default ``h``, longer
        for a panel of fewer than 100 series: :func:`attnlab.data.forecasting.default_val_size`). A series too
        short for a training and a validation window is left out (logged), of the models and of :meth:`predict`'s
        default history.

        Returns:
            ``self``; the run folder of each model is in :attr:`runs`.
        """
        panel = self._panel(df, static_df)
        self.runs = {model: self._fit_one(model, panel, val_size) for model in self.models}
        self.history = self._trained(panel)
        return self

    def _fit_one(self, model: str, panel: Panel, val_size: int | None, label: str = "") -> Path:
        config = data_config(**{**self.options, "val_size": val_size, "test_size": 0, "forecast_windows": 0})
        data = split_data(panel, config)
        self._skipped = set(data.skipped)  # series too short to train on (the same for every model)
        run_dir = self.runs_root / f"forecaster-{model}{label}-{_stamp()}"
        run = prepare_run("forecast", model, self._overrides(model), task=Forecast(config, data), run_dir=run_dir)
        fit(run, progress=self.progress, figures=False)
        return run_dir

    def _trained(self, panel: Panel) -> Panel:
        """``panel`` without the series the last training left out as too short (it logged them)."""
        if not self._skipped:
            return panel
        return panel.select(np.array([sid not in self._skipped for sid in panel.ids]))

    @_python_errors
    def predict(self, df: pd.DataFrame | str | Path | None = None, futr_df: pd.DataFrame | None = None,
                level: Sequence[float] | None = None, static_df: pd.DataFrame | None = None) -> pd.DataFrame:
        """Forecast the ``h`` steps after the end of every series of ``df`` (default: the data of :meth:`fit`).

        Args:
            df: the history to continue (series unseen in training are scaled by their own history).
            futr_df: future-known covariates for the horizon (``unique_id, ds`` + the ``futr_cols``).
            level: interval levels (default: the ones given to the constructor).
            static_df: static covariates of the series (needed when the models were fitted with them).

        Returns:
            ``unique_id, ds`` and one column per model (``<model>-lo-<level>``, ``<model>-hi-<level>``);
            ``unique_id`` holds the ids of ``df`` (of :meth:`fit`'s data by default) with their dtype.
        """
        if df is not None:
            self._remember_ids(df)
        out = self._predict(df, futr_df, level, static_df)
        return self._restore_ids(out, self._names[0])

    def _predict(self, df: pd.DataFrame | str | Path | None, futr_df: pd.DataFrame | None,
                 level: Sequence[float] | None, static_df: pd.DataFrame | None) -> pd.DataFrame:
        """:meth:`predict` with the series ids as the panel holds them (text)."""
        if not self.runs:
            raise UserError("fit the Forecaster (or load a saved one) before predict")
        panel = self.history if df is None else self._panel(df, static_df)
        if panel is None:  # a loaded forecaster keeps its models, not the data they were fitted on
            raise UserError("pass the history df to continue: a loaded Forecaster does not keep the data it was "
                            "fitted on")
        future = None
        if futr_df is not None:
            o = self.options
            future = future_covariates(futr_df, o["futr_cols"], id_col=o["id_col"], time_col=o["date_col"],
                                       freq=o["freq"] or (panel.freq if panel.time_kind == "datetime" else None),
                                       calendar=o["calendar"])
        frames = [forecast_future(run_dir, panel, future, level, label=model) for model, run_dir in self.runs.items()]
        out = frames[0]
        for frame in frames[1:]:
            out = out.merge(frame, on=["unique_id", "ds"])
        idc, tc, _ = self._names
        return out.rename(columns={"unique_id": idc, "ds": tc})

    # ------------------------------------------------------------------ backtests

    @_python_errors
    def cross_validation(self, df: pd.DataFrame | str | Path, n_windows: int = 1, step_size: int | None = None,
                         refit: bool | int = False, static_df: pd.DataFrame | None = None) -> pd.DataFrame:
        """Rolling-origin backtest: ``n_windows`` cutoffs ``step_size`` (default ``h``) apart, the last one ``h``
        steps before the end of every series; each forecasts the ``h`` steps after its cutoff from the history
        before it.

        Args:
            df: the full data.
            n_windows: cutoffs.
            step_size: steps between cutoffs.
            refit: False = train once, at the first cutoff; True = at every cutoff; k = every k cutoffs.
            static_df: static covariates.

        Returns:
            ``unique_id, ds, cutoff, window, y`` (``window``: 0 for the first cutoff) and one column per model
            (with interval bounds). With several scored targets (a wide file's ``target_col``), one true column
            per target, named by it, and ``<model>:<target>`` forecast columns.
        """
        if n_windows < 1:
            raise UserError(f"n_windows={n_windows} must be at least 1")
        step = self.h if step_size is None else step_size
        if step < 1:
            raise UserError(f"step_size={step} must be at least 1")
        every = 1 if refit is True else (n_windows if refit is False else int(refit))
        if every < 1:
            raise UserError(f"refit={refit!r} must be False, True or a number of windows >= 1")
        panel = self._panel(df, static_df)
        first = self.h + (n_windows - 1) * step  # steps after the first cutoff
        short = np.flatnonzero(panel.lengths <= first)
        if len(short):
            s = int(short[0])
            raise UserError(f"series {panel.ids[s]!r} has {int(panel.lengths[s])} steps, too few for {n_windows} "
                            f"backtest windows of horizon {self.h}, {step} apart (the first cutoff is {first} steps "
                            "before the end of each series); use fewer windows, a smaller step, or leave it out")
        tables = []
        for w in range(n_windows):
            held = self.h + (n_windows - 1 - w) * step  # steps after the cutoff, to the end of each series
            history = panel.truncate(held)
            if w % every == 0:
                self.runs = {model: self._fit_one(model, history, None, f"-cutoff{w}") for model in self.models}
            self.history = history = self._trained(history)
            forecasts = self._predict(None, self._future_of(panel, history), None, None)
            truth = self._truth(panel, held)
            cutoff = pd.DataFrame({"unique_id": list(history.ids),
                                   "cutoff": [history.times(s, int(history.lengths[s]) - 1,
                                                            int(history.lengths[s]))[0]
                                              for s in range(history.n_series)]})
            idc, tc, _ = self._names
            forecasts = forecasts.rename(columns={idc: "unique_id", tc: "ds"})
            table = truth.merge(cutoff, on="unique_id").merge(forecasts, on=["unique_id", "ds"])
            table.insert(3, "window", w)
            tables.append(table)
        out = pd.concat(tables, ignore_index=True)
        order = ["unique_id", "ds", "cutoff", "window", *(column for _, column, _ in self._scored(panel))]
        out = out[order + [c for c in out.columns if c not in order]]
        return self._restore_ids(out.rename(columns={"unique_id": idc, "ds": tc}), idc)

    def _future_of(self, panel: Panel, history: Panel) -> pd.DataFrame | None:
        """The future-known covariates of the steps after ``history`` (from the full ``panel``)."""
        if not history.futr_names or not self.options["futr_cols"]:
            return None
        idc, tc, _ = self._names
        frame = panel.to_frame(idc, tc)
        return frame[[idc, tc, *self.options["futr_cols"]]]

    def _scored(self, panel: Panel) -> list[tuple[int, str, str]]:
        """(channel, truth column, forecast column suffix) of each scored target: the one target is ``y`` (or
        ``target_col``) and the model's own column; several are named by their targets, ``<model>:<target>``."""
        names = self.options["target"]
        channels = [panel.target_names.index(t) for t in names if t in panel.target_names] or \
            list(range(panel.n_channels))
        if len(channels) == 1:
            return [(channels[0], self._names[2], "")]
        return [(k, panel.target_names[k], f":{panel.target_names[k]}") for k in channels]

    def _truth(self, panel: Panel, held: int) -> pd.DataFrame:
        """``unique_id, ds`` and the true values of each scored target (:meth:`_scored`) in the ``h`` steps after
        each series' cutoff."""
        scored, rows = self._scored(panel), []
        for s in range(panel.n_series):
            start = int(panel.lengths[s]) - held
            values = panel.target[panel.rows(s)][start:start + self.h]  # (h, C)
            rows.append(pd.DataFrame({"unique_id": panel.ids[s], "ds": panel.times(s, start, start + self.h),
                                      **{column: values[:, k] for k, column, _ in scored}}))
        return pd.concat(rows, ignore_index=True)

    def cv_summary(self, table: pd.DataFrame) -> list[str]:
        """Lines of MSE, MAE (original units), MASE and sMAPE per model (and target, when several are scored) and
        backtest window, then over every window."""
        assert self.history is not None
        lines = [f"{'model':<30}{'window':<8}{'MSE':>12}{'MAE':>12}{'MASE':>10}{'sMAPE':>10}"]
        parts = [*((str(window), part) for window, part in table.groupby("window", sort=True)), ("all", table)]
        for channel, truth, suffix in self._scored(self.history):
            scale = self._scales(table, channel)
            for model in self.models:
                name = model + suffix
                for window, part in parts:
                    y, f = part[truth].to_numpy()[:, None, None], part[name].to_numpy()[:, None, None]
                    s = point_scores(y, f, scale[part.index][:, None])
                    mse = float(((f - y) ** 2).mean())
                    lines.append(f"{name:<30}{window:<8}{mse:>12.5g}{s['mae_orig']:>12.5g}{s['mase']:>10.4f}"
                                 f"{s['smape']:>10.3f}")
        return lines

    def _scales(self, table: pd.DataFrame, channel: int = 0) -> np.ndarray:
        """The MASE scale of each row's series (from the fitted history), for target ``channel``."""
        from attnlab.data.forecasting import mase_denominator
        from attnlab.data.times import season_of

        assert self.history is not None
        h = self.history
        season = self.options["season"] or season_of(h.freq, h.time_kind)
        scales = {h.ids[s]: float(mase_denominator(h.target[h.rows(s)][:, channel:channel + 1], season)[0])
                  for s in range(h.n_series)}
        return table[self._names[0]].astype(str).map(scales).fillna(1.0).to_numpy()

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Write the forecaster to folder ``path``: ``forecaster.json`` (its options and each model's run folder,
        copied in beside it). Safetensors and JSON only, no pickle."""
        import shutil

        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise UserError(f"{path} is not empty; save the forecaster to a new folder")
        path.mkdir(parents=True, exist_ok=True)
        runs = {}
        for model, run_dir in self.runs.items():
            shutil.copytree(run_dir, path / model)
            runs[model] = model
        state = {"models": self.models, "options": {k: list(v) if isinstance(v, tuple) else v
                                                   for k, v in self.options.items()}, "runs": runs}
        (path / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Forecaster:
        """A forecaster written by :meth:`save`, ready to :meth:`predict` (pass the history ``df``)."""
        path = Path(path)
        state_path = path / STATE_FILE
        if not state_path.is_file():
            raise UserError(f"{state_path} not found; pass a folder written by Forecaster.save")
        try:
            state = json.loads(state_path.read_text())
            options = dict(state["options"])
        except (ValueError, KeyError) as err:
            raise UserError(f"{state_path} is damaged ({err}); save the forecaster again") from None
        h = options.pop("horizon")
        for key in ("target", "futr_cols", "calendar", "levels"):
            options[key] = tuple(options.get(key) or ())
        target = options.pop("target")
        forecaster = cls(state["models"], h=h, freq=options.pop("freq"), input_len=options.pop("input_len"),
                         season=options.pop("season"), levels=options.pop("levels"),
                         intervals=options.pop("intervals"), loss=options.pop("loss"), id_col=options.pop("id_col"),
                         time_col=options.pop("date_col"), target_col=target, futr_cols=options.pop("futr_cols"),
                         calendar=options.pop("calendar"), fill=options.pop("fill"),
                         **{k: v for k, v in options.items() if k != "split"})
        forecaster.runs = {model: path / run for model, run in state["runs"].items()}
        return forecaster

    # ------------------------------------------------------------------ attention

    @_python_errors
    def attention(self, df: pd.DataFrame | str | Path | None = None, model: str | None = None) -> pd.DataFrame:
        """The attention of the attention models over the last input window of every series of ``df`` (default:
        the fitted data), as a tidy table: ``model, unique_id, cutoff, layer, layer_name, head, query, key,
        weight`` (layers, heads, queries and keys numbered from 1; a channel-independent model's channels
        averaged).

        Raises:
            UserError: no model (or not ``model``) has attention.
        """
        from attnlab.forecast.api import SavedSeries, future_inputs
        from attnlab.nn.maps import has_attention, record_maps
        from attnlab.train.weights import load_model

        panel = self.history if df is None else self._panel(df)
        if panel is None:
            raise UserError("fit the Forecaster, or pass the data df")
        names = [m for m in self.models if model in (None, m)]
        frames = []
        for name in names:
            net, config = load_model(self.runs[name])
            if not has_attention(net):
                continue
            inputs = future_inputs(SavedSeries.read(self.runs[name]), type(config.model_config).COVARIATES, panel,
                                   None, config.experiment_config.calendar)
            _, maps = record_maps(net, lambda net=net, inputs=inputs: net(inputs.x, **inputs.extra))
            for number, (layer, weights) in enumerate(maps.items(), 1):  # weights (N, H, Q, K)
                n = weights.shape[0]
                if n != panel.n_series:  # channel-independent: (S·C, H, Q, K) -> mean over channels
                    weights = weights.reshape(panel.n_series, n // panel.n_series, *weights.shape[1:]).mean(1)
                S, heads, Q, K = weights.shape
                s, h, q, k = np.meshgrid(np.arange(S), np.arange(heads), np.arange(Q), np.arange(K), indexing="ij")
                cutoffs = [panel.times(i, int(panel.lengths[i]) - 1, int(panel.lengths[i]))[0] for i in range(S)]
                frames.append(pd.DataFrame({
                    "model": name, "unique_id": np.asarray(panel.ids)[s.ravel()],
                    "cutoff": np.asarray(cutoffs, dtype=object)[s.ravel()], "layer": number, "layer_name": layer,
                    "head": h.ravel() + 1, "query": q.ravel() + 1, "key": k.ravel() + 1,
                    "weight": weights.numpy().ravel()}))
        if not frames:
            raise UserError(f"none of the models ({', '.join(names)}) has attention to show")
        return self._restore_ids(pd.concat(frames, ignore_index=True), "unique_id")


def _stamp() -> str:
    import datetime

    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")


__all__ = ["Forecaster"]
