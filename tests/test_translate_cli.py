"""``attnlab translate``: bad input through the CLI, a run-folder round trip, and a small end-to-end fit."""

from __future__ import annotations

import io
import json
import random

import pytest

from attnlab import cli
from attnlab.translate import load_run

pytestmark = pytest.mark.usefixtures("torch_single_thread")

EN = "one two three four five six seven eight nine ten".split()
FR = "un deux trois quatre cinq six sept huit neuf dix".split()


def digits_corpus(path, n: int = 400, seed: int = 0):
    """Number words, English → French, 1-5 words each, ``n`` distinct sources."""
    rng = random.Random(seed)
    lines: dict[str, list[str]] = {}
    while len(lines) < n:
        idx = [rng.randrange(10) for _ in range(rng.randint(1, 5))]
        src = " ".join(EN[i] for i in idx).capitalize() + "."
        lines.setdefault(src, [" ".join(FR[i] for i in idx).capitalize() + "\u202f!"])
    text = "".join(f"{s}\t{t}\n" for s, targets in lines.items() for t in targets)
    path.write_text(text, encoding="utf-8")
    return path


def run_cli(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (None, [], "{path} not found; pass an existing corpus file (source<TAB>target) with --corpus"),
        ("a\tb\nno tab\nc\td\n", [], "{path}: 1 line(s) have no tab (line 2); every line must be source<TAB>target"),
        (b"a\tb\n\xff\xfe\tx\n", [], "{path}: line 2 is not valid UTF-8 (byte 0xff at byte 1)"),
        ("a\tb\n \tc\n", [], "{path}: 1 line(s) have an empty source or target (line 2)"),
        ("a\tb\nc\td\n", ["--test-size", "5"], "the corpus has 2 distinct source sentences, too few for test_size=5"),
    ],
)
def test_bad_corpora_exit_2_with_one_line(tmp_path, capsys, monkeypatch, content, extra, message):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "corpus.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    code, out, err = run_cli(["translate", "fit", "--corpus", str(path), "--no-progress", *extra], capsys)
    assert code == 2
    assert err.startswith("attnlab: error: " + message.format(path=path))
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_skip_bad_lines_reaches_the_next_check(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "corpus.txt"
    path.write_text("a\tb\nno tab\nc\td\n", encoding="utf-8")
    code, _, err = run_cli(["translate", "fit", "--corpus", str(path), "--skip-bad-lines", "--test-size", "5"], capsys)
    assert code == 2 and "too few for test_size=5" in err  # the tab-less line was skipped, not fatal


def test_translate_needs_a_run_and_a_sentence(tmp_path, capsys):
    assert run_cli(["translate", "i'm home ."], capsys)[2].startswith("attnlab: error: pass --run RUN")
    code, _, err = run_cli(["translate", "--run", str(tmp_path / "missing"), "hi"], capsys)
    assert code == 2 and "run folder" in err and "not found" in err
    code, _, err = run_cli(["translate", "--run", "y", "fit", "--corpus", "x"], capsys)
    assert code == 2 and "--run and --interactive are for translating" in err
    code, _, err = run_cli(["translate", "fit", "--corpus", "x", "--run", "y"], capsys)
    # after `fit`, --run belongs to fit's own options, which do not have it
    assert code == 2 and err == "attnlab: error: attnlab translate fit: unrecognized arguments: --run\n"
    code, _, err = run_cli(["translate", "fit", "--model"], capsys)
    assert code == 2 and err.startswith("attnlab: error: attnlab translate fit: ")


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory):
    """A translate run folder evaluated without training (max_epochs=0): fast, complete, gibberish output."""
    root = tmp_path_factory.mktemp("translate")
    corpus = digits_corpus(root / "digits.txt")
    out = root / "run"
    argv = ["translate", "fit", "--corpus", str(corpus), "--model", "transformer", "--test-size", "20",
            "--out", str(out), "--no-progress", "--no-figures", "data.val_size=20", "max_epochs=0",
            "model.d_model=16", "model.num_heads=2", "model.num_layers=1", "model.d_ff=32", "data.samples=5"]
    assert cli.main(argv) == 0
    return out


def test_run_folder_round_trip(untrained_run, capsys, tmp_path):
    files = {p.name for p in untrained_run.iterdir()}
    assert {"config.json", "metrics.json", "model.safetensors", "vocab.json", "translations.json"} <= files
    metrics = json.loads((untrained_run / "metrics.json").read_text())
    assert {"bleu", "chrf", "loss", "token_acc"} <= set(metrics["test"])
    sample = json.loads((untrained_run / "translations.json").read_text(encoding="utf-8"))
    assert len(sample["translations"]) == 5
    assert set(sample["translations"][0]) == {"source", "hypothesis", "references", "sentence_bleu"}

    translator = load_run(untrained_run)
    expected = translator.translate(["Three four."])[0]
    png = tmp_path / "attn.png"
    code, out, err = run_cli(["translate", "--run", str(untrained_run), "three four .", "--heatmap", str(png)], capsys)
    assert code == 0 and out == expected + "\n"  # normalised the same way: "Three four." == "three four ."
    assert png.stat().st_size > 1000 and "attention heatmap" in err
    # KV cache or not: same translation
    assert translator.translate(["three four ."], use_cache=False) == [expected]


def test_interactive_reads_stdin_and_survives_bad_lines(untrained_run, capsys, monkeypatch):
    translator = load_run(untrained_run)
    monkeypatch.setattr("sys.stdin", io.StringIO("one two .\n\nzzz qqq\nfive .\n"))
    code, out, err = run_cli(["translate", "--run", str(untrained_run), "--interactive", "--beam", "2"], capsys)
    assert code == 0
    assert out.splitlines() == translator.translate(["one two .", "five ."], beam=2)
    assert "none of the words of 'zzz qqq' is in the model's source vocabulary" in err


@pytest.mark.parametrize(("sentence", "message"), [
    ("  ", "the sentence to translate is empty"),
    ("xyzzy plugh", "none of the words of 'xyzzy plugh' is in the model's source vocabulary"),
])
def test_empty_or_unknown_sentence_exits_2(untrained_run, capsys, sentence, message):
    code, out, err = run_cli(["translate", "--run", str(untrained_run), sentence], capsys)
    assert code == 2 and err.startswith(f"attnlab: error: {message}") and err.count("\n") == 1


@pytest.mark.slow
def test_small_end_to_end_fit_learns_the_digits(tmp_path, capsys):
    corpus = digits_corpus(tmp_path / "digits.txt", n=600)
    out = tmp_path / "run"
    argv = ["translate", "fit", "--corpus", str(corpus), "--model", "luong", "--test-size", "50", "--beam", "3",
            "--out", str(out), "--no-progress", "--no-figures", "data.val_size=50", "batch_size=32",
            "max_epochs=25", "lr=5e-3", "warmup_steps=0", "model.embed_dim=32", "model.hidden_dim=64"]
    code, stdout, _ = run_cli(argv, capsys)
    assert code == 0 and "test  BLEU" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["bleu"] > 60 and metrics["test"]["chrf"] > 70
    history = [h["val_bleu"] for h in metrics["history"]]
    assert max(history) > history[0] + 30  # it learned
    translator = load_run(out)
    assert translator.translate(["One two three."], beam=3) == ["un deux trois !"]


def test_attention_samples_are_labelled_with_tokens(untrained_run):
    from attnlab.experiments.translate import Translate
    from attnlab.train import load_model

    model, config = load_model(untrained_run)
    task = Translate(config.experiment_config)
    samples = task.attention_samples(model, task.data(config.train.seed), limit=2)
    assert len(samples) == 2
    for m in samples[0].maps:
        _, q, k = m.weights.shape
        assert (len(m.query_labels), len(m.key_labels)) == (q, k)
    assert {(m.kind, m.layer.split(".")[0]) for m in samples[0].maps} == {
        ("self", "encoder"), ("self", "decoder"), ("cross", "decoder")}
    cross = next(m for m in samples[0].maps if m.kind == "cross")
    assert cross.key_labels[-1] == "<eos>" and " ".join(cross.key_labels[:-1]) in samples[0].title


# ---------------------------------------------------------------------------------------------- batches


def test_a_batch_is_batch_size_pairs_of_similar_length_in_the_order_buckets_had(tmp_path):
    """Items are sentence pairs; the task's batches are length buckets of ``train.batch_size`` pairs, reshuffled
    every epoch. ``batch_size=32`` gives exactly the batches, in the same order, that ``data.batch_sentences=32``
    with ``train.batch_size=1`` gave when the dataset's items were the buckets."""
    from types import SimpleNamespace

    import torch

    from attnlab.catalog.translate import TranslateConfig
    from attnlab.data.text import EOS_ID, length_buckets, make_batch
    from attnlab.experiments.translate import EncodedHeldOut, Translate
    from attnlab.train.config import TrainConfig
    from attnlab.train.module import ShardSampler, TaskModule

    task = Translate(TranslateConfig(corpus=str(digits_corpus(tmp_path / "digits.txt")), test_size=20, val_size=20))
    splits = task.data(3)
    pairs = [splits.train[i] for i in range(len(splits.train))]
    assert len(pairs) == 360 and all(src[-1] == EOS_ID and tgt[-1] == EOS_ID for src, tgt in pairs)
    module = TaskModule(task, torch.nn.Identity(), TrainConfig(batch_size=32, seed=3), splits)
    module.trainer = SimpleNamespace(global_rank=0, world_size=1)
    loader = module.train_dataloader()
    buckets = length_buckets([max(len(s), len(t)) for s, t in pairs], 32, seed=3)
    for epoch in (0, 1):
        loader.batch_sampler.sampler.set_epoch(epoch)
        order = ShardSampler(len(buckets), seed=3, shuffle=True)
        order.set_epoch(epoch)
        expected = [make_batch(*zip(*(pairs[i] for i in buckets[b]), strict=True)) for b in order]
        got = list(loader)
        assert [len(b) for b in got] == [len(b) for b in expected] and max(len(b) for b in got) == 32
        for a, b in zip(got, expected, strict=True):
            assert all(torch.equal(x, y) for x, y in zip(vars(a).values(), vars(b).values(), strict=True))
    held = list(module.val_dataloader())  # a held-out set is one item: corpus-level BLEU
    assert len(held) == 1 and isinstance(held[0], EncodedHeldOut) and len(held[0]) == 20


def test_a_run_saved_with_batch_sentences_loads_with_the_same_batches(untrained_run, tmp_path):
    import shutil

    from attnlab.train.weights import read_config

    old = tmp_path / "old"
    shutil.copytree(untrained_run, old)
    config = json.loads((old / "config.json").read_text())
    config["experiment_config"]["batch_sentences"] = 128  # how runs were saved: 1 bucket of 128 pairs a batch
    config["train"]["batch_size"] = 1
    (old / "config.json").write_text(json.dumps(config))
    loaded = read_config(old)
    assert loaded.train.batch_size == 128 and not hasattr(loaded.experiment_config, "batch_sentences")
    assert load_run(old).translate(["three four ."]) == load_run(untrained_run).translate(["three four ."])


@pytest.mark.parametrize(("buckets", "pairs", "batch_size"), [(1, 128, 128), (2, 64, 128), (3, 32, 96)])
def test_upgrade_saved_turns_buckets_of_pairs_into_pairs(buckets, pairs, batch_size):
    from attnlab.catalog.translate import TranslateConfig

    saved = {"train": {"batch_size": buckets, "lr": 0.002}, "experiment_config": {"batch_sentences": pairs,
                                                                                  "beam": 4}}
    upgraded = TranslateConfig.upgrade_saved(saved)
    assert upgraded["train"] == {"batch_size": batch_size, "lr": 0.002}
    assert upgraded["experiment_config"] == {"beam": 4}
    assert saved["experiment_config"]["batch_sentences"] == pairs  # the caller's dict is left alone
    today = {"train": {"batch_size": 1}, "experiment_config": {"beam": 4}}
    assert TranslateConfig.upgrade_saved(today) is today  # a config without the old key means what it says


def test_batch_sentences_is_no_longer_an_option(tmp_path, capsys):
    corpus = digits_corpus(tmp_path / "digits.txt", n=60)
    code, _, err = run_cli(["translate", "fit", "--corpus", str(corpus), "--out", str(tmp_path / "run"),
                            "--no-progress", "data.batch_sentences=32"], capsys)
    assert code == 2 and err.count("\n") == 1 and "batch_sentences" in err
