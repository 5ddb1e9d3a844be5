"""`attnlab bench forecast`: the table, the target checks against the published numbers, the twins' ablation lines,
a tiny run end to end, and its bad options."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
import torch

from attnlab import cli
from attnlab.bench import forecast as bench
from attnlab.errors import UserError
from attnlab.train.weights import read_config
from test_forecast_cli import seasonal_csv

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def row(horizon: int, model: str, mse: float, train_s: float = 10.0) -> bench.Row:
    return bench.Row(horizon, model, 336, mse, mse + 0.02, train_s, 3, 1000, Path("runs/x"))


def test_checks_against_the_published_numbers():
    rows = [row(96, "linear", 0.3790), row(96, "patch_transformer", 0.3741), row(96, "retrieval", 0.3699),
            row(96, "ridge", 0.3600),
            row(336, "linear", 0.4500), row(336, "patch_transformer", 0.4600, train_s=700.0)]
    lines = bench.check(rows, [96, 336], budget_s=600.0)
    assert lines == [
        # ridge is better still, but has no attention: the target is the best attention model's
        "PASS H=96: best attention model retrieval 0.3699 (target ≤ 0.370, PatchTST/64) in 10 s",
        "PASS H=96: patch_transformer 0.3741 < linear 0.3790",
        "PASS H=96: linear 0.3790 vs DLinear published 0.375 (|Δ| = 0.0040, tolerance 0.01)",
        "FAIL H=96: retrieval 0.3699 ≥ ridge 0.3600 (the attention over its errors helps)",
        "FAIL H=336: best attention model patch_transformer 0.4600 (target ≤ 0.422, PatchTST/64) in 700 s",
        "FAIL H=336: patch_transformer 0.4600 ≥ linear 0.4500",
        "FAIL H=336: linear 0.4500 vs DLinear published 0.439 (|Δ| = 0.0110, tolerance 0.01)",
    ]
    # The best model must also have trained within the budget.
    assert bench.check([row(96, "retrieval", 0.30, train_s=601.0)], [96], 600.0)[0].startswith("FAIL")
    # Models without attention never meet the target on their own.
    assert bench.check([row(96, "ridge", 0.30)], [96], 600.0) == []


def test_closed_form_models_default_to_input_512_and_linear_to_three_seeds():
    def lengths(items, models):
        return bench._per_model("model-input-len", "L", items, models, bench.MODEL_INPUT_LEN, 336)

    assert lengths([], ["linear", "ridge", "retrieval"]) == {"linear": 336, "ridge": 512, "retrieval": 512}
    assert lengths(["retrieval=96"], ["retrieval"]) == {"retrieval": 96}
    seeds = bench._per_model("model-seeds", "N", ["ridge=2"], ["linear", "ridge", "gru"], bench.MODEL_SEEDS, 1)
    assert seeds == {"linear": 3, "ridge": 2, "gru": 1}
    assert bench._base_seed(["lr=1", "seed=4", "seed=7"]) == 7 and bench._base_seed(["lr=1"]) == 0
    # train.seed is the same key; resolve applies the overrides in the order of their first appearance
    assert bench._base_seed(["train.seed=5"]) == 5 and bench._base_seed(["seed=4", "train.seed=9", "seed=7"]) == 9
    with pytest.raises(UserError, match="seed must be an integer, got 'x'"):
        bench._base_seed(["seed=x"])


def test_several_seeds_keep_the_median_run_and_name_every_seed():
    runs = [(0, row(720, "linear", 0.5172)), (1, row(720, "linear", 0.4721)), (2, row(720, "linear", 0.4723))]
    median = bench.median_run(runs)
    assert median is runs[2][1] and median.seed_mses == ((0, 0.5172), (1, 0.4721), (2, 0.4723))
    assert bench.median_run(runs[:2]) is runs[1][1]  # even count: the lower middle
    assert bench.median_run(runs[:1]).seed_mses == ()
    lines = bench.check([median, row(720, "patch_transformer", 0.4493)], [720], 600.0)
    assert lines[1:] == [
        "PASS H=720: patch_transformer 0.4493 < linear 0.4723 (median of seeds 0-2: 0.5172, 0.4721, 0.4723)",
        "PASS H=720: linear 0.4723 (median of seeds 0-2: 0.5172, 0.4721, 0.4723) vs DLinear published 0.472 "
        "(|Δ| = 0.0003, tolerance 0.01)",
    ]
    table = bench.table([median], [720], ["linear"], {})
    assert table.splitlines()[2] == "| linear (L=336, median of 3 seeds) | **0.472** | 0.492 | 10 |"


def test_table_marks_the_best_and_lists_published_rows():
    rows = [row(96, "linear", 0.3790), row(96, "patch_transformer", 0.3741)]
    text = bench.table(rows, [96], ["linear", "patch_transformer"], bench.PUBLISHED)
    lines = text.splitlines()
    assert lines[0] == "| model | H=96 MSE | MAE | s |"
    assert lines[2] == "| linear (L=336) | 0.379 | 0.399 | 10 |"
    assert lines[3] == "| patch_transformer (L=336) | **0.374** | 0.394 | 10 |"
    assert lines[4] == "| *PatchTST/64 (published)* | 0.370 | 0.400 |  |"
    assert len(lines) == 2 + 2 + len(bench.PUBLISHED)


def test_published_windows_are_the_first_n_minus_n_mod_batch():
    # ETTh1's test windows at H = 96, 192, 336, 720 (2,880 test rows - H + 1) and what each published code scored
    assert [bench.scored_windows(2880 - h + 1, 128) for h in (96, 192, 336, 720)] == [2688, 2688, 2432, 2048]
    assert [bench.scored_windows(2880 - h + 1, 32) for h in (96, 192, 336, 720)] == [2784, 2688, 2528, 2144]
    assert bench.scored_windows(31, 32) == 0 and bench.scored_windows(64, 32) == 64


def test_like_for_like_scores_the_windows_each_published_figure_kept():
    errors = torch.cat([torch.full((2688,), 0.36), torch.full((97,), 0.48)])  # (2785,) the hard windows last
    linear = row(96, "linear", errors.double().mean().item())
    linear.window_mse = errors
    assert linear.mse == pytest.approx(0.36418, abs=1e-5)
    assert linear.mse_of_first(2688) == pytest.approx(0.36) and math.isnan(linear.mse_of_first(0))
    ridge = row(96, "ridge", 0.35)  # no window errors kept: its cells are "-"
    lines = bench.like_for_like([linear, ridge], [96], ["linear", "ridge"]).splitlines()
    assert lines == [
        "| model | H=96 PatchTST/64's 2688 of 2785 | H=96 DLinear's 2784 of 2785 |",
        "|---|---|---|",
        "| linear (L=336) | **0.3600** | **0.3641** |",  # (2688 · 0.36 + 96 · 0.48) / 2784
        "| ridge (L=336) | - | - |",
        "| *PatchTST/64 (published)* | 0.370 |  |",
        "| *DLinear (published)* |  | 0.375 |",
    ]


@pytest.mark.slow
def test_tiny_benchmark_end_to_end(tmp_path, capsys):
    csv = seasonal_csv(tmp_path / "series.csv")
    out = tmp_path / "rows.csv"
    code = cli.main(["bench", "forecast", "--csv", str(csv), "--split", "ratio", "--input-len", "24",
                     "--model-input-len", "patch_transformer=32", "--horizons", "6",
                     "--models", "linear,patch_transformer", "--budget-s", "20", "--runs-root", str(tmp_path / "runs"),
                     "--out-csv", str(out), "max_epochs=2", "batch_size=64"])
    assert code == 0  # not ETTh1: no published numbers, no checks
    text = capsys.readouterr().out
    assert "| linear (L=24, median of 3 seeds) |" in text and "| patch_transformer (L=32) |" in text
    assert "published" not in text and text.count("seed ") == 3  # one progress line per linear seed
    lines = out.read_text().splitlines()
    assert lines[0] == ("horizon,model,input_len,mse,mae,train_s,epochs,params,run_dir,"
                        "mse_drop_last_128,mse_drop_last_32")
    assert [line.split(",")[:3] for line in lines[1:3]] == [["6", "linear", "24"], ["6", "patch_transformer", "32"]]
    assert [line.split(",")[1] for line in lines[3:]] == ["naive (last value)", "seasonal naive (season 24)"]
    assert lines[1].split(",")[8].rsplit("/", 1)[-1] in {f"H6-linear-seed{k}" for k in range(3)}
    # 75 test windows: a batch of 128 would score none, a batch of 32 the first 64
    assert [line.split(",")[9] for line in lines[1:3]] == ["", ""]
    assert all(0 < float(line.split(",")[10]) < 10 for line in lines[1:3])
    for run in ["H6-patch_transformer", "H6-linear-seed0", "H6-linear-seed1", "H6-linear-seed2"]:
        assert (tmp_path / "runs" / run / "metrics.json").is_file()


def test_validation_scores_the_validation_part_with_the_training_rows_cut_short(tmp_path, capsys):
    """--validation: a ratio split of 400 rows is train 0–279, validation 280–319; the fits train on 0–239, choose on
    240–279 and are scored on 280–319 (35 windows of 6 steps), standardised with rows 0–239; the test rows are never
    read. The naive forecast's MSE printed is that, computed here by hand."""
    import numpy as np
    import pandas as pd

    csv = seasonal_csv(tmp_path / "series.csv")
    code = cli.main(["bench", "forecast", "--csv", str(csv), "--split", "ratio", "--validation", "--input-len", "24",
                     "--model-input-len", "ridge=24", "--horizons", "6", "--models", "ridge",
                     "--runs-root", str(tmp_path / "runs"),
                     "--out-csv", str(tmp_path / "rows.csv")])
    text = capsys.readouterr().out
    assert code == 0 and "scored on its validation part (--validation)" in text and "(35 test windows)" in text
    assert "Scored on the validation split (--validation), not on the test split." in text
    values = pd.read_csv(csv).drop(columns="date").to_numpy()  # (400, 3)
    scaled = (values - values[:240].mean(0)) / values[:240].std(0)
    errors = [scaled[t + 1 : t + 7] - scaled[t] for t in range(279, 314)]  # last input step t, targets t+1 … t+6
    naive = float(np.mean(np.square(errors)))
    rows = pd.read_csv(tmp_path / "rows.csv").set_index("model")
    assert rows.loc["naive (last value)", "mse"] == pytest.approx(naive, rel=1e-5)
    config = read_config(tmp_path / "runs" / "H6-ridge").experiment_config
    assert (config.split, config.val_size, config.test_size) == ("last", 40, 40)


def test_validation_needs_series_of_one_length_and_room_for_its_training_rows():
    import pandas as pd

    from attnlab.data.panel import load_panel

    frame = pd.DataFrame({"unique_id": ["a"] * 50 + ["b"] * 60, "ds": list(range(50)) + list(range(60)),
                          "y": [float(i % 7) for i in range(110)]})
    with pytest.raises(UserError, match="--validation needs series of one length"):
        bench.validation_split(load_panel(frame, id_col="unique_id", time_col="ds"), "ratio")
    one = load_panel(frame[frame.unique_id == "b"], id_col="unique_id", time_col="ds")
    panel, options = bench.validation_split(one, "ratio")  # 60 rows: train 42, validation 6, test 12
    assert panel.lengths.tolist() == [48] and options == {"split": "last", "val_size": 6, "test_size": 6}
    with pytest.raises(UserError, match="leaves no training rows before its validation part"):
        bench.validation_split(one, "ett")  # the ETT split needs 14,400 rows


def _row(model, h, mse, **kw):
    return bench.Row(h, model, 24, mse, mse, 1.0, 1, 1, Path("."), **kw)


def test_ablation_says_whether_attention_beats_its_twin_and_naive():
    rows = [_row("patch_transformer", 96, 0.30), _row("patch_transformer[attention=mean]", 96, 0.32,
                                                     twin_of="patch_transformer"),
            _row("retrieval", 96, 0.41), _row("ridge", 96, 0.40, twin_of="retrieval"),
            _row("naive (last value)", 96, 0.35, baseline=True)]
    assert bench.ablation(rows, [96]) == [
        "PASS H=96: patch_transformer 0.3000 < its attention-free twin patch_transformer[attention=mean] 0.3200 "
        "(Δ -0.02)",
        "FAIL H=96: retrieval 0.4100 ≥ its attention-free twin ridge 0.4000 (Δ +0.01)",
        "PASS H=96: best attention model patch_transformer 0.3000 ≤ naive (last value) 0.3500 (Δ -0.05)",
    ]
    assert [r.attention for r in rows] == [True, False, True, False, False]
    assert bench.ablation(rows[:1] + rows[-1:], [96]) == []  # no twin trained: no lines
    off = [_row("retrieval", 96, 0.40, attention_off=True), _row("ridge", 96, 0.40, twin_of="retrieval"),
           _row("naive (last value)", 96, 0.35, baseline=True)]
    assert not off[0].attention  # not the best attention model of its horizon: it forecast as its twin
    assert bench.ablation(off, [96]) == [
        "FAIL H=96: retrieval 0.4000 = its attention-free twin ridge (Δ 0: the same forecasts, its attention is off)"]


def test_a_model_that_forecasts_as_its_twin_is_marked_attention_off(tmp_path, monkeypatch):
    """collect() marks a model whose test MSE equals its twin's (retrieval with β = 0), so no check counts it as the
    best attention model; one whose attention changed its forecasts stays an attention model."""
    mses = {"patch_transformer": 0.31, "patch_transformer[attention=mean]": 0.32}

    def fake_fit(name, panel, data, split, overrides, run_dir, note, label=None, twin_of=None):
        model = label or name
        return bench.Row(data.horizon, model, data.input_len, mses.get(model, 0.40), 0.5, 1.0, 0, 0, run_dir,
                         twin_of=twin_of)

    monkeypatch.setattr(bench, "_fit", fake_fit)
    monkeypatch.setattr(bench, "baseline_rows", lambda row: [])
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(
        ["--csv", str(seasonal_csv(tmp_path / "s.csv")), "--split", "ratio", "--horizons", "6",
         "--input-len", "24", "--model-input-len", "retrieval=24", "--model-input-len", "ridge=24",
         "--models", "ridge,retrieval,patch_transformer", "--twins", "--runs-root", str(tmp_path / "runs")])
    rows = bench.collect(bench.plan(args))
    marked = {(r.model, r.twin_of): r.attention_off for r in rows}
    assert marked == {("ridge", None): False, ("retrieval", None): True, ("ridge", "retrieval"): False,
                      ("patch_transformer", None): False,
                      ("patch_transformer[attention=mean]", "patch_transformer"): False}
    assert [r.model for r in rows if r.attention] == ["patch_transformer"]


@pytest.mark.slow
def test_twins_are_trained_beside_their_models(tmp_path, capsys):
    csv = seasonal_csv(tmp_path / "series.csv")
    code = cli.main(["bench", "forecast", "--csv", str(csv), "--split", "ratio", "--input-len", "32", "--horizons", "6",
                     "--models", "patch_transformer", "--twins", "--runs-root", str(tmp_path / "runs"),
                     "max_epochs=1", "batch_size=64"])
    text = capsys.readouterr().out
    assert code == (1 if "\nFAIL " in text else 0)  # a lost ablation is a failed target
    assert "| patch_transformer[attention=mean] (L=32) |" in text and "| *naive (last value)* |" in text
    assert "its attention-free twin patch_transformer[attention=mean]" in text
    twin = read_config(tmp_path / "runs" / "H6-patch_transformer-twin")
    assert twin.model == "patch_transformer" and twin.model_config.attention == "mean"


@pytest.mark.parametrize(("args", "message"), [
    (["--horizons", "96,x"], "--horizons must be comma-separated integers"),
    (["--horizons", "0"], "--horizons needs positive integers"),
    (["--models", "linear,nope"], "unknown forecast model(s) nope"),
    (["--model-input-len", "nope=5"], "which is not among --models"),
    (["--model-input-len", "linear"], "needs MODEL=L"),
    (["--model-seeds", "linear=0"], "--model-seeds needs MODEL=N with a positive N"),
    (["seed=abc"], "seed must be an integer, got 'abc'"),
    (["--suite", "--validation"], "--validation scores one --csv, not the suite"),
])
def test_bad_options_are_one_line_errors(tmp_path, cli_error, args, message):
    csv = seasonal_csv(tmp_path / "series.csv")
    assert message in cli_error(["bench", "forecast", "--csv", str(csv), *args])


@pytest.mark.parametrize(("csv_name", "horizons", "message"), [
    ("missing.csv", "6", "missing.csv"),
    ("series.csv", "6,100000", "horizon"),  # the first horizon fits; the second is checked before any fit
])
def test_bad_data_stops_before_anything_is_printed_or_trained(tmp_path, capsys, csv_name, horizons, message):
    seasonal_csv(tmp_path / "series.csv")
    runs = tmp_path / "runs"
    code = cli.main(["bench", "forecast", "--csv", str(tmp_path / csv_name), "--horizons", horizons,
                     "--split", "ratio", "--input-len", "24", "--models", "linear", "--runs-root", str(runs)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and not runs.exists()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
