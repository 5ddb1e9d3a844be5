"""The benchmarks' measuring helpers: freed-memory reuse and peak memory."""

from __future__ import annotations

import ctypes
import resource

import pytest
import torch

from attnlab.bench.measure import MIB, _glibc, keep_freed_memory, measure_peak, peak_rss_supported

BLOCK_MIB = 64  # above glibc's largest mmap threshold (32 MiB): by default every such block is its own mmap
PAGES = BLOCK_MIB * MIB // resource.getpagesize()

glibc_only = pytest.mark.skipif(_glibc() is None, reason="mallopt/malloc_trim need glibc")


def touch_block() -> None:
    """Allocate a BLOCK_MIB tensor, write every page, free it."""
    torch.empty(BLOCK_MIB * MIB // 4).fill_(1.0)


def malloc_block() -> None:
    """The same with malloc/memset/free straight from the C library (no tensor metadata in between)."""
    libc = _glibc()
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    block = libc.malloc(BLOCK_MIB * MIB)
    assert block
    ctypes.memset(block, 1, BLOCK_MIB * MIB)
    libc.free(block)


def page_faults(fn) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc_only
def test_kept_memory_is_reused_without_page_faults():
    malloc_block()
    assert page_faults(malloc_block) > 0.9 * PAGES  # defaults: unmapped on free, paged in again
    with keep_freed_memory() as kept:
        assert kept
        malloc_block()  # grows the heap once
        assert page_faults(malloc_block) < 0.01 * PAGES  # the freed pages are reused
    assert page_faults(malloc_block) > 0.9 * PAGES  # defaults are back on exit


def test_keep_freed_memory_can_be_turned_off():
    with keep_freed_memory(enabled=False) as kept:
        assert not kept
        assert _glibc() is None or page_faults(malloc_block) > 0.9 * PAGES


@pytest.mark.skipif(not peak_rss_supported(), reason="needs /proc/self/clear_refs")
def test_peak_counts_memory_the_process_kept_from_an_earlier_call():
    with keep_freed_memory():
        touch_block()  # now kept by the process, already counted in its RSS
        seconds, peak_mib = measure_peak(touch_block, measure_memory=True)
    assert seconds > 0 and BLOCK_MIB * 0.9 < peak_mib < BLOCK_MIB * 1.5
    assert measure_peak(touch_block, measure_memory=False)[1] is None
