"""``translate``: translation of a ``source<TAB>target`` corpus, scored by sacreBLEU.

Torch-free: the data options, the models' hyper-parameters and the table the registry reads.
The task (:class:`attnlab.experiments.translate.Translate`)
and the models (:mod:`attnlab.models.translation`) are imported only when a run is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from attnlab.registry import ExperimentSpec, ModelSpec, register_experiment


@dataclass
class TranslateConfig:
    """Data and evaluation options.

    Args:
        corpus: the ``source<TAB>target`` file (UTF-8).
        lower: lower-case both sides.
        space_punct: put a space before , . ! ? (d2l).
        skip_bad_lines: skip lines without a tab or with an empty side instead of failing.
        min_freq: keep tokens seen at least this often in training (others become ``<unk>``).
        test_size: distinct source sentences held out for the test set.
        val_size: distinct source sentences held out for validation.
        split_seed: seed of the held-out split (fixed, independent of the training seed).
        max_train_pairs: use at most this many training pairs (quick runs; None = all).
        max_len: pairs with more words than this on either side are skipped (counted in the log): one runaway
            line must not take the machine's memory.
        label_smoothing: label smoothing of the training cross-entropy (0 = plain).
        beam: beam size for the test set (1 = greedy); validation always decodes greedily.
        length_penalty: GNMT length-penalty exponent α of beam search.
        samples: test sentences written to ``translations.json``.
    """

    corpus: str = ""
    lower: bool = True
    space_punct: bool = True
    skip_bad_lines: bool = False
    min_freq: int = 2
    test_size: int = 2000
    val_size: int = 1000
    split_seed: int = 0
    max_train_pairs: int | None = None
    max_len: int = 100
    label_smoothing: float = 0.1
    beam: int = 1
    length_penalty: float = 0.6
    samples: int = 50

    def __post_init__(self) -> None:
        checks = [("min_freq", self.min_freq >= 1, "at least 1"), ("test_size", self.test_size >= 1, "at least 1"),
                  ("val_size", self.val_size >= 1, "at least 1"), ("max_len", self.max_len >= 1, "at least 1"),
                  ("beam", self.beam >= 1, "at least 1"),
                  ("label_smoothing", 0.0 <= self.label_smoothing < 1.0, "in [0, 1)"),
                  ("length_penalty", self.length_penalty >= 0, "0 or more"),
                  ("samples", self.samples >= 0, "0 or more"),
                  ("max_train_pairs", self.max_train_pairs is None or self.max_train_pairs >= 1, "at least 1 or none")]
        for key, ok, expected in checks:
            if not ok:
                raise ValueError(f"{key}={getattr(self, key)!r} is out of range; it must be {expected}")

    @staticmethod
    def upgrade_saved(data: dict[str, Any]) -> dict[str, Any]:
        """A run's ``config.json`` written when a batch was ``train.batch_size`` length buckets of
        ``data.batch_sentences`` pairs, rewritten to mean the same today: ``train.batch_size`` pairs per batch
        (their product; the old defaults, 1 bucket of 128, give today's default batches exactly) and no
        ``batch_sentences``. Other configs are returned as they are (called by ``RunConfig.from_dict``)."""
        experiment = dict(data.get("experiment_config", {}))
        if "batch_sentences" not in experiment:
            return data
        pairs_per_bucket = int(experiment.pop("batch_sentences"))
        train = dict(data.get("train", {}))
        train["batch_size"] = int(train.get("batch_size", 1)) * pairs_per_bucket
        return {**data, "experiment_config": experiment, "train": train}


@dataclass
class RNNTranslatorConfig:
    """GRU encoder–decoder sizes (``seq2seq`` and ``bahdanau``).

    Args:
        src_vocab_size, tgt_vocab_size: vocabulary sizes, filled in from the corpus by the experiment.
        embed_dim: token embedding size.
        hidden_dim: GRU hidden size H (encoder and decoder).
        num_layers: GRU layers (encoder and decoder each).
        dropout: dropout on embeddings, between GRU layers and before the output layer.
    """

    src_vocab_size: int = 0
    tgt_vocab_size: int = 0
    embed_dim: int = 256
    hidden_dim: int = 256
    num_layers: int = 1
    dropout: float = 0.2


@dataclass
class LuongConfig(RNNTranslatorConfig):
    """GRU encoder–decoder with Luong attention.

    Args:
        score: ``general`` (qᵀ W k) or ``dot`` (q · k).
        input_feeding: feed the previous attentional state h̃ into the next GRU step (Luong's input
            feeding). Off by default: the decoder GRU then runs over the whole target at once in
            training, several times faster on a CPU.
    """

    score: str = "general"
    input_feeding: bool = False

    def __post_init__(self) -> None:
        if self.score not in ("general", "dot"):
            raise ValueError(f"luong score must be 'general' or 'dot', got {self.score!r}")


@dataclass
class TransformerTranslatorConfig:
    """Transformer encoder–decoder sizes.

    Args:
        src_vocab_size, tgt_vocab_size: vocabulary sizes, filled in from the corpus by the experiment.
        d_model: model size D (divisible by num_heads).
        num_heads: attention heads H.
        num_layers: encoder blocks and decoder blocks (each).
        d_ff: feed-forward hidden size.
        dropout: dropout on embeddings, attention weights and residual branches.
        tie_embeddings: share the decoder's input embedding with the output projection.
    """

    src_vocab_size: int = 0
    tgt_vocab_size: int = 0
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 3
    d_ff: int = 512
    dropout: float = 0.1
    tie_embeddings: bool = True


SPEC = register_experiment(ExperimentSpec(
    name="translate",
    summary="translation on a source<TAB>target corpus: GRU seq2seq vs Bahdanau vs Luong vs Transformer, sacreBLEU",
    description="Translate held-out sentences with and without attention: sacreBLEU and chrF.",
    task="attnlab.experiments.translate:Translate",
    Config=TranslateConfig,
    models={
        "seq2seq": ModelSpec("attnlab.models.translation:Seq2Seq", RNNTranslatorConfig,
                             "GRU encoder-decoder, final encoder state as context (d2l)"),
        "bahdanau": ModelSpec("attnlab.models.translation:Bahdanau", RNNTranslatorConfig,
                              "GRU decoder with additive attention over encoder states"),
        "luong": ModelSpec("attnlab.models.translation:Luong", LuongConfig,
                           "GRU decoder, dot/general attention after the RNN step (Luong)"),
        "transformer": ModelSpec(
            "attnlab.models.translation:TransformerTranslator", TransformerTranslatorConfig,
            "Transformer encoder-decoder, KV-cached decoding",
            train_overrides={"lr": 2e-3, "warmup_steps": 400, "weight_decay": 0.01},
        ),
    },
    metric_notes={
        "bleu": "sacreBLEU corpus BLEU (0-100) of the decoded test sources against all their references "
                "(normalised text)",
        "chrf": "chrF (0-100): character n-gram F-score, same hypotheses and references",
        "token_acc": "teacher-forced next-token accuracy over the test pairs",
        "loss": "cross-entropy per target token (label-smoothed as in training), teacher-forced",
    },
    default_model="transformer",
    in_demo=False,  # needs the user's corpus: `attnlab translate fit`
    monitor=("val_bleu", "max"),
    headline="bleu",
    # A batch is 128 sentence pairs of similar length (SentencePairs.batches).
    train_defaults={"max_epochs": 10, "batch_size": 128, "lr": 2e-3, "warmup_steps": 100},
))
