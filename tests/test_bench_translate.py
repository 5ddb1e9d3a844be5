"""attnlab bench translate: the parts that run in seconds (the benchmark itself takes about 35 minutes)."""

from __future__ import annotations

import pytest

from attnlab.bench.translate import _budgets


def test_epoch_budgets_per_model():
    models = ["transformer", "bahdanau", "seq2seq"]
    assert _budgets([], models) == {"transformer": 10, "bahdanau": 3, "seq2seq": 2}
    assert _budgets(["4", "transformer=12"], models) == {"transformer": 12, "bahdanau": 4, "seq2seq": 4}


@pytest.mark.parametrize(("value", "message"), [
    ("rnn=5", "--epochs 'rnn=5': 'rnn' is not one of the benchmarked models"),
    ("0", "--epochs '0' is out of range; it must be at least 1"),
    ("two", "--epochs 'two' is not N or MODEL=N"),
])
def test_bad_epochs_is_a_one_line_error(cli_error, tmp_path, value, message):
    corpus = tmp_path / "pairs.txt"
    corpus.write_text("hello .\tbonjour .\n", encoding="utf-8")
    err = cli_error(["bench", "translate", "--corpus", str(corpus), "--epochs", value])
    assert message in err


def test_bad_corpus_is_a_one_line_error_naming_the_override(cli_error, tmp_path):
    corpus = tmp_path / "pairs.txt"
    corpus.write_text("hello .\tbonjour .\nno tab here\n", encoding="utf-8")
    err = cli_error(["bench", "translate", "--corpus", str(corpus), "--out", str(tmp_path / "runs")])
    assert "1 line(s) have no tab (line 2)" in err and "data.skip_bad_lines=true" in err
    assert not (tmp_path / "runs").exists()
