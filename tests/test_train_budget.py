"""Runs you can trust: work budgets, the same metrics under load, the time cap, under-training warnings,
impossible settings refused before anything is built, and a CLI that answers without loading torch."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from attnlab import registry
from attnlab.bench.startup import COMMANDS, heavy_imports
from attnlab.errors import UserError
from attnlab.train import fit
from attnlab.train.callbacks import training_warnings
from attnlab.train.config import TrainConfig
from toy_experiment import TOY, ToyExperiment


@pytest.fixture(scope="module", autouse=True)
def toy_registered():
    with registry.registered(TOY):
        yield


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_cli_answers_without_importing_torch_lightning_pandas_or_matplotlib(name):
    assert heavy_imports(COMMANDS[name]) == []


def test_every_default_budget_is_work_not_time():
    assert TrainConfig().max_time_s is None
    for spec in registry.experiments().values():
        assert "max_time_s" not in spec.train_defaults, spec.name
        for name, model in spec.models.items():
            assert "max_time_s" not in model.train_overrides, (spec.name, name)


def _burn_cpu(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def test_the_same_seed_gives_identical_metrics_with_a_cpu_burner_beside_it(tmp_path):
    # A Transformer whose matmuls use both threads: the thread count is fixed by the engine, the budget is epochs.
    overrides = ["n_train=256", "n_val=64", "n_test=64", "max_epochs=2"]
    quiet = fit("squares", "transformer", overrides, run_dir=tmp_path / "quiet", progress=False, figures=False,
                report=False)
    burners = _burn_cpu(2)
    try:
        busy = fit("squares", "transformer", overrides, run_dir=tmp_path / "busy", progress=False, figures=False,
                   report=False)
    finally:
        for process in burners:
            process.kill()
    assert busy.metrics == quiet.metrics and busy.val_metrics == quiet.val_metrics
    assert [{k: v for k, v in h.items()} for h in busy.history] == quiet.history
    assert busy.config.train.threads == 2 == json.loads((tmp_path / "busy" / "config.json").read_text())["train"][
        "threads"]


def test_the_thread_count_is_set_for_the_fit_and_restored(tmp_path, monkeypatch):
    seen = []
    real_loss = ToyExperiment.loss

    def loss(self, model, batch):
        seen.append(torch.get_num_threads())
        return real_loss(self, model, batch)

    monkeypatch.setattr(ToyExperiment, "loss", loss)
    before = torch.get_num_threads()
    fit("toy", overrides=["max_epochs=1", "threads=1"], run_dir=tmp_path / "run", progress=False, figures=False)
    assert set(seen) == {1} and torch.get_num_threads() == before


def test_the_time_cap_stops_training_and_leaves_evaluation_its_time(tmp_path, monkeypatch):
    real_loss = ToyExperiment.loss

    def slow_loss(self, model, batch):
        time.sleep(0.01)
        return real_loss(self, model, batch)

    monkeypatch.setattr(ToyExperiment, "loss", slow_loss)
    start = time.perf_counter()
    result = fit("toy", overrides=["max_epochs=1000", "max_time_s=2"], run_dir=tmp_path / "run", progress=False,
                 figures=False)
    elapsed = time.perf_counter() - start
    assert result.stopped_by == "time" and 1 <= result.epochs < 1000
    assert elapsed < 2 + 1.5  # the report and the figures come after the cap; training and evaluation within it
    assert any(w.startswith("the time cap max_time_s=2 stopped training after") for w in result.warnings)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["stopped_by"] == "time" and saved["warnings"] == result.warnings


def test_how_training_stopped_is_recorded(tmp_path):
    by_epochs = fit("toy", overrides=["max_epochs=2"], run_dir=tmp_path / "a", progress=False, figures=False)
    by_steps = fit("toy", overrides=["max_steps=5"], run_dir=tmp_path / "b", progress=False, figures=False)
    assert (by_epochs.stopped_by, by_epochs.steps) == ("max_epochs", 32)
    assert (by_steps.stopped_by, by_steps.steps, by_steps.epochs) == ("max_steps", 5, 1)
    # 5 of the 16 steps of one epoch: the model is under-trained and the run says what to raise.
    assert "training stopped after 5 of the 16 steps of one epoch (stopped by max_steps=5): raise max_steps" \
        in by_steps.warnings
    frozen = fit("toy", "frozen", run_dir=tmp_path / "c", progress=False, figures=False)
    assert (frozen.stopped_by, frozen.warnings) == ("no_training", [])


def test_a_fit_ending_inside_warm_up_warns(tmp_path):
    result = fit("toy", overrides=["max_epochs=1", "warmup_steps=100"], run_dir=tmp_path / "w", progress=False,
                 figures=False)
    assert ("training ended inside the learning-rate warm-up (step 16 of warmup_steps=100, stopped by "
            "max_epochs=1): raise max_epochs, or lower warmup_steps") in result.warnings


def test_training_warnings_rules():
    train = TrainConfig(max_epochs=3, warmup_steps=0)
    falling = [{"epoch": 1, "val_mse": 1.0}, {"epoch": 2, "val_mse": 0.5}, {"epoch": 3, "val_mse": 0.4}]
    flat = [{"epoch": 1, "val_mse": 1.0}, {"epoch": 2, "val_mse": 0.5}, {"epoch": 3, "val_mse": 0.49}]
    steep = training_warnings(falling, ("val_mse", "min"), "max_epochs", 300, 100, train)
    assert steep == ["validation mse was still improving steeply at the last epoch (20 % better than the epoch "
                     "before; stopped by max_epochs=3): raise max_epochs"]
    assert training_warnings(flat, ("val_mse", "min"), "max_epochs", 300, 100, train) == []  # 2 %: converging
    assert training_warnings(falling, ("val_mse", "min"), "early_stopping", 300, 100, train) == []
    rising = [{"val_acc": 0.5}, {"val_acc": 0.6}]
    assert "60" not in "".join(training_warnings(rising, ("val_acc", "max"), "max_epochs", 300, 100, train))
    assert "20 % better" in training_warnings(rising, ("val_acc", "max"), "max_epochs", 300, 100, train)[0]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lr=inf", "bad value for lr: 'inf' is not a finite number; give a finite number"),
        ("lr=nan", "bad value for lr: 'nan' is not a finite number"),
        ("max_time_s=inf", "bad value for max_time_s: 'inf' is not a finite number; give a finite number (or none "
                           "to turn it off)"),
        ("seed=-1", "seed=-1 is out of range; it must be between 0 and 4294967295"),
        ("seed=99999999999", "seed=99999999999 is out of range; it must be between 0 and 4294967295"),
        ("threads=0", "threads=0 is out of range; it must be at least 1"),
        ("max_steps=0", "max_steps=0 is out of range; it must be at least 1 or none"),
    ],
)
def test_impossible_settings_are_refused_before_anything_is_written(tmp_path, override, message):
    with pytest.raises(UserError) as err:
        fit("toy", overrides=[override], run_dir=tmp_path / "run", progress=False)
    assert str(err.value) == message or str(err.value).startswith(message)
    assert not (tmp_path / "run").exists()


def test_a_model_too_large_for_memory_is_refused_before_it_is_built(tmp_path):
    expected = (r"the model would have 6,000,000,001 parameters, 89.4 GiB to train .* this machine has .* GiB free; "
                r"lower the model's sizes \(model.hidden=1000000000\)")
    with pytest.raises(UserError, match=expected):
        fit("toy", "mlp", ["model.hidden=1000000000"], run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["fit", "sine", "--model", "transformer", "model.d_model=30", "num_heads=4"],
     "model.d_model=30 is not divisible by model.num_heads=4: each head gets d_model / num_heads features; set "
     "model.d_model to a multiple of 4 (e.g. 32) or change model.num_heads"),
    (["fit", "sine", "--model", "transformer", "dropout=1.5"],
     "model.dropout=1.5 is out of range; it must be in [0, 1)"),
    (["fit", "count", "--model", "attention_pooling", "embed_dim=0"],
     "model.embed_dim=0 is out of range; it must be at least 1"),
    (["translate", "fit", "--corpus", "{corpus}", "beam=0"], "beam=0 is out of range; it must be at least 1"),
    (["bench", "dropout", "--budget-s", "-1"],
     "--budget-s -1 is out of range; it must be a positive number of seconds"),
])
def test_errors_name_the_users_keys_and_the_valid_range(tmp_path, capsys, argv, message):
    from attnlab import cli

    corpus = tmp_path / "c.txt"
    corpus.write_text("a .\tb .\n")
    code = cli.main([a.format(corpus=corpus) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_a_prepared_run_writes_nothing_until_it_is_fitted(tmp_path):
    from attnlab.train import prepare_run

    run = prepare_run("toy", overrides=["max_epochs=2"], run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    assert run.config.train.max_epochs == 2 and run.model_name == "linear" and len(run.splits.train) == 512
    result = fit(run, progress=False, figures=False)
    assert result.epochs == 2 and (tmp_path / "run" / "metrics.json").is_file()


def test_a_task_given_to_prepare_run_brings_its_own_data_options(tmp_path):
    from attnlab.train import prepare_run
    from toy_experiment import ToyConfig

    task = ToyExperiment(ToyConfig(n_train=128))
    run = prepare_run("toy", task=task, run_dir=tmp_path / "run")
    assert run.task is task and run.config.experiment_config.n_train == 128 and len(run.splits.train) == 128
    with pytest.raises(UserError, match="the data options come from the data given"):
        prepare_run("toy", overrides=["n_train=64"], task=task, run_dir=tmp_path / "other")
