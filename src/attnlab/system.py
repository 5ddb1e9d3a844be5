"""Facts about the machine a run is on (standard library only)."""

from __future__ import annotations

import os
from pathlib import Path


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (or free physical pages elsewhere), in bytes; None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
