"""Weights from the fused kernel's log-sum-exp: the block kernel, the filters, recording, the kernel dispatch."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import attnlab.nn.weights as weights_module
from attnlab.nn import (
    Attention,
    Decoder,
    Encoder,
    KernelScore,
    MultiHeadAttention,
    TopKWeights,
    causal_mask,
    record_attention,
    reference_attention,
    use_reference_attention,
)
from attnlab.nn.masking import additive_mask
from attnlab.nn.weights import (
    WeightRequest,
    filter_weights,
    fused_attention_with_lse,
    weights_for_request,
    weights_from_lse,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")
SETTINGS = settings(max_examples=60, deadline=None)
TOL = {"atol": 1e-5, "rtol": 1e-5}
NEG_INF = float("-inf")


def random_mask(gen: torch.Generator, kind: str, shape: tuple[int, ...], p_block: float) -> torch.Tensor | None:
    """A bool mask (True = attend), an additive float mask with -inf entries, or None."""
    if kind == "none":
        return None
    blocked = torch.rand(shape, generator=gen) < p_block
    if kind == "bool":
        return ~blocked
    return torch.randn(shape, generator=gen).masked_fill(blocked, NEG_INF)


def compare(got, expected) -> None:
    """Weights or top-k equal: the same values, and indices that point at those values."""
    if isinstance(expected, TopKWeights):
        assert isinstance(got, TopKWeights) and got.indices.dtype == torch.long
        torch.testing.assert_close(got.values, expected.values, **TOL)
        return
    assert isinstance(got, torch.Tensor)
    torch.testing.assert_close(got, expected, **TOL)


requests = st.builds(
    WeightRequest,
    heads=st.one_of(st.none(), st.lists(st.integers(-3, 2), min_size=1, max_size=3)),
    queries=st.one_of(st.none(), st.just("last"), st.integers(-1, 0),
                      st.builds(slice, st.sampled_from([None, 1]), st.sampled_from([None, 4]),
                                st.sampled_from([None, 1, 2, 3])),
                      st.lists(st.integers(-1, 0), min_size=1, max_size=3)),
    top_k=st.one_of(st.none(), st.integers(1, 9)),
    average_heads=st.booleans(),
)


@SETTINGS
@given(B=st.integers(1, 2), H=st.integers(3, 4), L=st.integers(1, 9), S=st.integers(1, 9), D=st.integers(1, 5),
       mask_kind=st.sampled_from(["none", "bool", "float"]), mask_shape=st.sampled_from(["LS", "B1S", "BHLS", "B1LS"]),
       p_block=st.sampled_from([0.0, 0.4, 1.0]), causal=st.booleans(), request=requests,
       block=st.sampled_from([1, 7, 40, weights_module.BLOCK_ELEMENTS]), seed=st.integers(0, 2**31 - 1))
def test_requested_weights_equal_the_filtered_reference(B, H, L, S, D, mask_kind, mask_shape, p_block, causal,
                                                        request, block, seed):
    """Every filter, mask shape and block size: the layer computes exactly the slices of the reference weights."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(weights_module, "BLOCK_ELEMENTS", block)  # 1: one row per step; 40: head groups
        check_request(B, H, L, S, D, mask_kind, mask_shape, p_block, causal, request, seed)


def check_request(B, H, L, S, D, mask_kind, mask_shape, p_block, causal, request, seed) -> None:
    gen = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(B, H, L, D, generator=gen), torch.randn(B, H, S, D, generator=gen), \
        torch.randn(B, H, S, D, generator=gen)
    shape = {"LS": (L, S), "B1S": (B, 1, 1, S), "BHLS": (B, H, L, S), "B1LS": (B, 1, L, S)}[mask_shape]
    mask = additive_mask(random_mask(gen, mask_kind, shape, p_block), q.dtype)
    causal = causal and mask is None and L == S
    out, lse = fused_attention_with_lse(q, k, v, mask, causal, 0.0)
    ref_mask = additive_mask(causal_mask(L), q.dtype) if causal else mask
    ref_out, ref_weights = reference_attention(q, k, v, ref_mask)  # (B, H, L, S)
    torch.testing.assert_close(out, ref_out, **TOL)
    got = weights_for_request(q, k, lse, mask, causal, request)
    compare(got, filter_weights(ref_weights, request))
    if isinstance(got, TopKWeights):  # the indices name the keys whose weights are the values
        full = filter_weights(ref_weights, WeightRequest(request.heads, request.queries, None, request.average_heads))
        torch.testing.assert_close(full.gather(-1, got.indices), got.values, **TOL)


def test_many_blocks_heads_and_rows_equal_the_reference():
    """Sizes past one block: head groups, row blocks, causal skipping of the future keys."""
    torch.manual_seed(0)
    B, H, L, D = 2, 3, 300, 8  # a head's 300 x 300 weights span two row blocks
    q, k, v = (torch.randn(B, H, L, D) for _ in range(3))
    for causal in (False, True):
        out, lse = fused_attention_with_lse(q, k, v, None, causal, 0.0)
        _, ref = reference_attention(q, k, v, causal_mask(L) if causal else None)
        torch.testing.assert_close(weights_from_lse(q, k, lse, None, causal), ref, **TOL)
        averaged = weights_from_lse(q, k, lse, None, causal, average=True)
        torch.testing.assert_close(averaged, ref.mean(1), **TOL)
        torch.testing.assert_close(averaged, weights_from_lse(q, k, lse, None, causal).mean(1), **TOL)
    small_q = q[:, :, :20]  # 20 x 300 per head: several heads per step
    _, lse = fused_attention_with_lse(small_q, k, v, None, False, 0.0)
    _, ref = reference_attention(small_q, k, v)
    torch.testing.assert_close(weights_from_lse(small_q, k, lse, None, False, average=True), ref.mean(1), **TOL)


def test_fully_masked_rows_are_zero_and_masked_keys_exactly_zero():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 2, 4, 3), torch.randn(2, 2, 5, 3), torch.randn(2, 2, 5, 3)
    allowed = torch.rand(2, 1, 4, 5) < 0.6
    allowed[0, 0, 1] = False  # query 1 of batch 0 sees nothing
    mask = additive_mask(allowed, q.dtype)
    out, lse = fused_attention_with_lse(q, k, v, mask, False, 0.0)
    assert torch.all(out[0, :, 1] == 0)
    for average in (False, True):
        w = weights_from_lse(q, k, lse, mask, average=average)
        per_head = w if not average else w.unsqueeze(1)
        assert torch.all(per_head[~allowed.expand_as(per_head)] == 0)
        assert torch.all(per_head[0, :, 1] == 0) and torch.isfinite(w).all()
    lse_neg_inf = lse.clone()
    lse_neg_inf[0, :, 1] = NEG_INF  # what a kernel may return for such a row
    torch.testing.assert_close(weights_from_lse(q, k, lse_neg_inf, mask), weights_from_lse(q, k, lse, mask))


def test_averaged_weights_never_build_per_head_weights():
    """Peak memory of the averaged weights is a (B, L, S) buffer, not (B, H, L, S)."""
    from attnlab.bench.measure import measure_peak, peak_rss_supported

    if not peak_rss_supported():
        pytest.skip("peak RSS is not measurable here")
    torch.manual_seed(0)
    B, H, L, D = 1, 16, 1024, 8  # per head: 64 MiB of weights; averaged: 4 MiB
    q, k, v = (torch.randn(B, H, L, D) for _ in range(3))
    _, lse = fused_attention_with_lse(q, k, v, None, False, 0.0)
    _, averaged_mib = measure_peak(lambda: weights_from_lse(q, k, lse, average=True), True)
    _, per_head_mib = measure_peak(lambda: weights_from_lse(q, k, lse), True)
    assert per_head_mib > 48 and averaged_mib < 24, (per_head_mib, averaged_mib)


def test_top_k_dense_scatters_into_zeros():
    top = TopKWeights(torch.tensor([[0.7, 0.2]]), torch.tensor([[3, 0]]))
    torch.testing.assert_close(top.dense(5), torch.tensor([[0.2, 0.0, 0.0, 0.7, 0.0]]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_k": 0}, r"top_k must be a positive integer, got 0"),
        ({"heads": []}, r"heads must be a head index or a non-empty sequence of them"),
        ({"queries": "first"}, r"queries must be None, 'last', an index, a slice or a sequence of indices"),
        ({"queries": slice(None, None, -1)}, r"queries: a slice needs a positive step"),
    ],
)
def test_bad_requests_raise_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WeightRequest(**kwargs)
    with pytest.raises(ValueError, match=message), record_attention(MultiHeadAttention(4, 2), **kwargs):
        pass


def test_out_of_range_heads_and_queries_name_the_range():
    mha = MultiHeadAttention(4, 2).eval()
    x = torch.randn(1, 3, 4)
    with pytest.raises(ValueError, match=r"heads \[2\] out of range for a layer with 2 heads; pass indices from -2"):
        with torch.no_grad(), record_attention(mha, heads=[0, 2]):
            mha(x, x, x)
    with pytest.raises(ValueError, match=r"queries \[5\] out of range for a call with 3 queries"):
        with torch.no_grad(), record_attention(mha, queries=[5]):
            mha(x, x, x)


# ---------------------------------------------------------------- recording
def test_record_filters_shapes_and_values():
    torch.manual_seed(0)
    B, H, L = 2, 4, 10
    encoder = Encoder(2, 16, H).eval()
    x = torch.randn(B, L, 16)
    kpm = torch.tensor([[False] * L, [False] * 7 + [True] * 3])
    with torch.no_grad(), record_attention(encoder) as full_record:
        encoder(x, key_padding_mask=kpm, is_causal=True)
    full = full_record["layers.1.self_attn"][0]  # (B, H, L, L)
    cases = [
        ({"heads": [3, 0]}, full[:, [3, 0]]),
        ({"queries": "last"}, full[:, :, -1:]),
        ({"queries": slice(None, None, 3)}, full[:, :, ::3]),
        ({"queries": [4, -1]}, full[:, :, [4, 9]]),
        ({"average_heads": True}, full.mean(1)),
        ({"heads": 1, "queries": 2, "average_heads": True}, full[:, 1:2, 2:3].mean(1)),
    ]
    for kwargs, expected in cases:
        with torch.no_grad(), record_attention(encoder, layers="layers.1.*", **kwargs) as rec:
            encoder(x, key_padding_mask=kpm, is_causal=True)
        assert list(rec) == ["layers.1.self_attn"], kwargs
        torch.testing.assert_close(rec["layers.1.self_attn"][0], expected, **TOL)
    with torch.no_grad(), record_attention(encoder, top_k=3, average_heads=True) as rec:
        encoder(x, key_padding_mask=kpm, is_causal=True)
    top = rec["layers.1.self_attn"][0]
    assert top.values.shape == top.indices.shape == (B, L, 3)
    torch.testing.assert_close(top.values, full.mean(1).topk(3, dim=-1).values, **TOL)
    dense = top.dense(L)
    torch.testing.assert_close(dense.gather(-1, top.indices), top.values)
    assert torch.all(dense[1, :, 7:] == 0)  # padding never makes the top k... unless nothing else is left
    assert torch.all(dense.triu(1) == 0)  # nor the future


def test_record_filters_on_pooling_layers_and_while_decoding():
    pooling = nn.Sequential()
    pooling.add_module("nw", Attention(KernelScore("gaussian")))
    q, k, v = torch.randn(2, 3), torch.randn(2, 5), torch.randn(2, 5)
    _, w = pooling.nw(q, k, v, need_weights=True)  # (B, Q, K)
    with record_attention(pooling, queries="last", top_k=2, heads=[0], average_heads=True) as rec:
        pooling.nw(q, k, v)
    top = rec["nw"][0]
    torch.testing.assert_close(top.values, w[:, -1:].topk(2, dim=-1).values)

    torch.manual_seed(0)
    decoder = Decoder(1, 8, 2).eval()
    y, memory = torch.randn(1, 4, 8), torch.randn(1, 6, 8)
    cache = decoder.new_cache()
    with torch.no_grad(), record_attention(decoder, layers=["*.self_attn"], queries="last") as rec:
        for t in range(4):
            decoder(y[:, t : t + 1], memory, cache=cache)
    assert list(rec) == ["layers.0.self_attn"]
    assert [tuple(w.shape) for w in rec["layers.0.self_attn"]] == [(1, 2, 1, t + 1) for t in range(4)]
    with torch.no_grad(), record_attention(decoder) as whole:
        decoder(y, memory)
    torch.testing.assert_close(rec["layers.0.self_attn"][-1], whole["layers.0.self_attn"][0][:, :, -1:], **TOL)


def test_unknown_layer_pattern_names_the_layers():
    encoder = Encoder(2, 8, 2)
    with pytest.raises(ValueError, match=r"layers='\*\.cross_attn' matches no attention layer of Encoder; its "
                                         r"layers are: layers\.0\.self_attn, layers\.1\.self_attn"):
        with record_attention(encoder, layers=["layers.0.*", "*.cross_attn"]):
            pass


def test_recorded_training_forward_backprops_like_an_unrecorded_one():
    torch.manual_seed(0)
    encoder = Encoder(2, 16, 4, rotary=True).train()  # dropout 0: the fused kernel serves training too
    x = torch.randn(2, 7, 16, requires_grad=True)
    kpm = torch.tensor([[False] * 7, [False] * 5 + [True] * 2])
    target = torch.randn(2, 7, 16)

    def grads(record: bool) -> list[torch.Tensor]:
        encoder.zero_grad()
        x.grad = None
        if record:
            with record_attention(encoder, average_heads=True) as rec:
                out = encoder(x, key_padding_mask=kpm, is_causal=True)
            assert all(not w.requires_grad for calls in rec.values() for w in calls)
        else:
            out = encoder(x, key_padding_mask=kpm, is_causal=True)
        ((out - target) ** 2).sum().backward()
        return [x.grad.clone(), *(p.grad.clone() for p in encoder.parameters())]

    plain, recorded = grads(False), grads(True)
    for a, b in zip(plain, recorded, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_reference_switch_and_recording_agree():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2).eval()
    x = torch.randn(2, 6, 8)
    with torch.no_grad():
        with record_attention(mha, queries=slice(1, None, 2), top_k=2) as fused:
            mha(x, x, x, is_causal=True)
        with use_reference_attention(), record_attention(mha, queries=slice(1, None, 2), top_k=2) as forced:
            mha(x, x, x, is_causal=True)
    compare(fused["MultiHeadAttention"][0], forced["MultiHeadAttention"][0])


# ---------------------------------------------------------------- the CUDA dispatch, with fake kernels
def test_cuda_dispatch_picks_the_kernel_and_trims_the_log_sum_exp(monkeypatch):
    """The CUDA path cannot run here; its choices and its handling of what the kernels return can."""
    q, k, v = (torch.randn(1, 2, 3, 4) for _ in range(3))
    calls = []

    def flash(q, k, v, dropout_p, is_causal):
        calls.append(("flash", is_causal))
        return torch.zeros_like(q), torch.ones(1, 2, 3), None

    def efficient(q, k, v, bias, compute_log_sumexp, dropout_p, is_causal):
        calls.append(("efficient", None if bias is None else tuple(bias.shape), compute_log_sumexp))
        return torch.zeros_like(q), torch.arange(32.0).expand(1, 2, 32), None, None  # rows padded to 32

    kernels = {weights_module.CUDA_FLASH: flash, weights_module.CUDA_EFFICIENT: efficient}
    monkeypatch.setattr(weights_module, "_aten", kernels.get)
    _, lse = weights_module._cuda_attention_with_lse(q.half(), k.half(), v.half(), None, True)
    assert calls[-1] == ("flash", True) and lse.shape == (1, 2, 3)
    mask = torch.zeros(1, 1, 1, 3)
    _, lse = weights_module._cuda_attention_with_lse(q, k, v, mask, False)
    assert calls[-1] == ("efficient", (1, 2, 3, 3), True)
    torch.testing.assert_close(lse, torch.arange(3.0).expand(1, 2, 3))

    def refuses(*args):
        raise RuntimeError("no kernel for head size 4")

    monkeypatch.setattr(weights_module, "_aten", lambda name: refuses)
    assert weights_module._cuda_attention_with_lse(q, k, v, None, False) is None


def test_inputs_the_kernel_cannot_take_give_none():
    q = torch.randn(1, 1, 2, 4)
    assert fused_attention_with_lse(q, q, q, None, False, 0.1) is None  # dropout
    assert fused_attention_with_lse(q.int(), q.int(), q.int(), None, False, 0.0) is None  # dtype
    assert fused_attention_with_lse(q[:, :, :0], q, q, None, False, 0.0) is None  # no queries
    grad_mask = torch.zeros(1, 1, 2, 2, requires_grad=True)
    assert fused_attention_with_lse(q, q, q, grad_mask, False, 0.0) is None
    assert fused_attention_with_lse(q.transpose(-1, -2).contiguous().transpose(-1, -2), q, q, None, False,
                                    0.0) is None  # features not contiguous
    out, lse = fused_attention_with_lse(q, q, q, None, False, 0.0)
    torch.testing.assert_close(lse, torch.logsumexp(q @ q.transpose(-1, -2) / math.sqrt(4), -1), **TOL)
