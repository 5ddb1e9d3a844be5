"""Translate with a trained run: its model (``model.safetensors`` + ``config.json``) and ``vocab.json``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from attnlab.data.text import UNK_ID, Vocab, detokenize, load_vocabs, normalize, tokenize
from attnlab.decode import AttentionTrace, greedy_with_attention, translate_ids
from attnlab.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class RunTranslator:
    """A trained translation model with its vocabularies and normalisation options.

    Attributes:
        model: the :class:`~attnlab.models.translation.Translator` (eval mode).
        model_name: its registry name.
        src_vocab, tgt_vocab: the run's vocabularies.
        lower, space_punct: the run's normalisation options (applied to every input sentence).
        length_penalty: beam search's GNMT α (the run's ``data.length_penalty``).
    """

    model: nn.Module
    model_name: str
    src_vocab: Vocab
    tgt_vocab: Vocab
    lower: bool = True
    space_punct: bool = True
    length_penalty: float = 0.6

    def encode(self, sentence: str) -> tuple[list[str], list[int]]:
        """Normalise and encode one sentence → (tokens, ids ending in ``<eos>``).

        Raises:
            UserError: the sentence is empty, or none of its words is in the source vocabulary.
        """
        tokens = tokenize(normalize(sentence, self.lower, self.space_punct))
        if not tokens:
            raise UserError("the sentence to translate is empty; give some words, e.g. \"i'm home .\"")
        ids = self.src_vocab.encode(tokens)
        unknown = [t for t, i in zip(tokens, ids, strict=False) if i == UNK_ID]
        if len(unknown) == len(tokens):
            raise UserError(f"none of the words of {sentence!r} is in the model's source vocabulary; "
                            "use words of the training corpus (the model translates from its source language)")
        if unknown:
            log.warning("unknown words (translated as <unk>): %s", " ".join(unknown))
        return tokens, ids

    def translate(self, sentences: list[str], beam: int = 1, use_cache: bool = True) -> list[str]:
        """Translate sentences (normalised output text), greedy (``beam=1``) or with beam search."""
        if beam < 1:
            raise UserError(f"--beam must be at least 1, got {beam}")
        from attnlab.data.text import pad_batch

        encoded = [self.encode(s)[1] for s in sentences]
        src, lens = pad_batch(encoded)
        with torch.no_grad():
            out = translate_ids(self.model, src, lens, beam=beam, alpha=self.length_penalty, use_cache=use_cache)
        return [detokenize(self.tgt_vocab.decode(ids)) for ids in out]

    def trace(self, sentence: str) -> tuple[list[str], list[str], AttentionTrace]:
        """Greedy translation of one sentence with its attention → (source tokens, output tokens, trace).

        Source tokens end in ``<eos>``; output tokens are one per decoding step (the last is ``<eos>``
        when the model stopped by itself).
        """
        _, ids = self.encode(sentence)
        trace = greedy_with_attention(self.model, ids)
        source = self.src_vocab.decode(ids, strip=False)
        output = [*self.tgt_vocab.decode(trace.tokens), "<eos>"][: trace.steps]
        return source, output, trace


def load_run(run_dir: str | Path) -> RunTranslator:
    """Load a run folder written by ``attnlab translate fit`` (or ``attnlab fit translate``)."""
    from attnlab.experiments.translate import VOCAB_FILE
    from attnlab.train import load_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} not found; pass the folder `attnlab translate fit` printed")
    model, config = load_model(run_dir)
    if config.experiment != "translate":
        raise UserError(f"{run_dir} is a run of {config.experiment!r}, not of translate; pass a translation run")
    src_vocab, tgt_vocab, options = load_vocabs(run_dir / VOCAB_FILE)
    return RunTranslator(model, config.model, src_vocab, tgt_vocab, bool(options.get("lower", True)),
                         bool(options.get("space_punct", True)), float(config.experiment_config.length_penalty))
