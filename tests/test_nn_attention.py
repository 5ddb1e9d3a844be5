"""Attention pooling ``softmax(score(q, k)) · v`` with any score, masks and valid lengths."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck

from attnlab.nn import AdditiveScore, Attention, GeneralScore, KernelScore, ScaledDotScore, sequence_mask

pytestmark = pytest.mark.usefixtures("torch_single_thread")
SETTINGS = settings(max_examples=30, deadline=None)


@SETTINGS
@given(B=st.integers(1, 3), Q=st.integers(1, 4), K=st.integers(1, 5), dq=st.integers(1, 4), dk=st.integers(1, 4),
       dv=st.integers(1, 4), score_kind=st.sampled_from(["scaled_dot", "additive", "general"]),
       masking=st.sampled_from(["none", "mask", "lens_b", "lens_bq", "both"]), seed=st.integers(0, 2**31 - 1))
def test_context_is_softmax_of_scores_times_values(B, Q, K, dq, dk, dv, score_kind, masking, seed):
    torch.manual_seed(seed)
    if score_kind == "scaled_dot":
        dk = dq
        score = ScaledDotScore()
    elif score_kind == "additive":
        score = AdditiveScore(dq, dk, 3)
    else:
        score = GeneralScore(dq, dk)
    attention = Attention(score).eval()
    q, k, v = torch.randn(B, Q, dq), torch.randn(B, K, dk), torch.randn(B, K, dv)
    mask = torch.rand(B, Q, K) < 0.6 if masking in ("mask", "both") else None
    lens = None
    if masking in ("lens_b", "both"):
        lens = torch.randint(0, K + 1, (B,))
    elif masking == "lens_bq":
        lens = torch.randint(0, K + 1, (B, Q))
    allowed = torch.ones(B, Q, K, dtype=torch.bool)
    if mask is not None:
        allowed &= mask
    if lens is not None:
        allowed &= sequence_mask(lens if lens.dim() == 2 else lens.unsqueeze(1).expand(B, Q), K)

    context, weights = attention(q, k, v, mask=mask, valid_lens=lens, need_weights=True)
    raw = score(q, k)  # (B, Q, K)
    expected_w = torch.zeros(B, Q, K)
    for b in range(B):
        for i in range(Q):
            if allowed[b, i].any():
                expected_w[b, i][allowed[b, i]] = torch.softmax(raw[b, i][allowed[b, i]], dim=0)
    torch.testing.assert_close(weights, expected_w, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(context, expected_w @ v, atol=1e-5, rtol=1e-5)
    assert context.shape == (B, Q, dv)
    # A query with nothing to attend gets a zero context.
    assert torch.all(context[~allowed.any(-1)] == 0)

    context2, no_weights = attention(q, k, v, mask=mask, valid_lens=lens)
    assert no_weights is None
    torch.testing.assert_close(context2, context)


def test_nadaraya_watson_regression_with_scalar_inputs():
    """Kernel regression: queries (B, Q), keys (B, K), values (B, K) → (B, Q)."""
    torch.manual_seed(0)
    x_train = torch.sort(torch.rand(1, 20) * 5).values
    y_train = torch.sin(x_train)
    x_test = torch.linspace(0, 5, 7).unsqueeze(0)
    attention = Attention(KernelScore("gaussian", sigma=0.5))
    y_hat, weights = attention(x_test, x_train, y_train, need_weights=True)
    assert y_hat.shape == (1, 7) and weights.shape == (1, 7, 20)
    for i, x in enumerate(x_test[0].tolist()):
        kappa = [math.exp(-((x - xi) / 0.5) ** 2 / 2) for xi in x_train[0].tolist()]
        expected = sum(w * y for w, y in zip(kappa, y_train[0].tolist(), strict=True)) / sum(kappa)
        assert y_hat[0, i].item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_boxcar_query_without_neighbours_gets_zero():
    attention = Attention(KernelScore("boxcar", sigma=0.1))
    y_hat, _ = attention(torch.tensor([[0.0, 3.0]]), torch.tensor([[0.0, 0.05, 1.0]]), torch.tensor([[2.0, 4.0, 8.0]]))
    torch.testing.assert_close(y_hat, torch.tensor([[3.0, 0.0]]))


def test_dropout_acts_on_weights_only_in_training():
    torch.manual_seed(0)
    attention = Attention(ScaledDotScore(), dropout=0.5)
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    attention.eval()
    ctx_eval, w_eval = attention(q, k, v, need_weights=True)
    torch.testing.assert_close(ctx_eval, w_eval @ v)
    attention.train()
    ctx_train, w_train = attention(q, k, v, need_weights=True)
    torch.testing.assert_close(w_train, w_eval)  # weights are returned before dropout
    assert not torch.allclose(ctx_train, ctx_eval)


def test_gradcheck_attention_with_masked_rows():
    torch.manual_seed(0)
    attention = Attention(AdditiveScore(3, 2, 4)).double()
    q = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    lens = torch.tensor([[2, 0, 4], [1, 3, 0]])  # two queries see no key

    def f(q, k, v):
        return attention(q, k, v, valid_lens=lens)[0]

    assert gradcheck(f, (q, k, v))
    assert torch.all(f(q, k, v)[0, 1] == 0)
