"""Transformer parts (feed-forward, blocks, stacks) and attention recording."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnlab.nn import (
    Attention,
    Decoder,
    DecoderBlock,
    Encoder,
    EncoderBlock,
    FeedForward,
    KernelScore,
    MultiHeadAttention,
    record_attention,
    use_reference_attention,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")
TOL = {"atol": 1e-5, "rtol": 1e-5}


# ---------------------------------------------------------------- parts
def test_feed_forward_formula():
    torch.manual_seed(0)
    ff = FeedForward(6, activation=nn.ReLU)
    first, second = ff.net[0], ff.net[-1]
    assert first.weight.shape == (24, 6)  # d_ff defaults to 4·d_model
    x = torch.randn(2, 3, 6)
    expected = torch.relu(x @ first.weight.T + first.bias) @ second.weight.T + second.bias
    torch.testing.assert_close(ff(x), expected, **TOL)
    assert FeedForward(6, d_ff=10).net[0].out_features == 10


def _attend(mha: MultiHeadAttention, q, kv, **kwargs):
    return mha(q, kv, kv, **kwargs)[0]


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre_norm", "post_norm"])
def test_encoder_block_residual_structure(norm_first):
    torch.manual_seed(0)
    block = EncoderBlock(8, 2, d_ff=16, norm_first=norm_first)
    x = torch.randn(2, 5, 8)
    kpm = torch.tensor([[False] * 5, [False, False, False, True, True]])
    n1, n2 = block.attn_res.norm, block.ff_res.norm
    if norm_first:
        h = x + _attend(block.self_attn, n1(x), n1(x), key_padding_mask=kpm)
        expected = h + block.ff(n2(h))
    else:
        h = n1(x + _attend(block.self_attn, x, x, key_padding_mask=kpm))
        expected = n2(h + block.ff(h))
    torch.testing.assert_close(block(x, key_padding_mask=kpm), expected, **TOL)


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre_norm", "post_norm"])
def test_decoder_block_residual_structure(norm_first):
    torch.manual_seed(0)
    block = DecoderBlock(8, 2, d_ff=16, norm_first=norm_first)
    x, memory = torch.randn(2, 4, 8), torch.randn(2, 6, 8)
    mkpm = torch.tensor([[False] * 6, [False, False, True, True, True, True]])
    n1, n2, n3 = block.self_res.norm, block.cross_res.norm, block.ff_res.norm
    if norm_first:
        h = x + _attend(block.self_attn, n1(x), n1(x), is_causal=True)
        h = h + _attend(block.cross_attn, n2(h), memory, key_padding_mask=mkpm)
        expected = h + block.ff(n3(h))
    else:
        h = n1(x + _attend(block.self_attn, x, x, is_causal=True))
        h = n2(h + _attend(block.cross_attn, h, memory, key_padding_mask=mkpm))
        expected = n3(h + block.ff(h))
    torch.testing.assert_close(block(x, memory, memory_key_padding_mask=mkpm), expected, **TOL)


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre_norm", "post_norm"])
def test_stacks_apply_blocks_in_order_then_final_norm(norm_first):
    torch.manual_seed(0)
    encoder = Encoder(3, 8, 2, d_ff=16, norm_first=norm_first)
    decoder = Decoder(2, 8, 2, d_ff=16, norm_first=norm_first)
    assert isinstance(encoder.norm, nn.LayerNorm if norm_first else nn.Identity)
    x, y = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    h = x
    for layer in encoder.layers:
        h = layer(h)
    torch.testing.assert_close(encoder(x), encoder.norm(h), **TOL)
    memory = encoder(x)
    g = y
    for layer in decoder.layers:
        g = layer(g, memory)
    torch.testing.assert_close(decoder(y, memory), decoder.norm(g), **TOL)


def test_encoder_ignores_padded_positions():
    torch.manual_seed(0)
    encoder = Encoder(2, 8, 2, d_ff=16).eval()
    x = torch.randn(2, 6, 8)
    kpm = torch.tensor([[False] * 6, [False, False, False, False, True, True]])
    y = x.clone()
    y[1, 4:] = torch.randn(2, 8) * 5
    a, b = encoder(x, key_padding_mask=kpm), encoder(y, key_padding_mask=kpm)
    torch.testing.assert_close(a[0], b[0], atol=0, rtol=0)
    torch.testing.assert_close(a[1, :4], b[1, :4], **TOL)
    assert not torch.allclose(a[1, 4:], b[1, 4:])


def test_decoder_is_causal_and_ignores_padded_memory():
    torch.manual_seed(0)
    decoder = Decoder(2, 8, 2, d_ff=16).eval()
    y, memory = torch.randn(2, 5, 8), torch.randn(2, 4, 8)
    mkpm = torch.tensor([[False, False, False, True], [False, False, False, False]])
    base = decoder(y, memory, memory_key_padding_mask=mkpm)
    future = y.clone()
    future[:, 3:] = torch.randn(2, 2, 8)
    torch.testing.assert_close(decoder(future, memory, memory_key_padding_mask=mkpm)[:, :3], base[:, :3], **TOL)
    padded = memory.clone()
    padded[0, 3] = torch.randn(8) * 5
    torch.testing.assert_close(decoder(y, padded, memory_key_padding_mask=mkpm), base, **TOL)
    # Without the causal mask the first position sees the future.
    free = decoder(y, memory, memory_key_padding_mask=mkpm, is_causal=False)
    assert not torch.allclose(free[:, 0], base[:, 0])


def test_blocks_check_heads():
    for make in (EncoderBlock, DecoderBlock):
        with pytest.raises(ValueError, match=r"embed_dim=10 is not divisible by num_heads=4.*d_model"):
            make(10, 4)
        with pytest.raises(ValueError, match=r"embed_dim=10 is not divisible by num_heads=4.*d_model"):
            make(10, 4, rotary=True)


# ---------------------------------------------------------------- recording
def test_record_attention_names_shapes_and_values(sdpa_spy):
    torch.manual_seed(0)
    B, H, S, T = 2, 2, 6, 4
    encoder = Encoder(2, 8, H, d_ff=16).eval()
    decoder = Decoder(2, 8, H, d_ff=16).eval()
    model = nn.ModuleDict({"encoder": encoder, "decoder": decoder})
    x, y = torch.randn(B, S, 8), torch.randn(B, T, 8)
    kpm = torch.tensor([[False] * 6, [False, False, False, False, True, True]])

    def forward():
        memory = encoder(x, key_padding_mask=kpm)
        return decoder(y, memory, memory_key_padding_mask=kpm)

    with use_reference_attention(False):
        fast = forward()
        assert sdpa_spy.calls == 6  # 2 encoder self, 2 decoder self, 2 decoder cross
        sdpa_spy.reset()
        with record_attention(model) as rec:
            recorded = forward()
        assert sdpa_spy.calls == 0
        again = forward()
        assert sdpa_spy.calls == 6
    torch.testing.assert_close(recorded, fast, **TOL)
    torch.testing.assert_close(again, fast, atol=0, rtol=0)

    expected_shapes = {
        "encoder.layers.0.self_attn": (B, H, S, S), "encoder.layers.1.self_attn": (B, H, S, S),
        "decoder.layers.0.self_attn": (B, H, T, T), "decoder.layers.1.self_attn": (B, H, T, T),
        "decoder.layers.0.cross_attn": (B, H, T, S), "decoder.layers.1.cross_attn": (B, H, T, S),
    }
    assert {name: tuple(calls[0].shape) for name, calls in rec.items()} == expected_shapes
    assert all(len(calls) == 1 for calls in rec.values())
    last = rec.last()
    for name, w in last.items():
        assert not w.requires_grad
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]), **TOL)
        if "self_attn" in name and name.startswith("decoder"):
            assert torch.all(w.triu(1) == 0)  # causal
        else:
            assert torch.all(w[1, :, :, 4:] == 0)  # padded keys
    # The recorded weights are the layer's own per-head weights.
    layer0 = encoder.layers[0]
    h = layer0.attn_res.norm(x)
    _, own = layer0.self_attn(h, h, h, key_padding_mask=kpm, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(last["encoder.layers.0.self_attn"], own, **TOL)


def test_record_attention_on_an_encoder_stack_uses_layer_names():
    torch.manual_seed(0)
    encoder = Encoder(2, 8, 2, d_ff=16)
    x = torch.randn(1, 3, 8)
    with record_attention(encoder) as rec:
        encoder(x)
        encoder(x[:, :2])
    assert sorted(rec) == ["layers.0.self_attn", "layers.1.self_attn"]
    assert [tuple(w.shape) for w in rec["layers.0.self_attn"]] == [(1, 2, 3, 3), (1, 2, 2, 2)]
    assert rec.last()["layers.1.self_attn"].shape == (1, 2, 2, 2)


def test_record_a_bare_layer_and_attention_pooling():
    torch.manual_seed(0)
    mha = MultiHeadAttention(4, 2)
    x = torch.randn(2, 3, 4)
    with record_attention(mha) as rec:
        out, _ = mha(x, x, x)
    _, w = mha(x, x, x, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(rec["MultiHeadAttention"][0], w)
    torch.testing.assert_close(out, mha(x, x, x)[0], **TOL)

    pooling = nn.Sequential()
    pooling.add_module("nw", Attention(KernelScore("gaussian")))
    q, k, v = torch.randn(2, 3), torch.randn(2, 5), torch.randn(2, 5)
    with record_attention(pooling) as rec:
        pooling.nw(q, k, v)
    _, w = pooling.nw(q, k, v, need_weights=True)
    assert rec["nw"][0].shape == (2, 3, 5)
    torch.testing.assert_close(rec["nw"][0], w)


def test_record_attention_restores_on_exit_even_after_an_error(sdpa_spy):
    torch.manual_seed(0)
    encoder = Encoder(1, 4, 2)
    x = torch.randn(1, 3, 4)
    with pytest.raises(RuntimeError, match="boom"), record_attention(encoder):
        raise RuntimeError("boom")
    assert encoder.layers[0].self_attn.recorder is None
    with record_attention(encoder) as outer:
        with record_attention(encoder) as inner:
            encoder(x)
        encoder(x)
    assert len(inner["layers.0.self_attn"]) == 1 and len(outer["layers.0.self_attn"]) == 1
    sdpa_spy.reset()
    with use_reference_attention(False):
        encoder(x)
    assert sdpa_spy.calls == 1 and encoder.layers[0].self_attn.recorder is None


def test_record_attention_without_attention_layers():
    with pytest.raises(ValueError, match=r"Sequential has no attnlab attention layers to record"):
        with record_attention(nn.Sequential(nn.Linear(2, 2))):
            pass


def test_record_attention_while_decoding_with_a_cache():
    torch.manual_seed(0)
    decoder = Decoder(1, 4, 2).eval()
    y, memory = torch.randn(1, 3, 4), torch.randn(1, 5, 4)
    cache = decoder.new_cache()
    with torch.no_grad(), record_attention(decoder) as rec:
        for t in range(3):
            decoder(y[:, t : t + 1], memory, cache=cache)
    assert [tuple(w.shape) for w in rec["layers.0.self_attn"]] == [(1, 2, 1, 1), (1, 2, 1, 2), (1, 2, 1, 3)]
    assert [tuple(w.shape) for w in rec["layers.0.cross_attn"]] == [(1, 2, 1, 5)] * 3
