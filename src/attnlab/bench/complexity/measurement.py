"""Measuring every cell of a run: rounds over the whole sweep, warm-up until the heap settles, samples timed
within a budget, peak memory, and out-of-memory errors turned into notes."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from attnlab.bench.complexity.config import ComplexityConfig
from attnlab.bench.complexity.layers import (
    CHANNELS_FIRST,
    build_layers,
    estimate_bytes,
    layer_flops,
    make_step,
    skip_reason,
)
from attnlab.bench.complexity.result import Cell, ComplexityResult
from attnlab.bench.measure import (
    GIB,
    MIB,
    Timing,
    available_memory_bytes,
    is_out_of_memory,
    keep_freed_memory,
    measure_peak,
    minor_page_faults,
    peak_rss_supported,
    time_call,
)
from attnlab.nn import check_heads

MIN_SAMPLE_S = 0.02  # a sample repeats calls shorter than this (see time_call)
# With freed memory kept: warm-up calls until one touches at most SETTLED_BYTES of new pages
MAX_SETTLE_CALLS = 6
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
SETTLED_BYTES = 4 * MIB


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
