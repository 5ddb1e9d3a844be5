"""What ``attnlab bench complexity`` measured: one :class:`Cell` per layer, length and mode, in a
:class:`ComplexityResult`."""

from __future__ import annotations

from dataclasses import dataclass, field

from attnlab.bench.complexity.config import ComplexityConfig


@dataclass
class Cell:
    """One layer at one length and mode."""

    layer: str
    mode: str
    length: int
    flops: float
    estimate_bytes: int
    round_ms: list[float] = field(default_factory=list)  # the median of each round's samples
    warmup_ms: list[float] = field(default_factory=list)  # each round's warm-up call
    samples: list[int] = field(default_factory=list)  # measured samples in each round
    calls_per_sample: int = 0
    peak_mib: float | None = None  # the smallest over the rounds (a first call also allocates one-time workspaces)
    user_s: float = 0.0  # CPU seconds of the process during the cell's measured samples (all rounds)
    system_s: float = 0.0
    note: str = ""

    @property
    def ms(self) -> float | None:
        """The fastest round's median: a round slowed down by other processes does not count."""
        return min(self.round_ms) if self.round_ms else None

    @property
    def gflops(self) -> float | None:
        return None if self.ms is None else self.flops / (self.ms * 1e-3) / 1e9

    @property
    def kernel_share(self) -> float | None:
        """The share of the process's CPU time spent in the OS kernel (mostly page faults on fresh memory)."""
        total = self.user_s + self.system_s
        return self.system_s / total if total > 0 else None


@dataclass
class ComplexityResult:
    """A run: its config, the machine's torch version, threads and memory limit, and one :class:`Cell` per layer,
    length and mode."""

    config: ComplexityConfig
    torch_version: str
    threads: int
    memory_limit_bytes: float
    peak_memory_supported: bool
    kept_freed_memory: bool = False  # keep_freed_memory was asked for and in effect (glibc)
    cells: list[Cell] = field(default_factory=list)
    elapsed_s: float = 0.0  # measurement, plus the plot and CSV once written

    def cell(self, layer: str, mode: str, length: int) -> Cell | None:
        for c in self.cells:
            if (c.layer, c.mode, c.length) == (layer, mode, length):
                return c
        return None

    def curve(self, layer: str, mode: str) -> tuple[list[int], list[float]]:
        """The measured (lengths, ms) of one layer and mode, skipped and failed lengths left out."""
        points = [(c.length, c.ms) for c in self.cells if (c.layer, c.mode) == (layer, mode) and c.ms is not None]
        points.sort()
        return [n for n, _ in points], [ms for _, ms in points]
