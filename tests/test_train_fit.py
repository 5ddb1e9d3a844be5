"""The training engine end to end on the toy experiment (tests/toy_experiment.py): fit, run folder,
determinism, resume, safetensors round trip, models without parameters."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import pickle
import signal
from types import SimpleNamespace

import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from torch import nn
from torch.utils.data import TensorDataset

from attnlab import registry
from attnlab.errors import Interrupted, UserError
from attnlab.experiments.base import DataSplits
from attnlab.train import RunResult, fit, load_model, load_result
from attnlab.train.config import TrainConfig
from attnlab.train.engine import _make_trainer, fit_batch_to_data
from attnlab.train.module import BatchShardSampler, ShardSampler, TaskModule, lr_factor
from toy_experiment import TOY, Frozen, FrozenConfig, ToyConfig, ToyExperiment


@pytest.fixture(scope="module", autouse=True)
def toy_registered():
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry._EXPERIMENTS, TOY.name, TOY)
        mp.setattr(registry, "_loaded", True)  # do not import the real experiments
        yield


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunResult:
    # batch_size=48 leaves a last test batch of 32 of 128 examples: metric means must weight batches by size.
    return fit("toy", overrides=["batch_size=48"], run_dir=tmp_path_factory.mktemp("fit") / "run", progress=False)


def test_lr_schedule_warmup_then_cosine():
    assert [lr_factor(s, 4, 104, "cosine") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 104, "cosine") == 1.0
    # halving: 10 steps per epoch after 4 warm-up steps
    assert [lr_factor(s, 4, 104, "halving", 10) for s in (4, 13, 14, 24, 34)] == [1.0, 1.0, 0.5, 0.25, 0.125]
    # step: PatchTST's ETTh1 schedule (its lradj "type3"): epochs 0-3 at the full rate, then x0.9 per epoch
    factors = [lr_factor(s, 0, 100, "step", 10, gamma=0.9, hold_epochs=3) for s in (0, 39, 40, 49, 50, 99)]
    assert factors == pytest.approx([1.0, 1.0, 0.9, 0.9, 0.81, 0.9**6])
    assert lr_factor(54, 4, 104, "cosine") == pytest.approx(0.5)
    assert lr_factor(104, 4, 104, "cosine") == pytest.approx(0.0)
    assert lr_factor(50, 0, 100, "none") == 1.0
    assert lr_factor(1, 2, 100, "none") == 1.0 and lr_factor(0, 2, 100, "none") == 0.5
    assert lr_factor(10**6, 0, math.inf, "cosine") == 1.0  # no epoch limit: constant


def test_shard_sampler_covers_each_example_once_in_eval_and_pads_in_training():
    shards = [list(ShardSampler(10, seed=0, shuffle=False, rank=r, world_size=3, pad=False)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(10))
    assert [len(ShardSampler(10, 0, False, r, 3, pad=False)) for r in range(3)] == [4, 3, 3]
    train = [ShardSampler(10, seed=5, shuffle=True, rank=r, world_size=3) for r in range(3)]
    assert [len(list(s)) for s in train] == [4, 4, 4] == [len(s) for s in train]
    assert set().union(*(set(s) for s in train)) == set(range(10))
    sampler = ShardSampler(10, seed=5, shuffle=True)
    first = list(sampler)
    assert list(ShardSampler(10, seed=5, shuffle=True)) == first  # same seed and epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == list(range(10))


BATCHES = [[0, 1, 2], [3, 4], [5], [6, 7, 8, 9], [10, 11]]  # a task's own batches of 12 examples


def test_batch_shard_sampler_shuffles_and_shards_whole_batches():
    # Evaluation over 3 ranks: each batch, so each example, exactly once, in the task's order.
    shards = [list(BatchShardSampler(BATCHES, 12, seed=0, shuffle=False, rank=r, world_size=3, pad=False))
              for r in range(3)]
    assert shards == [[BATCHES[0], BATCHES[3]], [BATCHES[1], BATCHES[4]], [BATCHES[2]]]
    # Training: equal batch counts on every rank (a few repeated), all batches seen.
    train = [list(BatchShardSampler(BATCHES, 12, seed=5, shuffle=True, rank=r, world_size=3)) for r in range(3)]
    assert [len(t) for t in train] == [2, 2, 2] and {tuple(b) for t in train for b in t} == set(map(tuple, BATCHES))
    # The order is the ShardSampler's over batch numbers: from (seed, epoch) only, so a resumed run sees it again.
    sampler = BatchShardSampler(BATCHES, 12, seed=5, shuffle=True)
    first = list(sampler)
    assert first == [BATCHES[i] for i in ShardSampler(5, seed=5, shuffle=True)]
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first and sorted(second) == sorted(BATCHES)
    again = BatchShardSampler(BATCHES, 12, seed=5, shuffle=True)
    again.set_epoch(1)
    assert list(again) == second and len(again) == 5


@pytest.mark.parametrize(("batches", "message"), [
    ([[0, 1], [1, 2, 3]], "exactly once"),  # example 1 twice
    ([[0, 1], [3]], "exactly once"),  # example 2 missing
    ([[0, 1, 2, 3, 4]], "exactly once"),  # an index past the split
    ([[0, 1, 2, 3], []], "must not be empty"),
])
def test_batch_shard_sampler_refuses_batches_that_are_not_a_partition(batches, message):
    with pytest.raises(ValueError, match=message):
        BatchShardSampler(batches, 4, seed=0, shuffle=True)


def _indices(loader) -> list[list[int]]:
    return [batch[0].tolist() for batch in loader]


def test_the_loaders_use_the_tasks_batches_where_it_gives_them():
    asked = []

    def batches(split: str, batch_size: int, seed: int) -> list[list[int]] | None:
        asked.append((split, batch_size, seed))
        return {"train": BATCHES, "val": None, "test": [[0, 1], [2, 3, 4, 5]]}[split]

    splits = DataSplits(*(TensorDataset(torch.arange(n)) for n in (12, 6, 6)), batches=batches)
    module = TaskModule(ToyExperiment(ToyConfig()), nn.Linear(1, 1), TrainConfig(batch_size=4, seed=7), splits)
    module.trainer = SimpleNamespace(global_rank=0, world_size=1)
    train = module.train_dataloader()
    epoch0 = _indices(train)
    assert sorted(epoch0) == sorted(BATCHES) and len(train) == 5
    _set_sampler_epoch(train, 1)  # what Lightning calls at every epoch: it must reach the batch order
    epoch1 = _indices(train)
    assert sorted(epoch1) == sorted(BATCHES) and epoch1 != epoch0
    assert _indices(module.val_dataloader()) == [[0, 1, 2, 3], [4, 5]]  # None: batch_size examples in order
    assert _indices(module.test_dataloader()) == [[0, 1], [2, 3, 4, 5]]
    assert asked == [("train", 4, 7), ("val", 4, 7), ("test", 4, 7)]
    # Two DDP ranks share the test batches out, each batch to one of them.
    ranks = []
    for rank in (0, 1):
        module.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        ranks.append(_indices(module.test_dataloader()))
    assert ranks == [[[0, 1]], [[2, 3, 4, 5]]]


def _batched_by_hundreds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The toy task with its own training batches: consecutive runs of 100 examples, whatever batch_size says."""
    data = ToyExperiment.data

    def batched(self, seed: int) -> DataSplits:
        splits = data(self, seed)
        n = len(splits.train)
        runs = [list(range(i, min(i + 100, n))) for i in range(0, n, 100)]
        return dataclasses.replace(splits, batches=lambda split, size, seed: runs if split == "train" else None)

    monkeypatch.setattr(ToyExperiment, "data", batched)


def test_a_fit_trains_on_the_tasks_batches_and_a_resumed_run_sees_the_same(tmp_path, monkeypatch):
    _batched_by_hundreds(monkeypatch)
    constant = ["scheduler=none", "warmup_steps=0"]  # the same learning rates whether resumed or not
    whole = fit("toy", overrides=["max_epochs=3", *constant], run_dir=tmp_path / "whole", progress=False,
                figures=False)
    assert whole.steps == 3 * 6  # 512 examples in runs of 100: 6 batches an epoch (batch_size=32 would make 16)
    fit("toy", overrides=["max_epochs=1", *constant], run_dir=tmp_path / "parts", progress=False, figures=False,
        keep_checkpoints=True)
    resumed = fit("toy", overrides=["max_epochs=3", *constant], run_dir=tmp_path / "parts", resume=True,
                  progress=False, figures=False)
    strip = lambda history: [{k: v for k, v in h.items() if k != "lr"} for h in history]  # noqa: E731
    assert strip(resumed.history) == strip(whole.history) and resumed.metrics == whole.metrics


def test_fit_learns_and_writes_the_run_folder(run):
    d = run.run_dir
    for name in (
        "config.json",
        "metrics.json",
        "model.safetensors",
        "logs/version_0/metrics.csv",
        "figures/summary.txt",
    ):
        assert (d / name).is_file(), name
    # Lean: a completed run keeps its best weights, not Lightning checkpoints (unless keep_checkpoints).
    assert not (d / "checkpoints").exists()
    assert run.figures == [d / "figures" / "summary.txt"]
    assert (run.stopped_by, run.steps) == ("max_epochs", 6 * 11)  # 512 examples in batches of 48: 11 a epoch

    # It learned: the data is y = x @ w + 0.5 + 0.05 noise (MSE floor 0.0025); the mean predictor has MSE ~15.
    assert run.metrics["loss"] < 0.01 and run.val_metrics["loss"] < 0.01
    assert run.history[0]["train_loss"] > 100 * run.history[-1]["train_loss"]
    assert set(run.metrics) == {"loss", "mae"} and run.metric == ("loss", run.metrics["loss"])
    assert run.params == 5 and run.epochs == 6 == len(run.history)
    assert [h["epoch"] for h in run.history] == [1, 2, 3, 4, 5, 6]
    assert set(run.history[0]) == {"epoch", "train_loss", "val_loss", "val_mae", "lr"}
    assert run.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine ends at 0
    assert run.train_seconds > 0

    # The best checkpoint (lowest val_loss) was tested, and its validation metrics are reported.
    best_val = min(h["val_loss"] for h in run.history)
    assert run.val_metrics["loss"] == pytest.approx(best_val, rel=1e-6)

    # Figures were drawn with the best model in eval mode; the MSE over the whole test set equals the
    # engine's batch-size-weighted mean.
    summary = (d / "figures" / "summary.txt").read_text().split()
    assert summary[:2] == ["epochs=6", "training=False"]
    assert float(summary[2].split("=")[1]) == pytest.approx(run.metrics["loss"], rel=1e-5)

    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["test"] == run.metrics and metrics["val"] == run.val_metrics
    assert metrics["params"] == 5 and metrics["epochs"] == 6 and metrics["history"] == run.history
    assert metrics["train_seconds"] == run.train_seconds and metrics["figures"] == ["figures/summary.txt"]
    assert (metrics["stopped_by"], metrics["steps"], metrics["warnings"]) == ("max_epochs", 66, run.warnings)

    config = json.loads((d / "config.json").read_text())
    assert (config["experiment"], config["model"]) == ("toy", "linear")
    assert config["train"]["batch_size"] == 48 and config["train"]["lr"] == 0.1
    assert config["experiment_config"]["tags"] == [1, 2] and config["model_config"]["hidden"] == 0

    with open(d / "logs" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    epoch_rows = [r for r in rows if r["train_loss"]]
    assert [int(r["epoch"]) for r in epoch_rows] == list(range(6))
    assert [float(r["train_loss"]) for r in epoch_rows] == pytest.approx([h["train_loss"] for h in run.history])


def test_load_result_reads_the_folder_back(run):
    back = load_result(run.run_dir)
    assert (back.metrics, back.val_metrics, back.params, back.epochs) == (
        run.metrics,
        run.val_metrics,
        run.params,
        run.epochs,
    )
    assert back.config == run.config and back.figures == run.figures


def test_load_model_uses_safetensors_and_json_only(run, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("load_model must not unpickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    model, config = load_model(run.run_dir)
    monkeypatch.undo()

    assert config == run.config and not model.training
    # The weights of the best epoch: they give the reported test loss and the best epoch's validation loss.
    splits = ToyExperiment(ToyConfig()).data(0)
    with torch.no_grad():
        for split, expected in ((splits.test, run.metrics["loss"]), (splits.val, run.val_metrics["loss"])):
            x, y = split.tensors
            assert nn.functional.mse_loss(model(x), y).item() == pytest.approx(expected, rel=1e-5)
    assert run.val_metrics["loss"] == min(h["val_loss"] for h in run.history)


def test_load_model_errors(tmp_path, run):
    with pytest.raises(UserError, match="config.json not found"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text((run.run_dir / "config.json").read_text())
    with pytest.raises(UserError, match="model.safetensors not found"):
        load_model(tmp_path)


def test_same_seed_gives_identical_metrics(tmp_path):
    a = fit("toy", overrides=["max_epochs=2"], run_dir=tmp_path / "a", progress=False, figures=False)
    b = fit("toy", overrides=["max_epochs=2"], run_dir=tmp_path / "b", progress=False, figures=False)
    c = fit("toy", overrides=["max_epochs=2", "seed=1"], run_dir=tmp_path / "c", progress=False, figures=False)
    assert a.metrics == b.metrics and a.history == b.history and a.val_metrics == b.val_metrics
    assert c.metrics != a.metrics
    assert not (tmp_path / "a" / "figures" / "summary.txt").exists() and a.figures == []


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    first = fit("toy", overrides=["max_epochs=2"], runs_root=tmp_path, progress=False, keep_checkpoints=True)
    assert (first.run_dir / "checkpoints" / "last.ckpt").is_file()  # kept on request
    assert first.run_dir.parent == tmp_path and first.run_dir.name.startswith("toy-linear-")
    # Without a run folder, resume picks the latest run of this experiment and model under runs_root.
    resumed = fit("toy", overrides=["max_epochs=4"], runs_root=tmp_path, resume=True, progress=False)
    assert resumed.run_dir == first.run_dir
    assert resumed.epochs == 4 and [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    # Epochs 1-2 were not trained again: a fresh 4-epoch run has another cosine schedule (other lr values).
    assert resumed.history[:2] == first.history
    fresh = fit("toy", overrides=["max_epochs=4"], run_dir=tmp_path / "fresh", progress=False, figures=False)
    assert fresh.history[0]["lr"] != first.history[0]["lr"]
    assert resumed.train_seconds > first.train_seconds
    assert json.loads((first.run_dir / "config.json").read_text())["train"]["max_epochs"] == 4
    epochs = []
    for version in ("version_0", "version_1"):  # one CSV log per fit: the first run's is kept
        with open(first.run_dir / "logs" / version / "metrics.csv") as f:
            epochs.append([int(r["epoch"]) for r in csv.DictReader(f) if r["train_loss"]])
    assert epochs == [[0, 1], [2, 3]]


def test_resume_without_model_name_continues_the_runs_model(tmp_path):
    first = fit("toy", "mlp", ["max_epochs=1"], run_dir=tmp_path / "mlp", progress=False, figures=False,
                keep_checkpoints=True)
    resumed = fit("toy", overrides=["max_epochs=2"], run_dir=tmp_path / "mlp", resume=True, progress=False)
    assert (resumed.model, resumed.epochs, resumed.params) == ("mlp", 2, first.params)
    assert resumed.history[:1] == first.history


def test_resume_and_run_folder_errors(tmp_path):
    with pytest.raises(UserError, match=r"cannot resume: .*last.ckpt not found .*holds no run\); drop --resume"):
        fit("toy", run_dir=tmp_path / "none", resume=True, progress=False)
    with pytest.raises(UserError, match="no run of toy/linear with a checkpoint to resume"):
        fit("toy", runs_root=tmp_path / "empty", resume=True, progress=False)
    done = fit("toy", overrides=["max_epochs=1"], run_dir=tmp_path / "r", progress=False, figures=False)
    with pytest.raises(UserError, match="already holds a finished run; choose another --out"):
        fit("toy", run_dir=done.run_dir, progress=False)
    with pytest.raises(UserError, match="finished and kept no checkpoint; .*--keep-checkpoints"):
        fit("toy", run_dir=done.run_dir, resume=True, progress=False)
    kept = fit("toy", overrides=["max_epochs=1"], run_dir=tmp_path / "k", progress=False, figures=False,
               keep_checkpoints=True)
    with pytest.raises(UserError, match="cannot change the model's hyper-parameters when resuming"):
        fit("toy", overrides=["hidden=4"], run_dir=kept.run_dir, resume=True, progress=False)
    with pytest.raises(UserError, match="it is a run of toy/linear, not toy/frozen"):
        fit("toy", "frozen", run_dir=kept.run_dir, resume=True, progress=False)


def test_a_folder_of_the_users_files_is_never_written(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "forecasts.csv").write_text("precious\n")
    (mine / "report.html").write_text("mine\n")
    with pytest.raises(UserError, match=r"mine is not empty and holds no attnlab run \(forecasts.csv, report.html\)"):
        fit("toy", run_dir=mine, progress=False)
    assert sorted(p.name for p in mine.iterdir()) == ["forecasts.csv", "report.html"]
    assert (mine / "forecasts.csv").read_text() == "precious\n"
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="file is a file, not a folder; pass a new folder for the run with --out"):
        fit("toy", run_dir=tmp_path / "file", progress=False)
    with pytest.raises(UserError, match="--out is empty; pass the name of a new folder"):
        fit("toy", run_dir="", progress=False)
    assert not any(p.name.startswith("toy-") for p in tmp_path.iterdir())
    # An empty folder is fine.
    (tmp_path / "empty").mkdir()
    assert fit("toy", overrides=["max_epochs=1"], run_dir=tmp_path / "empty", progress=False).epochs == 1


def test_a_run_stopped_before_its_first_checkpoint_restarts_in_place(tmp_path, monkeypatch):
    real_loss = ToyExperiment.loss
    calls = 0

    def interrupted_loss(self, model, batch):
        nonlocal calls
        calls += 1
        if calls == 3:  # in the first epoch: no checkpoint yet
            raise KeyboardInterrupt
        return real_loss(self, model, batch)

    monkeypatch.setattr(ToyExperiment, "loss", interrupted_loss)
    with pytest.raises(Interrupted, match="no epoch had finished, so nothing was saved: the same command restarts it"):
        fit("toy", run_dir=tmp_path / "run", progress=False, figures=False)
    assert (tmp_path / "run" / "config.json").is_file()
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    with pytest.raises(UserError, match="stopped before its first checkpoint; run the same command without --resume"):
        fit("toy", run_dir=tmp_path / "run", resume=True, progress=False)
    again = fit("toy", overrides=["max_epochs=2"], run_dir=tmp_path / "run", progress=False, figures=False)
    assert again.epochs == 2 and (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04truncated", b"not a checkpoint at all"])
def test_a_damaged_checkpoint_is_refused_before_anything_is_written(tmp_path, content):
    first = fit("toy", overrides=["max_epochs=1"], run_dir=tmp_path / "run", progress=False, figures=False,
                keep_checkpoints=True)
    ckpt = first.run_dir / "checkpoints" / "last.ckpt"
    config_before = (first.run_dir / "config.json").read_text()
    ckpt.write_bytes(content)
    with pytest.raises(UserError, match=r"cannot resume: .*last.ckpt is damaged or not an attnlab checkpoint"):
        fit("toy", overrides=["max_epochs=3"], run_dir=first.run_dir, resume=True, progress=False)
    assert (first.run_dir / "config.json").read_text() == config_before  # a failed resume rewrites nothing


def test_a_checkpoint_that_runs_code_is_refused(tmp_path):
    first = fit("toy", overrides=["max_epochs=1"], run_dir=tmp_path / "run", progress=False, figures=False,
                keep_checkpoints=True)
    marker = tmp_path / "pwned"

    class Attack:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"state_dict": {}, "loops": {}, "x": Attack()}, first.run_dir / "checkpoints" / "last.ckpt")
    with pytest.raises(UserError, match="is damaged or not an attnlab checkpoint"):
        fit("toy", run_dir=first.run_dir, resume=True, progress=False)
    assert not marker.exists()


def test_model_without_parameters_is_evaluated_and_saved(tmp_path):
    result = fit("toy", "frozen", run_dir=tmp_path / "frozen", progress=False)
    assert result.params == 0 and result.epochs == 0 and result.history == []
    assert result.train_seconds < 0.05  # only the (no-op) prepare_model hook, which counts as training time
    x, y = ToyExperiment(ToyConfig()).data(0).test.tensors
    expected = nn.functional.mse_loss(Frozen(FrozenConfig())(x), y).item()
    assert result.metrics["loss"] == pytest.approx(expected, rel=1e-6)
    for name in ("config.json", "metrics.json", "model.safetensors", "figures/summary.txt"):
        assert (result.run_dir / name).is_file(), name
    model, _ = load_model(result.run_dir)
    assert torch.equal(model.w, torch.full((4,), 0.5))


def test_zero_epochs_evaluates_the_initial_model(tmp_path):
    result = fit("toy", overrides=["max_epochs=0"], run_dir=tmp_path / "zero", progress=False, figures=False)
    assert result.epochs == 0 and result.metrics["loss"] > 1.0  # untrained


def test_fit_batch_to_data_lowers_the_batch_only_where_an_epoch_would_be_short():
    big = TrainConfig(batch_size=128, min_steps_per_epoch=32)
    assert fit_batch_to_data(TrainConfig(batch_size=128), 10) == TrainConfig(batch_size=128)  # off by default
    assert fit_batch_to_data(big, 4096) is big  # 4096 // 32 = 128: unchanged
    assert fit_batch_to_data(big, 8209) is big
    assert fit_batch_to_data(big, 301) == TrainConfig(batch_size=9, min_steps_per_epoch=32)  # 33 full batches
    assert fit_batch_to_data(big, 10).batch_size == 1  # never below 1


def test_a_lowered_batch_is_what_the_run_trains_with_and_saves(tmp_path, caplog):
    # 512 training examples // 32 steps = a batch of 16 instead of 64: 32 optimiser steps per epoch.
    with caplog.at_level("INFO", logger="attnlab.train.engine"):
        result = fit("toy", overrides=["batch_size=64", "min_steps_per_epoch=32", "max_epochs=1"],
                     run_dir=tmp_path / "small", progress=False, figures=False)
    assert "batch_size 64 -> 16, so the 512 training examples make at least min_steps_per_epoch=32" in caplog.text
    assert result.config.train.batch_size == 16
    assert json.loads((tmp_path / "small" / "config.json").read_text())["train"]["batch_size"] == 16
    with (tmp_path / "small" / "logs" / "version_0" / "metrics.csv").open() as f:
        steps = [int(row["step"]) for row in csv.DictReader(f) if row.get("val_loss")]
    # Epoch 0's validation is logged at its last step (0-based): 32 steps. The best epoch's validation metrics
    # are kept from then, not computed again.
    assert steps == [31]


def test_impossible_model_size_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"cannot build the model: groups \(4\) must divide hidden \(6\)"):
        fit("toy", overrides=["hidden=6", "groups=4"], run_dir=tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


def test_early_stopping_on_the_monitor(tmp_path):
    # A step of 1e-30 leaves float32 weights unchanged, so val_loss never improves: patience=2 stops after
    # the first epoch plus 2 epochs without improvement.
    overrides = ["optimizer=sgd", "lr=1e-30", "scheduler=none", "patience=2", "max_epochs=10"]
    result = fit("toy", overrides=overrides, run_dir=tmp_path / "es", progress=False, figures=False)
    assert result.epochs == 3
    assert len({h["val_loss"] for h in result.history}) == 1


def test_optimizers_and_schedules_train(tmp_path):
    for i, extra in enumerate((["optimizer=adam", "weight_decay=0.01"], ["optimizer=sgd", "lr=0.02"])):
        overrides = [*extra, "scheduler=none", "warmup_steps=5", "hidden=8", "max_epochs=3"]
        result = fit("toy", overrides=overrides, run_dir=tmp_path / str(i), progress=False, figures=False)
        assert result.history[-1]["val_loss"] < 0.5 * result.history[0]["val_loss"]
        assert result.history[-1]["lr"] == pytest.approx(result.config.train.lr)  # constant after warm-up


def test_step_schedule_in_a_fit(tmp_path):
    # The history's lr is the rate after each epoch's last step, i.e. the next epoch's: with the rate held
    # through epoch 1 (0-based) and x0.5 after, epochs 1..4 end at factors 1, 0.5, 0.25, 0.125.
    overrides = ["scheduler=step", "lr_gamma=0.5", "lr_hold_epochs=1", "lr=0.01", "max_epochs=4"]
    result = fit("toy", overrides=overrides, run_dir=tmp_path / "run", progress=False, figures=False)
    assert [h["lr"] for h in result.history] == pytest.approx([0.01, 0.005, 0.0025, 0.00125])


def test_trainer_settings_pass_through(tmp_path):
    from attnlab.train.callbacks import LastCheckpoint

    config = TrainConfig(max_time_s=90.0, grad_clip=0.5, patience=3, max_epochs=7, max_steps=500, devices="1")
    trainer, callbacks = _make_trainer(config, tmp_path, ("val_acc", "max"), progress=False)
    assert callbacks.time_cap is not None and callbacks.time_cap.limit_s == 90.0
    assert trainer.gradient_clip_val == 0.5 and trainer.max_epochs == 7 and trainer.max_steps == 500
    assert (callbacks.best.monitor, callbacks.best.mode) == ("val_acc", "max")
    last = next(cb for cb in trainer.callbacks if isinstance(cb, LastCheckpoint))
    assert last.path == tmp_path / "checkpoints" / "last.ckpt"  # one resumable checkpoint, overwritten every epoch
    assert (callbacks.early.monitor, callbacks.early.patience, callbacks.early.mode) == ("val_acc", 3, "max")
    _, plain = _make_trainer(TrainConfig(), tmp_path, ("val_loss", "min"), progress=False)
    assert plain.time_cap is None and plain.early is None  # no time cap by default
    with pytest.raises(UserError, match="Lightning cannot run accelerator=tpu"):
        _make_trainer(TrainConfig(accelerator="tpu"), tmp_path, ("val_loss", "min"), progress=False)


def test_unknown_names_are_user_errors():
    with pytest.raises(UserError, match=r"unknown experiment 'nope'; choose one of: .*toy"):
        fit("nope")
    with pytest.raises(
        UserError, match=r"unknown model 'gpt' for experiment 'toy'; choose one of: linear, frozen, mlp"
    ):
        fit("toy", "gpt")


def test_ctrl_c_raises_keyboard_interrupt_and_the_run_can_resume(tmp_path, monkeypatch):
    real_loss = ToyExperiment.loss
    calls = 0

    def interrupted_loss(self, model, batch):
        nonlocal calls
        calls += 1
        if calls == 20:  # in the second epoch (16 steps per epoch)
            raise KeyboardInterrupt
        return real_loss(self, model, batch)

    monkeypatch.setattr(ToyExperiment, "loss", interrupted_loss)
    with pytest.raises(Interrupted, match=r"continue with the same command plus --resume \(run folder .*run\)"):
        fit("toy", run_dir=tmp_path / "run", progress=False, figures=False)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "run" / "metrics.json").exists()

    resumed = fit("toy", run_dir=tmp_path / "run", resume=True, progress=False, figures=False)
    assert resumed.epochs == 6 and calls == 20 + 5 * 16  # epochs 2-6 trained after the resume


def test_evaluate_must_return_scalars_with_fixed_names(tmp_path, monkeypatch):
    real_evaluate = ToyExperiment.evaluate

    def varying(self, model, batch):
        metrics = real_evaluate(self, model, batch)
        return metrics if batch[0].shape[0] == 32 else {"loss": metrics["loss"]}  # batches of 48, 48, 32

    monkeypatch.setattr(ToyExperiment, "evaluate", varying)
    with pytest.raises(ValueError, match=r"returned metrics \['loss', 'mae'\] after \['loss'\]"):
        fit("toy", "frozen", ["batch_size=48"], run_dir=tmp_path / "a", progress=False)

    monkeypatch.setattr(ToyExperiment, "evaluate", lambda self, model, batch: {"loss": model(batch[0]) - batch[1]})
    with pytest.raises(ValueError, match=r"returned 'loss' with shape \(32,\); each metric must be a scalar"):
        fit("toy", "frozen", run_dir=tmp_path / "b", progress=False)


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_full_precision_runs_take_the_fused_optimizer_which_steps_as_the_plain_one(optimizer):
    splits = DataSplits(*(TensorDataset(torch.arange(4)) for _ in range(3)))
    x, y = torch.randn(8, 3), torch.randn(8, 1)

    def trained(precision: str) -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 1))
        config = TrainConfig(optimizer=optimizer, weight_decay=0.1, scheduler="none", precision=precision)
        opt = TaskModule(ToyExperiment(ToyConfig()), model, config, splits).configure_optimizers()
        for _ in range(3):
            opt.zero_grad()
            (model(x) - y).pow(2).mean().backward()
            opt.step()
        return model, opt

    (fused_model, fused), (plain_model, plain) = trained("32-true"), trained("bf16-mixed")
    # Lightning refuses to clip a fused optimiser's gradients under mixed precision: the plain one there
    assert fused.defaults["fused"] is True and not plain.defaults["fused"]
    for a, b in zip(fused_model.parameters(), plain_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    assert not torch.allclose(fused_model[0].weight, nn.Linear(3, 4).weight, atol=1e-4)  # the steps moved it
