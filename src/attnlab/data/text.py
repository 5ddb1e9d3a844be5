"""Parallel text for translation: read a ``source<TAB>target`` corpus, normalise, tokenise, build
vocabularies, split held-out sets grouped by source sentence, group pairs of similar length and pad them.

The corpus format is that of the Tatoeba/Anki files (``fra.txt``): one pair per line, UTF-8, source and
target separated by a tab; any further tab-separated columns (Anki's attribution) are ignored.

Normalisation follows d2l: non-breaking spaces become spaces, text is optionally lower-cased, and a space
is put before ``, . ! ?`` so that punctuation marks are words of their own. The tokeniser splits on
whitespace (word level).

The held-out split is grouped by (normalised) source sentence: every pair whose source is a test source
goes to the test set, none to training, and all the targets the corpus gives for a test source are its
references. The same holds for the validation set.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from attnlab.errors import UserError
from attnlab.paths import readable_file

log = logging.getLogger(__name__)

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
_PUNCT = ",.!?"
_SHOWN_LINES = 5  # line numbers quoted in an error message


# ---------------------------------------------------------------------------------------------- text


def normalize(text: str, lower: bool = True, space_punct: bool = True) -> str:
    """d2l-style normalisation of one sentence.

    Non-breaking spaces (U+00A0, U+202F) become spaces; ``lower`` lower-cases; ``space_punct`` puts a
    space before each of ``, . ! ?`` that follows a non-space. Runs of whitespace collapse to one space.

    >>> normalize("Va\\u202f! Cours, vite.")
    'va ! cours , vite .'
    """
    text = text.replace("\u202f", " ").replace("\xa0", " ")
    if lower:
        text = text.lower()
    if space_punct:
        text = "".join(f" {ch}" if ch in _PUNCT and i > 0 and not text[i - 1].isspace() else ch
                       for i, ch in enumerate(text))
    return " ".join(text.split())


def tokenize(text: str) -> list[str]:
    """Word-level tokens of a normalised sentence (split on whitespace)."""
    return text.split()


def detokenize(tokens: Sequence[str]) -> str:
    """Join tokens with spaces (the normalised text form; BLEU re-tokenises it the same way on both sides)."""
    return " ".join(tokens)


# ---------------------------------------------------------------------------------------------- corpus


def _line_list(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:_SHOWN_LINES])
    return shown + (", …" if len(numbers) > _SHOWN_LINES else "")


# `attnlab translate` has the flag; `attnlab fit translate` and `attnlab bench translate` take the override.
_SKIP_HINT = "fix them, or skip them with --skip-bad-lines (or the override data.skip_bad_lines=true)"


def read_corpus(
    path: str | Path, lower: bool = True, space_punct: bool = True, skip_bad_lines: bool = False
) -> list[tuple[str, str]]:
    """Read a ``source<TAB>target`` file into normalised ``(source, target)`` pairs, in file order.

    Blank lines are ignored. Columns after the second are ignored.

    Args:
        path: the corpus file (UTF-8).
        lower, space_punct: see :func:`normalize`.
        skip_bad_lines: skip lines without a tab or with an empty side (logged as a warning) instead of
            raising.

    Raises:
        UserError: the file is missing, a line is not UTF-8 (its number is given), lines have no tab or an
            empty side (their count and first line numbers; unless ``skip_bad_lines``), or no pair is left.
    """
    path = readable_file(path, "corpus file (source<TAB>target)", "--corpus")
    pairs: list[tuple[str, str]] = []
    no_tab: list[int] = []
    empty_side: list[int] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise UserError(
                    f"{path}: line {number} is not valid UTF-8 (byte 0x{raw[err.start]:02x} at byte {err.start + 1}); "
                    "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                ) from None
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if "\t" not in line:
                no_tab.append(number)
                continue
            source, target = line.split("\t")[:2]
            source, target = normalize(source, lower, space_punct), normalize(target, lower, space_punct)
            if not source or not target:
                empty_side.append(number)
                continue
            pairs.append((source, target))
    if no_tab and not skip_bad_lines:
        raise UserError(
            f"{path}: {len(no_tab)} line(s) have no tab (line {_line_list(no_tab)}); every line must be "
            f"source<TAB>target — {_SKIP_HINT}"
        )
    if empty_side and not skip_bad_lines:
        raise UserError(
            f"{path}: {len(empty_side)} line(s) have an empty source or target (line {_line_list(empty_side)}); "
            f"{_SKIP_HINT}"
        )
    if no_tab or empty_side:
        log.warning("%s: skipped %d line(s) without a tab and %d with an empty side", path, len(no_tab),
                    len(empty_side))
    if not pairs:
        raise UserError(f"{path} holds no source<TAB>target pair; pass a tab-separated parallel corpus")
    return pairs


# ---------------------------------------------------------------------------------------------- vocabulary


class Vocab:
    """Token <-> id table with the specials ``<pad>=0 <bos>=1 <eos>=2 <unk>=3`` first.

    Args:
        tokens: the non-special tokens, in id order (ids 4, 5, …).
    """

    def __init__(self, tokens: Iterable[str]) -> None:
        self.itos: list[str] = list(SPECIALS)
        for token in tokens:
            if token in SPECIALS:
                raise ValueError(f"token {token!r} is reserved for a special")
            self.itos.append(token)
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary tokens must be unique")

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_freq: int = 1) -> Vocab:
        """Tokens seen at least ``min_freq`` times, most frequent first (ties alphabetically)."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be at least 1, got {min_freq}")
        counts = Counter(token for sentence in sentences for token in sentence)
        kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in SPECIALS),
                      key=lambda t: (-counts[t], t))
        return cls(kept)

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __hash__(self) -> int:
        return hash(tuple(self.itos))

    def encode(self, tokens: Sequence[str], eos: bool = True) -> list[int]:
        """Ids of ``tokens`` (unknown ones -> ``<unk>``), plus ``<eos>`` if asked."""
        ids = [self.stoi.get(t, UNK_ID) for t in tokens]
        return ids + [EOS_ID] if eos else ids

    def decode(self, ids: Iterable[int], strip: bool = True) -> list[str]:
        """Tokens of ``ids``; with ``strip``, stop at ``<eos>`` and drop ``<pad>``/``<bos>``."""
        out = []
        for i in ids:
            i = int(i)
            if strip and i == EOS_ID:
                break
            if strip and i in (PAD_ID, BOS_ID):
                continue
            out.append(self.itos[i])
        return out

    def to_dict(self) -> dict:
        return {"specials": list(SPECIALS), "tokens": self.itos[len(SPECIALS):]}

    @classmethod
    def from_dict(cls, data: dict) -> Vocab:
        if list(data.get("specials", [])) != list(SPECIALS):
            raise ValueError(f"vocabulary specials {data.get('specials')} differ from {list(SPECIALS)}")
        return cls(data["tokens"])


def save_vocabs(path: str | Path, source: Vocab, target: Vocab, options: dict) -> Path:
    """Write both vocabularies and the normalisation options as JSON (no pickle)."""
    path = Path(path)
    data = {"format": 1, "options": options, "source": source.to_dict(), "target": target.to_dict()}
    path.write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_vocabs(path: str | Path) -> tuple[Vocab, Vocab, dict]:
    """Read :func:`save_vocabs` output: ``(source vocab, target vocab, options)``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found; pass the folder of a run written by `attnlab translate fit`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Vocab.from_dict(data["source"]), Vocab.from_dict(data["target"]), dict(data.get("options", {}))
    except (json.JSONDecodeError, KeyError, ValueError) as err:
        raise UserError(f"{path} is not a vocabulary file written by attnlab ({err}); the run folder is damaged") \
            from None


# ---------------------------------------------------------------------------------------------- split


@dataclass
class HeldOut:
    """A held-out set grouped by source: ``sources[i]`` with all its ``references[i]`` (normalised text)."""

    sources: list[str] = field(default_factory=list)
    references: list[list[str]] = field(default_factory=list)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(s, r) for s, refs in zip(self.sources, self.references, strict=True) for r in refs]


@dataclass
class CorpusSplit:
    """Training pairs and held-out sets grouped by source sentence."""

    train: list[tuple[str, str]]
    val: HeldOut
    test: HeldOut


def split_by_source(
    pairs: Sequence[tuple[str, str]], test_size: int, val_size: int, seed: int = 0
) -> CorpusSplit:
    """Split pairs so that no held-out source sentence appears in training.

    Distinct sources are shuffled with ``seed``; the first ``test_size`` form the test set, the next
    ``val_size`` the validation set, the rest training. Each held-out source keeps every target the corpus
    gives for it as a reference (in file order).

    Raises:
        UserError: fewer than ``test_size + val_size + 1`` distinct sources.
    """
    if test_size < 1 or val_size < 1:
        raise UserError(f"test_size and val_size must be at least 1, got test_size={test_size} val_size={val_size}")
    groups: dict[str, list[str]] = {}
    for source, target in pairs:
        groups.setdefault(source, []).append(target)
    sources = list(groups)
    if len(sources) < test_size + val_size + 1:
        raise UserError(
            f"the corpus has {len(sources)} distinct source sentences, too few for test_size={test_size} + "
            f"val_size={val_size} held out plus training; lower --test-size/data.val_size or use a larger corpus"
        )
    random.Random(seed).shuffle(sources)
    test_sources, val_sources = sources[:test_size], sources[test_size : test_size + val_size]
    held = set(test_sources) | set(val_sources)
    train = [(s, t) for s, t in pairs if s not in held]
    return CorpusSplit(
        train=train,
        val=HeldOut(val_sources, [groups[s] for s in val_sources]),
        test=HeldOut(test_sources, [groups[s] for s in test_sources]),
    )


# ---------------------------------------------------------------------------------------------- batching


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> tuple[Tensor, Tensor]:
    """Right-pad id lists into ``(ids (B, L) int64, lengths (B,) int64)``; L = the longest length."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    ids = torch.full((len(sequences), int(lengths.max()) if len(sequences) else 0), pad_id, dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return ids, lengths


@dataclass
class Batch:
    """A padded batch of translation pairs.

    Attributes:
        src: (B, S) source ids ending in ``<eos>``, right-padded with ``<pad>``.
        src_lens: (B,) source lengths (valid lens).
        tgt_in: (B, T) decoder input ``<bos> y₁ … y_n`` (padded).
        tgt_out: (B, T) decoder target ``y₁ … y_n <eos>`` (padded).
        tgt_lens: (B,) target lengths (n + 1).
    """

    src: Tensor
    src_lens: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    tgt_lens: Tensor

    def __len__(self) -> int:
        return int(self.src.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device) for t in (self.src, self.src_lens, self.tgt_in, self.tgt_out, self.tgt_lens)))


def make_batch(src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]]) -> Batch:
    """Pad encoded pairs (each ending in ``<eos>``) into a :class:`Batch` with teacher-forcing inputs."""
    src, src_lens = pad_batch(src_ids)
    tgt_out, tgt_lens = pad_batch(tgt_ids)
    tgt_in, _ = pad_batch([[BOS_ID, *t[:-1]] for t in tgt_ids])
    return Batch(src, src_lens, tgt_in, tgt_out, tgt_lens)


def length_buckets(lengths: Sequence[int], batch_size: int, seed: int = 0) -> list[list[int]]:
    """Group indices into batches of ``batch_size`` examples of similar length (as fairseq does).

    Indices are shuffled (``seed``) and then stably sorted by length, so equal lengths mix randomly; the
    sorted list is cut into consecutive batches (the last may be smaller). Returns the batches in length
    order; shuffle their order for training (the engine does, for :attr:`DataSplits.batches`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    order.sort(key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

