"""What ``device=`` means for enhancement: the torch engine's device and the depth model's.

"auto": the first CUDA GPU PyTorch sees, else the CPU; "cpu"; "cuda" / "cuda:N": that GPU,
which must exist (checked when the service is created, before any model is fetched or
loaded).  stable-diffusion.cpp runs where its library was built (the PyPI carrier: CPU),
so a CUDA device needs the torch engine; ``engine="auto"`` then picks it.  The depth
model (ONNX Runtime) uses the CUDA execution provider on the same GPU when onnxruntime-gpu
is installed, else the CPU.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from .._errors import InvalidInputError, MissingDependencyError
from .._hardware import check_cuda_device
from ._gouache import parse_device

log = logging.getLogger("gouache.enhance")


def check_device(device: str, engine: str) -> None:
    """Raise a clear error when ``device`` cannot be used with ``engine`` on this machine."""
    kind, index = parse_device(device)
    if kind != "cuda":
        return
    if engine == "sdcpp":
        raise InvalidInputError(
            f"device {device!r} needs the torch engine: stable-diffusion.cpp runs on the device"
            " its library was built for; use engine='torch' or 'auto'"
        )
    torch = _torch()
    if torch is None:
        raise MissingDependencyError(
            f'device {device!r} needs PyTorch with CUDA: pip install "gouache[torch]" (a CUDA build of torch)',
            name="torch",
        )
    check_cuda_device(torch, device, index)


def resolve_device(device: str) -> str:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (``"auto"`` decided now)."""
    kind, _ = parse_device(device)
    if kind != "auto":
        return device
    torch = _torch()
    return "cuda" if torch is not None and torch.cuda.is_available() else "cpu"


def engine_for(device: str, engine: str) -> str:
    """The engine to load: a CUDA device means torch when the engine is left to choose."""
    return "torch" if engine == "auto" and resolve_device(device).startswith("cuda") else engine


def onnx_providers(device: str) -> list[Any] | None:
    """ONNX Runtime providers for ``device`` (None: ONNX Runtime's preferred order)."""
    kind, index = parse_device(device)
    if kind == "auto":
        return None
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        log.warning(
            "device %r: onnxruntime has no CUDA provider (pip install onnxruntime-gpu); the depth model runs"
            " on the CPU",
            device,
        )
        return ["CPUExecutionProvider"]
    return [("CUDAExecutionProvider", {"device_id": index or 0}), "CPUExecutionProvider"]


def _torch() -> Any:
    if importlib.util.find_spec("torch") is None:
        return None
    try:
        import torch
    except Exception:  # a broken torch install reads as "no torch"
        return None
    return torch
