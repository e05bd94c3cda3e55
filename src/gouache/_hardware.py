"""What this machine's CPU offers, read from the operating system (no engine needed)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

__all__ = ["cpu_flags", "physical_cores"]


@functools.lru_cache(maxsize=1)
def physical_cores() -> int:
    """Physical CPU cores, counted as stable-diffusion.cpp counts them: distinct
    ``thread_siblings`` sets under ``/sys/devices/system/cpu`` (Linux), else ``os.cpu_count()``."""
    siblings: set[str] = set()
    cpu = 0
    while True:
        path = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings")
        try:
            siblings.add(path.read_text().strip())
        except OSError:
            break
        cpu += 1
    return len(siblings) or os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()
