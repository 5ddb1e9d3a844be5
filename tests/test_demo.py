"""`attnlab demo`: the plan, the table, the target checks, and one real (small) run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from attnlab import demo
from attnlab.cli import main
from attnlab.train import RunResult


def _result(experiment: str, model: str, **metrics: float) -> RunResult:
    return RunResult(run_dir=Path("/nonexistent"), experiment=experiment, model=model, metrics=metrics,
                     val_metrics={}, params=12345, train_seconds=1.5, epochs=3)


def test_plan_covers_every_model_of_every_experiment():
    pairs = demo.plan()
    assert ("sine", "gru") in pairs and ("sine", "transformer") in pairs
    assert ("kernel_regression", "nadaraya_watson_learned") in pairs
    assert {e for e, _ in pairs} == {"sine", "count", "squares", "kernel_regression", "digits_vit"}  # no data files
    assert demo.plan(["squares"]) == [("squares", m) for m in
                                      ("seq2seq", "seq2seq_attention", "seq2seq_multihead", "transformer")]


def test_experiment_that_needs_a_data_file_is_not_in_the_demo(cli_error):
    err = cli_error(["demo", "--only", "forecast"])
    assert "needs a data file" in err and "attnlab forecast --help" in err


def test_unknown_experiment_in_only_is_a_one_line_error(cli_error):
    err = cli_error(["demo", "--only", "sine,nope"])
    assert "unknown experiment 'nope'" in err and "sine" in err


def test_targets_pass_fail_and_not_run():
    results = {
        ("sine", "transformer"): _result("sine", "transformer", mse=5e-5),
        ("sine", "gru"): _result("sine", "gru", mse=1e-3),
        ("squares", "seq2seq_attention"): _result("squares", "seq2seq_attention", mse=0.02),
        ("squares", "seq2seq"): _result("squares", "seq2seq", mse=0.01),
        ("kernel_regression", "nadaraya_watson_learned"): _result(
            "kernel_regression", "nadaraya_watson_learned", mse=0.03, mse_gaussian_s1=0.2, mse_boxcar_s0_1=0.9),
    }
    status = {desc.split(":")[0]: s for s, desc, _ in demo.check_targets(results)}
    assert status == {"sine": "PASS", "count": "not run", "squares": "FAIL", "kernel_regression": "PASS",
                      "digits_vit": "not run"}
    results[("sine", "transformer")] = _result("sine", "transformer", mse=2e-4)  # < gru but above 1e-4
    assert demo.check_targets(results)[0][0] == "FAIL"


def test_table_shows_headline_metric_params_and_seconds():
    table = demo.format_table({("digits_vit", "vit"): _result("digits_vit", "vit", accuracy=0.9812, loss=0.1)})
    header, rule, row = table.splitlines()
    assert header.split()[:4] == ["task", "model", "metric", "value"]
    assert row.split()[:4] == ["digits_vit", "vit", "accuracy", "0.9812"]
    assert "12,345" in row and row.endswith("1.5")
    assert math.isnan(_result("sine", "gru").metric[1])


@pytest.mark.slow
def test_demo_runs_and_writes_one_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--only", "kernel_regression", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "PASS     kernel_regression" in printed and str(out) in printed
    summary = json.loads((out / "summary.json").read_text())
    assert [r["model"] for r in summary["runs"]] == ["nadaraya_watson", "nadaraya_watson_learned"]
    pngs = sorted(p.name for p in out.glob("*/figures/*.png"))
    assert "kernel_fits.png" in pngs and len(pngs) >= 4
    assert (out / "summary.md").read_text().count("PASS") == 1
    assert main(["demo", "--only", "kernel_regression", "--out", str(out)]) == 2  # refuses a non-empty folder
