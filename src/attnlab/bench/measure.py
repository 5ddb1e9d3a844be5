"""Timing and peak-memory measurement shared by the benchmarks.

Timing: ``time.perf_counter``, warm-up runs, then the median of the measured repeats; a cell stops
repeating once its measured runs add up to ``budget_s`` (at least one measured run).

Peak memory (Linux): writing ``5`` to ``/proc/self/clear_refs`` resets the process's peak resident
set size (``VmHWM`` in ``/proc/self/status``) to its current RSS. Peak minus the RSS just before a run
is the memory that run needed. Where ``/proc`` cannot do this, peaks are ``None`` (printed "n/a").
"""

from __future__ import annotations

import ctypes
import gc
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
MIB = 1024**2
GIB = 1024**3


@dataclass
class Timing:
    """One timed cell: median seconds per call over ``repeats`` samples of ``inner`` calls each, and the
    peak memory (MiB) of the first sample."""

    median_s: float
    repeats: int
    inner: int
    peak_mib: float | None


def _status_kib(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM), in KiB."""
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in {_STATUS}")


def _release_free_memory() -> None:
    """Hand memory that malloc keeps but nobody uses back to the OS (glibc only), so that a run's new
    allocations raise the RSS instead of silently reusing freed pages."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> int:
    """Reset the peak RSS to the current RSS; return the current RSS in KiB."""
    _release_free_memory()
    _CLEAR_REFS.write_text("5")
    return _status_kib("VmRSS")


def peak_rss_supported() -> bool:
    """True if the peak RSS can be reset and read here (Linux with a writable /proc/self/clear_refs)."""
    try:
        before = _reset_peak()
        block = bytearray(32 * MIB)  # touched: zero-filled by the constructor
        peak = _status_kib("VmHWM")
        del block
        _reset_peak()
        return _status_kib("VmHWM") < peak and peak - before >= 30 * 1024
    except (OSError, ValueError):
        return False


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (or free physical pages elsewhere), in bytes; None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def time_call(
    fn: Callable[[], None], warmup: int, repeats: int, budget_s: float, measure_memory: bool,
    min_sample_s: float = 0.02,
) -> Timing:
    """Time ``fn()``: ``warmup`` unmeasured calls, then up to ``repeats`` measured samples.

    Warm-up stops early once a single call exceeds ``budget_s``. A sample runs ``fn`` enough times
    (``inner``, from the last warm-up call) to last about ``min_sample_s``, so that sub-millisecond calls
    are not dominated by timer and interpreter noise; measuring stops once the samples add up to
    ``budget_s`` (at least one sample). The garbage collector is off while measuring (tensors are freed
    by reference counting; a full collection costs ~0.1 s with torch loaded). The peak memory
    (MiB above the RSS before it) is taken over the first sample if ``measure_memory`` (pass
    :func:`peak_rss_supported`), else ``None``; the calls of a sample run one after another, so their
    peak is that of one call.
    """
    single = math.inf
    for _ in range(warmup):
        start = time.perf_counter()
        fn()
        single = time.perf_counter() - start
        if single > budget_s:
            break
    inner = max(1, min(1000, int(min_sample_s / single))) if single < math.inf else 1
    times: list[float] = []
    peak_mib = None
    gc.disable()
    try:
        for i in range(max(1, repeats)):
            before_kib = _reset_peak() if measure_memory and i == 0 else 0
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            times.append((time.perf_counter() - start) / inner)
            if measure_memory and i == 0:
                peak_mib = max(0, _status_kib("VmHWM") - before_kib) / 1024
            if sum(times) * inner >= budget_s:
                break
    finally:
        gc.enable()
    return Timing(statistics.median(times), len(times), inner, peak_mib)


def is_out_of_memory(err: BaseException) -> bool:
    """True if ``err`` says an allocation failed (MemoryError or torch's CPU/CUDA out-of-memory errors)."""
    return isinstance(err, MemoryError) or "can't allocate memory" in str(err) or "out of memory" in str(err)


@dataclass
class Target:
    """A benchmark target's outcome, printed at the end of a run."""

    name: str
    status: str  # PASS | FAIL | not measured
    detail: str
