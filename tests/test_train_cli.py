"""``attnlab fit`` / ``attnlab list`` on the toy experiment, and 2-process DDP on CPU (gloo)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from attnlab import cli, registry
from attnlab.train import load_model
from toy_experiment import TOY, ToyConfig, ToyExperiment

TOY_SCRIPT = Path(__file__).with_name("toy_experiment.py")


@pytest.fixture(autouse=True)
def toy_cli(monkeypatch):
    monkeypatch.setitem(registry._EXPERIMENTS, TOY.name, TOY)
    monkeypatch.setattr(registry, "_loaded", True)
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("attnlab.train.command",))


def test_fit_command_trains_and_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "run"
    # Options may come before or after the overrides.
    assert cli.main(["fit", "toy", "max_epochs=2", "--out", str(out), "--no-progress", "lr=0.2",
                     "--keep-checkpoints"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == f"toy/linear: {out}"
    assert lines[1].split()[:2] == ["params", "5"]
    assert lines[2].split()[0] == "test" and lines[2].split()[1] == "loss"
    assert lines[4] == "  stopped by max epochs after 2 epoch(s), 32 steps"
    assert lines[-1] == f"  report: {out / 'report.html'}"  # the report's path comes last
    assert f"attnlab: fit toy/linear (5 parameters) -> {out}" in captured.err
    assert "GPU available" not in captured.err and "Tip" not in captured.err  # Lightning's info noise is off
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["lr"] == 0.2 and config["train"]["max_epochs"] == 2
    assert (out / "model.safetensors").is_file()

    assert cli.main(["fit", "toy", "--resume", "--out", str(out), "--no-progress", "--no-figures", "max_epochs=3"]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "nope"], "unknown experiment 'nope'; choose one of: "),
        (
            ["fit", "toy", "--model", "gpt"],
            "unknown model 'gpt' for experiment 'toy'; choose one of: linear, frozen, mlp",
        ),
        (["fit", "toy", "lrr=1"], "unknown override key 'lrr'; did you mean 'lr'? valid keys are train (train.): "),
        (["fit", "toy", "lr=fast"], "bad value for lr: 'fast' is not a float"),
        (["fit", "toy", "d_in=3"], "override key 'd_in' is ambiguous"),
        (["fit", "toy", "lr"], "override 'lr' is not key=value"),
        (["fit", "toy", "hidden=6", "groups=4"], "cannot build the model: groups (4) must divide hidden (6)"),
        (["list", "nope"], "unknown experiment 'nope'"),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"attnlab: error: {message}")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert not (tmp_path / "runs").exists()


def test_list_shows_experiments_and_models(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    toy = out.index(next(line for line in out if line.startswith("toy ")))
    assert out[toy].split(None, 1)[1] == ToyExperiment.summary
    assert out[toy + 1].split() == ["*", "linear", "A", "linear", "layer", "(or", "a", "small", "MLP)."]
    assert out[toy + 2].split()[0] == "frozen"  # not the default: no star

    assert cli.main(["list", "toy"]) == 0
    detail = capsys.readouterr().out
    assert "best checkpoint: val_loss (min)" in detail
    assert "train. keys: max_epochs=6 (int)" in detail  # the experiment's train_defaults
    assert "data. keys: n_train=512 (int)" in detail
    assert "model. keys of linear: d_in=4 (int), hidden=0 (int), groups=1 (int), bias=True" in detail


def test_fit_help_lists_overrides(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["fit", "toy", "--help"])
    assert exit_.value.code == 0
    assert "KEY=VALUE" in capsys.readouterr().out


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    argv = ["fit", "toy", "devices=2", "strategy=ddp", "max_epochs=3", "--out", str(out), "--no-progress"]
    proc = subprocess.run(
        [sys.executable, str(TOY_SCRIPT), *argv], capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("toy/linear: ") == 1  # only rank 0 reports
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and all(math.isfinite(v) for v in metrics["test"].values())
    losses = [h["train_loss"] for h in metrics["history"]]
    assert losses[0] > losses[1] > losses[2]

    # Both ranks trained: 512 examples / batch 32 = 16 steps per epoch alone, 8 per rank with 2 ranks.
    with open(out / "logs" / "version_0" / "metrics.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r["train_loss"]]
    assert steps == [7, 15, 23]

    # Test metrics were reduced over both ranks' shards: they equal the loss over the whole test set.
    model, _ = load_model(out)
    x, y = ToyExperiment(ToyConfig()).data(0).test.tensors
    with torch.no_grad():
        full = nn.functional.mse_loss(model(x), y).item()
    assert metrics["test"]["loss"] == pytest.approx(full, rel=1e-5)
