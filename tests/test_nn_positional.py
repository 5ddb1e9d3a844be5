"""Positional encodings: sinusoidal values and growth, learned limits, rotary's relative property."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.nn import LearnedPositionalEncoding, RotaryEmbedding, SinusoidalPositionalEncoding, sinusoidal_table

pytestmark = pytest.mark.usefixtures("torch_single_thread")
SETTINGS = settings(max_examples=40, deadline=None)


def vaswani(t: int, j: int, d: int) -> float:
    """P[t, 2i] = sin(t / 10000^(2i/d)), P[t, 2i+1] = cos(t / 10000^(2i/d)), computed in float64."""
    i2 = j - j % 2
    angle = t / 10000 ** (i2 / d)
    return math.sin(angle) if j % 2 == 0 else math.cos(angle)


# ---------------------------------------------------------------- sinusoidal
@pytest.mark.parametrize("d_model", [1, 2, 5, 6, 7, 16])
def test_sinusoidal_table_matches_the_formula(d_model):
    table = sinusoidal_table(60, d_model)
    assert table.shape == (60, d_model) and table.dtype == torch.float32
    expected = torch.tensor([[vaswani(t, j, d_model) for j in range(d_model)] for t in range(60)])
    torch.testing.assert_close(table, expected, atol=1e-5, rtol=0)


def test_sinusoidal_module_adds_the_table_with_offset():
    pe = SinusoidalPositionalEncoding(6, max_len=32)
    x = torch.randn(2, 5, 6)
    expected = torch.tensor([[vaswani(t, j, 6) for j in range(6)] for t in range(3, 8)])
    torch.testing.assert_close(pe(x, offset=3), x + expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(pe(x), x + sinusoidal_table(5, 6))
    assert "table" not in pe.state_dict()


@pytest.mark.parametrize("d_model", [4, 7])
def test_sinusoidal_grows_past_max_len(d_model):
    """A longer input is neither an error nor truncated: it equals a module built with a larger max_len."""
    pe = SinusoidalPositionalEncoding(d_model, max_len=4)
    x = torch.randn(2, 50, d_model)
    out = pe(x)
    assert out.shape == x.shape and pe.table.shape[0] >= 50
    torch.testing.assert_close(out, SinusoidalPositionalEncoding(d_model, max_len=256)(x), atol=0, rtol=0)
    expected_last = torch.tensor([vaswani(49, j, d_model) for j in range(d_model)])
    torch.testing.assert_close(out[:, 49] - x[:, 49], expected_last.expand(2, -1), atol=1e-5, rtol=0)
    # With an offset beyond the grown table as well.
    y = torch.randn(1, 3, d_model)
    torch.testing.assert_close(pe(y, offset=300), SinusoidalPositionalEncoding(d_model, max_len=400)(y, offset=300),
                               atol=0, rtol=0)
    assert "table" not in pe.state_dict()


# ---------------------------------------------------------------- learned
def test_learned_adds_one_vector_per_position():
    pe = LearnedPositionalEncoding(4, max_len=6)
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(pe(x, offset=2), x + pe.embedding[2:5])
    assert pe(torch.randn(1, 6, 4)).shape == (1, 6, 4)  # exactly max_len is fine
    assert [name for name, _ in pe.named_parameters()] == ["embedding"]


def test_learned_beyond_max_len_names_the_fix():
    pe = LearnedPositionalEncoding(4, max_len=6)
    fix = r"build it with a larger max_len, or use SinusoidalPositionalEncoding or RotaryEmbedding"
    with pytest.raises(ValueError, match=rf"position 6 is beyond LearnedPositionalEncoding\(max_len=6\); {fix}"):
        pe(torch.randn(1, 7, 4))
    with pytest.raises(ValueError, match=rf"position 7 is beyond LearnedPositionalEncoding\(max_len=6\); {fix}"):
        pe(torch.randn(1, 2, 4), offset=6)


# ---------------------------------------------------------------- rotary
def rotate(x: torch.Tensor, pos: int, base: float = 10000.0) -> torch.Tensor:
    """RoPE of one vector x (D,), written out: pair (x_i, x_{i+D/2}) turns by angle pos·base^(-2i/D)."""
    D = x.shape[0]
    out = torch.empty(D, dtype=torch.float64)
    for i in range(D // 2):
        a = pos * base ** (-2 * i / D)
        x1, x2 = x[i].item(), x[i + D // 2].item()
        out[i] = x1 * math.cos(a) - x2 * math.sin(a)
        out[i + D // 2] = x2 * math.cos(a) + x1 * math.sin(a)
    return out


def _at(rope: RotaryEmbedding, v: torch.Tensor, pos: int) -> torch.Tensor:
    return rope(v.view(1, 1, 1, -1), offset=pos).view(-1)


@SETTINGS
@given(half=st.integers(1, 8), t=st.integers(0, 100), s=st.integers(0, 100), shift=st.integers(0, 100),
       seed=st.integers(0, 2**31 - 1))
def test_rotary_scores_depend_only_on_relative_position(half, t, s, shift, seed):
    D = 2 * half
    gen = torch.Generator().manual_seed(seed)
    q, k = torch.randn(D, generator=gen), torch.randn(D, generator=gen)
    q, k = q / q.norm(), k / k.norm()
    rope = RotaryEmbedding(D)
    score = _at(rope, q, t) @ _at(rope, k, s)
    shifted = _at(rope, q, t + shift) @ _at(rope, k, s + shift)
    torch.testing.assert_close(score, shifted, atol=5e-5, rtol=0)
    # Against the written-out rotation, and the norm is preserved.
    torch.testing.assert_close(_at(rope, q, t).double(), rotate(q, t), atol=5e-5, rtol=0)
    torch.testing.assert_close(_at(rope, q, t).norm(), q.norm(), atol=1e-5, rtol=0)


def test_rotary_position_zero_is_identity_and_offset_slices():
    torch.manual_seed(0)
    rope = RotaryEmbedding(6)
    x = torch.randn(2, 3, 100, 6)  # (B, H, L, D): longer than the initial 64-position table
    full = rope(x)
    torch.testing.assert_close(full[:, :, 0], x[:, :, 0])
    torch.testing.assert_close(rope(x[:, :, 70:80], offset=70), full[:, :, 70:80])
    torch.testing.assert_close(full.norm(dim=-1), x.norm(dim=-1))
    assert "dim=6" in repr(rope)


def test_rotary_needs_an_even_size():
    with pytest.raises(ValueError, match=r"RotaryEmbedding needs an even head size, got 5"):
        RotaryEmbedding(5)
