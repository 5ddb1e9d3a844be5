"""The run report without a browser: attention helpers and files, the five seed tasks' attention,
the page builder (sections, values, size caps), bad input, the engine and demo hooks."""

from __future__ import annotations

import base64
import csv
import importlib.util
import json
import logging
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from attnlab import registry
from attnlab.cli import main
from attnlab.demo import write_demo_index
from attnlab.errors import UserError
from attnlab.nn.maps import (
    AttentionMap,
    AttentionSample,
    infer_kind,
    layer_role,
    merge_calls,
    record_maps,
    samples_from_maps,
)
from attnlab.report import build_report, load_attention, read_run, save_attention
from attnlab.report.attention import ATTENTION_FILE_BUDGET, fit_budget
from attnlab.report.files import write_baselines
from attnlab.report.page import ATTENTION_BUDGET, MAX_SIDE, attention_payload
from attnlab.train import RunResult
from attnlab.train.config import resolve
from attnlab.train.weights import build_model

SRC = Path(__file__).resolve().parents[1] / "src"

# ---------------------------------------------------------------------------------------------- helpers


def _sample(title: str, shapes: dict[str, tuple[int, int, int]], seed: int = 0) -> AttentionSample:
    g = torch.Generator().manual_seed(seed)
    maps = []
    for layer, (h, q, k) in shapes.items():
        w = torch.rand(h, q, k, generator=g).softmax(-1)
        maps.append(AttentionMap(layer, infer_kind(layer), w, [f"q{i}" for i in range(q)], [f"k{j}" for j in range(k)]))
    return AttentionSample(title, maps)


def _fake_run(root: Path, *, metrics: bool = True, logs: bool = True, figures: int = 1,
              attention: list[AttentionSample] | None = None, note: str = "") -> Path:
    """A run folder as `attnlab fit` writes it, with parts left out on request."""
    root.mkdir(parents=True)
    config = {"format": 1, "experiment": "toyx", "model": "attn", "train": {"lr": 0.001, "max_epochs": 3},
              "experiment_config": {"n": 10}, "model_config": {"d_model": 8}, "monitor": ["val_mse", "min"]}
    (root / "config.json").write_text(json.dumps(config))
    if metrics:
        history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 2.0 / e, "val_mse": 0.5 / e, "lr": 0.001}
                   for e in (1, 2, 3)]
        data = {"experiment": "toyx", "model": "attn", "monitor": ["val_mse", "min"],
                "test": {"loss": 0.125, "mse": 0.0123456789}, "val": {"loss": 0.25, "mse": 0.0234},
                "params": 1234, "trainable_params": 1234, "train_seconds": 1.5, "epochs": 3,
                "figures": [f"figures/f{i}.png" for i in range(figures)], "history": history}
        (root / "metrics.json").write_text(json.dumps(data))
    if logs:
        (root / "logs" / "version_0").mkdir(parents=True)
        with (root / "logs" / "version_0" / "metrics.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "step", "train_loss_step", "train_loss", "val_loss"])
            w.writerows([[0, 9, 0.9, "", ""], [0, 19, 0.7, "", ""], [0, 19, "", "", 0.6], [0, 19, "", 0.8, ""]])
    if figures:
        (root / "figures").mkdir()
        for i in range(figures):
            plt.imsave(root / "figures" / f"f{i}.png", np.linspace(0, 1, 64).reshape(8, 8))
    if attention is not None:
        save_attention(root, attention, note)
    return root


def _report_data(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    assert match, "the report embeds its data"
    return json.loads(match.group(1))


def _decode(m: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(m["b64"]), dtype="<f4").reshape(m["heads"], m["q"], m["k"])


# ---------------------------------------------------------------------------------------------- attention helpers


def test_merge_calls_stacks_kv_cached_decoder_steps_and_pads_unseen_keys():
    steps = [torch.rand(2, 3, 1, t + 1).softmax(-1) for t in range(3)]  # step t: one query over t + 1 keys
    merged = merge_calls(steps)
    assert merged.shape == (2, 3, 3, 3)
    for t, w in enumerate(steps):
        assert torch.equal(merged[:, :, t, : t + 1], w[:, :, 0])
        assert (merged[:, :, t, t + 1 :] == 0).all()
    single = merge_calls([torch.rand(2, 4, 5)])  # Attention layers record (B, Q, K): one head
    assert single.shape == (2, 1, 4, 5)
    prefix = [torch.rand(2, 3, t + 1, 4) for t in range(3)]  # no cache: call t re-runs t + 1 rows
    newest = merge_calls(prefix, newest_only=True)
    assert newest.shape == (2, 3, 3, 4) and torch.equal(newest[:, :, 2], prefix[2][:, :, 2])
    with pytest.raises(ValueError, match="at least one"):
        merge_calls([])


def test_samples_from_maps_splits_examples_labels_and_crops_padding():
    maps = {"encoder.layers.0.self_attn": torch.rand(2, 4, 5, 5), "decoder.layers.0.cross_attn": torch.rand(2, 4, 3, 5)}
    tokens = [["a", "b", "c", "d", "e"], ["x", "y", "z"]]  # example 1 is padded to 5
    targets = [["A", "B", "C"], ["X", "Y"]]

    def labels(i, layer, kind):
        return (tokens[i], tokens[i]) if kind == "self" else (targets[i], tokens[i])

    samples = samples_from_maps(maps, ["first", "second"], labels)
    assert [s.title for s in samples] == ["first", "second"]
    enc, cross = samples[1].maps
    assert (enc.kind, cross.kind) == ("self", "cross")
    assert enc.weights.shape == (4, 3, 3) and torch.equal(enc.weights, maps["encoder.layers.0.self_attn"][1, :, :3, :3])
    assert cross.weights.shape == (4, 2, 3) and cross.query_labels == ["X", "Y"]
    with pytest.raises(ValueError, match="6 query and 5 key labels"):
        samples_from_maps(maps, ["a", "b"], lambda i, layer, kind: (list("abcdef"), list("abcde")))
    with pytest.raises(ValueError, match="kind 'bogus'"):
        samples_from_maps(maps, ["a", "b"], labels, kind=lambda name: "bogus")


def test_infer_kind_from_layer_names():
    assert infer_kind("decoder.layers.1.cross_attn") == "cross"
    assert infer_kind("encoder.layers.0.self_attn") == "self"
    assert infer_kind("pool") == "pooling"


def test_infer_kind_from_the_module_and_shape_when_the_name_does_not_say():
    from attnlab.nn import Attention, DotScore, MultiHeadAttention

    mha = MultiHeadAttention(8, 2)
    assert infer_kind("decoder.attn", mha, 4, 16) == "cross"  # queries are not the keys
    assert infer_kind("encoder.attn", mha, 16, 16) == "self"
    assert infer_kind("attention", Attention(DotScore()), 16, 16) == "pooling"
    assert infer_kind("decoder.cross", Attention(DotScore()), 1, 16) == "cross"  # the name decides first


def test_record_maps_gives_each_layer_its_kind():
    from attnlab.nn import Decoder

    model = Decoder(num_layers=1, d_model=8, num_heads=2, d_ff=16)
    _, maps = record_maps(model, lambda: model(torch.randn(2, 3, 8), torch.randn(2, 5, 8)))
    assert {name: maps.kinds[name] for name in maps} == {"layers.0.self_attn": "self", "layers.0.cross_attn": "cross"}
    assert [tuple(w.shape) for w in maps.values()] == [(2, 2, 3, 3), (2, 2, 3, 5)]


def test_record_maps_restores_training_mode_and_gives_nothing_without_attention():
    gru = torch.nn.GRU(2, 3, batch_first=True).train()
    out, maps = record_maps(gru, lambda: gru(torch.zeros(1, 4, 2)))
    assert maps == {} and gru.training and out[0].shape == (1, 4, 3)


def test_save_and_load_attention_round_trip(tmp_path):
    samples = [_sample("one", {"encoder.layers.0.self_attn": (4, 6, 6), "pool": (1, 1, 6)}, seed=1),
               _sample("two", {"encoder.layers.0.self_attn": (4, 3, 3), "pool": (1, 1, 3)}, seed=2)]
    save_attention(tmp_path, samples)
    loaded = load_attention(tmp_path)
    assert [s.title for s in loaded] == ["one", "two"]
    for a, b in zip(samples, loaded, strict=True):
        for ma, mb in zip(a.maps, b.maps, strict=True):
            assert (ma.layer, ma.kind, ma.query_labels, ma.key_labels) == (mb.layer, mb.kind, mb.query_labels,
                                                                           mb.key_labels)
            assert mb.weights.dtype == torch.float32 and torch.equal(ma.weights, mb.weights)
    save_attention(tmp_path, [], note="GRU has no attention layers")
    assert load_attention(tmp_path) == [] and not (tmp_path / "attention.safetensors").exists()
    with pytest.raises(ValueError, match="do not match"):
        bad = AttentionMap("x", "self", torch.rand(1, 2, 2), ["a"], ["a", "b"])
        save_attention(tmp_path, [AttentionSample("bad", [bad])])


def test_load_attention_names_missing_and_damaged_files(tmp_path):
    with pytest.raises(UserError, match="no saved attention.*attention.json not found"):
        load_attention(tmp_path)
    save_attention(tmp_path, [_sample("one", {"pool": (1, 1, 4)})])
    meta = json.loads((tmp_path / "attention.json").read_text())
    meta["samples"][0]["maps"][0]["key_labels"] = ["a", "b"]  # 2 labels for 4 keys
    (tmp_path / "attention.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"does not match .*attention.safetensors .*labels say \(H, 1, 2\)"):
        load_attention(tmp_path)
    (tmp_path / "attention.json").write_text('{"samples": [')
    with pytest.raises(UserError, match="attention.json is damaged"):
        load_attention(tmp_path)


# ---------------------------------------------------------------------------------------------- the seed tasks

SMALL = {"count": ["n_train=8", "n_val=8", "n_test=8"], "sine": ["n_train=4", "n_val=4", "n_test=4"],
         "squares": ["n_train=8", "n_val=4", "n_test=8"], "kernel_regression": [], "digits_vit": []}
SEED_MODELS = [(e, m) for e in SMALL for m in registry.get_experiment(e).models]
WITHOUT_ATTENTION = {("sine", "gru"), ("count", "gru"), ("squares", "seq2seq"), ("digits_vit", "mlp")}


def _untrained(experiment: str, model: str):
    torch.manual_seed(0)
    cls = registry.get_experiment(experiment)
    _, spec = registry.get_model(cls, model)
    config = resolve(cls, model, spec, SMALL[experiment])
    task = cls.create(config.experiment_config)
    return task, build_model(spec, config.model_config).eval(), task.data(0)


@pytest.mark.parametrize(("experiment", "model"), SEED_MODELS)
def test_seed_tasks_give_labelled_attention_rows_that_sum_to_one(experiment, model, torch_single_thread):
    task, net, data = _untrained(experiment, model)
    samples = task.attention_samples(net, data, limit=3)
    if (experiment, model) in WITHOUT_ATTENTION:
        assert samples == []
        return
    assert 1 <= len(samples) <= 3
    for sample in samples:
        assert sample.title and sample.maps
        for m in sample.maps:
            h, q, k = m.weights.shape
            assert (q, k) == (len(m.query_labels), len(m.key_labels)) and m.kind in ("self", "cross", "pooling")
            torch.testing.assert_close(m.weights.sum(-1), torch.ones(h, q), atol=1e-5, rtol=0)


def test_count_attention_is_the_pooling_the_figure_draws_with_digits_as_keys(torch_single_thread):
    from attnlab.experiments.count import pooling_weights

    task, net, data = _untrained("count", "transformer")
    samples = task.attention_samples(net, data, limit=2)
    X = data.test[:2][0]
    _, weights = pooling_weights(net, X)
    for i, sample in enumerate(samples):
        maps = {m.layer: m for m in sample.maps}
        assert list(maps) == ["encoder.layers.0.self_attn", "encoder.layers.1.self_attn", "pool"]
        assert maps["pool"].query_labels == ["query"] and maps["pool"].key_labels == [str(d) for d in X[i].tolist()]
        torch.testing.assert_close(maps["pool"].weights[0, 0], weights[i].detach())
        assert maps["encoder.layers.0.self_attn"].query_labels == maps["pool"].key_labels


def test_squares_transformer_lists_self_and_cross_attention_per_decoder_step(torch_single_thread):
    from attnlab.experiments.squares import decoder_alphas, figure_squares

    task, net, data = _untrained("squares", "transformer")
    sample = task.attention_samples(net, data, limit=1)[0]
    first = int(figure_squares(data).min())
    assert sample.in_figures and sample.title.startswith(f"test square {first}: ")
    kinds = {m.layer: m.kind for m in sample.maps}
    assert kinds["decoder.layers.1.cross_attn"] == "cross" and kinds["decoder.layers.0.self_attn"] == "self"
    cross = next(m for m in sample.maps if m.layer == "decoder.layers.1.cross_attn")
    assert [s[:3] for s in cross.query_labels] == ["→c3", "→c4"] and [s[:2] for s in cross.key_labels] == ["c1", "c2"]
    _, alphas = decoder_alphas(net, data.test[first : first + 1][0], steps=2)  # (1, steps, S), mean over heads
    torch.testing.assert_close(cross.weights.mean(0), alphas[0])
    dec_self = next(m for m in sample.maps if m.layer == "decoder.layers.0.self_attn")
    assert dec_self.weights[:, 0, 1].abs().max() == 0  # step 1 is not visible from step 0 (causal, KV cache)


def test_digits_vit_labels_patches_and_matches_class_token_attention(torch_single_thread):
    from attnlab.models.vit import class_token_attention

    task, net, data = _untrained("digits_vit", "vit")
    samples = task.attention_samples(net, data, limit=2)
    last = samples[0].maps[-1]
    g = net.grid_size
    assert last.key_labels[0] == "cls" and last.key_labels[1 + g + 1] == f"p{g + 1} (r1,c1)"
    assert "label 0" in samples[0].title and "label 1" in samples[1].title  # one image per class
    image = data.test.images[[int((data.test.labels == 0).nonzero()[0, 0])]]
    _, cls_grid = class_token_attention(net, image)
    torch.testing.assert_close(last.weights[:, 0, 1:].mean(0), cls_grid[0].flatten())


def test_kernel_regression_axes_are_query_and_key_x(torch_single_thread):
    task, net, data = _untrained("kernel_regression", "nadaraya_watson")
    val, test = task.attention_samples(net, data, limit=4)
    assert val.maps[0].query_labels == [f"{x:.2f}" for x in data.val.x.tolist()]
    assert val.maps[0].key_labels == [f"{x:.2f}" for x in data.val.keys.tolist()]
    assert test.maps[0].query_labels == sorted(test.maps[0].query_labels, key=float)
    assert val.maps[0].kind == "pooling" and len(task.attention_samples(net, data, limit=1)) == 1


def test_sine_maps_are_causal_over_time_steps_and_start_with_the_figures_series(torch_single_thread):
    from attnlab.experiments.sine import attention_maps, figure_series

    task, net, data = _untrained("sine", "transformer")
    first, second = task.attention_samples(net, data, limit=2)
    drawn = figure_series([data.test[i] for i in range(len(data.test))])[0]  # the attention figure's series
    assert first.in_figures and not second.in_figures and first.title.startswith(f"test series {drawn} ")
    m = first.maps[0]
    assert m.query_labels[:3] == ["t0", "t1", "t2"] and len(m.query_labels) == min(80, len(data.test[drawn]) - 1)
    assert torch.triu(m.weights, diagonal=1).abs().max() == 0
    weights, titles = attention_maps(net, data.test[drawn][:-1][:80].view(1, -1, 1))
    torch.testing.assert_close(m.weights, weights[0])  # the figure's first layer, every head
    assert titles[0] == "Encoder self-attention, layer 1, head 1"  # layers and heads from 1, as on the page


# ---------------------------------------------------------------------------------------------- the page


def test_report_shows_every_section_results_first_with_the_run_values(tmp_path):
    samples = [_sample("sample A", {"encoder.layers.0.self_attn": (2, 5, 5), "decoder.layers.0.cross_attn": (2, 3, 5)})]
    run = _fake_run(tmp_path / "run", attention=samples)
    with (run / "forecasts.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["t", "actual", "forecast"]] + [[i, i * 0.5, i * 0.25] for i in range(50)])
    translations = {"bleu": 31.5, "samples": [{"source": "hallo welt", "reference": "hello world",
                                               "hypothesis": "hello world </script>"}]}
    (run / "translations.json").write_text(json.dumps(translations))
    path = build_report(run)
    assert path == run / "report.html"
    page = path.read_text()
    order = [page.index(f'<section id="{s}">') for s in
             ("results", "figures", "attention", "curves", "outputs", "config")]
    assert order == sorted(order)  # results first, configuration last
    assert "<details><summary>Resolved configuration" in page  # collapsed
    assert 'data-missing-count="0"' in page
    assert "<td>mse</td><td>lower is better</td><td>0.0123457</td><td>0.0234</td>" in page  # test and validation
    assert '<div class="card" data-metric="mse"' in page and "0.01235" in page  # the monitor's metric as a card
    assert "<td>d_model</td><td>8</td>" in page
    assert page.count("<img src=\"data:image/png;base64,") == 1
    assert "20 of 50 rows" in page and "bleu: 31.5" in page and "hello world &lt;/script&gt;" in page
    for ident in ("attn-sample", "attn-layer", "attn-head", "attn-scale", "attn-heatmap", "attn-readout",
                  "model-view", "attn-export-png", "attn-export-svg"):
        assert f'id="{ident}"' in page
    assert "plotly" not in page.lower() and "<script src" not in page  # no library, nothing fetched
    data = _report_data(page)
    charts = {c["id"]: c for c in data["charts"]}
    epochs = charts["curve-epochs"]
    assert {t["name"]: t["y"] for t in epochs["series"]} == {"train_loss": [1.0, 0.5, 1 / 3],
                                                             "val_loss": [2.0, 1.0, 2 / 3]}
    assert epochs["integer_x"] and epochs["log"] is True  # losses over a factor of 6: a log axis
    assert charts["curve-val_mse"]["series"][0]["y"] == [0.5, 0.25, 0.5 / 3]  # the monitor: its own y-axis
    assert charts["curve-steps"]["series"][0]["y"] == [0.9, 0.7] and charts["curve-steps"]["title"]
    maps = data["attention"]["samples"][0]["maps"]
    assert [m["kind"] for m in maps] == ["self", "cross"]
    assert [m["role"] for m in maps] == ["Encoder self-attention, layer 1", "Decoder cross-attention, layer 1"]
    np.testing.assert_array_equal(_decode(maps[1]), samples[0].maps[1].weights.numpy())


def test_results_show_warnings_how_training_stopped_notes_and_baselines(tmp_path):
    run = _fake_run(tmp_path / "run", figures=0, attention=[])
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "experiment": "sine", "monitor": ["val_mse", "min"]}))
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.update(experiment="sine", test={"loss": 6.2e-05, "mse": 6.2e-05}, val={"loss": 7e-05, "mse": 7e-05},
                   steps=120, stopped_by="time",
                   warnings=["the time cap max_time_s=40 stopped training after 1 epoch(s): raise max_time_s"])
    (run / "metrics.json").write_text(json.dumps(metrics))
    write_baselines(run, {"repeat the last value": {"mse": 0.0123}})
    page = build_report(run).read_text()
    results = page[page.index('<section id="results">'):page.index('<section id="figures">')]
    assert '<div id="warnings" class="warning">' in results and "the time cap max_time_s=40 stopped" in results
    assert "stopped by the time cap (max_time_s)" in results and "3 epochs, 120 steps" in results
    cards = re.findall(r'<div class="card" data-metric="(\w+)"', results)
    assert cards == ["mse"]  # the loss equals the mse: one card
    assert "one-step-ahead" in results and "↓ lower is better" in results  # what the number is, its direction
    assert "repeat the last value 0.0123" in results and "baseline: repeat the last value (test)" in results
    assert "baselines.json" not in page  # read as baselines, not shown as a task output


def test_a_monitor_equal_to_the_loss_is_drawn_once_on_one_axis(tmp_path):
    run = _fake_run(tmp_path / "run", figures=0, attention=[])
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["history"] = [{"epoch": e, "train_loss": 10.0 / e**3, "val_loss": 1.0 / e**3, "val_mse": 1.0 / e**3}
                          for e in (1, 2, 3)]
    (run / "metrics.json").write_text(json.dumps(metrics))
    charts = _report_data(build_report(run).read_text())["charts"]
    assert [c["id"] for c in charts] == ["curve-epochs", "curve-steps"]
    assert [s["name"] for s in charts[0]["series"]] == ["train_loss", "val_loss (= val_mse)"]
    assert charts[0]["log"] is True  # 0.037 to 10: log scale
    metrics["history"] = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 0.9 / e} for e in (1, 2)]
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert _report_data(build_report(run).read_text())["charts"][0]["log"] is False  # a factor of 2.2: linear


def test_curves_come_from_the_history_and_the_logs(tmp_path):
    contents = read_run(_fake_run(tmp_path / "run", attention=[]))
    assert contents.epoch_curves == {"train_loss": [(1, 1.0), (2, 0.5), (3, 1 / 3)],
                                     "val_loss": [(1, 2.0), (2, 1.0), (3, 2 / 3)],
                                     "val_mse": [(1, 0.5), (2, 0.25), (3, 0.5 / 3)]}
    assert contents.step_curve == [(9, 0.9), (19, 0.7)]
    unfinished = read_run(_fake_run(tmp_path / "unfinished", metrics=False, attention=None))
    assert unfinished.epoch_curves == {"train_loss": [(1, 0.8)], "val_loss": [(1, 0.6)]}  # from the CSV


def test_partial_run_gives_a_report_naming_the_missing_parts(tmp_path):
    run = _fake_run(tmp_path / "run", metrics=False, logs=False, figures=0, attention=None)
    contents = read_run(run)
    assert len(contents.missing) == 5
    assert [m.split(" ")[0] for m in contents.missing] == ["metrics.json:", "training", "loss", "figures", "attention"]
    page = build_report(run).read_text()
    assert 'data-missing-count="5"' in page and "No attention saved" in page and "No figures" in page


def test_a_finished_run_without_figures_is_not_partial(tmp_path):
    run = _fake_run(tmp_path / "run", figures=0)  # metrics.json lists no figures: trained with --no-figures
    contents = read_run(run)
    assert not any(m.startswith("figures") for m in contents.missing)
    page = build_report(run).read_text()
    assert "This run drew no figures (trained with --no-figures" in page


def test_model_without_attention_says_why(tmp_path):
    run = _fake_run(tmp_path / "run", attention=[], note="GRUClassifier has no attention layers")
    page = build_report(run).read_text()
    assert "No attention to show: GRUClassifier has no attention layers" in page
    assert 'id="attn-heatmap"' not in page and 'data-missing-count="0"' in page


def test_report_stays_small_with_huge_attention_and_figures(tmp_path):
    big = {f"layers.{i}.self_attn": (8, 300, 300) for i in range(3)}
    run = _fake_run(tmp_path / "run", figures=0)
    save_attention(run, [_sample(f"s{i}", big, seed=i) for i in range(3)], budget=10**9)  # all of it, 26 MB
    (run / "figures").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):  # incompressible noise: ~1 MB PNGs
        plt.imsave(run / "figures" / f"noise{i}.png", rng.random((500, 500, 3)))
    page = build_report(run).read_text()
    assert len(page.encode()) < 3_500_000  # 1.5 MB of figures and 1.2 MB of weights, base64
    data = _report_data(page)
    embedded = [m for s in data["attention"]["samples"] for m in s["maps"]]
    assert embedded and all(m["q"] == MAX_SIDE and m["full_shape"] == [300, 300] for m in embedded)
    assert sum(m["heads"] * m["q"] * m["k"] * 4 for m in embedded) <= ATTENTION_BUDGET
    assert "Not embedded (over the report" in page and "s2 / layers.2.self_attn" in page
    assert f"Large maps show their first queries and keys only (e.g. {MAX_SIDE}×{MAX_SIDE} of 300×300)" in page
    assert 'src="figures/noise3.png"' in page and "linked, not embedded" in page


def test_saved_attention_keeps_a_byte_budget_and_names_what_it_leaves_out(tmp_path):
    big = {f"encoder.layers.{i}.self_attn": (4, 336, 336) for i in range(2)}  # 3.6 MB per example
    samples = [_sample(f"window {i}", big, seed=i) for i in range(3)]
    samples[0].in_figures = True
    save_attention(tmp_path, samples)
    assert (tmp_path / "attention.safetensors").stat().st_size <= ATTENTION_FILE_BUDGET + 10_000
    meta = json.loads((tmp_path / "attention.json").read_text())
    assert meta["dropped"] == [f"window {i} / encoder.layers.{j}.self_attn" for i in (1, 2) for j in (0, 1)]
    loaded = load_attention(tmp_path)
    assert len(loaded) == 1 and loaded[0].in_figures  # the first example is always kept, cropped
    for kept, full in zip(loaded[0].maps, samples[0].maps, strict=True):
        q, k = kept.weights.shape[1:]
        assert kept.full_shape == (336, 336) and 200 < q == k < 336 and kept.query_labels == full.query_labels[:q]
        torch.testing.assert_close(kept.weights, full.weights[:, :q, :k], rtol=0, atol=0)
    run = _fake_run(tmp_path / "run", figures=0, attention=samples)
    assert "Not saved by the run (over its attention budget): window 1 / encoder.layers.0.self_attn" in \
        build_report(run).read_text()
    small = [_sample(f"s{i}", {"pool": (1, 1, 6)}, seed=i) for i in range(3)]
    save_attention(tmp_path, small)  # under the budget: everything, uncropped
    assert len(load_attention(tmp_path)) == 3 and json.loads((tmp_path / "attention.json").read_text())["dropped"] == []


def test_fit_budget_keeps_the_maps_of_a_later_sample_that_fit():
    samples = [_sample("a", {"x.0.self_attn": (1, 10, 10)}), _sample("b", {"x.0.self_attn": (1, 10, 10),
                                                                          "x.1.self_attn": (1, 20, 20)})]
    kept, dropped = fit_budget(samples, budget=4 * 200)
    assert [s.title for s in kept] == ["a", "b"] and [m.layer for m in kept[1].maps] == ["x.0.self_attn"]
    assert dropped == ["b / x.1.self_attn"]


@pytest.mark.parametrize(("layer", "kind", "role"), [
    ("encoder.layers.0.self_attn", "self", "Encoder self-attention, layer 1"),
    ("decoder.layers.1.cross_attn", "cross", "Decoder cross-attention, layer 2"),
    ("decoder.layers.0.self_attn", "self", "Decoder self-attention, layer 1"),
    ("cross_attn.mha", "cross", "Decoder cross-attention"),
    ("pool", "pooling", "Attention pooling"),
    ("encoder.layers.2.self_attn [OT]", "self", "Encoder self-attention, layer 3, channel OT"),
    ("attention", "self", "Self-attention"),
])
def test_layers_are_named_by_role_and_numbered_from_1(layer, kind, role):
    assert layer_role(layer, kind) == role


def test_report_reads_only_regular_files_inside_the_run_folder(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:SECRET-ROW\n")
    run = _fake_run(tmp_path / "run", attention=[_sample("a", {"pool": (1, 1, 3)})])
    (run / "leak.csv").symlink_to(secret)  # a task output that is a link
    (run / "figures" / "leak.png").symlink_to(secret)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "metrics.csv").write_text("epoch,step,train_loss_step\n0,1,SECRET-ROW\n")
    (run / "logs" / "version_1").symlink_to(outside, target_is_directory=True)
    page = build_report(run).read_text()
    assert "SECRET-ROW" not in page and "root:x" not in page
    for name in ("leak.csv", "figures/leak.png", "logs/version_1/metrics.csv"):
        assert f"<li>{name}: a symbolic link or a path leading outside the run folder, not read</li>" in page
    (run / "config.json").rename(run / "real-config.json")
    (run / "config.json").symlink_to(run / "real-config.json")
    with pytest.raises(UserError, match="config.json is a symbolic link"):
        read_run(run)


def test_json_outputs_that_are_not_tables_are_outlined_not_dumped(tmp_path):
    run = _fake_run(tmp_path / "run", figures=0, attention=[])
    tokens = [f"tok{i}" for i in range(5000)]
    (run / "vocab.json").write_text(json.dumps({"format": 1, "options": {"lower": True},
                                                "source": {"specials": ["<pad>"], "tokens": tokens}}))
    page = build_report(run).read_text()
    assert "tok4999" not in page and "tok1" not in page
    assert "format: 1\noptions:\n  lower: True\nsource:\n  specials: list of 1 strings\n" \
           "  tokens: list of 5,000 strings" in page


def test_the_explorer_opens_on_the_first_sample_the_figures_draw():
    samples = [_sample(f"s{i}", {"pool": (1, 1, 3)}, seed=i) for i in range(3)]
    assert attention_payload(samples)[0]["default_sample"] == 0
    samples[1].in_figures = samples[2].in_figures = True
    payload, _ = attention_payload(samples)
    assert payload["default_sample"] == 1 and [s["in_figures"] for s in payload["samples"]] == [False, True, True]


def test_attention_payload_keeps_exact_float32_weights():
    sample = _sample("x", {"pool": (1, 1, 7)})
    payload, skipped = attention_payload([sample])
    assert skipped == []
    np.testing.assert_array_equal(_decode(payload["samples"][0]["maps"][0]), sample.maps[0].weights.numpy())


# ---------------------------------------------------------------------------------------------- bad input, CLI


def _cli(args, capsys) -> tuple[int, list[str], str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines(), captured.out


@pytest.mark.parametrize("case", ["not a folder", "no config", "truncated metrics", "damaged attention"])
def test_bad_run_folders_are_one_line_errors_and_write_nothing(tmp_path, capsys, case):
    run = tmp_path / "run"
    if case == "not a folder":
        run = tmp_path / "nope"
        expected = "not found; pass a run folder with RUN_DIR"
    elif case == "no config":
        run.mkdir()
        expected = "is not a run folder (no config.json)"
    elif case == "truncated metrics":
        _fake_run(run, attention=[])
        (run / "metrics.json").write_text((run / "metrics.json").read_text()[:40])
        expected = "metrics.json is truncated or not valid JSON"
    else:
        _fake_run(run, attention=[_sample("a", {"pool": (1, 1, 3)})])
        (run / "attention.safetensors").write_bytes(b"garbage")
        expected = "cannot read"
    code, err, _ = _cli(["report", str(run)], capsys)
    assert code == 2 and len(err) == 1 and expected in err[0] and err[0].startswith("attnlab: error: ")
    assert not (run / "report.html").exists()


def test_run_without_saved_attention_writes_the_partial_report_and_exits_2(tmp_path, capsys):
    run = _fake_run(tmp_path / "run", figures=1, attention=None)
    (run / "figures" / "f0.png").unlink()  # metrics.json lists a figure the folder lost
    code, err, out = _cli(["report", str(run)], capsys)
    assert code == 2 and len(err) == 1
    assert "no saved attention (attention.json); also missing: figures (figures/*.png)" in err[0]
    assert "wrote a partial report to" in err[0] and (run / "report.html").is_file()
    assert out.strip() == str(run / "report.html")


def test_report_command_on_a_complete_run(tmp_path, capsys, caplog):
    run = _fake_run(tmp_path / "run", figures=1, attention=[_sample("a", {"pool": (1, 1, 3)})])
    (run / "figures" / "f0.png").unlink()  # metrics.json lists a figure the folder lost
    with caplog.at_level(logging.WARNING):
        code, err, out = _cli(["report", str(run)], capsys)
    assert code == 0 and out.strip() == str(run / "report.html")
    assert "missing: figures" in caplog.text  # a partial run warns, the page names the part


# ---------------------------------------------------------------------------------------------- engine and demo


@pytest.fixture
def toy_registered():
    from toy_experiment import TOY

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry._EXPERIMENTS, TOY.name, TOY)
        yield


def test_fit_saves_attention_and_report_and_survives_a_failing_report(tmp_path, toy_registered, monkeypatch, caplog):
    from attnlab.train import engine, fit

    overrides = ["max_epochs=1", "n_train=64", "n_eval=32"]
    result = fit("toy", "linear", overrides, run_dir=tmp_path / "a", progress=False)
    assert (result.run_dir / "report.html").is_file()
    assert json.loads((result.run_dir / "attention.json").read_text())["note"] == "Linear has no attention layers"

    def broken(run_dir):
        raise RuntimeError("disk full")

    monkeypatch.setattr(engine, "build_report", broken)
    with caplog.at_level(logging.WARNING, logger="attnlab.train.engine"):
        result = fit("toy", "linear", overrides, run_dir=tmp_path / "b", progress=False)
    assert "could not write the report" in caplog.text and "disk full" in caplog.text
    assert (result.run_dir / "metrics.json").is_file() and not (result.run_dir / "report.html").exists()
    fit("toy", "linear", overrides, run_dir=tmp_path / "c", progress=False, report=False)
    assert not (tmp_path / "c" / "report.html").exists() and (tmp_path / "c" / "attention.json").is_file()


def test_demo_index_says_what_each_task_tests_and_links_each_report(tmp_path):
    (tmp_path / "count-gru").mkdir()
    (tmp_path / "count-gru" / "report.html").write_text("<html></html>")

    def result(experiment: str, model: str, **metrics: float) -> RunResult:
        return RunResult(run_dir=tmp_path / f"{experiment}-{model}", experiment=experiment, model=model,
                         metrics=metrics, val_metrics={}, params=1234, train_seconds=2.5, epochs=3,
                         monitor=registry.get_experiment(experiment).monitor)

    results = {("count", "gru"): result("count", "gru", accuracy=0.75, loss=0.5, bce=0.5),
               ("count", "transformer"): result("count", "transformer", accuracy=math.nan, mass_on_2_4=0.9),
               ("squares", "transformer"): result("squares", "transformer", mse=0.02, loss=0.02, mse_clean=0.01)}
    path = write_demo_index(tmp_path, results, [("PASS", "count: works", "accuracy 1.0")], seconds=12.0)
    page = path.read_text()
    assert path == tmp_path / "index.html"
    count = page[page.index('id="task-count"'):page.index('id="task-squares"')]
    assert registry.get_experiment("count").summary in count  # what the task tests
    assert "test accuracy <span class=\"better\">↑ higher is better</span>" in count
    assert '<a href="count-gru/report.html">report</a>' in count and '<td class="num">0.75</td>' in count
    assert "<td>loss ↓ 0.5, bce ↓ 0.5</td>" in count  # every other held-out metric, with its direction
    assert "<td>transformer</td><td class=\"num\">nan</td><td>mass_on_2_4 ↑ 0.9</td>" in count
    assert "no report" in count
    squares = page[page.index('id="task-squares"'):]
    assert "test mse <span class=\"better\">↓ lower is better</span>" in squares
    assert "<td>mse_clean ↓ 0.01</td>" in squares  # the loss equals the headline mse: left out
    assert '<span class="PASS">PASS</span> count: works: accuracy 1.0' in page and "1,234" in page
    assert "targets: 1 of 1 met" in page and ".card{" in page  # the run reports' stylesheet


# ---------------------------------------------------------------------------------------------- attnlab attention


def _export_run(tmp_path: Path) -> tuple[Path, list[AttentionSample]]:
    samples = [_sample("first", {"encoder.layers.0.self_attn": (2, 3, 3), "decoder.layers.1.cross_attn": (2, 2, 3)}),
               _sample("second", {"encoder.layers.0.self_attn": (2, 2, 2)}, seed=1)]
    return _fake_run(tmp_path / "run", figures=0, attention=samples), samples


def test_attention_command_writes_the_tidy_table_numbered_like_the_page(tmp_path, capsys):
    run, samples = _export_run(tmp_path)
    out = tmp_path / "weights.csv"
    code, err, printed = _cli(["attention", str(run), "--out", str(out)], capsys)
    assert code == 0 and err == [] and printed.strip().splitlines()[-1] == str(out)  # the path printed last
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["sample", "sample_title", "layer", "layer_name", "kind", "head", "query",
                             "query_label", "key", "key_label", "weight"]
    assert len(rows) == 2 * 3 * 3 + 2 * 2 * 3 + 2 * 2 * 2
    for row in rows:
        m = samples[int(row["sample"]) - 1].maps[0 if row["layer_name"].startswith("encoder") else 1]
        h, q, k = int(row["head"]) - 1, int(row["query"]), int(row["key"])  # heads from 1, positions from 0
        assert np.float32(row["weight"]) == m.weights[h, q, k].item()  # exact float32
        assert (row["query_label"], row["key_label"]) == (m.query_labels[q], m.key_labels[k])
    cross = next(r for r in rows if r["kind"] == "cross")
    assert cross["layer"] == "Decoder cross-attention, layer 2" and cross["sample_title"] == "first"
    assert _cli(["attention", str(run), "--out", str(out)], capsys)[0] == 0  # a previous export is replaced


def test_attention_command_parquet_needs_pyarrow(tmp_path, capsys, monkeypatch):
    run, _ = _export_run(tmp_path)
    out = tmp_path / "weights.parquet"
    if importlib.util.find_spec("pyarrow") is not None:
        assert _cli(["attention", str(run), "--out", str(out)], capsys)[0] == 0
        assert len(pd.read_parquet(out)) == 2 * 3 * 3 + 2 * 2 * 3 + 2 * 2 * 2  # as the CSV
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else True)
    code, err, _ = _cli(["attention", str(run), "--out", str(tmp_path / "other.parquet")], capsys)
    assert code == 2 and len(err) == 1 and "pip install pyarrow" in err[0]


@pytest.mark.parametrize("case", ["not a run", "no attention", "no attention layers", "user file", "folder",
                                  "suffix"])
def test_attention_command_errors_are_one_line_and_never_overwrite(tmp_path, capsys, case):
    run, _ = _export_run(tmp_path)
    out = tmp_path / "weights.csv"
    expected = {"not a run": "is not a run folder (no config.json)", "no attention": "has no saved attention",
                "no attention layers": "saved no attention to export: GRU has no attention layers",
                "user file": "exists and is not an attention table written by `attnlab attention`",
                "folder": "is a folder; give a file name", "suffix": "written as .csv or .parquet"}[case]
    if case == "not a run":
        run = tmp_path
    elif case == "no attention":
        (run / "attention.json").unlink()
    elif case == "no attention layers":
        save_attention(run, [], note="GRU has no attention layers")
    elif case == "user file":
        out.write_text("my,own,data\n1,2,3\n")
    elif case == "folder":
        out.mkdir()
    else:
        out = tmp_path / "weights.xlsx"
    code, err, _ = _cli(["attention", str(run), "--out", str(out)], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("attnlab: error: ") and expected in err[0]
    if case == "user file":
        assert out.read_text() == "my,own,data\n1,2,3\n"
    assert not list(tmp_path.glob("*.part"))


def test_report_commands_import_without_torch():
    code = ("import sys, attnlab.report.command as c, argparse; c.register(argparse.ArgumentParser()"
            ".add_subparsers()); heavy = {'torch', 'numpy', 'pandas', 'safetensors', 'matplotlib'} & set(sys.modules);"
            " assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(SRC)})


# ---------------------------------------------------------------------------------------------- figures


def test_forecast_attention_shares_the_series_time_axis_with_dates_at_the_data_frequency():
    from attnlab.experiments.forecast import DATE_FORMAT, label_format
    from attnlab.viz.forecast import plot_attention_over_input

    times = pd.date_range("2020-01-05", periods=40, freq="W")  # weekly, every stamp at midnight
    assert label_format(times) == DATE_FORMAT
    assert label_format(pd.date_range("2020", periods=3, freq="h")) != DATE_FORMAT
    steps = AttentionMap("encoder.layers.0.self_attn", "self", torch.rand(2, 40, 40).softmax(-1),
                         [str(t.date()) for t in times], [str(t.date()) for t in times])
    spans = [(i * 4, i * 4 + 8) for i in range(9)]  # 9 patches of 8 steps, stride 4
    patches = AttentionMap("encoder.layers.1.self_attn [OT]", "self", torch.rand(4, 9, 9).softmax(-1),
                           [f"p{i} …" for i in range(9)], [f"p{i} …" for i in range(9)])
    fig = plot_attention_over_input(times, np.random.default_rng(0).random((40, 1)), ["OT"], [steps, patches],
                                    key_spans=spans)
    fig.canvas.draw()
    series, first, second = (ax for ax in fig.axes if ax.get_title() != "" or ax.lines)
    for ax in (first, second):
        assert ax.get_shared_x_axes().joined(series, ax) and ax.get_xlim() == series.get_xlim()
        labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert labels and not any(":" in label for label in labels)  # no "00:00" on weekly data
    assert [first.get_title(), second.get_title()] == ["Encoder self-attention, layer 1 (mean of 2 heads)",
                                                       "Encoder self-attention, layer 2, channel OT (mean of 4 heads)"]
    plt.close(fig)


def test_count_loss_panel_has_whole_epoch_ticks():
    from attnlab.viz.count import plot_loss_only

    fig = plot_loss_only([{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e} for e in (1, 2, 3)])
    fig.canvas.draw()
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert [t for t in ax.get_xticks() if lo <= t <= hi] == [1, 2, 3]
    assert len([t for t in ax.get_yticklabels() if t.get_text()]) >= 2  # more than one label on the log axis
    plt.close(fig)
