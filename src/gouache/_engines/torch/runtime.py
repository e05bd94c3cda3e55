"""Whether PyTorch is there, and which device and precision it runs on here."""

from __future__ import annotations

import dataclasses
import importlib.util

from ..._errors import InvalidInputError, MissingDependencyError
from ..._hardware import check_cuda_device, cpu_flags
from ..requests import PRECISIONS, parse_device


@dataclasses.dataclass(frozen=True)
class Precision:
    """Where the torch engine computes and in which dtype, and why."""

    device: str
    dtype: str
    reason: str


def import_torch():
    """The ``torch`` module, or :class:`~gouache.MissingDependencyError` saying what to install."""
    try:
        import diffusers  # noqa: F401
        import torch
    except ImportError as exc:
        raise MissingDependencyError(
            f'the torch engine needs PyTorch and diffusers ({exc.name} is missing): pip install "gouache[torch]"'
        ) from None
    return torch


def available() -> bool:
    """Whether torch and diffusers are importable (without importing them)."""
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "diffusers", "transformers"))


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 among the CPU's flags."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def choose_device(requested: str = "auto") -> str:
    """The torch device for ``EngineOptions.device``: "auto" (the first CUDA GPU if any, else
    the CPU), "cpu", "cuda" or "cuda:N"; a CUDA device PyTorch does not see is an error."""
    kind, index = parse_device(requested)
    torch = import_torch()
    if kind == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cpu":
        return "cpu"
    check_cuda_device(torch, requested, index)
    return requested


def choose_precision(requested: str, device: str = "auto") -> Precision:
    """The device and dtype for ``EngineOptions.precision`` and ``EngineOptions.device``."""
    if requested not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {', '.join(PRECISIONS)}; got {requested!r}")
    device = choose_device(device)
    cuda = device.startswith("cuda")
    if requested != "auto":
        return Precision(device, requested, f"precision={requested} requested")
    if cuda:
        return Precision(device, "fp16", "CUDA device: fp16")
    if cpu_has_bf16():
        return Precision(device, "bf16", "CPU has AVX512-BF16/AMX: bf16 weights")
    return Precision(device, "fp32", "CPU without bf16 support: fp32")


def dtype_of(name: str):
    """The torch dtype of a precision name ("bf16", "fp16", "fp32")."""
    torch = import_torch()
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]
