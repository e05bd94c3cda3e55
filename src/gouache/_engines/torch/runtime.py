"""Whether PyTorch is there, and which device and precision it runs on here."""

from __future__ import annotations

from ..._errors import InvalidInputError, MissingDependencyError


def _torch():
    try:
        import diffusers  # noqa: F401
        import torch
    except ImportError as exc:
        raise MissingDependencyError(
            f"the torch engine needs PyTorch and diffusers ({exc.name} is missing):"
            ' pip install "gouache[torch]"'
        ) from None
    return torch


def available() -> bool:
    """Whether torch and diffusers are importable (without importing them)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "diffusers", "transformers"))


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 in the CPU flags (Linux /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_precision(requested: str) -> tuple[str, str, str]:
    """``(device, dtype name, reason)`` for ``EngineOptions.precision``."""
    torch = _torch()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    if requested not in ("auto", "bf16", "fp16", "fp32"):
        raise InvalidInputError(f"precision must be auto, bf16, fp16 or fp32; got {requested!r}")
    if requested != "auto":
        return device, requested, f"precision={requested} requested"
    if cuda:
        return device, "fp16", "CUDA device: fp16"
    if cpu_has_bf16():
        return device, "bf16", "CPU has AVX512-BF16/AMX: bf16 weights"
    return device, "fp32", "CPU without bf16 support: fp32"


def _dtype(name: str):
    torch = _torch()
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]
