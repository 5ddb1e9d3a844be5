"""Scale training contract (issue #26): one global batch shared among DDP ranks (the same training as one
process), only rank 0 writes, loader workers, the fused attention path under bf16 autocast, and
``attnlab bench scale`` end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from attnlab.train.module import GlobalBatchSampler, ShardSampler, loader_workers

SRC = Path(__file__).resolve().parents[1] / "src"


# ---------------------------------------------------------------------------------------------- global batches


@pytest.mark.parametrize("size, batch, world", [(10, 2, 3), (7, 2, 3), (12, 3, 2), (11691, 32, 2), (5, 4, 1)])
def test_ranks_share_each_global_batch_of_one_process(size, batch, world):
    ranks = [GlobalBatchSampler(size, batch, seed=4, rank=r, world_size=world) for r in range(world)]
    single = GlobalBatchSampler(size, batch * world, seed=4)
    for sampler in [*ranks, single]:
        sampler.set_epoch(2)
    steps = [list(s) for s in ranks]
    one = list(single)
    assert len({len(s) for s in steps}) == 1 and len(steps[0]) == len(one) == len(ranks[0])  # same steps everywhere
    for k, global_batch in enumerate(one):
        shares = [steps[r][k][: ranks[r].examples(k)] for r in range(world)]  # placeholders left out
        assert sorted(i for share in shares for i in share) == sorted(global_batch)
        # The averaged gradient of the weighted rank means is the global batch's mean gradient.
        grads = {i: float(i) for i in global_batch}
        average = sum(ranks[r].weight(k) * (np.mean([grads[i] for i in shares[r]]) if shares[r] else 0.0)
                      for r in range(world)) / world
        assert average == pytest.approx(np.mean([grads[i] for i in global_batch]))
        for r in range(world):
            assert len(steps[r][k]) >= 1  # an empty share is one example of weight 0
            if not shares[r]:
                assert ranks[r].weight(k) == 0.0
    # one process: the shuffle of ShardSampler, in batches
    alone = GlobalBatchSampler(size, batch, seed=4)
    alone.set_epoch(2)
    sampler = ShardSampler(size, 4, shuffle=True)
    sampler.set_epoch(2)
    assert [i for b in alone for i in b] == list(sampler) and all(alone.weight(k) == 1.0 for k in range(len(alone) - 1))


def test_loader_workers_auto():
    assert loader_workers(3, True, 1) == 3 and loader_workers(0, False, 4) == 0
    assert loader_workers("auto", True, 1, cpus=64) == 0  # the CPU computes: no workers beside it
    assert loader_workers("auto", False, 1, cpus=16) == 4
    assert loader_workers("auto", False, 8, cpus=16) == 1
    assert loader_workers("auto", False, 2, cpus=2) == 0


def test_num_workers_auto_is_the_default_and_parses():
    from attnlab.train.config import TrainConfig, check_train_config, convert, field_types

    assert TrainConfig().num_workers == "auto"
    tp = field_types(TrainConfig)["num_workers"]
    assert convert("2", tp) == 2 and convert("auto", tp) == "auto"
    with pytest.raises(ValueError):
        convert("many", tp)
    from attnlab.errors import UserError

    with pytest.raises(UserError, match="num_workers"):
        check_train_config(TrainConfig(num_workers=-1))


# ---------------------------------------------------------------------------------------------- bf16 autocast


def test_multi_head_attention_stays_fused_under_bf16_autocast(sdpa_spy):
    from attnlab.nn import MultiHeadAttention, reference_attention_enabled

    assert not reference_attention_enabled()
    mha = MultiHeadAttention(32, 4, dropout=0.1)
    x = torch.randn(3, 10, 32)
    dtypes = []
    real = torch.nn.functional.scaled_dot_product_attention

    def record(q, k, v, **kwargs):
        dtypes.append((q.dtype, k.dtype, v.dtype))
        return real(q, k, v, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.nn.functional, "scaled_dot_product_attention", record)
        for training in (True, False):
            mha.train(training)
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
                out, weights = mha(x, x, x)
            assert out.dtype == torch.bfloat16 and weights is None
    assert dtypes == [(torch.bfloat16,) * 3] * 2  # the fused kernel, in bf16, both in training and evaluation
    mask = torch.zeros(3, 10, dtype=torch.bool)
    mask[:, -2:] = True
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        mha.eval()
        mha(x, x, x, key_padding_mask=mask)
        mha(x, x, x, is_causal=True)
    assert sdpa_spy.calls == 4  # the two above, then padding and causal masks too


@pytest.mark.parametrize("name, config", [
    ("patch_transformer", {"patch_len": 8, "stride": 8, "d_model": 16, "num_layers": 2, "norm": "layer"}),
    ("horizon_attention", {"patch_len": 8, "d_model": 16}),
])
def test_forecast_attention_models_stay_fused_under_bf16_autocast(sdpa_spy, name, config):
    from attnlab import registry
    from attnlab.nn import MultiHeadAttention
    from attnlab.train.weights import build_model

    spec = registry.get_model(registry.get_experiment("forecast"), name)[1]
    model = build_model(spec, spec.config(seq_len=32, pred_len=8, n_channels=1, **config))
    layers = sum(isinstance(m, MultiHeadAttention) for m in model.modules())
    assert layers >= 2
    x = torch.randn(4, 32, 1)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = model(x)
        out.float().pow(2).mean().backward()
    assert sdpa_spy.calls == layers and torch.isfinite(out.float()).all()


# ---------------------------------------------------------------------------------------------- fits


def _panel_csv(tmp_path: Path, n: int = 24, length: int = 120) -> Path:
    from attnlab.data.generate import generate_panel

    pytest.importorskip("pyarrow")
    return generate_panel(tmp_path / "panel.parquet", n, length, seed=1).path


def _forecast(csv: Path, run_dir: Path, *overrides: str, cache: Path) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "attnlab", "forecast", "--csv", str(csv), "--exclude", "promo", "--horizon", "12",
            "--input-len", "48", "--model", "linear", "--run-dir", str(run_dir), "--no-progress", "--no-figures",
            "--forecast-windows", "all", "max_epochs=2", "min_steps_per_epoch=none", "threads=1", *overrides]
    env = {**os.environ, "ATTNLAB_CACHE": str(cache), "PYTHONPATH": str(SRC)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=run_dir.parent)


@pytest.mark.slow
def test_two_ddp_processes_train_as_one_at_equal_global_batch(tmp_path):
    csv = _panel_csv(tmp_path)
    cache = tmp_path / "cache"
    one, two = tmp_path / "one", tmp_path / "two"
    single = _forecast(csv, one, "batch_size=64", cache=cache)
    assert single.returncode == 0, single.stderr
    ddp = _forecast(csv, two, "batch_size=32", "devices=2", "strategy=ddp", cache=cache)
    assert ddp.returncode == 0, ddp.stderr
    assert ddp.stdout.count("run folder:") == 1  # the summary is printed once, by rank 0
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    windows = json.loads((one / "series.json").read_text())["windows"]["train"]
    assert windows % 64 not in (0, 1)  # the last global batch is partial, so it is shared unevenly
    assert a["steps"] == b["steps"] == 2 * -(-windows // 64)
    for x, y in zip(a["history"], b["history"], strict=True):
        assert abs(x["val_loss"] - y["val_loss"]) <= 1e-4
        assert abs(x["train_loss"] - y["train_loss"]) <= 1e-4
    assert abs(a["test"]["mse"] - b["test"]["mse"]) <= 1e-4
    # predictions of every test window, gathered in series order, as one process gives them
    fa, fb = (pd.read_csv(d / "forecasts.csv") for d in (one, two))
    assert list(fa.unique_id) == list(fb.unique_id) and list(fa.ds) == list(fb.ds)
    np.testing.assert_allclose(fa.y_forecast, fb.y_forecast, rtol=1e-4, atol=1e-4)
    assert fa.unique_id.is_monotonic_increasing
    # rank 0 wrote the run folder alone: one log version, no checkpoint left, weights once
    assert sorted(p.name for p in (two / "logs").iterdir()) == ["version_0"]
    assert not (two / "checkpoints").exists() and (two / "model.safetensors").is_file()


@pytest.mark.slow
def test_loader_workers_give_the_same_training(tmp_path):
    csv = _panel_csv(tmp_path, n=12)
    runs = []
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        done = _forecast(csv, out, "batch_size=64", f"num_workers={workers}", "max_epochs=1", cache=tmp_path / "c")
        assert done.returncode == 0, done.stderr
        runs.append(json.loads((out / "metrics.json").read_text()))
    assert runs[0]["history"] == runs[1]["history"] and runs[0]["test"] == runs[1]["test"]


@pytest.mark.slow
def test_bf16_mixed_forecast_fit_on_cpu_runs_the_fused_kernel(tmp_path, sdpa_spy, monkeypatch):
    from attnlab.forecast.api import forecast

    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path / "cache"))
    csv = _panel_csv(tmp_path, n=8)
    result = forecast(csv, "patch_transformer", ["precision=bf16-mixed", "max_epochs=1", "batch_size=64",
                                                 "model.patch_len=8", "model.stride=8", "model.d_model=16",
                                                 "model.norm=layer", "min_steps_per_epoch=none"],
                      run_dir=tmp_path / "run", progress=False, figures=False, exclude=("promo",), horizon=12,
                      input_len=48, forecast_windows=0)
    assert sdpa_spy.calls > 0 and np.isfinite(result.metrics["mse"])


@pytest.mark.slow
def test_bench_scale_end_to_end_at_a_tiny_size(tmp_path):
    pytest.importorskip("pyarrow")
    argv = [sys.executable, "-m", "attnlab", "bench", "scale", "--series", "40,80", "--length", "120", "--models",
            "linear", "--processes", "1,2", "--input-len", "24", "--horizon", "12", "--fixed-series", "10",
            "--fixed-repeats", "2", "--batch-size", "64", "--train-stride", "6", "--out", str(tmp_path / "bench")]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "| series | model | processes |" in out and "growth linear, 1 process(es)" in out
    assert out.count("at equal steps): met;") == 2
    fixed = re.findall(r"fixed cost linear, (\d) process\(es\) \(10 series\): median peak RSS (\d+) MiB of "
                       r"(\d+), (\d+)", out)
    assert [f[0] for f in fixed] == ["1", "2"]
    for _, median, a, b in fixed:  # the median of the two runs' peaks (printed rounded)
        assert abs(int(median) - (int(a) + int(b)) / 2) <= 1
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    jobs = results["jobs"]
    assert len(jobs) == 4 and all(not j["error"] for j in jobs)
    for n in (40, 80):
        pair = [j for j in jobs if j["series"] == n]
        assert abs(pair[0]["val_loss"] - pair[1]["val_loss"]) <= 1e-4 and pair[0]["steps"] == pair[1]["steps"]
        assert len(pair[1]["peak_rss_mib"]) == 2 and all(j["naive_mase"] > 0 for j in pair)
    assert [row["series"] for row in results["data"]] == [40, 80] and results["data"][1]["rows"] > 80 * 96


@pytest.mark.slow
def test_test_scores_summed_over_chunks_of_windows_equal_one_pass(tmp_path, monkeypatch):
    import attnlab.experiments.forecast as experiment
    import attnlab.experiments.forecast_scores as scores
    from attnlab.forecast.api import forecast

    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path / "cache"))
    csv = _panel_csv(tmp_path, n=30)
    runs = {}
    monkeypatch.setattr(experiment, "EVAL_BATCH", 8)  # the model sees the same batches in both runs
    monkeypatch.setattr(scores, "EVAL_BATCH", 8)
    for chunk in (16, 100_000):
        monkeypatch.setattr(scores, "SCORE_CHUNK", chunk)
        out = tmp_path / f"chunk{chunk}"
        forecast(csv, "linear", ["max_epochs=1", "batch_size=64", "min_steps_per_epoch=none"], run_dir=out,
                 progress=False, figures=False, exclude=("promo",), horizon=12, input_len=48, forecast_windows=0,
                 levels=(80,), test_size=36)  # three test windows per series
        runs[chunk] = out
    few, one = runs[16], runs[100_000]
    a, b = (json.loads((d / "metrics.json").read_text())["test"] for d in (few, one))
    assert a.keys() == b.keys() and "coverage_80" in a
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-12)
    x, y = (json.loads((d / "baselines.json").read_text())["baselines"] for d in (few, one))
    assert list(x) == list(y) == ["naive (last value)", "seasonal naive (season 24)", "ridge (closed form)",
                                  "seasonal naive"]
    for name in x:
        for key in x[name]:
            assert x[name][key] == pytest.approx(y[name][key], rel=1e-12)
    pd.testing.assert_frame_equal(pd.read_csv(few / "horizon_errors.csv"), pd.read_csv(one / "horizon_errors.csv"),
                                  rtol=1e-12)
