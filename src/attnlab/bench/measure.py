"""Timing and peak-memory measurement shared by the benchmarks.

Timing: ``time.perf_counter``, warm-up runs, then the median of the measured repeats; a cell stops
repeating once its measured runs add up to ``budget_s`` (at least one measured run).

Peak memory (Linux): writing ``5`` to ``/proc/self/clear_refs`` resets the process's peak resident
set size (``VmHWM`` in ``/proc/self/status``) to its current RSS. Peak minus the RSS just before a run
is the memory that run needed. Where ``/proc`` cannot do this, peaks are ``None`` (printed "n/a").

Freed memory (glibc): by default glibc gives every large block (over 32 MiB at most) its own ``mmap`` and
returns it to the OS on ``free``, so a layer that allocates large tensors pays for the first touch of every
page of them on every call, in kernel time. :func:`keep_freed_memory` makes the process keep and reuse its
freed memory instead, as the jemalloc/tcmalloc allocators that PyTorch's CPU tuning guides recommend do.
"""

from __future__ import annotations

import ctypes
import gc
import math
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from attnlab.system import available_memory_bytes  # noqa: F401  (the benchmarks import it from here)

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


def proc_kib(field: str, path: Path = _STATUS) -> int:
    """A ``kB`` field of a /proc file (VmRSS, VmHWM of /proc/self/status; Pss of /proc/self/smaps_rollup), in
    KiB; an OSError where the file or the field is missing."""
    for line in path.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in {path}")


# mallopt(3) parameters and glibc's defaults for them (64-bit)
_M_MXFAST, _M_TRIM_THRESHOLD, _M_MMAP_MAX = 1, -1, -4
_DEFAULT_MXFAST, _DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128, 128 * 1024, 65536


def _glibc() -> ctypes.CDLL | None:
    """The C library of this process if it is glibc (has ``mallopt`` and ``malloc_trim``), else None."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt, libc.malloc_trim  # noqa: B018 - attribute lookup raises AttributeError elsewhere
    except (OSError, AttributeError):
        return None
    return libc


def _release_free_memory() -> None:
    """Hand memory that malloc keeps but nobody uses back to the OS (glibc only), so that a run's new
    allocations raise the RSS instead of silently reusing freed pages."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


_kept = False  # keep_freed_memory is in effect


def _keep_allocator(keep: bool) -> bool:
    """glibc: serve every block from the heap and never trim it (``keep``), or back to the defaults, which
    hands the kept memory back to the OS. Returns whether memory is now kept.

    Keeping also turns off the fast bins, which hold small freed blocks apart from their neighbours: a small
    block freed next to a large one would otherwise keep the large one from merging into a block that the
    next call of the same size fits.
    """
    libc = _glibc()
    if libc is None:
        return False
    if keep:  # mallopt returns 1 on success; M_TRIM_THRESHOLD -1 = never trim (mallopt(3))
        return all(libc.mallopt(param, value) == 1
                   for param, value in ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1), (_M_MXFAST, 0)))
    libc.mallopt(_M_MXFAST, _DEFAULT_MXFAST)
    libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
    libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
    libc.malloc_trim(0)
    return False


@contextmanager
def keep_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """Inside the block, glibc serves every block from its heap and never trims the heap, so memory a call
    frees is reused by later calls instead of being unmapped and paged in again from the OS.

    Yields whether that is in effect (False if ``enabled`` is False or the C library is not glibc). On exit
    the defaults are restored and the kept memory is handed back to the OS. Process-wide: meant for a
    benchmark's main loop. A heap that keeps everything also keeps blocks it cannot reuse (glibc's aligned
    allocations need a little more than the block they freed), so it can hold up to about twice a call's
    live memory, and a call may take a few repeats before it stops growing the heap; :func:`measure_peak`
    therefore measures under the defaults.
    """
    global _kept
    _kept = enabled and _keep_allocator(True)
    try:
        yield _kept
    finally:
        if _kept:
            _kept = _keep_allocator(False)


def minor_page_faults() -> int:
    """Page faults of this process so far (all threads) that needed no disk: first touches of new memory."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _reset_peak() -> int:
    """Reset the peak RSS to the current RSS; return the current RSS in KiB."""
    _release_free_memory()
    _CLEAR_REFS.write_text("5")
    return proc_kib("VmRSS")


def measure_peak(fn: Callable[[], None], measure_memory: bool) -> tuple[float, float | None]:
    """Run ``fn()`` once; return its seconds and, if ``measure_memory``, its peak memory in MiB above the
    RSS before it, else None. Under :func:`keep_freed_memory` the call runs with the allocator's defaults
    (kept memory handed back first), so that the peak is the memory the call needs, not what the heap kept."""
    if not measure_memory:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start, None
    global _kept
    kept = _kept
    if kept:
        _kept = _keep_allocator(False)  # defaults for this call; hands the kept memory back
    try:
        before_kib = _reset_peak()
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        peak_mib = max(0, proc_kib("VmHWM") - before_kib) / 1024
    finally:
        if kept:
            _kept = _keep_allocator(True)
    return seconds, peak_mib


def peak_rss_supported() -> bool:
    """True if the peak RSS can be reset and read here (Linux with a writable /proc/self/clear_refs)."""
    try:
        before = _reset_peak()
        block = bytearray(32 * MIB)  # touched: zero-filled by the constructor
        peak = proc_kib("VmHWM")
        del block
        _reset_peak()
        return proc_kib("VmHWM") < peak and peak - before >= 30 * 1024
    except (OSError, ValueError):
        return False


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
                peak_mib = max(0, proc_kib("VmHWM") - before_kib) / 1024
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
