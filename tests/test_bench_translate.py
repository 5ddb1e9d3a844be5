"""attnlab bench translate: the parts that run in seconds (the benchmark itself takes about 35 minutes)."""

from __future__ import annotations

import pytest

from attnlab.bench.translate import probe_batches


def test_probe_batches_span_every_length_bucket():
    # 558 length-ordered buckets, one per batch: from the first (shortest) to the last (longest), evenly
    assert probe_batches(558, 1, 8) == [[0], [80], [159], [239], [318], [398], [477], [557]]
    # two buckets a batch: consecutive items, the last batch ends on the last item
    assert probe_batches(9, 2, 3) == [[0, 1], [4, 5], [7, 8]]


@pytest.mark.parametrize(("n_items", "batch_size", "steps"), [(1, 1, 8), (3, 5, 4), (100, 7, 1)])
def test_probe_batches_stay_in_range(n_items, batch_size, steps):
    batches = probe_batches(n_items, batch_size, steps)
    assert len(batches) == steps and all(len(b) == batch_size for b in batches)
    assert all(0 <= i < n_items for b in batches for i in b)


def test_bad_minutes_is_a_one_line_error(cli_error, tmp_path):
    corpus = tmp_path / "pairs.txt"
    corpus.write_text("hello .\tbonjour .\n", encoding="utf-8")
    err = cli_error(["bench", "translate", "--corpus", str(corpus), "--minutes", "rnn=5"])
    assert "--minutes 'rnn=5': 'rnn' is not one of the benchmarked models" in err


def test_bad_corpus_is_a_one_line_error_naming_the_override(cli_error, tmp_path):
    corpus = tmp_path / "pairs.txt"
    corpus.write_text("hello .\tbonjour .\nno tab here\n", encoding="utf-8")
    err = cli_error(["bench", "translate", "--corpus", str(corpus), "--out", str(tmp_path / "runs")])
    assert "1 line(s) have no tab (line 2)" in err and "data.skip_bad_lines=true" in err
    assert not (tmp_path / "runs").exists()
