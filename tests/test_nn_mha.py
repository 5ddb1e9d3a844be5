"""MultiHeadAttention: fast path vs reference path vs torch.nn.MultiheadAttention, masks, errors, gradients."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor
from torch.autograd import gradcheck
from torch.func import functional_call

from attnlab.nn import MultiHeadAttention, RotaryEmbedding, causal_mask, check_heads, use_reference_attention

pytestmark = pytest.mark.usefixtures("torch_single_thread")
SETTINGS = settings(max_examples=40, deadline=None)
TOL = {"atol": 1e-5, "rtol": 1e-5}
NEG_INF = float("-inf")


# ---------------------------------------------------------------- cases
@dataclass
class Case:
    """One MHA configuration with inputs and torch-convention masks."""

    B: int
    L: int
    S: int
    H: int
    E: int
    kdim: int | None
    vdim: int | None
    bias: bool
    batch_first: bool
    query: Tensor
    key: Tensor
    value: Tensor
    key_padding_mask: Tensor | None
    attn_mask: Tensor | None

    def blocked(self) -> Tensor:
        """(B, H, L, S) bool, True where a query may not look at a key (after all masks)."""
        out = torch.zeros(self.B, self.H, self.L, self.S, dtype=torch.bool)
        if self.key_padding_mask is not None:
            out |= _is_blocked(self.key_padding_mask).view(self.B, 1, 1, self.S)
        if self.attn_mask is not None:
            am = _is_blocked(self.attn_mask)
            out |= am.view(1, 1, self.L, self.S) if am.dim() == 2 else am.view(self.B, self.H, self.L, self.S)
        return out

    def inputs(self) -> tuple[Tensor, Tensor, Tensor]:
        """query, key, value in the module's layout ((L, B, E) when not batch_first)."""
        if self.batch_first:
            return self.query, self.key, self.value
        if self.query is self.key and self.key is self.value:
            x = self.query.transpose(0, 1)
            return x, x, x
        return self.query.transpose(0, 1), self.key.transpose(0, 1), self.value.transpose(0, 1)

    def to_batch_first(self, out: Tensor) -> Tensor:
        return out if self.batch_first else out.transpose(0, 1)


def _is_blocked(mask: Tensor) -> Tensor:
    return mask if mask.dtype == torch.bool else torch.isneginf(mask)


def _mask(gen: torch.Generator, kind: str, shape: tuple[int, ...], p_block: float) -> Tensor | None:
    """A bool mask (True = blocked) or a float additive mask (finite values and -inf) of ``shape``."""
    if kind == "none":
        return None
    blocked = torch.rand(shape, generator=gen) < p_block
    if kind == "bool":
        return blocked
    return (torch.randn(shape, generator=gen) * 2).masked_fill(blocked, NEG_INF)


def build_case(B, L, S, H, head_dim, kdim, vdim, bias, batch_first, self_attention, kpm_kind, am_kind, am_3d,
               p_block, seed) -> Case:
    gen = torch.Generator().manual_seed(seed)
    E = H * head_dim
    if self_attention:
        S = L
        kdim = vdim = None
    x = torch.randn(B, L, E, generator=gen)
    if self_attention:
        key = value = x
    else:
        key = torch.randn(B, S, kdim or E, generator=gen)
        value = torch.randn(B, S, vdim or E, generator=gen)
    kpm = _mask(gen, kpm_kind, (B, S), p_block)
    am = _mask(gen, am_kind, (B * H, L, S) if am_3d else (L, S), p_block)
    return Case(B, L, S, H, E, kdim, vdim, bias, batch_first, x, key, value, kpm, am)


@st.composite
def cases(draw, torch_compatible: bool = False) -> Case:
    unpacked = draw(st.booleans())
    mask_kinds = st.sampled_from(["none", "bool", "float"])
    kpm_kind = draw(mask_kinds)
    if torch_compatible and kpm_kind != "none":
        # torch deprecates mixing a bool and a float mask; attnlab handles it (tested on its own).
        am_kind = draw(st.sampled_from(["none", kpm_kind]))
    else:
        am_kind = draw(mask_kinds)
    return build_case(
        B=draw(st.integers(1, 3)), L=draw(st.integers(1, 5)), S=draw(st.integers(1, 5)), H=draw(st.integers(1, 3)),
        head_dim=draw(st.integers(1, 4)),
        kdim=draw(st.integers(1, 5)) if unpacked else None, vdim=draw(st.integers(1, 5)) if unpacked else None,
        bias=draw(st.booleans()), batch_first=draw(st.booleans()), self_attention=draw(st.booleans()),
        kpm_kind=kpm_kind, am_kind=am_kind, am_3d=draw(st.booleans()),
        p_block=draw(st.sampled_from([0.0, 0.3, 0.6, 1.0])), seed=draw(st.integers(0, 2**31 - 1)),
    )


def torch_pair(case: Case, seed: int = 0) -> tuple[torch.nn.MultiheadAttention, MultiHeadAttention]:
    torch.manual_seed(seed)
    ref = torch.nn.MultiheadAttention(case.E, case.H, bias=case.bias, kdim=case.kdim, vdim=case.vdim,
                                      batch_first=case.batch_first)
    if case.bias:  # torch initialises biases to zero; make them matter
        with torch.no_grad():
            ref.in_proj_bias.normal_()
            ref.out_proj.bias.normal_()
    return ref, MultiHeadAttention.from_torch(ref)


def run(mha, case: Case, **kwargs) -> tuple[Tensor, Tensor | None]:
    q, k, v = case.inputs()
    out, weights = mha(q, k, v, key_padding_mask=case.key_padding_mask, attn_mask=case.attn_mask, **kwargs)
    return case.to_batch_first(out), weights


def check_against_torch(case: Case) -> None:
    ref, mha = torch_pair(case)
    assert mha.packed == (case.kdim in (None, case.E) and case.vdim in (None, case.E))
    blocked = case.blocked()  # (B, H, L, S)
    row_dead = blocked.all(-1)  # (B, H, L): that head has no key for that query
    ok = ~row_dead.any(1)  # (B, L): torch is finite only here
    all_dead = row_dead.all(1)  # (B, L): attnlab's context is zero in every head

    t_out, t_avg = run(ref, case, need_weights=True)
    _, t_heads = run(ref, case, need_weights=True, average_attn_weights=False)
    t_fast, _ = run(ref, case, need_weights=False)
    fast, none = run(mha, case)
    assert none is None
    slow, avg = run(mha, case, need_weights=True)
    _, heads = run(mha, case, need_weights=True, average_attn_weights=False)

    assert fast.shape == (case.B, case.L, case.E) and avg.shape == (case.B, case.L, case.S)
    assert heads.shape == (case.B, case.H, case.L, case.S)
    for out in (fast, slow):
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out[ok], t_out[ok], **TOL)
        torch.testing.assert_close(out[ok], t_fast[ok], **TOL)
        expected_dead = mha.out_proj.bias if case.bias else torch.zeros(case.E)
        torch.testing.assert_close(out[all_dead], expected_dead.detach().expand(int(all_dead.sum()), case.E))
    torch.testing.assert_close(avg[ok], t_avg[ok], **TOL)
    torch.testing.assert_close(heads.transpose(1, 2)[ok], t_heads.transpose(1, 2)[ok], **TOL)
    torch.testing.assert_close(avg, heads.mean(1))
    assert torch.all(heads[blocked] == 0) and torch.all(heads.sum(-1)[row_dead] == 0)


# ---------------------------------------------------------------- torch parity
@SETTINGS
@given(case=cases(torch_compatible=True))
def test_matches_torch_multihead_attention(case):
    check_against_torch(case)


@pytest.mark.parametrize(("kdim", "vdim"), [(None, None), (3, 5)], ids=["packed", "unpacked"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "seq_first"])
def test_from_torch_configurations(kdim, vdim, bias, batch_first):
    """Every listed configuration with every mask kind; cross-attention (S ≠ L) and self-attention."""
    mask_combos = [("none", "none", False), ("bool", "none", False), ("float", "none", False),
                   ("none", "bool", False), ("none", "float", False), ("none", "bool", True), ("none", "float", True),
                   ("bool", "bool", False), ("float", "float", False), ("bool", "bool", True), ("float", "float", True)]
    self_attention_options = [True, False] if kdim is None else [False]
    for (kpm, am, am_3d), self_attention in itertools.product(mask_combos, self_attention_options):
        case = build_case(B=2, L=3, S=5, H=2, head_dim=3, kdim=kdim, vdim=vdim, bias=bias, batch_first=batch_first,
                          self_attention=self_attention, kpm_kind=kpm, am_kind=am, am_3d=am_3d, p_block=0.3, seed=7)
        check_against_torch(case)


def test_fully_masked_rows_give_out_proj_bias_where_torch_gives_nan():
    case = build_case(B=2, L=3, S=4, H=2, head_dim=2, kdim=None, vdim=None, bias=True, batch_first=True,
                      self_attention=False, kpm_kind="none", am_kind="none", am_3d=False, p_block=0.0, seed=0)
    case.key_padding_mask = torch.tensor([[False, True, False, False], [True, True, True, True]])
    ref, mha = torch_pair(case)
    t_out, _ = run(ref, case)
    assert torch.isnan(t_out[1]).all()
    for need_weights in (False, True):
        out, weights = run(mha, case, need_weights=need_weights)
        torch.testing.assert_close(out[1], mha.out_proj.bias.detach().expand(3, -1))
        torch.testing.assert_close(out[0], t_out[0], **TOL)
        if need_weights:
            assert torch.all(weights[1] == 0)


@pytest.mark.parametrize("need_weights", [False, True], ids=["fast", "reference"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fully_masked_rows_have_finite_gradients(need_weights, dtype):
    torch.manual_seed(0)
    mha = MultiHeadAttention(4, 2).to(dtype)
    x = torch.randn(2, 3, 4, dtype=dtype, requires_grad=True)
    kpm = torch.tensor([[False, True, False], [True, True, True]])
    out, _ = mha(x, x, x, key_padding_mask=kpm, need_weights=need_weights)
    torch.testing.assert_close(out[1], mha.out_proj.bias.detach().expand(3, -1))
    (out.float() * torch.randn(2, 3, 4)).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in mha.parameters())
    assert torch.all(x.grad[1] == 0)  # nothing of sample 1 reaches its output


# ---------------------------------------------------------------- fast vs reference
@SETTINGS
@given(case=cases(), is_causal=st.booleans())
def test_fast_path_equals_reference_path(case, is_causal):
    """Including mixed bool/float masks and is_causal, which torch's module cannot take alone."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(case.E, case.H, kdim=case.kdim, vdim=case.vdim, bias=case.bias,
                             batch_first=case.batch_first)
    fast, _ = run(mha, case, is_causal=is_causal)
    slow, weights = run(mha, case, is_causal=is_causal, need_weights=True, average_attn_weights=False)
    with use_reference_attention():
        forced, none = run(mha, case, is_causal=is_causal)
    assert none is None
    assert torch.isfinite(fast).all() and torch.isfinite(weights).all()
    torch.testing.assert_close(fast, slow, **TOL)
    torch.testing.assert_close(forced, slow, atol=0, rtol=0)
    blocked = case.blocked()
    if is_causal:
        blocked = blocked | ~causal_mask(case.L, case.S)
    assert torch.all(weights[blocked] == 0)
    sums = weights.sum(-1)
    live = ~blocked.all(-1)
    torch.testing.assert_close(sums[live], torch.ones_like(sums[live]))


# ---------------------------------------------------------------- causal masks
@SETTINGS
@given(B=st.integers(1, 3), L=st.integers(1, 6), H=st.integers(1, 3), head_dim=st.integers(1, 3),
       kpm_kind=st.sampled_from(["none", "bool", "float"]), float_causal=st.booleans(), need_weights=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_is_causal_equals_explicit_triangular_mask(B, L, H, head_dim, kpm_kind, float_causal, need_weights, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    E = H * head_dim
    ref = torch.nn.MultiheadAttention(E, H, batch_first=True)
    mha = MultiHeadAttention.from_torch(ref)
    x = torch.randn(B, L, E, generator=gen)
    kpm = _mask(gen, kpm_kind, (B, L), 0.3)
    future = torch.ones(L, L, dtype=torch.bool).triu(1)  # True = not allowed
    float_future = torch.zeros(L, L).masked_fill(future, NEG_INF)
    causal, w1 = mha(x, x, x, key_padding_mask=kpm, is_causal=True, need_weights=need_weights)
    explicit, w2 = mha(x, x, x, key_padding_mask=kpm, attn_mask=float_future if float_causal else future,
                       need_weights=need_weights)
    torch.testing.assert_close(causal, explicit, **TOL)
    if need_weights:
        torch.testing.assert_close(w1, w2, **TOL)
        assert torch.all(w1.triu(1) == 0)
    # torch's module with the explicit triangle (of the padding mask's kind) agrees where it is finite.
    t_mask = float_future if kpm is not None and kpm.dtype != torch.bool else future
    t_out, _ = ref(x, x, x, key_padding_mask=kpm, attn_mask=t_mask, need_weights=False)
    ok = torch.isfinite(t_out).all(-1)  # (B, L)
    assert ok[:, 0].any() or kpm is not None
    torch.testing.assert_close(causal[ok], t_out[ok], **TOL)


def test_causal_output_ignores_the_future():
    torch.manual_seed(0)
    mha = MultiHeadAttention(6, 2)
    x = torch.randn(2, 7, 6)
    y = x.clone()
    y[:, 4:] = torch.randn(2, 3, 6) * 10
    for need_weights in (False, True):
        a, _ = mha(x, x, x, is_causal=True, need_weights=need_weights)
        b, _ = mha(y, y, y, is_causal=True, need_weights=need_weights)
        torch.testing.assert_close(a[:, :4], b[:, :4], atol=0, rtol=0)
        assert not torch.allclose(a[:, 4:], b[:, 4:])


@pytest.mark.parametrize(("L", "S"), [(3, 5), (5, 3), (1, 4)])
def test_is_causal_with_different_lengths_is_bottom_right(L, S):
    """Queries are aligned to the end of the keys (what decoding with a cache needs)."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(4, 2)
    q, kv = torch.randn(2, L, 4), torch.randn(2, S, 4)
    explicit = ~torch.ones(L, S, dtype=torch.bool).tril(S - L)  # True = not allowed
    for need_weights in (False, True):
        a, _ = mha(q, kv, kv, is_causal=True, need_weights=need_weights)
        b, _ = mha(q, kv, kv, attn_mask=explicit, need_weights=need_weights)
        torch.testing.assert_close(a, b, **TOL)


# ---------------------------------------------------------------- weights, layout, dropout
def test_three_d_attn_mask_is_per_batch_and_head():
    torch.manual_seed(0)
    B, H, L, S = 2, 3, 2, 4
    mha = MultiHeadAttention(6, H)
    q, kv = torch.randn(B, L, 6), torch.randn(B, S, 6)
    am = torch.zeros(B * H, L, S, dtype=torch.bool)
    am[1 * H + 2, :, 0] = True  # batch 1, head 2 may not look at key 0
    am[0 * H + 0, 1, 3] = True  # batch 0, head 0, query 1 may not look at key 3
    _, w = mha(q, kv, kv, attn_mask=am, need_weights=True, average_attn_weights=False)  # (B, H, L, S)
    assert torch.all(w[1, 2, :, 0] == 0) and torch.all(w[0, 0, 1, 3] == 0)
    unmasked = w.clone()
    unmasked[1, 2, :, 0] = 1
    unmasked[0, 0, 1, 3] = 1
    assert torch.all(unmasked > 0)


def test_seq_first_layout():
    torch.manual_seed(0)
    a = MultiHeadAttention(4, 2, batch_first=True)
    b = MultiHeadAttention(4, 2, batch_first=False)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 5, 4)
    out_a, w_a = a(x, x, x, need_weights=True)
    xt = x.transpose(0, 1)
    out_b, w_b = b(xt, xt, xt, need_weights=True)
    assert out_b.shape == (5, 2, 4) and w_b.shape == (2, 5, 5)
    torch.testing.assert_close(out_b.transpose(0, 1), out_a, **TOL)
    torch.testing.assert_close(w_b, w_a)


def test_dropout_only_in_training_and_weights_before_dropout():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, dropout=0.5)
    x = torch.randn(2, 6, 8)
    mha.eval()
    eval_out, eval_w = mha(x, x, x, need_weights=True)
    torch.testing.assert_close(mha(x, x, x)[0], eval_out, **TOL)
    mha.train()
    train_out, train_w = mha(x, x, x, need_weights=True)
    torch.testing.assert_close(train_w, eval_w, **TOL)
    assert not torch.allclose(train_out, eval_out)
    assert not torch.allclose(mha(x, x, x)[0], eval_out)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(("embed_dim", "num_heads"), [(10, 4), (7, 2), (1, 3)])
def test_heads_must_divide_embed_dim(embed_dim, num_heads):
    pattern = rf"embed_dim={embed_dim} is not divisible by num_heads={num_heads}.*d_model"
    with pytest.raises(ValueError, match=pattern):
        MultiHeadAttention(embed_dim, num_heads)
    with pytest.raises(ValueError, match=pattern):
        check_heads(embed_dim, num_heads)
    with pytest.raises(ValueError, match=r"Project the input to a d_model that num_heads divides") as info:
        check_heads(embed_dim, num_heads)
    # The suggested projection is one that works.
    suggested = re.search(rf"nn\.Linear\({embed_dim}, (\d+)\) then num_heads={num_heads}", str(info.value))
    assert suggested is not None
    check_heads(int(suggested.group(1)), num_heads)


def test_non_positive_sizes_are_rejected():
    with pytest.raises(ValueError, match=r"must be positive, got embed_dim=8, num_heads=0"):
        MultiHeadAttention(8, 0)


def test_mask_shape_errors():
    mha = MultiHeadAttention(4, 2)
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"attn_mask has shape \(3, 4\), expected \(3, 3\)"):
        mha(x, x, x, attn_mask=torch.zeros(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"attn_mask has shape \(2, 3, 3\), expected \(4, 3, 3\)"):
        mha(x, x, x, attn_mask=torch.zeros(2, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"attn_mask must be \(L, S\) or \(N\*num_heads, L, S\), got shape "
                                         r"\(2, 2, 3, 3\)"):
        mha(x, x, x, attn_mask=torch.zeros(2, 2, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"key_padding_mask has shape \(3, 3\), expected \(2, 3\)"):
        mha(x, x, x, key_padding_mask=torch.zeros(3, 3, dtype=torch.bool))


def test_other_argument_errors():
    with pytest.raises(ValueError, match=r"query must be 3-D \(B, L, E\), got shape \(3, 4\)"):
        MultiHeadAttention(4, 2)(torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"query must be 3-D \(L, B, E\)"):
        MultiHeadAttention(4, 2, batch_first=False)(torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        MultiHeadAttention(4, 2, dropout=1.0)
    with pytest.raises(ValueError, match=r"rotary embedding has dim 4, but head_dim is 2"):
        MultiHeadAttention(4, 2, rotary=RotaryEmbedding(4))
    with pytest.raises(ValueError, match=r"from_torch does not support add_bias_kv=True or add_zero_attn=True"):
        MultiHeadAttention.from_torch(torch.nn.MultiheadAttention(4, 2, add_bias_kv=True))
    with pytest.raises(ValueError, match=r"from_torch does not support add_bias_kv=True or add_zero_attn=True"):
        MultiHeadAttention.from_torch(torch.nn.MultiheadAttention(4, 2, add_zero_attn=True))


# ---------------------------------------------------------------- gradients
def _gradcheck_mha(need_weights: bool, kdim=None, vdim=None, **mask_kwargs) -> bool:
    torch.manual_seed(0)
    mha = MultiHeadAttention(4, 2, kdim=kdim, vdim=vdim).double()
    names = [name for name, _ in mha.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in mha.parameters())
    q = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 4, kdim or 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 4, vdim or 4, dtype=torch.float64, requires_grad=True)

    def f(*args):
        p, (q, k, v) = dict(zip(names, args[: len(names)], strict=True)), args[len(names):]
        out, weights = functional_call(mha, p, (q, k, v), dict(need_weights=need_weights, **mask_kwargs))
        return (out, weights) if need_weights else out

    return gradcheck(f, params + (q, k, v))


@pytest.mark.parametrize("need_weights", [True, False], ids=["reference", "fast"])
def test_gradcheck_mha(need_weights):
    kpm = torch.tensor([[False, False, True, False], [False, True, True, False]])
    am = torch.zeros(3, 4).masked_fill(torch.tensor([[0, 0, 0, 1], [1, 1, 1, 1], [0, 1, 0, 0]], dtype=torch.bool),
                                       NEG_INF)  # query 1 sees nothing: a fully masked row
    assert _gradcheck_mha(need_weights, key_padding_mask=kpm, attn_mask=am)
    assert _gradcheck_mha(need_weights, kdim=3, vdim=2, attn_mask=torch.randn(4, 3, 4, dtype=torch.float64))


def test_gradcheck_mha_causal():
    torch.manual_seed(0)
    mha = MultiHeadAttention(4, 2).double()
    x = torch.randn(2, 4, 4, dtype=torch.float64, requires_grad=True)
    for need_weights in (False, True):
        assert gradcheck(lambda x, nw=need_weights: mha(x, x, x, is_causal=True, need_weights=nw)[0], (x,))


# ---------------------------------------------------------------- weights from the fused kernel
@pytest.fixture
def flash_spy(monkeypatch: pytest.MonkeyPatch):
    """Count calls of the CPU flash kernel that returns the log-sum-exp (it still runs)."""
    import attnlab.nn.weights as weights_module

    real = weights_module._aten
    calls = []

    def spying(name):
        op = real(name)
        if name != weights_module.CPU_FLASH or op is None:
            return op
        return lambda *args, **kwargs: calls.append(name) or op(*args, **kwargs)

    monkeypatch.setattr(weights_module, "_aten", spying)
    return calls


@SETTINGS
@given(case=cases(), is_causal=st.booleans(), average=st.booleans())
def test_fused_weights_equal_reference_path(case, is_causal, average):
    """need_weights=True without autograd: the fused kernel's output, weights from its log-sum-exp."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(case.E, case.H, kdim=case.kdim, vdim=case.vdim, bias=case.bias,
                             batch_first=case.batch_first)
    with torch.no_grad():
        fast, _ = run(mha, case, is_causal=is_causal)
        out, weights = run(mha, case, is_causal=is_causal, need_weights=True, average_attn_weights=average)
        with use_reference_attention():
            ref_out, ref_weights = run(mha, case, is_causal=is_causal, need_weights=True,
                                       average_attn_weights=average)
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(out, fast, **TOL)
    torch.testing.assert_close(weights, ref_weights, **TOL)
    blocked = case.blocked()
    if is_causal:
        blocked = blocked | ~causal_mask(case.L, case.S)
    dead = blocked.all(-1).all(1) if average else blocked.all(-1)  # rows with nothing to attend
    assert torch.all(weights[dead] == 0)
    if not average:
        assert torch.all(weights[blocked] == 0)


def test_fused_weights_use_the_flash_kernel_and_keep_its_output(flash_spy):
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 9, 16)
    kpm = torch.tensor([[False] * 9, [True] * 3 + [False] * 6])
    with torch.no_grad():
        fast, _ = mha(x, x, x, key_padding_mask=kpm)
        assert flash_spy == []
        out, w = mha(x, x, x, key_padding_mask=kpm, need_weights=True)
    assert len(flash_spy) == 1
    torch.testing.assert_close(out, fast, atol=0, rtol=0)  # the same kernel as the fast path
    assert w.shape == (2, 9, 9) and torch.all(w[1, :, :3] == 0)
    with torch.no_grad(), use_reference_attention():
        mha(x, x, x, need_weights=True)
    assert len(flash_spy) == 1  # the switch forces the textbook path


def test_returned_weights_carry_gradients_through_the_reference_path(flash_spy):
    """With inputs that require grad, need_weights=True returns weights one can differentiate."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2)
    x = torch.randn(2, 5, 8)
    _, w = mha(x, x, x, need_weights=True)
    assert w.requires_grad and flash_spy == []
    w[:, 0, 0].sum().backward()
    assert mha.in_proj.weight.grad is not None and mha.in_proj.weight.grad.abs().sum() > 0


def test_without_the_flash_kernel_weights_come_from_the_reference_path(monkeypatch):
    import attnlab.nn.mha as mha_module
    import attnlab.nn.weights as weights_module

    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2).eval()
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        expected = mha(x, x, x, need_weights=True, average_attn_weights=False)
    real_reference = mha_module.reference_attention
    calls = []
    monkeypatch.setattr(weights_module, "_aten", lambda name: None)  # a torch without the operator
    monkeypatch.setattr(mha_module, "reference_attention", lambda *a: calls.append(1) or real_reference(*a))
    with torch.no_grad():
        out, w = mha(x, x, x, need_weights=True, average_attn_weights=False)
    assert calls == [1]
    torch.testing.assert_close(out, expected[0], **TOL)
    torch.testing.assert_close(w, expected[1], **TOL)


def test_dropout_while_training_takes_the_reference_path(flash_spy):
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, dropout=0.5).train()
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        _, w = mha(x, x, x, need_weights=True)
    assert flash_spy == [] and torch.allclose(w.sum(-1), torch.ones(2, 5))  # weights before dropout
    mha.dropout = 0.0
    with torch.no_grad():
        mha(x, x, x, need_weights=True)
    assert len(flash_spy) == 1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_fused_weights_in_other_dtypes(dtype, flash_spy):
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).to(dtype).eval()
    x = torch.randn(2, 6, 16, dtype=dtype)
    tol = {"atol": 1e-2, "rtol": 1e-2} if dtype == torch.bfloat16 else {"atol": 1e-12, "rtol": 1e-10}
    for average in (False, True):
        with torch.no_grad():
            out, w = mha(x, x, x, is_causal=True, need_weights=True, average_attn_weights=average)
            with use_reference_attention():
                ref_out, ref_w = mha(x, x, x, is_causal=True, need_weights=True, average_attn_weights=average)
        assert w.dtype == dtype and w.shape == ref_w.shape
        torch.testing.assert_close(w, ref_w, **tol)
        torch.testing.assert_close(out, ref_out, **tol)
    assert len(flash_spy) == 2
