"""KV cache: incremental decoding equals the full causal forward (MHA, rotary, Encoder and Decoder stacks)."""

from __future__ import annotations

import contextlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.nn import Decoder, Encoder, KVCache, MultiHeadAttention, RotaryEmbedding

pytestmark = pytest.mark.usefixtures("torch_single_thread")
SETTINGS = settings(max_examples=25, deadline=None)
TOL = {"atol": 1e-5, "rtol": 1e-5}


@st.composite
def chunking(draw, max_len: int = 12) -> list[tuple[int, int]]:
    """A length T and a split of range(T) into consecutive chunks [(start, end), ...]."""
    T = draw(st.integers(1, max_len))
    one_at_a_time = draw(st.booleans())
    cuts = list(range(1, T)) if one_at_a_time else sorted(draw(st.sets(st.integers(1, max(1, T - 1)), max_size=4)))
    bounds = [0, *[c for c in cuts if 0 < c < T], T]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def grad_mode(grad: bool):
    """With grad the cache concatenates (keeps the graph); without it writes into a growing buffer."""
    return contextlib.nullcontext() if grad else torch.no_grad()


@SETTINGS
@given(chunks=chunking(), B=st.integers(1, 2), H=st.sampled_from([1, 2]), head_dim=st.sampled_from([2, 4]),
       rotary=st.booleans(), grad=st.booleans(), padding=st.booleans(), need_weights=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_mha_cache_equals_full_causal_forward(chunks, B, H, head_dim, rotary, grad, padding, need_weights, seed):
    torch.manual_seed(seed)
    E, T = H * head_dim, chunks[-1][1]
    mha = MultiHeadAttention(E, H, rotary=RotaryEmbedding(head_dim) if rotary else None)
    x = torch.randn(B, T, E)
    kpm = torch.rand(B, T) < 0.3 if padding else None
    with grad_mode(grad):
        full, full_w = mha(x, x, x, key_padding_mask=kpm, is_causal=True, need_weights=True,
                           average_attn_weights=False)  # (B, T, E), (B, H, T, T)
        cache = KVCache()
        outs = []
        for start, end in chunks:
            step = x[:, start:end]
            out, w = mha(step, step, step, key_padding_mask=None if kpm is None else kpm[:, :end], is_causal=True,
                         cache=cache, need_weights=need_weights, average_attn_weights=False)
            assert cache.length == end and cache.keys.shape == (B, H, end, head_dim)
            if need_weights:
                torch.testing.assert_close(w, full_w[:, :, start:end, :end], **TOL)
            outs.append(out)
    torch.testing.assert_close(torch.cat(outs, dim=1), full, **TOL)


def test_cache_buffer_grows_past_its_capacity():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, rotary=RotaryEmbedding(4)).eval()
    x = torch.randn(2, 40, 8)
    with torch.no_grad():
        full, _ = mha(x, x, x, is_causal=True)
        cache = KVCache()
        steps = [mha(x[:, t : t + 1], x[:, t : t + 1], x[:, t : t + 1], is_causal=True, cache=cache)[0]
                 for t in range(40)]
    assert cache.length == 40 and cache.keys.shape == (2, 2, 40, 4) and cache.values.shape == (2, 2, 40, 4)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)
    cache.reset()
    assert cache.length == 0 and cache.keys is None and cache.values is None


def test_training_through_the_cache_gives_the_full_gradients():
    torch.manual_seed(0)
    mha = MultiHeadAttention(4, 2)
    x = torch.randn(2, 5, 4)
    target = torch.randn(2, 5, 4)
    full, _ = mha(x, x, x, is_causal=True)
    full_grads = torch.autograd.grad(((full - target) ** 2).sum(), list(mha.parameters()))
    cache = KVCache()
    steps = torch.cat([mha(x[:, t : t + 1], x[:, t : t + 1], x[:, t : t + 1], is_causal=True, cache=cache)[0]
                       for t in range(5)], dim=1)
    step_grads = torch.autograd.grad(((steps - target) ** 2).sum(), list(mha.parameters()))
    for a, b in zip(full_grads, step_grads, strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("rotary", [False, True], ids=["plain", "rotary"])
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "unpacked"])
def test_static_cache_for_cross_attention(packed, rotary):
    """The memory is projected on the first call and reused; queries keep their absolute positions."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(4, 2, kdim=None if packed else 3, vdim=None if packed else 3,
                             rotary=RotaryEmbedding(2) if rotary else None)
    memory = torch.randn(2, 6, 4 if packed else 3)
    queries = torch.randn(2, 5, 4)
    mkpm = torch.tensor([[False] * 6, [False, False, True, True, True, True]])
    with torch.no_grad():
        full, _ = mha(queries, memory, memory, key_padding_mask=mkpm)
        cache = KVCache(static=True)
        for _ in range(2):  # a reset cache decodes the same again
            cache.reset()
            steps = [mha(queries[:, :2], memory, memory, key_padding_mask=mkpm, cache=cache)[0]]
            assert cache.length == 6
            other = torch.randn_like(memory)  # ignored: the cache already holds the projected memory
            steps += [mha(queries[:, t : t + 1], other, other, key_padding_mask=mkpm, cache=cache)[0]
                      for t in range(2, 5)]
            assert cache.length == 6
            torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)


def test_cache_with_sequence_first_layout():
    torch.manual_seed(0)
    mha = MultiHeadAttention(4, 2, batch_first=False, rotary=RotaryEmbedding(2))
    x = torch.randn(6, 2, 4)  # (L, B, E)
    with torch.no_grad():
        full, _ = mha(x, x, x, is_causal=True)
        cache = KVCache()
        steps = [mha(x[a:b], x[a:b], x[a:b], is_causal=True, cache=cache)[0] for a, b in [(0, 1), (1, 4), (4, 6)]]
    torch.testing.assert_close(torch.cat(steps, dim=0), full, **TOL)


def test_static_cache_is_filled_once():
    cache = KVCache(static=True)
    k = torch.randn(1, 2, 3, 4)
    cache.append(k, k)
    with pytest.raises(RuntimeError, match=r"a static KVCache is filled once; call reset\(\) before reusing it"):
        cache.append(k, k)
    cache.reset()
    keys, values = cache.append(2 * k, k)
    torch.testing.assert_close(keys, 2 * k)


@SETTINGS
@given(chunks=chunking(max_len=8), rotary=st.booleans(), norm_first=st.booleans(), grad=st.booleans(),
       padding=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_encoder_stack_cache_equals_full_causal_forward(chunks, rotary, norm_first, grad, padding, seed):
    torch.manual_seed(seed)
    T = chunks[-1][1]
    encoder = Encoder(num_layers=2, d_model=8, num_heads=2, d_ff=16, norm_first=norm_first, rotary=rotary).eval()
    x = torch.randn(2, T, 8)
    kpm = torch.rand(2, T) < 0.3 if padding else None
    with grad_mode(grad):
        full = encoder(x, key_padding_mask=kpm, is_causal=True)
        cache = encoder.new_cache()
        steps = [encoder(x[:, a:b], key_padding_mask=None if kpm is None else kpm[:, :b], is_causal=True, cache=cache)
                 for a, b in chunks]
    assert [c.length for c in cache] == [T, T]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)


@SETTINGS
@given(chunks=chunking(max_len=8), S=st.integers(1, 6), rotary=st.booleans(), norm_first=st.booleans(),
       grad=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_decoder_stack_cache_equals_full_forward(chunks, S, rotary, norm_first, grad, seed):
    """Causal self-attention cache plus the static cross-attention cache over the memory."""
    torch.manual_seed(seed)
    T = chunks[-1][1]
    decoder = Decoder(num_layers=2, d_model=8, num_heads=2, d_ff=16, norm_first=norm_first, rotary=rotary).eval()
    x, memory = torch.randn(2, T, 8), torch.randn(2, S, 8)
    mkpm = torch.zeros(2, S, dtype=torch.bool)
    mkpm[1, S // 2 + 1 :] = True
    with grad_mode(grad):
        full = decoder(x, memory, memory_key_padding_mask=mkpm)
        cache = decoder.new_cache()
        steps = [decoder(x[:, a:b], memory, memory_key_padding_mask=mkpm, cache=cache) for a, b in chunks]
    assert all(self_c.length == T and cross_c.length == S for self_c, cross_c in cache)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)
