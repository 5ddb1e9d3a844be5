"""What ``attnlab bench complexity`` measures: the layers under test and the settings of a run."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("fwd", "fwdbwd")
MODE_NAMES = {"fwd": "forward", "fwdbwd": "forward+backward"}
DEVICES = ("cpu", "cuda")
DEFAULT_LENGTHS = tuple(2**i for i in range(6, 14))  # 64, 128, ..., 8192


@dataclass(frozen=True)
class Layer:
    """A layer under test. ``exponent_target`` is the range the textbook predicts for the fitted
    exponent at large n (None: shown, not a target)."""

    name: str
    description: str
    exponent_target: tuple[float, float] | None


LAYERS = {
    layer.name: layer
    for layer in (
        Layer("gru", "torch.nn.GRU, 1 layer", (0.8, 1.2)),
        Layer("lstm", "torch.nn.LSTM, 1 layer", None),
        Layer("conv", "torch.nn.Conv1d, length-preserving padding", (0.8, 1.2)),
        Layer("attn-fused", "attnlab MultiHeadAttention, need_weights=False (fused SDPA)", (1.7, 2.2)),
        Layer("attn-ref", "attnlab MultiHeadAttention, reference path (materialised weights)", (1.7, 2.2)),
    )
}
ATTENTION = ("attn-fused", "attn-ref")
BASELINE = "gru"  # the crossover compares each attention layer against this


@dataclass
class ComplexityConfig:
    """What to measure. Defaults are the issue's full run (≤ 5 minutes on 2 CPU cores)."""

    lengths: tuple[int, ...] = DEFAULT_LENGTHS
    d_model: int = 64
    batch: int = 8
    heads: int | None = None  # None: default_heads(d_model)
    kernel_size: int = 3
    device: str = "cpu"
    modes: tuple[str, ...] = MODES
    layers: tuple[str, ...] = tuple(LAYERS)
    repeats: int = 10  # measured samples per cell, at most
    budget_s: float = 0.5  # per cell and round: stop repeating once the measured samples add up to this ...
    min_samples: int = 2  # ... but take at least this many (a single slow sample is at the mercy of noise) ...
    max_cell_s: float = 30.0  # ... unless they would take longer than this
    rounds: int = 2  # passes over all cells; a cell's time is its fastest round's median
    max_memory_gb: float | None = None  # None: 70% of the available memory
    keep_freed_memory: bool = True  # reuse freed memory instead of paging it in from the OS on every call
    seed: int = 0

    @property
    def num_heads(self) -> int:
        return self.heads if self.heads is not None else default_heads(self.d_model)


def default_heads(d_model: int) -> int:
    """The most heads among 8, 4, 2 that split ``d_model`` evenly into heads of at least 16 features;
    else 1 (64 → 4 heads of 16, 512 → 8 of 64, 8 → 1 of 8)."""
    for heads in (8, 4, 2):
        if d_model % heads == 0 and d_model // heads >= 16:
            return heads
    return 1
