"""masked_softmax, sequence_mask and causal_mask against independent references."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.nn import causal_mask, masked_softmax, sequence_mask

pytestmark = pytest.mark.usefixtures("torch_single_thread")
SETTINGS = settings(max_examples=40, deadline=None)
seeds = st.integers(0, 2**31 - 1)


def reference_softmax(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Softmax over the allowed keys of each row, written as a loop; a row with none gets zeros."""
    scores64 = scores.double()
    allowed = allowed.expand(scores.shape)
    out = torch.zeros_like(scores64)
    K = scores.shape[-1]
    flat_s, flat_a, flat_o = scores64.reshape(-1, K), allowed.reshape(-1, K), out.view(-1, K)  # (rows, K)
    for row in range(flat_s.shape[0]):
        keep = [j for j in range(flat_s.shape[1]) if flat_a[row, j]]
        if not keep:
            continue
        top = max(flat_s[row, j].item() for j in keep)
        total = sum(math.exp(flat_s[row, j].item() - top) for j in keep)
        for j in keep:
            flat_o[row, j] = math.exp(flat_s[row, j].item() - top) / total
    return out


@st.composite
def scores_and_mask(draw):
    """Random (B, Q, K) or (B, H, Q, K) scores and a random boolean mask of a broadcastable shape."""
    four_d = draw(st.booleans())
    B, H, Q, K = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 5))
    shape = (B, H, Q, K) if four_d else (B, Q, K)
    gen = torch.Generator().manual_seed(draw(seeds))
    scores = torch.randn(shape, generator=gen) * 3
    mask_shape = draw(st.sampled_from(["full", "qk", "per_batch_key"]))
    if mask_shape == "full":
        mshape = shape
    elif mask_shape == "qk":
        mshape = (Q, K)
    else:
        mshape = (B, 1, 1, K) if four_d else (B, 1, K)
    p_keep = draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
    mask = torch.rand(mshape, generator=gen) < p_keep
    return scores, mask


@SETTINGS
@given(data=scores_and_mask())
def test_bool_mask_matches_reference(data):
    scores, mask = data
    weights = masked_softmax(scores, mask=mask)
    assert weights.shape == scores.shape
    torch.testing.assert_close(weights.double(), reference_softmax(scores, mask), atol=1e-6, rtol=1e-5)
    allowed = mask.expand(scores.shape)
    assert torch.all(weights[~allowed] == 0)
    sums = weights.sum(-1)
    any_allowed = allowed.any(-1)
    torch.testing.assert_close(sums[any_allowed], torch.ones_like(sums[any_allowed]))
    assert torch.all(sums[~any_allowed] == 0)


@SETTINGS
@given(data=scores_and_mask())
def test_no_mask_is_plain_softmax(data):
    scores, _ = data
    torch.testing.assert_close(masked_softmax(scores), torch.softmax(scores, dim=-1))


@SETTINGS
@given(B=st.integers(1, 3), H=st.integers(0, 2), Q=st.integers(1, 4), K=st.integers(1, 5), per_query=st.booleans(),
       seed=seeds)
def test_valid_lens_as_in_d2l(B, H, Q, K, per_query, seed):
    """valid_lens (B,) or (B, Q): key j is used by row (b, q) iff j < len; len 0 gives zeros."""
    gen = torch.Generator().manual_seed(seed)
    shape = (B, H, Q, K) if H else (B, Q, K)
    scores = torch.randn(shape, generator=gen)
    lens = torch.randint(0, K + 1, (B, Q) if per_query else (B,), generator=gen)
    allowed = torch.zeros(shape, dtype=torch.bool)
    for b in range(B):
        for q in range(Q):
            n = lens[b, q] if per_query else lens[b]
            if H:
                allowed[b, :, q, :n] = True
            else:
                allowed[b, q, :n] = True
    weights = masked_softmax(scores, valid_lens=lens)
    torch.testing.assert_close(weights.double(), reference_softmax(scores, allowed), atol=1e-6, rtol=1e-5)


@SETTINGS
@given(data=scores_and_mask(), seed=seeds)
def test_mask_and_valid_lens_combine_with_and(data, seed):
    scores, mask = data
    B, K = scores.shape[0], scores.shape[-1]
    lens = torch.randint(0, K + 1, (B,), generator=torch.Generator().manual_seed(seed))
    lens_allowed = sequence_mask(lens, K).view(B, *([1] * (scores.dim() - 2)), K)
    expected = reference_softmax(scores, mask.expand(scores.shape) & lens_allowed)
    torch.testing.assert_close(masked_softmax(scores, mask=mask, valid_lens=lens).double(), expected,
                               atol=1e-6, rtol=1e-5)


def test_d2l_example_values():
    """The d2l example: two sequences with valid lengths 2 and 3 among 4 keys."""
    scores = torch.tensor([[[1.0, 2.0, 3.0, 4.0]], [[0.0, 0.0, 0.0, 0.0]]])  # (2, 1, 4)
    weights = masked_softmax(scores, valid_lens=torch.tensor([2, 3]))
    e = math.exp(1.0)
    expected = torch.tensor([[[1 / (1 + e), e / (1 + e), 0, 0]], [[1 / 3, 1 / 3, 1 / 3, 0]]])
    torch.testing.assert_close(weights, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("how", ["mask", "valid_lens", "neg_inf_scores"])
def test_fully_masked_rows_are_zero_with_finite_gradients(dtype, how):
    torch.manual_seed(0)
    scores = torch.randn(2, 3, 4, dtype=dtype, requires_grad=True)
    mask = lens = None
    inputs = scores
    if how == "mask":
        mask = torch.ones(2, 3, 4, dtype=torch.bool)
        mask[0, 1] = False
        mask[1] = False
    elif how == "valid_lens":
        lens = torch.tensor([[3, 0, 2], [0, 0, 0]])
    else:
        block = torch.zeros(2, 3, 4, dtype=torch.bool)
        block[0, 1] = True
        block[1] = True
        inputs = scores.masked_fill(block, float("-inf"))
    weights = masked_softmax(inputs, mask=mask, valid_lens=lens)
    assert weights.dtype == dtype
    assert torch.isfinite(weights).all()
    assert torch.all(weights[0, 1] == 0) and torch.all(weights[1] == 0)  # zeros, not NaN, not uniform
    torch.testing.assert_close(weights[0, 0].float().sum(), torch.tensor(1.0), atol=1e-2, rtol=0)
    upstream = torch.randn(2, 3, 4, dtype=dtype)
    (weights * upstream).sum().backward()
    assert torch.isfinite(scores.grad).all()
    assert torch.all(scores.grad[0, 1] == 0) and torch.all(scores.grad[1] == 0)
    assert scores.grad[0, 0].abs().sum() > 0


def test_large_scores_do_not_overflow():
    scores = torch.tensor([[[1e4, 1e4 - 1.0, -1e4], [-3e38, 3e38, 0.0]]])
    weights = masked_softmax(scores, mask=torch.tensor([True, True, False]))
    assert torch.isfinite(weights).all()
    torch.testing.assert_close(weights[0, 0], torch.tensor([1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1)),
                                                            0.0]))
    torch.testing.assert_close(weights[0, 1], torch.tensor([0.0, 1.0, 0.0]))


def _masked_rows_case(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(2, 3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = torch.rand(2, 3, 4, generator=gen) < 0.6
    mask[0, 2] = False  # a fully masked row
    mask[1, 0] = True
    return scores, mask


def test_gradcheck_with_mask_and_masked_rows():
    scores, mask = _masked_rows_case()
    assert torch.autograd.gradcheck(lambda s: masked_softmax(s, mask=mask), (scores,))
    assert torch.autograd.gradgradcheck(lambda s: masked_softmax(s, mask=mask), (scores,))


def test_gradcheck_with_valid_lens_and_masked_rows():
    scores, _ = _masked_rows_case(1)
    lens = torch.tensor([[0, 4, 2], [1, 0, 3]])
    assert torch.autograd.gradcheck(lambda s: masked_softmax(s, valid_lens=lens), (scores,))
    scores4 = torch.randn(2, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: masked_softmax(s, valid_lens=torch.tensor([0, 3])), (scores4,))


def test_non_bool_mask_is_rejected():
    with pytest.raises(TypeError, match=r"mask must be a boolean tensor \(True = attend\).*float32"):
        masked_softmax(torch.zeros(1, 2, 2), mask=torch.ones(2, 2))


def test_valid_lens_of_wrong_rank_is_rejected():
    with pytest.raises(ValueError, match=r"valid_lens must have shape \(B,\) or \(B, Q\), got \(1, 2, 2\)"):
        masked_softmax(torch.zeros(1, 2, 2), valid_lens=torch.ones(1, 2, 2, dtype=torch.long))


def test_sequence_mask():
    expected = torch.tensor([[False, False, False, False], [True, True, False, False], [True, True, True, True]])
    assert torch.equal(sequence_mask(torch.tensor([0, 2, 5]), 4), expected)
    per_query = sequence_mask(torch.tensor([[1, 3]]), 3)
    assert torch.equal(per_query, torch.tensor([[[True, False, False], [True, True, True]]]))


@pytest.mark.parametrize(("q_len", "k_len"), [(1, 1), (4, 4), (1, 5), (3, 5), (5, 3)])
def test_causal_mask_is_bottom_right_aligned(q_len, k_len):
    mask = causal_mask(q_len, k_len)
    assert mask.shape == (q_len, k_len) and mask.dtype == torch.bool
    for i in range(q_len):
        for j in range(k_len):
            assert bool(mask[i, j]) == (j <= i + k_len - q_len)
    if q_len == k_len:
        assert torch.equal(mask, torch.ones(q_len, q_len, dtype=torch.bool).tril())
    assert torch.equal(causal_mask(q_len), causal_mask(q_len, q_len))
