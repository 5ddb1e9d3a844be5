"""``translate``: sentence translation on a ``source<TAB>target`` corpus, scored by sacreBLEU on held-out sources.

Models (by name): ``seq2seq`` (GRU encoder–decoder, no attention), ``bahdanau`` (additive attention),
``luong`` (dot / general attention after the RNN step) and ``transformer``. They train on teacher-forced
cross-entropy (label-smoothed by default, padding ignored) over batches of ``train.batch_size`` sentence pairs
of similar length (:meth:`SentencePairs.batches`).

Held-out sets are grouped by source sentence (:func:`attnlab.data.text.split_by_source`): no test or
validation source appears in training, and every target the corpus gives for a held-out source is one of
its references. Each held-out set is evaluated as one item, so its metrics are corpus-level:

* ``loss`` (the training objective) and ``token_acc`` (teacher-forced next-token accuracy) over all
  held-out pairs;
* ``bleu`` and ``chrf``: sacreBLEU corpus BLEU and chrF of the decoded sources against all their
  references. Validation decodes greedily every epoch (``val_bleu`` picks the best checkpoint and gives
  the learning curve); the test set is decoded with ``data.beam`` (1 = greedy).

Scores are on the normalised text (lower-cased and punctuation-spaced by default, on both sides).

Besides the usual run files, the run folder gets ``vocab.json`` (both vocabularies and the normalisation
options, so ``attnlab translate --run RUN`` needs nothing else), ``translations.json`` (a sample of test
sources with hypotheses, references and sentence BLEU), ``baselines.json`` (the scores of copying the source
sentence) and, for the attention models, ``figures/translate_attention.png``: the cross-attention of the first
test sentence, per layer and head, which the report's explorer opens on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from sacrebleu.metrics import BLEU, CHRF
from torch import Tensor, nn
from torch.utils.data import Dataset

from attnlab.catalog.translate import SPEC
from attnlab.data.text import (
    PAD_ID,
    Batch,
    CorpusSplit,
    HeldOut,
    Vocab,
    detokenize,
    length_buckets,
    make_batch,
    pad_batch,
    read_corpus,
    save_vocabs,
    split_by_source,
    tokenize,
)
from attnlab.decode import greedy_with_attention, translate_ids
from attnlab.errors import UserError
from attnlab.experiments.base import DataSplits, Experiment, model_device
from attnlab.nn import Attention, MultiHeadAttention
from attnlab.nn.maps import AttentionMap, AttentionSample
from attnlab.report.files import write_baselines

log = logging.getLogger(__name__)

VOCAB_FILE = "vocab.json"
TRANSLATIONS_FILE = "translations.json"
EVAL_PAIRS_PER_CHUNK = 256  # teacher-forced loss of held-out pairs, in sub-batches
DECODE_SENTENCES_PER_CHUNK = 500  # decoding of held-out sources, in length-sorted sub-batches


# ---------------------------------------------------------------------------------------------- datasets


@dataclass
class EncodedHeldOut:
    """A whole held-out set as one evaluation item.

    Attributes:
        src: per source, its ids (ending in ``<eos>``).
        sources: the normalised source sentences.
        references: per source, all its normalised reference sentences.
        pair_src, pair_tgt: per (source, reference) pair, the ids of both sides (for the loss).
        beam: beam size used to decode this set (1 = greedy).
    """

    src: list[list[int]]
    sources: list[str]
    references: list[list[str]]
    pair_src: list[list[int]]
    pair_tgt: list[list[int]]
    beam: int = 1

    def __len__(self) -> int:
        return len(self.sources)


class HeldOutDataset(Dataset):
    """A dataset of one item: the whole held-out set (corpus-level BLEU needs all of it at once)."""

    def __init__(self, item: EncodedHeldOut) -> None:
        self.item = item

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> EncodedHeldOut:
        if index != 0:
            raise IndexError(index)
        return self.item


class SentencePairs(Dataset):
    """Encoded training pairs; item i = ``(source ids, target ids)`` of pair i, each ending in ``<eos>``.

    Args:
        src, tgt: the ids of each pair's source and target.
    """

    def __init__(self, src: Sequence[list[int]], tgt: Sequence[list[int]]) -> None:
        if len(src) != len(tgt):
            raise ValueError(f"{len(src)} sources but {len(tgt)} targets")
        self.src, self.tgt = src, tgt

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, index: int) -> tuple[list[int], list[int]]:
        return self.src[index], self.tgt[index]

    def batches(self, split: str, batch_size: int, seed: int) -> list[list[int]] | None:
        """The training batches (:attr:`DataSplits.batches`): pairs grouped once into length buckets of
        ``batch_size`` pairs by their longer side (:func:`~attnlab.data.text.length_buckets`, ties broken by
        ``seed``), so padding stays small; the engine reshuffles their order every epoch. The held-out sets
        (one item each) are batched as usual: None."""
        if split != "train":
            return None
        return length_buckets([max(len(s), len(t)) for s, t in zip(self.src, self.tgt, strict=True)], batch_size, seed)


def collate(items: list[Any]) -> Batch | EncodedHeldOut:
    """Sentence pairs → one padded :class:`~attnlab.data.text.Batch`, in the order given; a held-out item passes
    through.

    Raises:
        ValueError: more than one held-out item (a held-out set is evaluated as one item).
    """
    if isinstance(items[0], EncodedHeldOut):
        if len(items) != 1:
            raise ValueError("held-out sets are evaluated one at a time")
        return items[0]
    return make_batch([src for src, _ in items], [tgt for _, tgt in items])


# ---------------------------------------------------------------------------------------------- metrics


def corpus_scores(hypotheses: list[str], references: list[list[str]]) -> dict[str, float]:
    """sacreBLEU corpus BLEU and chrF of ``hypotheses`` against a variable number of references each."""
    width = max(len(refs) for refs in references)
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]
    # Both sides are normalised text with punctuation split off ("go ."); sacreBLEU's 13a tokeniser splits
    # it off anyway, so the score equals that of detokenised text: force=True only silences its warning.
    return {
        "bleu": BLEU(force=True).corpus_score(hypotheses, streams).score,
        "chrf": CHRF().corpus_score(hypotheses, streams).score,
    }


def decode_sentences(model: nn.Module, src: list[list[int]], beam: int, alpha: float,
                     chunk: int = DECODE_SENTENCES_PER_CHUNK) -> list[list[int]]:
    """Decode encoded sources in length-sorted chunks (little padding); output in input order."""
    device = model_device(model)
    order = sorted(range(len(src)), key=lambda i: len(src[i]))
    out: list[list[int]] = [[] for _ in src]
    for start in range(0, len(order), chunk):
        picked = order[start : start + chunk]
        ids, lens = pad_batch([src[i] for i in picked])
        for i, hyp in zip(picked, translate_ids(model, ids.to(device), lens.to(device), beam=beam, alpha=alpha),
                          strict=True):
            out[i] = hyp
    return out


# ---------------------------------------------------------------------------------------------- experiment


class Translate(Experiment):
    """Translation of a parallel corpus; held-out sacreBLEU / chrF."""

    spec = SPEC



    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._prepared: tuple[CorpusSplit, Vocab, Vocab] | None = None

    # ------------------------------------------------------------------ data

    def prepare(self) -> tuple[CorpusSplit, Vocab, Vocab]:
        """Read and split the corpus and build the vocabularies from the training side (cached)."""
        if self._prepared is None:
            c = self.config
            if not c.corpus:
                raise UserError("no corpus given; pass --corpus FILE (attnlab translate fit) or data.corpus=FILE")
            pairs = read_corpus(c.corpus, c.lower, c.space_punct, c.skip_bad_lines)
            short = [(s, t) for s, t in pairs if len(tokenize(s)) <= c.max_len and len(tokenize(t)) <= c.max_len]
            if len(short) < len(pairs):
                log.warning("skipped %d pair(s) with more than max_len=%d words on a side", len(pairs) - len(short),
                            c.max_len)
                pairs = short
            if not pairs:
                raise UserError(f"no pair of {c.corpus} has at most max_len={c.max_len} words on each side; raise "
                                "data.max_len")
            split = split_by_source(pairs, c.test_size, c.val_size, c.split_seed)
            if c.max_train_pairs is not None and len(split.train) > c.max_train_pairs:
                picked = sorted(random.Random(c.split_seed).sample(range(len(split.train)), c.max_train_pairs))
                split = dataclasses.replace(split, train=[split.train[i] for i in picked])
            src_vocab = Vocab.build((tokenize(s) for s, _ in split.train), c.min_freq)
            tgt_vocab = Vocab.build((tokenize(t) for _, t in split.train), c.min_freq)
            self._prepared = (split, src_vocab, tgt_vocab)
        return self._prepared

    @property
    def vocabs(self) -> tuple[Vocab, Vocab]:
        _, src_vocab, tgt_vocab = self.prepare()
        return src_vocab, tgt_vocab

    def complete_model_config(self, model_config: Any) -> Any:
        """The model config with the vocabulary sizes of this corpus (called by the engine before the model
        is built). A config that already holds other sizes (a resumed run whose data changed) is refused."""
        src_vocab, tgt_vocab = self.vocabs
        sizes = {"src_vocab_size": len(src_vocab), "tgt_vocab_size": len(tgt_vocab)}
        current = {key: getattr(model_config, key) for key in sizes}
        if any(current.values()) and current != sizes:
            raise UserError(f"the model config has vocabulary sizes {current} but the corpus gives {sizes}; "
                            "the corpus or its data settings changed — start a new run")
        return dataclasses.replace(model_config, **sizes)

    def _encode_held_out(self, held: HeldOut, beam: int) -> EncodedHeldOut:
        src_vocab, tgt_vocab = self.vocabs
        pairs = held.pairs
        return EncodedHeldOut(
            src=[src_vocab.encode(tokenize(s)) for s in held.sources],
            sources=list(held.sources),
            references=[list(refs) for refs in held.references],
            pair_src=[src_vocab.encode(tokenize(s)) for s, _ in pairs],
            pair_tgt=[tgt_vocab.encode(tokenize(t)) for _, t in pairs],
            beam=beam,
        )

    def data(self, seed: int) -> DataSplits:
        split, src_vocab, tgt_vocab = self.prepare()
        src = [src_vocab.encode(tokenize(s)) for s, _ in split.train]
        tgt = [tgt_vocab.encode(tokenize(t)) for _, t in split.train]
        train = SentencePairs(src, tgt)
        val = HeldOutDataset(self._encode_held_out(split.val, beam=1))
        test = HeldOutDataset(self._encode_held_out(split.test, beam=self.config.beam))
        return DataSplits(train, val, test, collate_fn=collate, batches=train.batches)

    # ------------------------------------------------------------------ loss and metrics

    def batch_size_of(self, batch: Any) -> int:
        return len(batch)

    def _token_loss(self, model: nn.Module, batch: Batch, smoothing: float) -> tuple[Tensor, Tensor, Tensor]:
        """Summed loss, correct-token count and token count of a batch."""
        logits = model(batch.src, batch.src_lens, batch.tgt_in)  # (B, T, V)
        flat = logits.reshape(-1, logits.shape[-1])  # (B·T, V)
        target = batch.tgt_out.reshape(-1)  # (B·T,)
        loss = F.cross_entropy(flat, target, ignore_index=PAD_ID, label_smoothing=smoothing, reduction="sum")
        real = target != PAD_ID
        correct = ((flat.argmax(-1) == target) & real).sum()
        return loss, correct, real.sum()

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """Cross-entropy per target token (label-smoothed if configured), padding ignored."""
        total, _, count = self._token_loss(model, batch, self.config.label_smoothing)
        return total / count.clamp_min(1)

    @torch.no_grad()
    def result_warnings(self, val_metrics: dict[str, float]) -> list[str]:
        """A validation BLEU below 1 means the model has not learned to translate yet."""
        bleu = val_metrics.get("bleu")
        if bleu is not None and bleu < 1:
            return [f"validation BLEU is {bleu:.2f}: the model has not learned to translate yet; raise max_epochs "
                    "(the Transformer needs several epochs past its learning-rate warm-up)"]
        return []

    def evaluate(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """Corpus-level metrics of a whole held-out set: ``loss`` and ``token_acc`` over its pairs,
        ``bleu`` and ``chrf`` of its decoded sources against all references."""
        held: EncodedHeldOut = batch
        device = model_device(model)
        loss_sum = correct = tokens = 0.0
        for start in range(0, len(held.pair_src), EVAL_PAIRS_PER_CHUNK):
            chunk = make_batch(held.pair_src[start : start + EVAL_PAIRS_PER_CHUNK],
                               held.pair_tgt[start : start + EVAL_PAIRS_PER_CHUNK]).to(device)
            loss, right, count = self._token_loss(model, chunk, self.config.label_smoothing)
            loss_sum, correct, tokens = loss_sum + loss.item(), correct + right.item(), tokens + count.item()
        hypotheses = self.hypotheses(model, held)
        scores = corpus_scores(hypotheses, held.references)
        return {"loss": torch.tensor(loss_sum / tokens), "token_acc": torch.tensor(correct / tokens),
                "bleu": torch.tensor(scores["bleu"]), "chrf": torch.tensor(scores["chrf"])}

    def hypotheses(self, model: nn.Module, held: EncodedHeldOut) -> list[str]:
        """Decoded held-out sources as normalised text."""
        _, tgt_vocab = self.vocabs
        ids = decode_sentences(model, held.src, beam=held.beam, alpha=self.config.length_penalty)
        return [detokenize(tgt_vocab.decode(h)) for h in ids]

    # ------------------------------------------------------------------ run folder

    def save_artifacts(self, model: nn.Module, data: DataSplits, run_dir: Path) -> None:
        """Write ``vocab.json`` and ``translations.json`` into the run folder (called by the engine after
        the best weights are saved)."""
        c = self.config
        src_vocab, tgt_vocab = self.vocabs
        options = {"lower": c.lower, "space_punct": c.space_punct}
        save_vocabs(run_dir / VOCAB_FILE, src_vocab, tgt_vocab, options)
        held: EncodedHeldOut = data.test[0]
        n = min(c.samples, len(held))
        if n:
            model.eval()
            sample = dataclasses.replace(held, src=held.src[:n], sources=held.sources[:n],
                                         references=held.references[:n])
            hypotheses = self.hypotheses(model, sample)
            rows = [
                {"source": s, "hypothesis": h, "references": refs,
                 "sentence_bleu": round(BLEU(effective_order=True, force=True).sentence_score(h, refs).score, 2)}
                for s, h, refs in zip(sample.sources, hypotheses, sample.references, strict=True)
            ]
            (run_dir / TRANSLATIONS_FILE).write_text(
                json.dumps({"beam": held.beam, "translations": rows}, ensure_ascii=False, indent=1) + "\n",
                encoding="utf-8")
        write_baselines(run_dir, {"copy the source sentence": corpus_scores(held.sources, held.references)})

    def figures(self, model: nn.Module, data: DataSplits, out_dir: Path, history: list[dict[str, float]]) -> list[Path]:
        """``translate_attention.png`` for the attention models: the cross-attention of the first test sentence
        (greedy decoding), per layer and head; the same sentence ``attnlab translate --run`` would draw."""
        from attnlab.viz.heatmaps import save_figure
        from attnlab.viz.translate import plot_cross_attention

        samples = self.attention_samples(model, data, limit=1)
        cross = [m for m in samples[0].maps if m.kind == "cross"] if samples else []
        if not cross:
            return []
        maps = {m.layer: m.weights for m in cross}
        fig = plot_cross_attention(maps, cross[0].key_labels, cross[0].query_labels,
                                   f"cross-attention on test sentence 0 (greedy): {samples[0].title}")
        return [save_figure(fig, out_dir / "translate_attention.png")]

    def attention_samples(self, model: nn.Module, data: DataSplits, limit: int = 4) -> list[AttentionSample]:
        """Cross-attention (generated token × source token) of the first ``limit`` test sentences, plus the
        encoder and decoder self-attention for the Transformer, from greedy decoding."""
        if not any(isinstance(m, (Attention, MultiHeadAttention)) for m in model.modules()):
            return []  # seq2seq: no attention to show
        src_vocab, tgt_vocab = self.vocabs
        held: EncodedHeldOut = data.test[0]
        model.eval()
        samples = []
        for i in range(min(limit, len(held))):
            src_ids = held.src[i]
            result = greedy_with_attention(model, src_ids)
            source_tokens = src_vocab.decode(src_ids, strip=False)
            out_tokens = [*tgt_vocab.decode(result.tokens), "<eos>"][: result.steps]
            in_tokens = ["<bos>", *out_tokens[:-1]]
            maps = []
            for name, weights in result.attention.items():
                kind = "cross" if "cross_attn" in name else "self"
                if name.startswith("encoder"):
                    maps.append(AttentionMap(name, kind, weights, source_tokens, source_tokens))
                elif kind == "cross":
                    maps.append(AttentionMap(name, kind, weights, out_tokens, source_tokens))
                else:
                    maps.append(AttentionMap(name, kind, weights, out_tokens, in_tokens))
            title = f"{held.sources[i]} → {detokenize(out_tokens[:-1])}"
            samples.append(AttentionSample(title, maps, in_figures=i == 0))  # the figure draws sentence 0
        return samples


def learning_curve(history: list[dict[str, float]], train_seconds: float) -> list[tuple[float, float]]:
    """``(training minutes, val BLEU)`` per epoch, the minutes pro-rated from the run's total training time
    (epochs have equal work)."""
    epochs = [h for h in history if "val_bleu" in h]
    if not epochs:
        return []
    per_epoch = train_seconds / 60 / max(len(history), 1)
    return [(h["epoch"] * per_epoch, h["val_bleu"]) for h in epochs if math.isfinite(h["val_bleu"])]
