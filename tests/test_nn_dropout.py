"""attnlab's CPU dropout: its mask statistics, scaling, gradient, determinism and errors, and its benchmark."""

import pytest
import torch
from torch import nn

from attnlab.bench.dropout import _with_torch_dropout
from attnlab.cli import main
from attnlab.nn import Dropout, fast_dropout
from attnlab.nn.dropout import keep_level


def test_kept_elements_are_scaled_by_the_inverse_of_the_rounded_keep_probability():
    torch.manual_seed(0)
    n = 400_000
    y = fast_dropout(torch.ones(n), 0.3)  # (n,)
    level = keep_level(0.3)
    assert level == 45875  # round(0.7 · 65536)
    scale = 65536 / level
    values = torch.unique(y)
    assert values[0] == 0 and values[1].item() == pytest.approx(scale) and len(values) == 2
    keep = (y != 0).float()
    sigma = (0.7 * 0.3 / n) ** 0.5
    assert abs(keep.mean().item() - level / 65536) < 5 * sigma
    # each of the four 16-bit lanes of an int64 draw keeps the same fraction (a draw whose top bit were never
    # set would keep everything or nothing in one lane)
    for lane in range(4):
        assert abs(keep[lane::4].mean().item() - 0.7) < 5 * 2 * sigma
    assert abs(y.mean().item() - 1.0) < 5 * sigma * scale


@pytest.mark.parametrize("shape", [(7,), (3, 5, 2), (1, 1)])
def test_any_shape_and_non_contiguous_input(shape):
    x = torch.randn(*shape)
    assert fast_dropout(x, 0.5).shape == x.shape
    t = torch.randn(6, 4).t()  # non-contiguous (4, 6)
    y = fast_dropout(t, 0.5)
    assert y.shape == (4, 6) and torch.all((y == 0) | torch.isclose(y, 2 * t))


def test_gradient_is_the_same_mask_and_scale():
    torch.manual_seed(1)
    x = torch.randn(1000, requires_grad=True)
    y = fast_dropout(x, 0.25)
    y.sum().backward()
    expected = torch.where(y.detach() != 0, 65536 / keep_level(0.25), 0.0)
    torch.testing.assert_close(x.grad, expected)


def test_seeded_draws_repeat_and_differ_between_seeds():
    x = torch.ones(64, 64)
    torch.manual_seed(3)
    a = fast_dropout(x, 0.5)
    torch.manual_seed(3)
    assert torch.equal(a, fast_dropout(x, 0.5))
    torch.manual_seed(4)
    assert not torch.equal(a, fast_dropout(x, 0.5))


def test_eval_mode_and_edge_probabilities():
    x = torch.randn(10, 10)
    layer = Dropout(0.4).eval()
    assert layer(x) is x
    assert fast_dropout(x, 0.0) is x and fast_dropout(x, 0.4, training=False) is x
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))
    assert repr(Dropout(0.1)) == "Dropout(p=0.1)"
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="dropout probability must be between 0 and 1"):
            Dropout(bad)
        with pytest.raises(ValueError, match="dropout probability must be between 0 and 1"):
            fast_dropout(x, bad)


def test_benchmark_swaps_every_attnlab_dropout_for_torchs():
    model = nn.Sequential(Dropout(0.1), nn.Sequential(nn.Linear(2, 2), Dropout(0.2)))
    _with_torch_dropout(model)
    kinds = [(type(m), m.p) for m in model.modules() if hasattr(m, "p")]
    assert kinds == [(nn.Dropout, 0.1), (nn.Dropout, 0.2)]


def test_bench_dropout_cli_prints_both_timings(capsys):
    assert main(["bench", "dropout", "--shape", "2000,16", "--no-step", "--repeats", "1", "--budget-s", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "torch ms" in out and "dropout fwd+bwd (2000×16)" in out and "FAIL" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shape", "12"], "--shape must be two integers N,D"),
        (["--shape", "0,4"], "--shape must be two positive integers"),
        (["--p", "1"], "--p must be between 0 and 1"),
    ],
)
def test_bench_dropout_bad_input_exits_2_with_one_line(cli_error, args, message):
    assert message in cli_error(["bench", "dropout", *args])
