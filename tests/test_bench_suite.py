"""`attnlab bench forecast --suite`: the per-data-set tables with their "attention vs its twin" column, the checks,
a tiny suite end to end on files the test writes, and its bad input."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from attnlab import cli
from attnlab.bench import forecast as one_csv
from attnlab.bench import m4 as m4_bench
from attnlab.bench import suite
from test_forecast_data import write_series
from test_forecast_panel import write_m4

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _row(model: str, h: int, mse: float, **kw) -> one_csv.Row:
    return one_csv.Row(h, model, 336, mse, mse + 0.01, 10.0, 2, 100, Path("runs/x"), **kw)


ROWS = [_row("patch_transformer", 96, 0.36), _row("patch_transformer[attention=mean]", 96, 0.37,
                                                  twin_of="patch_transformer"),
        _row("ridge", 96, 0.365), _row("linear", 96, 0.375),
        _row("patch_transformer", 192, 0.40), _row("patch_transformer[attention=mean]", 192, 0.39,
                                                   twin_of="patch_transformer"),
        _row("ridge", 192, 0.405), _row("linear", 192, 0.41),
        _row("naive (last value)", 96, 0.5, baseline=True), _row("naive (last value)", 192, 0.6, baseline=True)]


def test_twin_deltas_are_the_attention_models_error_minus_its_twins():
    deltas = suite.twin_deltas(ROWS, [96, 192, 336])
    assert list(deltas) == ["patch_transformer"]
    patch = deltas["patch_transformer"]
    assert patch[:2] == pytest.approx([-0.01, 0.01]) and math.isnan(patch[2])  # no H=336 rows


def test_csv_table_puts_baselines_first_and_the_twin_column_last():
    lines = suite.csv_table(ROWS, [96, 192], {"TimeBase": {96: 0.35, 336: 0.409}}).splitlines()
    assert lines[0] == "| model | H=96 | H=192 | train s | attention vs its twin (Δ MSE) |"
    assert [line.split(" | ")[0] for line in lines[2:]] == [
        "| *naive (last value)*", "| linear (L=336)", "| ridge (L=336)", "| patch_transformer (L=336)",
        "| patch_transformer[attention=mean] (L=336)", "| *TimeBase (published, every window)*"]
    assert lines[5] == "| patch_transformer (L=336) | **0.360** | 0.400 | 20 | -0.0100 / +0.0100 |"
    assert lines[6] == "| patch_transformer[attention=mean] (L=336) | 0.370 | **0.390** | 20 |  |"
    assert lines[2] == "| *naive (last value)* | 0.500 | 0.600 |  |  |"
    assert lines[7] == "| *TimeBase (published, every window)* | 0.350 |  |  |  |"


def test_csv_checks_compare_etth1_with_the_best_every_window_figure_and_each_model_with_its_twin():
    lines = suite.csv_checks(ROWS, [96, 192], etth1=True)
    assert lines[:2] == [
        "FAIL H=96: best attention model patch_transformer 0.3600 > 0.350, the best published on every test window "
        "(TimeBase)",
        "FAIL H=192: best attention model patch_transformer 0.4000 > 0.388, the best published on every test window "
        "(TimeBase)"]
    assert lines[2].startswith("PASS H=96: patch_transformer 0.3600 < its attention-free twin")
    assert lines[4].startswith("FAIL H=192: patch_transformer 0.4000 ≥ its attention-free twin")
    assert suite.csv_checks(ROWS, [96, 192], etth1=False) == lines[2:]  # no published figures elsewhere
    # retrieval whose validation turned its attention off is no attention model: nothing left to meet the anchor
    off = [_row("retrieval", 96, 0.364, attention_off=True), _row("ridge", 96, 0.364, twin_of="retrieval")]
    assert suite.csv_checks(off, [96], etth1=True)[:2] == [
        "FAIL H=96: no attention model uses its attention (each forecast as its twin)",
        "FAIL H=96: retrieval 0.3640 = its attention-free twin ridge (Δ 0: the same forecasts, its attention is off)"]


def _m4_rows() -> list[m4_bench.Row]:
    return [m4_bench.Row("seasonal naive (24)", 13.9, 1.19, 0.628),
            m4_bench.Row("patch_transformer (median of 3)", 10.1, 0.79, 0.440, 7.8, 0.955, 457, "runs/pt"),
            m4_bench.Row("patch_transformer[attention=mean] (median of 3)", 11.5, 0.87, 0.496, 8.6, 0.96, 286,
                         "runs/twin", twin_of="patch_transformer (median of 3)"),
            m4_bench.Row("linear (median of 3)", 12.9, 1.08, 0.579, 10.0, 0.962, 57, "runs/linear")]


def test_m4_table_adds_the_twin_column():
    lines = suite.m4_table(_m4_rows(), "Hourly").splitlines()
    assert lines[0].endswith("| seconds | attention vs its twin (Δ OWA) |")
    assert lines[3] == "| patch_transformer (median of 3) | 10.100 | 0.790 | 0.440 | 7.800 | 0.955 | 457 | -0.0560 |"
    assert lines[2].endswith("|  |  |  |") and lines[4].endswith("| 286 |  |")
    assert lines[6] == "| *best method (M4)* | 8.913 | 0.801 | 0.410 |  |  |  |  |"


def test_m4_checks_compare_the_best_attention_model_with_the_best_attention_free_one():
    rows = _m4_rows()
    assert suite.m4_checks(rows) == [
        "PASS attention vs its attention-free twin: patch_transformer (median of 3) OWA 0.440, "
        "patch_transformer[attention=mean] (median of 3) 0.496 (Δ -0.056)",
        "PASS best attention model patch_transformer (median of 3) OWA 0.440 < best attention-free model "
        "patch_transformer[attention=mean] (median of 3) 0.496 (Δ -0.056)"]
    rows[2].owa = 0.43  # the twin wins: both checks fail
    assert [line[:4] for line in suite.m4_checks(rows)] == ["FAIL", "FAIL"]


def _data(root: Path) -> Path:
    """A suite folder: an hourly ETT-sized CSV (one channel), a daily CSV and an M4 Yearly group of 4 series."""
    rng = np.random.default_rng(0)
    t = np.arange(14_400)
    (root / "ett").mkdir(parents=True)
    write_series(root / "ett" / "ETTh1.csv", n=14_400, OT=np.sin(2 * np.pi * t / 24) + 0.2 * rng.normal(size=t.size))
    (root / "ltsf").mkdir()
    write_series(root / "ltsf" / "exchange_rate.csv", n=500, freq="D", OT=rng.normal(size=500).cumsum())
    series = {f"Y{i}": list(np.round(50 + i * 10 + rng.normal(size=60).cumsum(), 2)) for i in range(1, 5)}
    ahead = {sid: list(np.round(values[-1] + rng.normal(size=6).cumsum(), 2)) for sid, values in series.items()}
    write_m4(root / "m4", "Yearly", series, ahead)
    return root


# Small enough for the files _data writes: horizon 6, inputs of 24 steps, the M4 group Yearly.
SMALL = ["--m4-group", "Yearly", "--horizons", "6", "--input-len", "24", "--model-input-len", "ridge=24",
         "--model-input-len", "retrieval=24", "--models", "ridge,retrieval,patch_transformer"]


@pytest.mark.slow
def test_tiny_suite_end_to_end(tmp_path, capsys):
    data = _data(tmp_path / "data")
    (tmp_path / "mine").mkdir()  # named as one of the suite's: its table and runs get their own name
    extra = write_series(tmp_path / "mine" / "exchange_rate.csv", n=300, OT=np.cos(np.arange(300) / 4))
    out = tmp_path / "suite.csv"
    code = cli.main(["bench", "forecast", "--suite", "--data", str(data), *SMALL, "--csv", str(extra), "--split",
                     "ratio", "--runs-root", str(tmp_path / "runs"), "--out-csv", str(out), "max_epochs=1",
                     "batch_size=64"])
    text = capsys.readouterr().out
    assert code == (1 if ": FAIL " in text else 0)
    for title in ("### ETTh1 (ett split", "### exchange_rate (ratio split", "### exchange_rate-csv (ratio split",
                  "### M4 Yearly (the competition's protocol, 4 series)"):
        assert title in text
    assert "retrieval: one series only, not run on the M4 panel" in text
    assert "| *TimeBase (published, every window)* |  |  |  |" in text  # no published figure at H=6
    records = list(csv.DictReader(out.open()))
    assert {r["data_set"] for r in records} == {"ETTh1", "exchange_rate", "exchange_rate-csv", "M4-Yearly"}
    ett = {r["model"]: r for r in records if r["data_set"] == "ETTh1"}
    assert ett["ridge"]["twin_of"] == "retrieval" and ett["patch_transformer[attention=mean]"]["twin_of"]
    delta = float(ett["retrieval"]["mse"]) - float(ett["ridge"]["mse"])
    line = next(line for line in text.splitlines() if line.startswith("| retrieval (L=24) |"))  # ETTh1's table
    assert f"{float(ett['retrieval']['mse']):.3f}" in line and line.endswith(f"| {delta:+.4f} |")
    m4 = [r["model"] for r in records if r["data_set"] == "M4-Yearly"]
    assert m4[3:] == ["ridge (median of 3)", "patch_transformer (median of 3)",
                      "patch_transformer[attention=mean] (median of 3)"]  # retrieval fits one series only
    assert "M4 Yearly: PASS best attention model" in text or "M4 Yearly: FAIL best attention model" in text
    assert (tmp_path / "runs" / "ETTh1" / "H6-patch_transformer-twin" / "metrics.json").is_file()
    assert (tmp_path / "runs" / "exchange_rate-csv" / "H6-ridge" / "metrics.json").is_file()
    assert not (tmp_path / "runs" / "ETTh1" / "H6-retrieval-twin").exists()  # its twin is the ridge run above it


@pytest.mark.parametrize(("args", "message"), [
    (["--data", "nowhere"], "the suite needs nowhere/ett/ETTh1.csv, nowhere/ltsf/exchange_rate.csv"),
    (["--m4-group", "Minutely"], "unknown M4 group 'Minutely'"),
    (["--models", "linear,nope"], "unknown forecast model(s) nope"),
    (["--csv", "nowhere/mine.csv"], "nowhere/mine.csv not found"),
])
def test_bad_suite_options_are_one_line_errors(tmp_path, cli_error, args, message):
    data = _data(tmp_path / "data")
    assert message in cli_error(["bench", "forecast", "--suite", "--data", str(data), *SMALL, *args])


def test_a_bad_further_csv_stops_the_suite_before_any_fit(tmp_path, cli_error):
    data = _data(tmp_path / "data")
    bad = tmp_path / "bad.csv"
    bad.write_text("when,OT\n2020-01-01,1\n2020-01-02,2\n")
    runs = tmp_path / "runs"
    message = cli_error(["bench", "forecast", "--suite", "--data", str(data), *SMALL, "--csv", str(bad), "--split",
                         "ratio", "--runs-root", str(runs)])
    assert "bad.csv" in message and "'date'" in message
    assert not runs.exists()


def test_bench_forecast_needs_a_csv_or_the_suite(cli_error):
    assert cli_error(["bench", "forecast", "--horizons", "96"]) == (
        "attnlab: error: bench forecast needs --csv FILE (or --suite for the standard data sets)")
