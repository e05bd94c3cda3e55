"""What this machine's CPU offers, read from the operating system (no engine needed), and giving
freed memory back to it."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
from pathlib import Path

from ._errors import InvalidInputError

__all__ = ["cpu_flags", "physical_cores", "return_freed_memory"]


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


def return_freed_memory() -> None:
    """Collect garbage, then ask glibc to give free heap pages back to the OS (``malloc_trim``).

    After a model is dropped, its many mid-sized tensors (below glibc's mmap threshold, which
    grows to 32 MB) stay in malloc's arenas: the process keeps the pages and its RSS stays at
    the peak.  ``malloc_trim(0)`` releases them from every arena.  A no-op without glibc."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def check_cuda_device(torch, device: str, index: int | None) -> None:
    """Raise :class:`~gouache.InvalidInputError` when ``torch`` sees no CUDA GPU for ``device``
    (``"cuda"`` or ``"cuda:N"``, ``index`` = N or None)."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise InvalidInputError(
            f"device {device!r}: PyTorch {torch.__version__} sees no CUDA GPU on this machine;"
            " use device='cpu' or 'auto'"
        )
    if index is not None and index >= count:
        raise InvalidInputError(f"device {device!r}: this machine has {count} CUDA GPU(s): cuda:0 to cuda:{count - 1}")
