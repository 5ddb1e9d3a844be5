"""Parallel-text data: normalisation, corpus reading and its errors, grouped split, vocabulary, batching."""

from __future__ import annotations

import pytest

from attnlab.data.text import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    Vocab,
    length_buckets,
    load_vocabs,
    make_batch,
    normalize,
    pad_batch,
    read_corpus,
    save_vocabs,
    split_by_source,
)
from attnlab.errors import UserError


def write(tmp_path, text: str | bytes, name: str = "corpus.txt"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_normalize_is_d2l_style():
    assert normalize("Go.") == "go ."
    assert normalize("Va\u202f! Cours, vite\xa0?") == "va ! cours , vite ?"
    assert normalize("I'm home.", lower=False) == "I'm home ."
    assert normalize("Hi,you!", space_punct=False) == "hi,you!"
    assert normalize("  a   b  ") == "a b"


def test_read_corpus_pairs_blank_lines_and_extra_columns(tmp_path):
    path = write(tmp_path, "Go.\tVa !\tCC-BY 2.0\n\nHi.\tSalut.\n")
    assert read_corpus(path) == [("go .", "va !"), ("hi .", "salut .")]


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"nope\.txt not found; pass an existing corpus file \(source<TAB>target\)"):
        read_corpus(tmp_path / "nope.txt")


def test_lines_without_tab_are_counted_and_numbered(tmp_path):
    lines = ["a\tb", "no tab here", "c\td", "also none", "x\ty", *[f"bad {i}" for i in range(6)]]
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(UserError) as err:
        read_corpus(path)
    message = str(err.value)
    assert "8 line(s) have no tab (line 2, 4, 6, 7, 8, …)" in message
    assert "--skip-bad-lines" in message and "\n" not in message
    assert read_corpus(path, skip_bad_lines=True) == [("a", "b"), ("c", "d"), ("x", "y")]


def test_empty_sides(tmp_path):
    path = write(tmp_path, "a\tb\n\tonly target\nonly source\t \n")
    with pytest.raises(UserError, match=r"2 line\(s\) have an empty source or target \(line 2, 3\)"):
        read_corpus(path)
    assert read_corpus(path, skip_bad_lines=True) == [("a", "b")]


def test_non_utf8_names_the_line(tmp_path):
    path = write(tmp_path, "a\tb\nc\td\ncaf\xe9\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"line 3 is not valid UTF-8 \(byte 0xe9 at byte 4\); re-encode the file"):
        read_corpus(path)


def test_no_pair_at_all(tmp_path):
    with pytest.raises(UserError, match="holds no source<TAB>target pair"):
        read_corpus(write(tmp_path, "\n\n"))


def corpus_pairs(n_sources: int = 40):
    pairs = []
    for i in range(n_sources):
        for j in range(1 + i % 3):  # 1, 2 or 3 targets per source
            pairs.append((f"src {i}", f"tgt {i} v{j}"))
    return pairs


def test_split_is_grouped_by_source_with_all_references():
    pairs = corpus_pairs()
    split = split_by_source(pairs, test_size=10, val_size=5, seed=3)
    train_sources = {s for s, _ in split.train}
    assert len(split.test.sources) == 10 and len(split.val.sources) == 5
    assert not train_sources & set(split.test.sources)
    assert not train_sources & set(split.val.sources)
    assert not set(split.val.sources) & set(split.test.sources)
    expected = {}
    for s, t in pairs:
        expected.setdefault(s, []).append(t)
    for source, refs in zip(split.test.sources, split.test.references, strict=True):
        assert refs == expected[source]  # every target of a test source is a reference
    assert len(split.train) + len(split.test.pairs) + len(split.val.pairs) == len(pairs)
    # fixed seed: same split; another seed: another split
    assert split_by_source(pairs, 10, 5, seed=3).test.sources == split.test.sources
    assert split_by_source(pairs, 10, 5, seed=4).test.sources != split.test.sources


def test_corpus_too_small_for_the_test_set():
    with pytest.raises(UserError, match=r"has 40 distinct source sentences, too few for test_size=2000 \+ val_size=5"):
        split_by_source(corpus_pairs(), test_size=2000, val_size=5)


def test_vocab_min_freq_specials_and_json_round_trip(tmp_path):
    sentences = [["le", "chat", "."], ["le", "chien", "."], ["un", "chat", "."]]
    vocab = Vocab.build(sentences, min_freq=2)
    assert vocab.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    assert vocab.itos[4:] == [".", "chat", "le"]  # by frequency, ties alphabetically; chien/un dropped
    ids = vocab.encode(["le", "chien", "."])
    assert ids == [vocab.stoi["le"], UNK_ID, vocab.stoi["."], EOS_ID]
    assert vocab.decode([BOS_ID, *ids, PAD_ID, vocab.stoi["le"]]) == ["le", "<unk>", "."]  # stops at <eos>
    src = Vocab.build([["go", "."]])
    path = save_vocabs(tmp_path / "vocab.json", src, vocab, {"lower": True, "space_punct": False})
    src2, tgt2, options = load_vocabs(path)
    assert src2 == src and tgt2 == vocab and tgt2.itos == vocab.itos
    assert options == {"lower": True, "space_punct": False}
    path.write_text("{not json")
    with pytest.raises(UserError, match="is not a vocabulary file written by attnlab"):
        load_vocabs(path)


def test_padding_and_teacher_forcing_batch():
    batch = make_batch([[5, 6, EOS_ID], [7, EOS_ID]], [[8, EOS_ID], [9, 10, 11, EOS_ID]])
    assert batch.src.tolist() == [[5, 6, EOS_ID], [7, EOS_ID, PAD_ID]]
    assert batch.src_lens.tolist() == [3, 2]
    assert batch.tgt_in.tolist() == [[BOS_ID, 8, PAD_ID, PAD_ID], [BOS_ID, 9, 10, 11]]
    assert batch.tgt_out.tolist() == [[8, EOS_ID, PAD_ID, PAD_ID], [9, 10, 11, EOS_ID]]
    assert batch.tgt_lens.tolist() == [2, 4]
    ids, lens = pad_batch([[4], [4, 5, 6]])
    assert ids.shape == (2, 3) and lens.tolist() == [1, 3]


def test_length_buckets_cover_every_index_once_with_similar_lengths():
    lengths = [(i * 7) % 13 for i in range(100)]
    buckets = length_buckets(lengths, batch_size=8, seed=1)
    flat = [i for b in buckets for i in b]
    assert sorted(flat) == list(range(100))
    assert [len(b) for b in buckets] == [8] * 12 + [4]
    spans = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in buckets]
    assert max(spans) <= 1  # 13 lengths in 100 items: a bucket of 8 spans at most two adjacent lengths
    assert length_buckets(lengths, 8, seed=1) == buckets  # the seed decides the ties
    assert length_buckets(lengths, 8, seed=2) != buckets
