"""How cost grows with sequence length: one layer each of GRU, LSTM, convolution and self-attention.

The textbook table (d2l 11.6) compares, per layer on n tokens of size d: convolution O(k·n·d²), RNN
O(n·d²) with O(n) sequential steps, self-attention O(n²·d) with O(1) sequential steps. This benchmark
measures the same layers on one machine, for a range of lengths n, and fits the growth exponent p of
``time ≈ c·n^p`` (least-squares slope on log–log axes over the upper half of the lengths):

* ``gru`` / ``lstm``: ``torch.nn.GRU`` / ``torch.nn.LSTM`` (one layer, hidden size d, batch_first);
* ``conv``: ``torch.nn.Conv1d`` (d → d channels, kernel k, padding that keeps the length);
* ``attn-fused``: :class:`attnlab.nn.MultiHeadAttention` self-attention, ``need_weights=False``
  (fused scaled_dot_product_attention, never materialises the n×n weights);
* ``attn-ref``: the same layer on the reference path (:func:`attnlab.nn.use_reference_attention`),
  which materialises the (B, H, n, n) weights.

Each layer runs in its native layout: the RNNs and attention on (B, n, d), the convolution on a contiguous
(B, d, n), the layout a stack of convolutions keeps. (Feeding it (B, n, d) and transposing around it makes
oneDNN convert layouts on every call: memory-bound copies that doubled its time at L=8192, where each
activation is 16 MiB, in a probe on the project's machine.) Forward runs under ``torch.no_grad()``;
forward+backward back-propagates ``output.sum()`` to the input and the parameters. The cells (length ×
mode × layer) are measured in rounds, and each keeps its fastest round, so that a burst of other work on a
shared machine does not bend one curve. It reports the exponents, where attention becomes slower than the
GRU, peak memory, and PASS/FAIL against the textbook's exponents.

The process keeps the memory it frees (:func:`~attnlab.bench.measure.keep_freed_memory`, on by default;
``--no-keep-freed-memory`` turns it off). With glibc's defaults, every tensor over 32 MiB is unmapped when it is
freed and paged in again, zeroed by the kernel, on the next call; the reference path's (B, H, n, n) matrices
then spend most of their time in the kernel, and on a VM that hands freed memory back to its host the cost per
page grows with the memory cycled, which bent that curve above n². Timing the layer, not the OS, is what a
caching allocator (PyTorch's own on CUDA, jemalloc or tcmalloc on CPU) gives in training loops.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from attnlab.bench import attention as attention_bench
from attnlab.bench.measure import (
    GIB,
    MIB,
    Target,
    Timing,
    available_memory_bytes,
    is_out_of_memory,
    keep_freed_memory,
    measure_peak,
    minor_page_faults,
    peak_rss_supported,
    time_call,
)
from attnlab.errors import UserError
from attnlab.nn import MultiHeadAttention, check_heads, use_reference_attention

MODES = ("fwd", "fwdbwd")
MODE_NAMES = {"fwd": "forward", "fwdbwd": "forward+backward"}
DEVICES = ("cpu", "cuda")
DEFAULT_LENGTHS = tuple(2**i for i in range(6, 14))  # 64, 128, ..., 8192
MIN_SAMPLE_S = 0.02  # a sample repeats calls shorter than this (see time_call)
# With freed memory kept: warm-up calls until one touches at most SETTLED_BYTES of new pages
MAX_SETTLE_CALLS = 6
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
SETTLED_BYTES = 4 * MIB
TIME_TARGET_S = 300.0  # the default run must finish within this on the project's 2-core CPU


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
class Crossover:
    """Where a slower-growing curve is overtaken: ``length`` (interpolated), or None with ``text`` saying why."""

    length: float | None
    text: str


@dataclass
class ComplexityResult:
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


# ---------------------------------------------------------------------------------------------- analysis
def fit_exponent(lengths: Sequence[float], times: Sequence[float]) -> float | None:
    """Least-squares slope of log(time) on log(length): p in time ≈ c·length^p. None with < 2 points."""
    if len(lengths) != len(times):
        raise ValueError(f"{len(lengths)} lengths but {len(times)} times")
    if len(set(lengths)) < 2:
        return None
    if min(lengths) <= 0 or min(times) <= 0:
        raise ValueError("lengths and times must be positive to fit on log-log axes")
    return statistics.linear_regression([math.log(n) for n in lengths], [math.log(t) for t in times]).slope


def upper_half(lengths: Sequence[int]) -> list[int]:
    """The upper half of the sorted lengths (the median included for an odd count), at least two when
    there are two."""
    ordered = sorted(set(lengths))
    return ordered[min(len(ordered) // 2, max(0, len(ordered) - 2)):]


def fit_over(lengths: Sequence[int], times: Sequence[float], keep: Sequence[int]) -> tuple[float | None, int]:
    """:func:`fit_exponent` over the points whose length is in ``keep``; also the number of points."""
    pairs = [(n, t) for n, t in zip(lengths, times, strict=True) if n in set(keep)]
    return fit_exponent([n for n, _ in pairs], [t for _, t in pairs]), len(pairs)


def crossover(lengths: Sequence[int], slow_growing: Sequence[float], fast_growing: Sequence[float]) -> Crossover:
    """The length from which ``fast_growing`` (e.g. attention) takes longer than ``slow_growing`` (the GRU).

    Both are times at the same sorted ``lengths``. Between the last length where ``fast_growing`` is
    not slower and the next one, where it is, log(time ratio) is interpolated linearly in log(length)
    (exact for two power laws). If it is slower at every length, or at none, ``length`` is None.
    """
    if not lengths:
        return Crossover(None, "not measured")
    diff = [math.log(f / s) for s, f in zip(slow_growing, fast_growing, strict=True)]  # > 0: fast_growing slower
    if all(d > 0 for d in diff):
        return Crossover(None, f"slower at every measured length (from L={lengths[0]})")
    if diff[-1] <= 0:
        return Crossover(None, f"none in range (not slower up to L={lengths[-1]})")
    i = max(j for j in range(len(diff)) if diff[j] <= 0)  # the last length where it is not slower
    a, b = math.log(lengths[i]), math.log(lengths[i + 1])
    at = math.exp(a + (b - a) * (-diff[i]) / (diff[i + 1] - diff[i]))
    return Crossover(at, f"L ≈ {at:.0f} (between {lengths[i]} and {lengths[i + 1]})")


def crossover_of(result: ComplexityResult, layer: str, mode: str, baseline: str = BASELINE) -> Crossover:
    """:func:`crossover` of ``layer`` against ``baseline`` over the lengths where both were measured."""
    base = dict(zip(*result.curve(baseline, mode), strict=True))
    other = dict(zip(*result.curve(layer, mode), strict=True))
    common = sorted(set(base) & set(other))
    return crossover(common, [base[n] for n in common], [other[n] for n in common])


# ---------------------------------------------------------------------------------------------- cost models
def layer_flops(layer: str, mode: str, batch: int, length: int, d_model: int, kernel_size: int) -> float:
    """Forward FLOPs (a multiply-add is 2) of the matrix products: GRU 12·B·n·d² (3 gates, input and
    hidden weights), LSTM 16·B·n·d², convolution 2·k·B·n·d², self-attention 8·B·n·d² (4 projections)
    + 4·B·n²·d (q kᵀ and weights·v). Forward+backward = 3 × forward."""
    B, n, d = batch, length, d_model
    fwd = {
        "gru": 12 * B * n * d**2,
        "lstm": 16 * B * n * d**2,
        "conv": 2 * kernel_size * B * n * d**2,
        "attn-fused": 8 * B * n * d**2 + 4 * B * n**2 * d,
        "attn-ref": 8 * B * n * d**2 + 4 * B * n**2 * d,
    }[layer]
    return float(fwd * (3 if mode == "fwdbwd" else 1))


# (B, n, d)-sized tensors alive at the peak of one call of the linear-cost layers: input, output and
# the per-step gate pre-activations (3 or 4 × d per step); forward+backward keeps them all plus grads.
_ACTIVATIONS = {"gru": (8, 24), "lstm": (10, 30), "conv": (4, 12)}


def estimate_bytes(layer: str, mode: str, batch: int, length: int, d_model: int, heads: int, itemsize: int) -> int:
    """Rough peak memory of one call; for attention, the (B, H, n, n) matrices the path materialises
    plus its activations (the same estimate as ``attnlab bench attention``)."""
    if layer in ATTENTION:
        impl = attention_bench.IMPLS["attnlab-fast" if layer == "attn-fused" else "attnlab-ref"]
        return attention_bench.estimate_bytes(impl, mode, batch, heads, length, d_model // heads, itemsize)
    return _ACTIVATIONS[layer][mode == "fwdbwd"] * batch * length * d_model * itemsize


def skip_reason(estimate: int, limit: float) -> str:
    """Why a cell is not run ("" if it fits): its estimated memory exceeds ``limit`` bytes."""
    if estimate <= limit:
        return ""
    return f"skipped: needs ~{estimate / GIB:.1f} GiB (limit {limit / GIB:.1f} GiB)"


# ---------------------------------------------------------------------------------------------- layers
CHANNELS_FIRST = frozenset({"conv"})  # layers timed on (B, d, n) inputs, their native layout


def build_layers(cfg: ComplexityConfig) -> tuple[nn.ModuleDict, dict[str, Callable[[Tensor], Tensor]]]:
    """The modules (on ``cfg.device``) and, per layer name, its forward: (B, n, d) → (B, n, d), or
    (B, d, n) → (B, d, n) for the layers in :data:`CHANNELS_FIRST`."""
    torch.manual_seed(cfg.seed)
    d = cfg.d_model
    modules = nn.ModuleDict({
        "gru": nn.GRU(d, d, batch_first=True),
        "lstm": nn.LSTM(d, d, batch_first=True),
        "conv": nn.Conv1d(d, d, cfg.kernel_size, padding=cfg.kernel_size // 2),  # odd k keeps the length
        "mha": MultiHeadAttention(d, cfg.num_heads),
    }).to(cfg.device)
    mha = modules["mha"]

    def reference(x: Tensor) -> Tensor:
        with use_reference_attention():
            return mha(x, x, x)[0]

    forwards = {
        "gru": lambda x: modules["gru"](x)[0],
        "lstm": lambda x: modules["lstm"](x)[0],
        "conv": modules["conv"],
        "attn-fused": lambda x: mha(x, x, x, need_weights=False)[0],
        "attn-ref": reference,
    }
    return modules, forwards


def make_step(forward: Callable[[Tensor], Tensor], x: Tensor, modules: nn.Module, mode: str,
              device: str) -> Callable[[], None]:
    """One timed call: the forward under no_grad, or forward + backward of ``output.sum()`` with fresh
    gradients (as after ``zero_grad(set_to_none=True)``). On CUDA it waits for the kernels to finish."""
    leaves = [x, *modules.parameters()]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run() -> None:
        if mode == "fwd":
            with torch.no_grad():
                forward(x)
        else:
            for t in leaves:
                t.grad = None
            forward(x).sum().backward()
        sync()

    return run


# ---------------------------------------------------------------------------------------------- measurement
def memory_limit(cfg: ComplexityConfig) -> float:
    """Bytes one cell may need: ``max_memory_gb``, else 70% of the free memory of the device."""
    if cfg.max_memory_gb is not None:
        return cfg.max_memory_gb * GIB
    if cfg.device == "cuda":
        return 0.7 * torch.cuda.mem_get_info()[0]
    available = available_memory_bytes()
    return 0.7 * available if available else 8 * GIB


def run_complexity_bench(cfg: ComplexityConfig, progress: Callable[[str], None] | None = None) -> ComplexityResult:
    """Measure every (length, mode, layer) cell of ``cfg``, shortest lengths first."""
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    check_heads(cfg.d_model, cfg.num_heads)
    cuda = cfg.device == "cuda"
    limit = memory_limit(cfg)
    rss = not cuda and peak_rss_supported()
    result = ComplexityResult(cfg, torch.__version__, torch.get_num_threads(), limit, rss or cuda)
    modules, forwards = build_layers(cfg)
    itemsize = torch.empty(()).element_size()
    for n in cfg.lengths:
        for mode in cfg.modes:
            for layer in cfg.layers:
                cell = Cell(layer, mode, n, layer_flops(layer, mode, cfg.batch, n, cfg.d_model, cfg.kernel_size),
                            estimate_bytes(layer, mode, cfg.batch, n, cfg.d_model, cfg.num_heads, itemsize))
                cell.note = skip_reason(cell.estimate_bytes, limit)
                result.cells.append(cell)
    with keep_freed_memory(cfg.keep_freed_memory and not cuda) as kept:
        result.kept_freed_memory = kept
        _measure_rounds(result, modules, forwards, rss, say)
    result.elapsed_s = time.perf_counter() - start
    return result


def _measure_rounds(result: ComplexityResult, modules: nn.Module, forwards: dict[str, Callable[[Tensor], Tensor]],
                    rss: bool, say: Callable[[str], None]) -> None:
    """Measure every cell of ``result`` that is not skipped, ``rounds`` times over the whole sweep."""
    cfg = result.config
    width = len(str(len(result.cells)))
    for r in range(1, cfg.rounds + 1):
        x, x_key = None, None
        for k, cell in enumerate(result.cells, 1):
            where = (f"[{r}/{cfg.rounds}] [{k:>{width}}/{len(result.cells)}] "
                     f"L={cell.length} {cell.mode:<6} {cell.layer:<10}")
            if cell.note:  # skipped on memory, or out of memory in an earlier round
                if r == 1:
                    say(f"{where} {cell.note}")
                continue
            grad = cell.mode == "fwdbwd"
            key = (cell.length, grad, cell.layer in CHANNELS_FIRST)
            if key != x_key:
                x = None  # free the previous input first
                b, n, d = cfg.batch, cell.length, cfg.d_model
                shape = (b, d, n) if key[2] else (b, n, d)
                x, x_key = torch.randn(*shape, device=cfg.device, requires_grad=grad), key
                modules.train(grad)
            _measure(cell, make_step(forwards[cell.layer], x, modules, cell.mode, cfg.device), cfg, rss,
                     result.kept_freed_memory)
            if cell.note:
                say(f"{where} {cell.note}")
            else:
                peak = "" if cell.peak_mib is None else f", peak {cell.peak_mib:.0f} MiB"
                say(f"{where} {cell.round_ms[-1]:.2f} ms ({cell.samples[-1]}x{cell.calls_per_sample} calls{peak})")


def _cpu_seconds() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far, all threads."""
    t = os.times()
    return t.user, t.system


def time_cell(step: Callable[[], None], cfg: ComplexityConfig, measure_memory: bool,
              kept_memory: bool = False) -> tuple[Timing, float, tuple[float, float]]:
    """Time one cell in one round. Returns the timing, the first warm-up call's seconds, and the (user,
    system) CPU seconds of the measured samples.

    Warm-up: one call (kernel set-up, first touch of memory the process does not have yet), which is also
    the call whose peak memory is measured. With ``kept_memory`` (:func:`keep_freed_memory` in effect),
    more calls follow until one no longer page-faults (at most ``MAX_SETTLE_CALLS``): until then the heap
    is still growing to hold what the call needs.

    Samples: calls that fit ``min_samples`` times into ``budget_s`` repeat until the samples add up to
    ``budget_s`` (at most ``repeats``); slower calls are sampled ``min_samples`` times (fewer if that would
    exceed ``max_cell_s``), so that the median is not one noisy sample.
    """
    first, peak_mib = measure_peak(step, measure_memory)
    single = first
    for _ in range(MAX_SETTLE_CALLS if kept_memory else 0):
        faults = minor_page_faults()
        start = time.perf_counter()
        step()
        single = time.perf_counter() - start
        if (minor_page_faults() - faults) * PAGE_BYTES <= SETTLED_BYTES:
            break
    least = max(1, min(cfg.min_samples, cfg.repeats))
    user, system = _cpu_seconds()
    if single * least <= cfg.budget_s:
        # A second, short warm-up lets time_call batch calls under 20 ms into one sample.
        timing = time_call(step, warmup=1 if single < MIN_SAMPLE_S else 0, repeats=cfg.repeats,
                           budget_s=cfg.budget_s, measure_memory=False, min_sample_s=MIN_SAMPLE_S)
    else:
        repeats = max(1, min(least, int(cfg.max_cell_s / single)))
        timing = time_call(step, warmup=0, repeats=repeats, budget_s=math.inf, measure_memory=False)
    user_now, system_now = _cpu_seconds()
    timing.peak_mib = peak_mib
    return timing, first, (user_now - user, system_now - system)


def _measure(cell: Cell, step: Callable[[], None], cfg: ComplexityConfig, rss: bool, kept_memory: bool) -> None:
    """Time ``step`` for one round into ``cell``; an out-of-memory error becomes a note, not a crash."""
    cuda = cfg.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    try:
        timing, warmup_s, (user_s, system_s) = time_cell(step, cfg, rss, kept_memory)
    except (RuntimeError, MemoryError) as err:
        if not is_out_of_memory(err):
            raise
        cell.note = "failed: out of memory" + (f" in round {len(cell.round_ms) + 1}" if cell.round_ms else "")
        if cuda:
            torch.cuda.empty_cache()
        return
    cell.user_s += user_s
    cell.system_s += system_s
    cell.round_ms.append(timing.median_s * 1e3)
    cell.warmup_ms.append(warmup_s * 1e3)
    cell.samples.append(timing.repeats)
    cell.calls_per_sample = timing.inner
    peak = (torch.cuda.max_memory_allocated() - before) / MIB if cuda else timing.peak_mib
    if peak is not None:
        cell.peak_mib = peak if cell.peak_mib is None else min(cell.peak_mib, peak)


# ---------------------------------------------------------------------------------------------- targets, report
def exponents(result: ComplexityResult, layer: str, mode: str) -> tuple[tuple[float | None, int], ...]:
    """(exponent, points) over the upper half of the configured lengths, and over the top three."""
    lengths, ms = result.curve(layer, mode)
    configured = sorted(result.config.lengths)
    return fit_over(lengths, ms, upper_half(configured)), fit_over(lengths, ms, configured[-3:])


def evaluate_targets(result: ComplexityResult) -> list[Target]:
    """The issue's targets: exponents (upper half of the lengths) of GRU and convolution in 0.8–1.2 and of
    both attention paths in 1.7–2.2, per mode; and the whole run within 5 minutes."""
    targets = []
    for mode in result.config.modes:
        for layer in result.config.layers:
            bounds = LAYERS[layer].exponent_target
            if bounds is None:
                continue
            (p, points), _ = exponents(result, layer, mode)
            name = f"{layer} exponent, {MODE_NAMES[mode]}, in [{bounds[0]}, {bounds[1]}]"
            if p is None:
                targets.append(Target(name, "not measured", f"{points} measured length(s) in the upper half"))
            else:
                ok = bounds[0] <= p <= bounds[1]
                targets.append(Target(name, "PASS" if ok else "FAIL", f"{p:.2f} over {points} lengths"))
    ok = result.elapsed_s <= TIME_TARGET_S
    targets.append(Target(f"total run time <= {TIME_TARGET_S:.0f} s", "PASS" if ok else "FAIL",
                          f"{result.elapsed_s:.0f} s"))
    return targets


def _fmt(value: float | None, spec: str, na: str = "-") -> str:
    return na if value is None else format(value, spec)


def _short(note: str) -> str:
    return "skip" if note.startswith("skipped") else "oom" if note.startswith("failed") else "-"


def format_report(result: ComplexityResult, targets: list[Target]) -> str:
    """Tables of time and peak memory per length, exponents, crossovers, skipped cells and targets."""
    cfg = result.config
    layers, w = cfg.layers, 12
    configured = sorted(cfg.lengths)
    upper, top = upper_half(configured), configured[-3:]
    device = f"cpu ({torch.backends.cpu.get_cpu_capability()}), {result.threads} threads" if cfg.device == "cpu" \
        else f"cuda ({torch.cuda.get_device_name()})"
    out = [
        f"attnlab bench complexity: torch {result.torch_version}, {device}, fp32",
        f"B={cfg.batch}, d_model={cfg.d_model}, heads={cfg.num_heads} (head_dim {cfg.d_model // cfg.num_heads}), "
        f"conv kernel {cfg.kernel_size}; one layer each, input (B, L, d_model) ((B, d_model, L) for conv)",
        f"memory limit per cell: {result.memory_limit_bytes / GIB:.1f} GiB",
        "freed memory: " + ("kept and reused by the process (glibc: no mmap, no trim)" if result.kept_freed_memory
                            else "returned to the OS (allocator defaults)"),
    ]
    header = f"  {'L':>6}" + "".join(f"{name:>{w}}" for name in layers)
    for mode in cfg.modes:
        out += ["", f"{MODE_NAMES[mode]}: median ms per call", header]
        for n in configured:
            row = [result.cell(layer, mode, n) for layer in layers]
            out.append(f"  {n:>6}" + "".join(
                f"{_fmt(c.ms, '.2f', _short(c.note)) if c else '-':>{w}}" for c in row))
        for label, pick, expected in ((f"exponent, upper half L {upper[0]}-{upper[-1]}", 0, len(upper)),
                                      (f"exponent, top 3 L {top[0]}-{top[-1]}", 1, len(top))):
            fits = [exponents(result, layer, mode)[pick] for layer in layers]
            shown = [_fmt(p, ".2f") + (f" ({k})" if p is not None and k < expected else "") for p, k in fits]
            out += [f"  {label}", f"  {'':>6}" + "".join(f"{s:>{w}}" for s in shown)]
        largest = [max((c for c in result.cells if (c.layer, c.mode) == (layer, mode) and c.ms is not None),
                       key=lambda c: c.length, default=None) for layer in layers]
        out.append("  GFLOP/s at the largest measured L")
        out.append(f"  {'':>6}" + "".join(
            f"{(f'{c.gflops:.1f}@{c.length}' if c is not None else '-'):>{w}}" for c in largest))
        out.append("  kernel (system) share of CPU time at the largest measured L")
        out.append(f"  {'':>6}" + "".join(
            f"{(_fmt(c.kernel_share, '.0%') if c is not None else '-'):>{w}}" for c in largest))
        out += ["", f"{MODE_NAMES[mode]}: peak memory of one call, MiB", header]
        for n in configured:
            row = [result.cell(layer, mode, n) for layer in layers]
            peak = "n/a" if not result.peak_memory_supported else "-"
            out.append(f"  {n:>6}" + "".join(
                f"{(_fmt(c.peak_mib, '.1f', peak) if c.ms is not None else _short(c.note)) if c else '-':>{w}}"
                for c in row))

    if BASELINE in layers and any(a in layers for a in ATTENTION):
        out += ["", f"crossover: the length from which attention takes longer than the {BASELINE.upper()} "
                "(log-log interpolation)"]
        for mode in cfg.modes:
            for layer in (a for a in ATTENTION if a in layers):
                out.append(f"  {MODE_NAMES[mode]:<17} {layer:<11} {crossover_of(result, layer, mode).text}")

    skipped = [c for c in result.cells if c.note]
    if skipped:
        out += ["", "not measured"]
        out += [f"  L={c.length} {c.mode} {c.layer}: {c.note}" for c in skipped]

    out += ["", "targets"]
    out += [f"  {t.status:<12} {t.name}: {t.detail}" for t in targets]
    out += [
        "",
        f"times: {cfg.rounds} round(s) over all cells; per cell and round one warm-up call"
        + (f" (then, with freed memory kept, up to {MAX_SETTLE_CALLS} more until a call page-faults at most "
           f"{SETTLED_BYTES // MIB} MiB)" if result.kept_freed_memory else "")
        + f", then the median of up to {cfg.repeats} samples, fewer once they add up to {cfg.budget_s:g} s but at "
        f"least {cfg.min_samples} (a sample repeats calls under {MIN_SAMPLE_S * 1e3:.0f} ms); shown: the fastest "
        "round's median.",
        "exponent: least-squares slope of log(ms) on log(L); (k) = fitted on k measured lengths only. "
        "kernel share: system / (user + system) CPU time of the process during the cell's samples.",
        "peak memory: " + (
            "CUDA max_memory_allocated above the memory allocated before the cell" if cfg.device == "cuda"
            else "peak RSS during the first warm-up call minus RSS before it, under the allocator's defaults; "
                 "the smaller of the rounds (a process's first call also allocates one-time workspaces)"
            + ("" if result.peak_memory_supported else " (not available here: n/a)")) + ".",
        "FLOPs (forward; forward+backward = 3x): GRU 12*B*L*d^2, LSTM 16*B*L*d^2, conv 2*k*B*L*d^2, "
        "self-attention 8*B*L*d^2 + 4*B*L^2*d.",
        "layers: " + "; ".join(f"{name} = {LAYERS[name].description}" for name in layers) + ".",
    ]
    return "\n".join(out)


def write_csv(result: ComplexityResult, path: Path) -> None:
    """One row per cell."""
    cfg = result.config
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["layer", "mode", "length", "batch", "d_model", "heads", "ms", "round_ms", "warmup_ms",
                         "samples", "calls_per_sample", "peak_mib", "estimate_mib", "flops", "gflops", "kernel_share",
                         "note"])

        def join(values: list[float] | list[int]) -> str:
            return ";".join(f"{v:.6g}" for v in values)

        for c in result.cells:
            writer.writerow([c.layer, c.mode, c.length, cfg.batch, cfg.d_model, cfg.num_heads, _fmt(c.ms, ".6g", ""),
                             join(c.round_ms), join(c.warmup_ms), join(c.samples), c.calls_per_sample,
                             _fmt(c.peak_mib, ".6g", ""), f"{c.estimate_bytes / MIB:.6g}", f"{c.flops:.6g}",
                             _fmt(c.gflops, ".6g", ""), _fmt(c.kernel_share, ".4f", ""), c.note])


COLOURS = {"gru": "tab:blue", "lstm": "tab:cyan", "conv": "tab:green", "attn-fused": "tab:red",
           "attn-ref": "tab:orange"}


def write_plot(result: ComplexityResult, path: Path) -> None:
    """Log–log time against length, one panel per mode, one line per layer (legend: fitted exponent),
    grey guides ∝ L and ∝ L², and a dotted line at the fused-attention/GRU crossover."""
    from matplotlib.figure import Figure  # headless: a bare Figure needs no pyplot or backend choice

    cfg = result.config
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    axes = fig.subplots(1, len(cfg.modes), sharey=True, squeeze=False)[0]
    for ax, mode in zip(axes, cfg.modes, strict=True):
        for layer in cfg.layers:
            lengths, ms = result.curve(layer, mode)
            if not lengths:
                continue
            (p, _), _ = exponents(result, layer, mode)
            ax.plot(lengths, ms, marker="o", markersize=4, color=COLOURS[layer],
                    linestyle="--" if layer == "attn-ref" else "-",
                    label=f"{layer} (exponent {_fmt(p, '.2f', 'n/a')})")
        for layer, power in ((BASELINE, 1), ("attn-fused", 2)):
            lengths, ms = result.curve(layer, mode)
            if layer in cfg.layers and lengths:  # through the layer's largest measured point
                guide = [ms[-1] * (n / lengths[-1]) ** power for n in sorted(cfg.lengths)]
                ax.plot(sorted(cfg.lengths), guide, color="grey", linewidth=0.9, linestyle=":" if power == 1 else "-.",
                        label=f"∝ L{'²' if power == 2 else ''} (through {layer})")
        if BASELINE in cfg.layers and "attn-fused" in cfg.layers:
            cross = crossover_of(result, "attn-fused", mode)
            if cross.length is not None:
                ax.axvline(cross.length, color=COLOURS["attn-fused"], linewidth=0.8, alpha=0.6)
                ax.annotate(f"attn-fused = GRU\nL ≈ {cross.length:.0f}", (cross.length, 0.98),
                            xycoords=("data", "axes fraction"), ha="right", va="top", fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sorted(cfg.lengths), [str(n) for n in sorted(cfg.lengths)], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("sequence length L")
        ax.set_title(MODE_NAMES[mode])
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("ms per call (median)")
    where = f"{cfg.device}, {result.threads} threads" if cfg.device == "cpu" else cfg.device
    fig.suptitle(f"one layer, B={cfg.batch}, d_model={cfg.d_model}, heads={cfg.num_heads}, fp32 ({where})")
    fig.savefig(path, dpi=100)


# ---------------------------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``attnlab bench complexity``. Values are checked in :func:`config_from_args`."""
    add = parser.add_argument
    add("--lengths", help=f"comma list of sequence lengths L (default {','.join(map(str, DEFAULT_LENGTHS))})")
    add("--d-model", help="feature size d of every layer (default 64)")
    add("--batch", help="batch size B (default 8)")
    add("--heads", help="attention heads; must divide --d-model (default: 4 for d_model 64, heads of >= 16 features)")
    add("--device", help="cpu or cuda (default cpu)")
    add("--layers", help=f"comma list of layers to measure (default all: {','.join(LAYERS)})")
    add("--repeats", help="measured samples per cell and round, at most (default 10)")
    add("--budget-s", help="seconds of measured samples per cell and round before it stops repeating (default 0.5)")
    add("--rounds", help="passes over all cells; each cell keeps its fastest round (default 2)")
    add("--max-memory-gb", help="skip a cell whose estimated memory exceeds this (default 70%% of available memory)")
    add("--keep-freed-memory", action=argparse.BooleanOptionalAction, default=True,
        help="reuse freed memory in the process instead of returning it to the OS, so that layers with large "
             "tensors are not timed paging it in again on every call (glibc; default on)")
    add("--plot", metavar="FILE.png", help="write the log-log plot (png, svg or pdf)")
    add("--csv", metavar="FILE", help="write one row per cell as CSV")


def _positive(name: str, text: str, kind: type = int) -> int | float:
    """``text`` as a positive ``kind``, else a UserError naming the option."""
    try:
        value = kind(text.strip())
    except ValueError:
        raise UserError(f"--{name} must be a{'n integer' if kind is int else ' number'}, got {text!r}") from None
    if not value > 0:
        raise UserError(f"--{name} must be positive, got {text!r}")
    return value


def _output(name: str, text: str | None, suffixes: tuple[str, ...] | None = None) -> Path | None:
    if text is None:
        return None
    path = Path(text)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise UserError(f"--{name}: {text!r} must end in {', '.join(suffixes)}")
    if not path.parent.is_dir():
        raise UserError(f"--{name}: folder {path.parent} does not exist; create it or pick another path")
    return path


def config_from_args(args: argparse.Namespace) -> ComplexityConfig:
    """Build the config from parsed options, raising UserError on a bad value."""
    cfg = ComplexityConfig()
    if args.lengths is not None:
        lengths = [_positive("lengths", s) for s in args.lengths.split(",")]
        cfg.lengths = tuple(sorted(set(lengths)))  # type: ignore[arg-type]
    if args.d_model is not None:
        cfg.d_model = int(_positive("d-model", args.d_model))
    if args.batch is not None:
        cfg.batch = int(_positive("batch", args.batch))
    if args.heads is not None:
        cfg.heads = int(_positive("heads", args.heads))
        if cfg.d_model % cfg.heads:
            raise UserError(f"--heads {cfg.heads} does not divide --d-model {cfg.d_model}; pick a divisor "
                            f"(e.g. --heads {default_heads(cfg.d_model)})")
    if args.layers is not None:
        names = tuple(dict.fromkeys(s.strip() for s in args.layers.split(",") if s.strip()))  # unique, in order
        bad = [name for name in names if name not in LAYERS]
        if bad or not names:
            raise UserError(f"--layers: unknown {', '.join(map(repr, bad)) or 'empty list'}; "
                            f"choose from {','.join(LAYERS)}")
        cfg.layers = tuple(name for name in LAYERS if name in names)  # table order
    if args.repeats is not None:
        cfg.repeats = int(_positive("repeats", args.repeats))
    if args.rounds is not None:
        cfg.rounds = int(_positive("rounds", args.rounds))
    if args.budget_s is not None:
        cfg.budget_s = float(_positive("budget-s", args.budget_s, float))
    if args.max_memory_gb is not None:
        cfg.max_memory_gb = float(_positive("max-memory-gb", args.max_memory_gb, float))
    cfg.keep_freed_memory = args.keep_freed_memory
    if args.device is not None:
        if args.device not in DEVICES:
            raise UserError(f"--device must be cpu or cuda, got {args.device!r}")
        if args.device == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device cuda: CUDA is not available (torch {torch.__version__}, "
                            f"CUDA build: {torch.version.cuda or 'no'}); use --device cpu")
        cfg.device = args.device
    return cfg


def run(args: argparse.Namespace) -> int:
    """``attnlab bench complexity``: measure, write the plot and CSV if asked, print the report."""
    start = time.perf_counter()
    cfg = config_from_args(args)
    plot_path = _output("plot", args.plot, (".png", ".svg", ".pdf"))
    csv_path = _output("csv", args.csv)
    result = run_complexity_bench(cfg, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    if csv_path is not None:
        write_csv(result, csv_path)
    if plot_path is not None:
        write_plot(result, plot_path)
    result.elapsed_s = time.perf_counter() - start
    targets = evaluate_targets(result)
    print(format_report(result, targets))
    return 0
