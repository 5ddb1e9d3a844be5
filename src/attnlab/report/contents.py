"""Read what a run folder holds, for the report: config, metrics, logs, figures, task outputs, attention.

What is an error and what is only missing (the report names missing parts on the page):

=======================================  ==============================================================
run folder                               result
=======================================  ==============================================================
not a folder, or no ``config.json``      UserError: not a run (nothing written)
``config.json`` not valid JSON           UserError: damaged run (nothing written)
``metrics.json`` truncated / invalid     UserError: damaged run (nothing written)
``attention.*`` damaged                  UserError: damaged run (nothing written)
no ``metrics.json``                      missing part: the run did not finish (no test metrics)
no ``logs/*/metrics.csv``                missing part: curves drawn from ``metrics.json`` only, if any
no ``figures/*.png``                     missing part, unless ``metrics.json`` lists none (``--no-figures``)
no ``attention.json``                    missing part (``attnlab report`` then exits non-zero, see
                                         :mod:`attnlab.report.command`)
``attention.json`` with no samples       not missing: the model has no attention, the page says so
a symbolic link (any file or folder)     never followed: ``config.json``, ``metrics.json`` or an
                                         attention file -> UserError; anything else is skipped and
                                         named on the page
=======================================  ==============================================================

The report reads only regular files inside the run folder (:mod:`attnlab.report.files`).
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnlab.errors import UserError
from attnlab.nn.maps import AttentionSample
from attnlab.report.attention import ATTENTION_JSON, read_attention
from attnlab.report.files import BASELINES_FILE, checked_path, is_inside, regular_file

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
KNOWN_FILES = {CONFIG_FILE, METRICS_FILE, ATTENTION_JSON, BASELINES_FILE}
OUTPUT_ROWS = 20  # rows of a task output shown as a sample table
OUTPUT_COLUMNS = 12
OUTPUT_CELL_CHARS = 120
OUTPUT_MAX_BYTES = 20_000_000  # JSON outputs larger than this are named, not parsed


@dataclass
class TaskOutput:
    """A sample of one task output file (``forecasts.csv``, ``translations.json``, …).

    Attributes:
        name: file name (and the JSON key of the table, if it came from inside an object).
        header: column names of the sample table (empty for a text preview).
        rows: up to ``OUTPUT_ROWS`` rows of strings.
        total_rows: rows in the whole file (or list).
        text: a text preview when the file is not a table; an error message if it could not be read.
    """

    name: str
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    total_rows: int = 0
    text: str = ""


@dataclass
class RunContents:
    """Everything the report shows, read from one run folder (see :func:`read_run`).

    Attributes:
        run_dir: the run folder.
        config: ``config.json`` as a dict.
        metrics: ``metrics.json`` as a dict, or None if the run did not finish.
        epoch_curves: metric name -> [(epoch, value)], from ``metrics.json``'s history, else from the logs.
        step_curve: [(global step, training loss)] from the logs.
        figures: PNG files under ``figures/``, in the order the run listed them.
        outputs: samples of task output files at the top of the folder.
        attention: the saved attention samples, or None if nothing was saved.
        attention_note: why the saved attention is empty (a model without attention).
        attention_dropped: maps the run left out of its saved attention (byte budget).
        baselines: ``baselines.json``: baseline description -> {test metric -> value}.
        missing: the missing parts, one phrase each (shown on the page).
        skipped: symbolic links (or paths leading outside the folder) the report did not follow.
    """

    run_dir: Path
    config: dict[str, Any]
    metrics: dict[str, Any] | None = None
    epoch_curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    step_curve: list[tuple[float, float]] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    outputs: list[TaskOutput] = field(default_factory=list)
    attention: list[AttentionSample] | None = None
    attention_note: str = ""
    attention_dropped: list[str] = field(default_factory=list)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.config.get('experiment', '?')} / {self.config.get('model', '?')}"


def read_run(run_dir: str | Path) -> RunContents:
    """Read a run folder; see the module docstring for what is an error and what is a missing part.

    Raises:
        UserError: not a run folder, or a damaged (or linked) ``config.json``, ``metrics.json`` or attention file.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder; pass the folder of a run written by `attnlab fit`")
    contents = RunContents(run_dir, _read_config(run_dir))
    contents.metrics = _read_metrics(run_dir)
    if contents.metrics is None:
        contents.missing.append(f"{METRICS_FILE}: the run did not finish (no test metrics)")

    rows = _read_logs(run_dir, contents.skipped)
    if rows is None:
        contents.missing.append("training logs (logs/*/metrics.csv)")
        rows = []
    contents.step_curve = _step_curve(rows)
    history = (contents.metrics or {}).get("history") or []
    contents.epoch_curves = _epoch_curves(history, rows, _monitor(contents))
    if not contents.epoch_curves and not contents.step_curve:
        contents.missing.append("loss curves (no history in the logs or in metrics.json)")

    contents.figures = _figures(run_dir, contents.metrics, contents.skipped)
    drawn = (contents.metrics or {}).get("figures")
    if not contents.figures and (contents.metrics is None or drawn):  # a finished run that drew none is whole
        contents.missing.append("figures (figures/*.png)")
    outputs = [p for p in sorted(run_dir.iterdir()) if p.suffix in (".csv", ".json") and p.name not in KNOWN_FILES]
    contents.skipped += [p.name for p in outputs if not is_inside(run_dir, p)]
    contents.outputs = [_read_output(p) for p in outputs if regular_file(run_dir, p)]
    contents.baselines = _read_baselines(run_dir)

    if checked_path(run_dir, ATTENTION_JSON).is_file():
        saved = read_attention(run_dir)
        contents.attention, contents.attention_note = saved.samples, saved.note
        contents.attention_dropped = saved.dropped
    else:
        contents.missing.append(f"attention ({ATTENTION_JSON} not saved)")
    return contents


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is truncated or not valid JSON ({err}); the {what} is damaged") from None


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = checked_path(run_dir, CONFIG_FILE)
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run folder (no {CONFIG_FILE}); pass a folder written by `attnlab fit`")
    data = _read_json(path, "run folder")
    if not isinstance(data, dict) or "experiment" not in data or "model" not in data:
        raise UserError(f"{path} does not name an experiment and a model; pass a folder written by `attnlab fit`")
    return data


def _read_metrics(run_dir: Path) -> dict[str, Any] | None:
    path = checked_path(run_dir, METRICS_FILE)
    if not path.is_file():
        return None
    data = _read_json(path, "run folder")
    if not isinstance(data, dict) or not isinstance(data.get("test"), dict):
        raise UserError(f"{path} has no test metrics (not written by `attnlab fit`?); the run folder is damaged")
    return data


def _monitor(contents: RunContents) -> str:
    monitor = (contents.metrics or {}).get("monitor") or contents.config.get("monitor") or ["val_loss"]
    return str(monitor[0])


def _number(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _read_baselines(run_dir: Path) -> dict[str, dict[str, float]]:
    """``baselines.json`` (see :func:`attnlab.report.files.write_baselines`); {} if absent or unreadable."""
    path = run_dir / BASELINES_FILE
    if not regular_file(run_dir, path):
        return {}
    try:
        data = json.loads(path.read_text())["baselines"]
        return {str(name): {str(k): float(v) for k, v in metrics.items()} for name, metrics in data.items()}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return {}  # an extra of the report: a damaged file only loses the baselines column


def _read_logs(run_dir: Path, skipped: list[str]) -> list[dict[str, str]] | None:
    """Rows of every ``logs/version_<n>/metrics.csv`` in version order (resumes append versions); links are
    added to ``skipped``, not read."""
    found = sorted(run_dir.glob("logs/*/metrics.csv"),
                   key=lambda p: (int(m.group(1)) if (m := re.search(r"(\d+)$", p.parent.name)) else -1, str(p)))
    skipped += [p.relative_to(run_dir).as_posix() for p in found if not is_inside(run_dir, p)]
    files = [p for p in found if regular_file(run_dir, p)]
    if not files:
        return None
    rows: list[dict[str, str]] = []
    for path in files:
        with path.open(newline="") as f:
            rows += [row for row in csv.DictReader(f) if row]
    return rows


def _step_curve(rows: list[dict[str, str]]) -> list[tuple[float, float]]:
    points: dict[float, float] = {}
    for row in rows:
        step, loss = _number(row.get("step")), _number(row.get("train_loss_step"))
        if step is not None and loss is not None:
            points[step] = loss  # a resumed run may log a step again: keep the latest
    return sorted(points.items())


def _epoch_curves(
    history: list[dict[str, Any]], rows: list[dict[str, str]], monitor: str
) -> dict[str, list[tuple[float, float]]]:
    """train_loss, val_loss and the monitor metric per epoch: from ``metrics.json``'s history when the run
    finished (exact), else from the CSV log (epoch-end rows; an unfinished run has no final validate row)."""
    names = ["train_loss", "val_loss"] + ([monitor] if monitor not in ("train_loss", "val_loss") else [])
    curves: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    if history:
        for entry in history:
            for name in names:
                epoch, value = _number(str(entry.get("epoch"))), _number(str(entry.get(name, "")))
                if epoch is not None and value is not None:
                    curves[name].append((epoch, value))
    else:
        for row in rows:
            epoch = _number(row.get("epoch"))
            if epoch is None or _number(row.get("test_loss")) is not None:
                continue
            for name in names:
                value = _number(row.get(name))
                if value is not None:
                    curves[name].append((epoch + 1, value))  # the CSV counts epochs from 0, the history from 1
    return {name: points for name, points in curves.items() if points}


def _figures(run_dir: Path, metrics: dict[str, Any] | None, skipped: list[str]) -> list[Path]:
    """PNG files under ``figures/``: those ``metrics.json`` lists first, in its order; links go to ``skipped``."""
    found = sorted((run_dir / "figures").glob("*.png"))
    listed = [run_dir / str(p) for p in (metrics or {}).get("figures", [])]
    skipped += [p.relative_to(run_dir).as_posix() for p in found if not is_inside(run_dir, p)]
    return [p for p in dict.fromkeys(listed + found) if regular_file(run_dir, p)]


def _cell(value: Any) -> str:
    if isinstance(value, float) or (isinstance(value, str) and _number(value) is not None and "." in value):
        number = float(value)
        text = f"{number:.5g}"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = "" if value is None else str(value)
    return text if len(text) <= OUTPUT_CELL_CHARS else text[: OUTPUT_CELL_CHARS - 1] + "…"


def _read_output(path: Path) -> TaskOutput:
    """A sample of a CSV or JSON output; a file that cannot be read gives a note, not an error."""
    try:
        if path.suffix == ".csv":
            return _read_csv_output(path)
        return _read_json_output(path)
    except (OSError, UnicodeDecodeError, csv.Error, json.JSONDecodeError) as err:
        return TaskOutput(path.name, text=f"could not read {path.name}: {type(err).__name__}: {err}")


def _read_csv_output(path: Path) -> TaskOutput:
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        rows, total = [], 0
        for row in reader:
            total += 1
            if len(rows) < OUTPUT_ROWS:
                rows.append([_cell(c) for c in row[:OUTPUT_COLUMNS]])
    return TaskOutput(path.name, [_cell(h) for h in header[:OUTPUT_COLUMNS]], rows, total)


def _table_of(items: list[Any], name: str) -> TaskOutput:
    header: list[str] = []
    for item in items[:OUTPUT_ROWS]:
        header += [k for k in item if k not in header]
    header = header[:OUTPUT_COLUMNS]
    rows = [[_cell(item.get(k)) for k in header] for item in items[:OUTPUT_ROWS]]
    return TaskOutput(name, [_cell(h) for h in header], rows, len(items))


def _read_json_output(path: Path) -> TaskOutput:
    if path.stat().st_size > OUTPUT_MAX_BYTES:
        return TaskOutput(path.name, text=f"{path.name}: {path.stat().st_size / 1e6:.0f} MB, too large to preview")
    data = json.loads(path.read_text())
    if isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
        return _table_of(data, path.name)
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, list) and value and all(isinstance(d, dict) for d in value):
                table = _table_of(value, f"{path.name} › {key}")
                scalars = {k: v for k, v in data.items() if isinstance(v, (str, int, float, bool))}
                table.text = ", ".join(f"{k}: {_cell(v)}" for k, v in scalars.items())
                return table
    return TaskOutput(path.name, text="\n".join(_outline(data)))


def _outline(data: Any, indent: str = "", depth: int = 0) -> list[str]:
    """What a JSON value holds, not its contents: a key per line with its scalar value, "list of N items" or
    nested keys (two levels): a vocabulary file shows its sizes and options, not thousands of tokens."""
    if not isinstance(data, dict):
        return [indent + _summary(data)]
    lines = []
    for key, value in list(data.items())[:OUTPUT_COLUMNS]:
        if isinstance(value, dict) and depth < 1 and value:
            lines += [f"{indent}{key}:"] + _outline(value, indent + "  ", depth + 1)
        else:
            lines.append(f"{indent}{key}: {_summary(value)}")
    if len(data) > OUTPUT_COLUMNS:
        lines.append(f"{indent}… {len(data) - OUTPUT_COLUMNS} more keys")
    return lines


def _summary(value: Any) -> str:
    if isinstance(value, list):
        kinds = sorted({type(v).__name__ for v in value})
        return f"list of {len(value):,} " + ("items" if len(kinds) != 1 else {"str": "strings", "dict": "objects"}
                                              .get(kinds[0], kinds[0] + "s"))
    if isinstance(value, dict):
        return f"object with {len(value):,} keys"
    return _cell(value)
