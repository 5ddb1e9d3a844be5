"""The fused/reference switch: environment variable, set_reference_attention, use_reference_attention."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from attnlab.nn import (
    Decoder,
    Encoder,
    MultiHeadAttention,
    reference_attention_enabled,
    set_reference_attention,
    use_reference_attention,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")
TOL = {"atol": 1e-5, "rtol": 1e-5}


@pytest.fixture
def restore_switch():
    """Put the process-wide switch back however the test ends."""
    previous = reference_attention_enabled()
    yield
    set_reference_attention(previous)


def _mha_and_input():
    torch.manual_seed(0)
    return MultiHeadAttention(8, 2), torch.randn(2, 5, 8)


# The child process reports whether the switch is on at import and whether MHA called the fused kernel.
CHILD = textwrap.dedent(
    """
    import torch, torch.nn.functional as F
    calls = []
    real = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = lambda *a, **k: calls.append(1) or real(*a, **k)
    from attnlab.nn import MultiHeadAttention, reference_attention_enabled, set_reference_attention
    mha = MultiHeadAttention(4, 2)
    x = torch.randn(1, 3, 4)
    enabled = reference_attention_enabled()
    mha(x, x, x)
    at_import = len(calls)
    set_reference_attention(False)
    mha(x, x, x)
    print(enabled, at_import, len(calls) - at_import)
    """
)


@pytest.mark.parametrize(("value", "expected"), [("1", "True 0 1"), (None, "False 1 1")], ids=["set", "unset"])
def test_environment_variable_is_read_at_import(value, expected):
    env = {k: v for k, v in os.environ.items() if k != "ATTNLAB_REFERENCE_ATTENTION"}
    env["OMP_NUM_THREADS"] = "1"
    if value is not None:
        env["ATTNLAB_REFERENCE_ATTENTION"] = value
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == expected.split()


def test_set_reference_attention(sdpa_spy, restore_switch):
    mha, x = _mha_and_input()
    set_reference_attention(False)
    assert not reference_attention_enabled()
    fast, _ = mha(x, x, x)
    assert sdpa_spy.calls == 1
    set_reference_attention(True)
    assert reference_attention_enabled()
    slow, weights = mha(x, x, x)
    assert sdpa_spy.calls == 1 and weights is None  # weights only when asked, even on the reference path
    torch.testing.assert_close(slow, fast, **TOL)
    set_reference_attention(False)
    mha(x, x, x)
    assert sdpa_spy.calls == 2


def test_use_reference_attention_restores_the_previous_setting(sdpa_spy, restore_switch):
    mha, x = _mha_and_input()
    set_reference_attention(False)
    with use_reference_attention():
        assert reference_attention_enabled()
        mha(x, x, x, is_causal=True)
        with use_reference_attention(False):  # the innermost block wins
            assert not reference_attention_enabled()
            mha(x, x, x)
            assert sdpa_spy.calls == 1
        assert reference_attention_enabled()
        mha(x, x, x)
    assert sdpa_spy.calls == 1
    assert not reference_attention_enabled()
    mha(x, x, x)
    assert sdpa_spy.calls == 2

    set_reference_attention(True)
    with pytest.raises(RuntimeError, match="boom"), use_reference_attention(False):
        raise RuntimeError("boom")
    assert reference_attention_enabled()


def test_switch_forces_the_reference_path_everywhere(sdpa_spy, restore_switch):
    torch.manual_seed(0)
    encoder = Encoder(2, 8, 2, d_ff=16, rotary=True).eval()
    decoder = Decoder(2, 8, 2, d_ff=16).eval()
    x, y = torch.randn(2, 6, 8), torch.randn(2, 4, 8)
    kpm = torch.tensor([[False] * 6, [False, False, False, True, True, True]])

    def forward():
        memory = encoder(x, key_padding_mask=kpm)
        return decoder(y, memory, memory_key_padding_mask=kpm)

    with use_reference_attention(False):
        fast = forward()
    assert sdpa_spy.calls == 6
    sdpa_spy.reset()
    with use_reference_attention():
        slow = forward()
    assert sdpa_spy.calls == 0
    torch.testing.assert_close(slow, fast, **TOL)
