"""Shared fixtures."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F


@dataclass
class CallCounter:
    """How many times the spied function ran since the test started (or since ``reset``)."""

    calls: int = 0

    def reset(self) -> None:
        self.calls = 0


@pytest.fixture
def sdpa_spy(monkeypatch: pytest.MonkeyPatch) -> CallCounter:
    """Count calls of ``torch.nn.functional.scaled_dot_product_attention`` (the fused fast path).

    The spy still calls the real kernel, so results are unchanged.
    """
    real = F.scaled_dot_product_attention
    counter = CallCounter()

    def spy(*args, **kwargs):
        counter.calls += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    return counter


@pytest.fixture(scope="module")
def torch_single_thread():
    """Run a module's tiny-tensor tests on one intra-op thread.

    With tensors of a few dozen elements, a second OpenMP thread only adds synchronisation, and on a
    busy 2-core machine its spin-waiting makes each op ~100× slower. The previous setting is restored.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def cli_error(capsys: pytest.CaptureFixture[str]):
    """Run ``attnlab ARGV...`` in-process and return its error line, after checking that the command failed
    the way every user error must: exit status 2 and exactly one line on stderr, ``attnlab: error: ...``."""
    from attnlab.cli import main

    def run(argv: list[str]) -> str:
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, f"exit status {code}, stderr: {err!r}"
        assert err.count("\n") == 1 and err.startswith("attnlab: error: "), f"not one error line: {err!r}"
        return err.rstrip("\n")

    return run
