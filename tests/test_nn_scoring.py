"""Scoring functions against their formulas, size rules, kernels (Nadaraya–Watson) and gradients."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck
from torch.func import functional_call

from attnlab.nn import KERNELS, AdditiveScore, DotScore, GeneralScore, KernelScore, ScaledDotScore, masked_softmax

pytestmark = pytest.mark.usefixtures("torch_single_thread")
SETTINGS = settings(max_examples=30, deadline=None)
seeds = st.integers(0, 2**31 - 1)


def gradcheck_module(module: torch.nn.Module, *inputs: torch.Tensor) -> bool:
    """gradcheck with respect to the inputs and every parameter of ``module`` (all in float64)."""
    names = [name for name, _ in module.named_parameters()]
    params = tuple(p.detach().double().requires_grad_() for _, p in module.named_parameters())

    def f(*args):
        return functional_call(module, dict(zip(names, args[: len(names)], strict=True)), args[len(names):])

    return gradcheck(f, params + inputs)


def _qk(B, Q, K, dq, dk, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(B, Q, dq, generator=gen, dtype=dtype), torch.randn(B, K, dk, generator=gen, dtype=dtype)


shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 6))


# ---------------------------------------------------------------- values against the formulas
@SETTINGS
@given(shape=shapes, seed=seeds)
def test_dot_and_scaled_dot_scores(shape, seed):
    B, Q, K, d = shape
    q, k = _qk(B, Q, K, d, d, seed)
    expected = torch.zeros(B, Q, K)
    for b in range(B):
        for i in range(Q):
            for j in range(K):
                expected[b, i, j] = sum(q[b, i, t] * k[b, j, t] for t in range(d))
    dot = DotScore()(q, k)
    assert dot.shape == (B, Q, K)
    torch.testing.assert_close(dot, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ScaledDotScore()(q, k), expected / math.sqrt(d), atol=1e-5, rtol=1e-5)


@SETTINGS
@given(shape=shapes, dk=st.integers(1, 6), hidden=st.integers(1, 5), seed=seeds)
def test_additive_score_is_bahdanau(shape, dk, hidden, seed):
    B, Q, K, dq = shape
    torch.manual_seed(seed)
    score = AdditiveScore(dq, dk, hidden)
    q, k = _qk(B, Q, K, dq, dk, seed)
    Wq, Wk, wv = score.W_q.weight, score.W_k.weight, score.w_v.weight[0]  # (h, dq), (h, dk), (h,)
    expected = torch.empty(B, Q, K)
    for b in range(B):
        for i in range(Q):
            for j in range(K):
                expected[b, i, j] = wv @ torch.tanh(Wq @ q[b, i] + Wk @ k[b, j])
    out = score(q, k)
    assert out.shape == (B, Q, K)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@SETTINGS
@given(shape=shapes, dk=st.integers(1, 6), seed=seeds)
def test_general_score_is_luong(shape, dk, seed):
    B, Q, K, dq = shape
    torch.manual_seed(seed)
    score = GeneralScore(dq, dk)
    q, k = _qk(B, Q, K, dq, dk, seed)
    W = score.W.weight  # (dq, dk)
    assert W.shape == (dq, dk)
    expected = torch.empty(B, Q, K)
    for b in range(B):
        for i in range(Q):
            for j in range(K):
                expected[b, i, j] = q[b, i] @ W @ k[b, j]
    torch.testing.assert_close(score(q, k), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "make", [DotScore, ScaledDotScore, lambda: KernelScore("gaussian")], ids=["DotScore", "ScaledDotScore", "Kernel"]
)
def test_scores_needing_equal_sizes_raise_a_clear_error(make):
    score = make()
    name = type(score).__name__
    q, k = torch.randn(2, 3, 4), torch.randn(2, 5, 6)
    with pytest.raises(ValueError, match=rf"{name} needs queries and keys of the same size, got 4 and 6; "
                                         r"use GeneralScore or AdditiveScore for different sizes"):
        score(q, k)


@pytest.mark.parametrize("make", [lambda: AdditiveScore(4, 6, 3), lambda: GeneralScore(4, 6)])
def test_scores_allowing_different_sizes(make):
    q, k = torch.randn(2, 3, 4), torch.randn(2, 5, 6)
    out = make()(q, k)
    assert out.shape == (2, 3, 5) and torch.isfinite(out).all()


# ---------------------------------------------------------------- kernels (Nadaraya–Watson)
def kernel_value(kernel: str, u: float) -> float:
    """κ(u), written independently of the library."""
    if kernel == "gaussian":
        return math.exp(-u * u / 2)
    if kernel == "boxcar":
        return 1.0 if abs(u) <= 1 else 0.0
    if kernel == "constant":
        return 1.0
    return max(0.0, 1 - u * u)


@SETTINGS
@given(kernel=st.sampled_from(KERNELS), sigma=st.floats(0.2, 3.0), B=st.integers(1, 2), Q=st.integers(1, 4),
       K=st.integers(1, 6), d=st.integers(0, 3), learnable=st.booleans(), seed=seeds)
def test_kernel_weights_are_nadaraya_watson(kernel, sigma, B, Q, K, d, learnable, seed):
    """softmax(KernelScore) = κ(‖q − kᵢ‖/σ) / Σⱼ κ(‖q − kⱼ‖/σ); a query with Σ κ = 0 gets zero weights."""
    gen = torch.Generator().manual_seed(seed)
    qshape, kshape = ((B, Q), (B, K)) if d == 0 else ((B, Q, d), (B, K, d))
    q, k = torch.rand(qshape, generator=gen) * 2, torch.rand(kshape, generator=gen) * 2
    score = KernelScore(kernel, sigma=sigma, learnable=learnable)
    torch.testing.assert_close(score.sigma, torch.tensor(sigma), rtol=1e-6, atol=0)
    weights = masked_softmax(score(q, k))
    assert weights.shape == (B, Q, K)
    qv, kv = (q.unsqueeze(-1), k.unsqueeze(-1)) if d == 0 else (q, k)
    expected = torch.zeros(B, Q, K, dtype=torch.float64)
    for b in range(B):
        for i in range(Q):
            kappas = [kernel_value(kernel, math.dist(qv[b, i].tolist(), kv[b, j].tolist()) / sigma) for j in range(K)]
            total = sum(kappas)
            if total > 0:
                expected[b, i] = torch.tensor(kappas, dtype=torch.float64) / total
    torch.testing.assert_close(weights.double(), expected, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_weights_at_fixed_points(kernel):
    """Several keys inside the support of every kernel, vector inputs, σ = 1.5."""
    q = torch.tensor([[[0.0, 0.0], [1.0, -0.5]]])  # (1, 2, 2)
    k = torch.tensor([[[0.0, 0.0], [0.3, 0.4], [0.9, 0.0], [0.0, 1.2], [2.0, 2.0]]])  # (1, 5, 2)
    weights = masked_softmax(KernelScore(kernel, sigma=1.5)(q, k))
    for i in range(2):
        kappas = [kernel_value(kernel, math.dist(q[0, i].tolist(), k[0, j].tolist()) / 1.5) for j in range(5)]
        expected = torch.tensor(kappas) / sum(kappas)
        torch.testing.assert_close(weights[0, i], expected, atol=1e-6, rtol=1e-5)


def test_kernel_with_no_key_in_support_gives_zero_weights():
    q = torch.tensor([[0.0, 10.0]])  # (1, 2): the second query is far from every key
    k = torch.tensor([[0.0, 0.5, 1.0]])  # (1, 3)
    for kernel in ("boxcar", "epanechikov"):
        weights = masked_softmax(KernelScore(kernel, sigma=1.0)(q, k))
        assert torch.all(weights[0, 1] == 0) and torch.isfinite(weights).all()
        torch.testing.assert_close(weights[0, 0].sum(), torch.tensor(1.0))


def test_boxcar_support_is_closed():
    weights = masked_softmax(KernelScore("boxcar", sigma=2.0)(torch.tensor([[0.0]]), torch.tensor([[2.0, -2.0, 2.5]])))
    torch.testing.assert_close(weights, torch.tensor([[[0.5, 0.5, 0.0]]]))


def test_kernel_sigma_learnable_or_fixed():
    fixed = KernelScore("gaussian", sigma=0.5)
    assert list(fixed.parameters()) == [] and "log_sigma" in dict(fixed.named_buffers())
    learn = KernelScore("gaussian", sigma=0.5, learnable=True)
    assert [name for name, _ in learn.named_parameters()] == ["log_sigma"]
    torch.testing.assert_close(learn.sigma, torch.tensor(0.5))
    q, k, v = torch.randn(1, 3), torch.randn(1, 4), torch.randn(1, 4)
    (masked_softmax(learn(q, k)) @ v.unsqueeze(-1)).sum().backward()
    assert learn.log_sigma.grad is not None and learn.log_sigma.grad.abs() > 0
    assert "learnable=True" in repr(learn) and "kernel='gaussian'" in repr(learn)


def test_kernel_errors():
    with pytest.raises(ValueError, match=r"unknown kernel 'triangle'; choose one of gaussian, boxcar, constant, "
                                         r"epanechikov"):
        KernelScore("triangle")
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match=rf"kernel width sigma must be > 0, got {bad}"):
            KernelScore("gaussian", sigma=bad)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize(
    ("make", "dq", "dk"),
    [(DotScore, 3, 3), (ScaledDotScore, 3, 3), (lambda: AdditiveScore(3, 2, 4), 3, 2),
     (lambda: GeneralScore(3, 2), 3, 2)],
    ids=["dot", "scaled_dot", "additive", "general"],
)
def test_gradcheck_scores(make, dq, dk):
    torch.manual_seed(0)
    q, k = _qk(2, 3, 4, dq, dk, seed=1, dtype=torch.float64)
    assert gradcheck_module(make(), q.requires_grad_(), k.requires_grad_())


@pytest.mark.parametrize("kernel", KERNELS)
def test_gradcheck_kernel_weights_with_learnable_sigma(kernel):
    """Gradients of the Nadaraya–Watson estimate Σ wᵢ vᵢ w.r.t. queries, keys, values and log σ."""
    score = KernelScore(kernel, sigma=1.3, learnable=True)
    # Points are at least 0.05 from the support edge |q - k| = σ, so finite differences never cross it.
    q = torch.tensor([[0.0, 0.4, 5.0]], dtype=torch.float64, requires_grad=True)  # 5.0: outside every support
    k = torch.tensor([[0.3, -0.6, 0.9, 1.9]], dtype=torch.float64, requires_grad=True)
    v = torch.tensor([[1.0, -2.0, 0.5, 3.0]], dtype=torch.float64, requires_grad=True)

    def estimate(log_sigma, q, k, v):
        scores = functional_call(score, {"log_sigma": log_sigma}, (q, k))  # (1, Q, K)
        return (masked_softmax(scores) @ v.unsqueeze(-1)).squeeze(-1)  # (1, Q)

    log_sigma = score.log_sigma.detach().double().requires_grad_()
    assert gradcheck(estimate, (log_sigma, q, k, v))


def test_gradcheck_epanechikov_near_the_support_edge():
    score = KernelScore("epanechikov", sigma=1.0, learnable=True)
    q = torch.tensor([[0.0]], dtype=torch.float64, requires_grad=True)
    # |q - k| just inside (0.999, 0.9995) and just outside (1.001) the support edge σ = 1.
    k = torch.tensor([[0.2, 0.999, -0.9995, 1.001]], dtype=torch.float64, requires_grad=True)
    v = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)

    def estimate(log_sigma, q, k):
        scores = functional_call(score, {"log_sigma": log_sigma}, (q, k))
        return (masked_softmax(scores) @ v.unsqueeze(-1)).squeeze(-1)

    log_sigma = score.log_sigma.detach().double().requires_grad_()
    assert gradcheck(estimate, (log_sigma, q, k), eps=1e-7, atol=1e-5)
    weights = masked_softmax(score(q, k))
    assert weights[0, 0, 3] == 0 and torch.all(weights[0, 0, :3] > 0)
    weights.pow(2).sum().backward()
    assert torch.isfinite(k.grad).all() and torch.isfinite(score.log_sigma.grad)


def test_epanechikov_exactly_on_the_edge_has_finite_gradients():
    score = KernelScore("epanechikov", sigma=1.0, learnable=True)
    q = torch.tensor([[0.0]], requires_grad=True)
    k = torch.tensor([[1.0, 0.5]], requires_grad=True)  # first key exactly on the edge: κ = 0
    weights = masked_softmax(score(q, k))
    torch.testing.assert_close(weights, torch.tensor([[[0.0, 1.0]]]))
    (weights * torch.tensor([1.0, 2.0])).sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all() and torch.isfinite(score.log_sigma.grad)
