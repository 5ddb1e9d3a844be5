"""Translation models and decoding: shapes, step == teacher forcing, KV cache, beam search."""

from __future__ import annotations

import math

import pytest
import torch

from attnlab.catalog.translate import LuongConfig, RNNTranslatorConfig, TransformerTranslatorConfig
from attnlab.data.text import BOS_ID, EOS_ID, make_batch
from attnlab.decode import beam_search, beam_search_hypotheses, greedy, greedy_with_attention, length_penalty
from attnlab.models.translation import Bahdanau, Luong, Seq2Seq, TransformerTranslator, Translator

pytestmark = pytest.mark.usefixtures("torch_single_thread")

VS, VT = 23, 29
FACTORIES = {
    "seq2seq": lambda: Seq2Seq(RNNTranslatorConfig(VS, VT, embed_dim=12, hidden_dim=16, num_layers=2, dropout=0.0)),
    "bahdanau": lambda: Bahdanau(RNNTranslatorConfig(VS, VT, embed_dim=12, hidden_dim=16, num_layers=2, dropout=0.0)),
    "luong": lambda: Luong(LuongConfig(VS, VT, embed_dim=12, hidden_dim=16, dropout=0.0)),
    "luong_feed_dot": lambda: Luong(LuongConfig(VS, VT, embed_dim=12, hidden_dim=16, dropout=0.0, score="dot",
                                                input_feeding=True)),
    "transformer": lambda: TransformerTranslator(TransformerTranslatorConfig(VS, VT, d_model=16, num_heads=2,
                                                                             num_layers=2, d_ff=32, dropout=0.0)),
    "transformer_untied": lambda: TransformerTranslator(TransformerTranslatorConfig(VS, VT, d_model=16, num_heads=2,
                                                                                    num_layers=1, d_ff=32,
                                                                                    dropout=0.0,
                                                                                    tie_embeddings=False)),
}


def toy_batch():
    g = torch.Generator().manual_seed(0)
    src = [torch.randint(4, VS, (n,), generator=g).tolist() + [EOS_ID] for n in (5, 2, 7)]
    tgt = [torch.randint(4, VT, (n,), generator=g).tolist() + [EOS_ID] for n in (3, 6, 1)]
    return make_batch(src, tgt)


@pytest.fixture(params=list(FACTORIES))
def model(request):
    torch.manual_seed(0)
    return FACTORIES[request.param]().eval()


def test_output_shape_and_steps_equal_teacher_forcing(model):
    batch = toy_batch()
    logits = model(batch.src, batch.src_lens, batch.tgt_in)
    assert logits.shape == (3, batch.tgt_in.shape[1], VT)
    state = model.start(batch.src, batch.src_lens)
    steps = []
    for t in range(batch.tgt_in.shape[1]):
        step_logits, state = model.step(batch.tgt_in[:, t], state)
        steps.append(step_logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), logits, atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_a_sentence(model):
    batch = toy_batch()
    alone = model(batch.src[1:2, : batch.src_lens[1]], batch.src_lens[1:2], batch.tgt_in[1:2])
    padded = model(batch.src, batch.src_lens, batch.tgt_in)[1:2]
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-5)


def test_beam_one_is_greedy(model):
    batch = toy_batch()
    expected = greedy(model, batch.src, batch.src_lens, max_len=9)
    assert beam_search(model, batch.src, batch.src_lens, beam=1, alpha=0.0, max_len=9) == expected
    assert beam_search(model, batch.src, batch.src_lens, beam=1, alpha=1.0, max_len=9) == expected


def test_transformer_greedy_with_and_without_kv_cache_agree():
    torch.manual_seed(1)
    model = FACTORIES["transformer"]().eval()
    batch = toy_batch()
    cached = greedy(model, batch.src, batch.src_lens, max_len=12, min_len=12, use_cache=True)
    uncached = greedy(model, batch.src, batch.src_lens, max_len=12, min_len=12, use_cache=False)
    assert cached == uncached and all(len(t) == 12 for t in cached)
    # and the logits, step by step
    s1 = model.start(batch.src, batch.src_lens, use_cache=True)
    s2 = model.start(batch.src, batch.src_lens, use_cache=False)
    tokens = torch.full((3,), BOS_ID)
    for _ in range(6):
        l1, s1 = model.step(tokens, s1)
        l2, s2 = model.step(tokens, s2)
        torch.testing.assert_close(l1, l2, atol=1e-5, rtol=1e-5)
        tokens = l1.argmax(-1)


def test_beam_search_batches_like_one_sentence_at_a_time():
    torch.manual_seed(2)
    model = FACTORIES["transformer"]().eval()
    batch = toy_batch()
    together = beam_search(model, batch.src, batch.src_lens, beam=3, max_len=8)
    alone = [beam_search(model, batch.src[i : i + 1, : batch.src_lens[i]], batch.src_lens[i : i + 1], beam=3,
                         max_len=8)[0] for i in range(3)]
    assert together == alone


class TableModel(Translator):
    """The next-token distribution depends only on the previous token (a fixed table), for beam tests.

    ids: 0 pad, 1 bos, 2 eos, 3 A, 4 B. From <bos>: A 0.5, B 0.4, eos 0.1. After A: eos 0.3, A 0.35, B 0.35.
    After B: eos 0.9, A 0.05, B 0.05. Greedy: A A … (p(A eos) = 0.15); best: B eos (0.36).
    """

    tgt_vocab_size = 5

    def __init__(self):
        super().__init__()
        p = torch.full((5, 5), 1e-9)
        p[BOS_ID, 3], p[BOS_ID, 4], p[BOS_ID, EOS_ID] = 0.5, 0.4, 0.1
        p[3, EOS_ID], p[3, 3], p[3, 4] = 0.3, 0.35, 0.35
        p[4, EOS_ID], p[4, 3], p[4, 4] = 0.9, 0.05, 0.05
        p[EOS_ID, EOS_ID] = 1.0
        self.register_buffer("table", p.log())

    def start(self, src, src_lens, use_cache=True):
        return {"rows": torch.zeros(src.shape[0])}

    def step(self, tokens, state):
        return self.table[tokens], state


def sequence_logprob(tokens: list[int]) -> float:
    model = TableModel()
    prev, total = BOS_ID, 0.0
    for tok in [*tokens, EOS_ID]:
        total += torch.log_softmax(model.table[prev], -1)[tok].item()
        prev = tok
    return total


def test_beam_finds_a_higher_scoring_sequence_than_greedy():
    model = TableModel()
    src, lens = torch.zeros(1, 1, dtype=torch.long), torch.ones(1, dtype=torch.long)
    greedy_out = greedy(model, src, lens, max_len=2)[0]
    assert greedy_out == [3, 3]  # A A, cut at max_len
    greedy_3 = greedy(model, src, lens, max_len=10)[0]
    beam_out = beam_search(model, src, lens, beam=2, alpha=0.0, max_len=10)[0]
    assert beam_out == [4]  # B <eos>
    assert sequence_logprob(beam_out) > sequence_logprob(greedy_3)
    hyps = beam_search_hypotheses(model, src, lens, beam=2, alpha=0.0, max_len=10)[0]
    assert hyps[0].logprob == pytest.approx(math.log(0.4 * 0.9), abs=1e-4)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def test_length_penalty_is_gnmt():
    assert length_penalty(1, 0.6) == pytest.approx(1.0)
    assert length_penalty(7, 1.0) == pytest.approx(2.0)
    assert length_penalty(10, 0.0) == 1.0


def test_attention_trace_is_labelled_by_steps():
    torch.manual_seed(3)
    model = FACTORIES["transformer"]().eval()
    trace = greedy_with_attention(model, [5, 6, 7, EOS_ID], max_len=6)
    cross = trace.attention["decoder.layers.0.cross_attn"]
    assert cross.shape == (2, trace.steps, 4)
    torch.testing.assert_close(cross.sum(-1), torch.ones(2, trace.steps))
    self_attn = trace.attention["decoder.layers.0.self_attn"]
    assert self_attn.shape == (2, trace.steps, trace.steps)
    assert torch.all(self_attn.triu(1) == 0)  # causal
    assert trace.attention["encoder.layers.0.self_attn"].shape == (2, 4, 4)
    rnn = FACTORIES["bahdanau"]().eval()
    rnn_trace = greedy_with_attention(rnn, [5, 6, EOS_ID], max_len=5)
    assert rnn_trace.attention["cross_attn"].shape == (1, rnn_trace.steps, 3)
    assert greedy_with_attention(FACTORIES["seq2seq"]().eval(), [5, EOS_ID], max_len=3).attention == {}


def test_missing_vocabulary_sizes_are_explained():
    with pytest.raises(ValueError, match=r"vocabulary sizes are not set .* `attnlab translate fit --corpus FILE`"):
        TransformerTranslator(TransformerTranslatorConfig())
    with pytest.raises(ValueError, match="luong score must be 'general' or 'dot'"):
        LuongConfig(VS, VT, score="concat")
