"""Memory presets for enhancement, a memory report, and memory settings for diffusers pipelines.

:class:`MemoryConfig` groups the knobs engines understand in some form (offload, parts
kept on the CPU, VAE tiling, flash/memory-efficient attention, weight type, torch dtype,
attention slicing).  Presets target a 16 GB T4 (Colab/Kaggle) and CPU-only machines;
``"auto"`` picks one from the device, the GPU memory (CUDA via ``torch`` when installed,
else ``nvidia-smi``) and the available RAM; ``"none"`` saves nothing (fastest).
:meth:`MemoryConfig.to_engine_options` gives the :class:`gouache.EngineOptions` of an
enhancement model: stable-diffusion.cpp reads the offload/keep-on-CPU/flash-attention/
tiling knobs and the weight type; the torch engine reads VAE tiling and, on CUDA, the
dtype.  :func:`setup_memory_optimization` applies a config to a diffusers pipeline you
built yourself (Glimpse3D's function of that name).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from typing import Any, TextIO

from .._errors import InvalidInputError
from ._gouache import EngineOptions, SDType, parse_device

log = logging.getLogger("gouache.enhance")

__all__ = [
    "PRESETS",
    "MemoryConfig",
    "choose_preset",
    "get_memory_status",
    "print_memory_report",
    "setup_memory_optimization",
]

_GIB = 1024**3
_TORCH_DTYPES = (None, "float16", "bfloat16", "float32")
_PRECISIONS = {None: "auto", "float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}
_WEIGHT_TYPES = tuple(sorted(m.name.lower() for m in SDType))


@dataclasses.dataclass(frozen=True)
class MemoryConfig:
    """Engine-neutral memory knobs.

    ``offload_to_cpu``: weights live in RAM and move to the GPU per use;
    ``keep_vae_on_cpu`` / ``keep_clip_on_cpu`` / ``keep_control_net_on_cpu``: run those
    parts on the CPU; ``vae_tiling``: encode/decode in tiles; ``flash_attention``:
    flash / memory-efficient attention; ``weight_type``: quantization for engines that
    quantize on load (``"q8_0"``, ``"f16"``... or ``None`` for the file's own);
    ``torch_dtype``: compute dtype for PyTorch engines (``"float16"``, ``"bfloat16"``,
    ``"float32"`` or ``None``); ``attention_slicing``: compute attention in slices.
    """

    offload_to_cpu: bool = False
    keep_vae_on_cpu: bool = False
    keep_clip_on_cpu: bool = False
    keep_control_net_on_cpu: bool = False
    vae_tiling: bool = False
    flash_attention: bool = False
    weight_type: str | None = None
    torch_dtype: str | None = None
    attention_slicing: bool = False

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type in (bool, "bool") and not isinstance(value, bool):
                raise InvalidInputError(f"MemoryConfig.{field.name} must be True or False; got {value!r}")
        if self.weight_type is not None and self.weight_type not in _WEIGHT_TYPES:
            raise InvalidInputError(
                f"MemoryConfig.weight_type must be None or one of {', '.join(_WEIGHT_TYPES)}; got {self.weight_type!r}"
            )
        if self.torch_dtype not in _TORCH_DTYPES:
            raise InvalidInputError(
                f"MemoryConfig.torch_dtype must be one of {_TORCH_DTYPES}; got {self.torch_dtype!r}"
            )

    @classmethod
    def from_preset(cls, name: str = "auto", device: str = "auto") -> MemoryConfig:
        """The preset ``t4_balanced``, ``t4_speed``, ``t4_minimal``, ``cpu``, ``none`` or
        ``auto`` (chosen by :func:`choose_preset` from this machine's GPU and RAM; always
        ``cpu`` when ``device`` is "cpu")."""
        if name == "auto":
            name = "cpu" if parse_device(device)[0] == "cpu" else choose_preset()
            log.info("memory preset 'auto' -> %r", name)
        if name not in PRESETS:
            raise InvalidInputError(f"unknown memory preset {name!r}; available: {', '.join([*PRESETS, 'auto'])}")
        return PRESETS[name]

    def to_engine_options(self, *, device: str = "auto", **overrides: Any) -> EngineOptions:
        """The :class:`gouache.EngineOptions` with these knobs for ``device``; ``torch_dtype``
        becomes the torch engine's precision on CUDA (on the CPU the engine picks the CPU's
        best); ``overrides`` sets the others (``direct_conv``, ``mmap``, ``rng``...) or
        replaces any of them."""
        on_cuda = parse_device(device)[0] == "cuda" or (device == "auto" and _gpu_total_bytes() is not None)
        fields = {
            "offload_to_cpu": self.offload_to_cpu,
            "keep_vae_on_cpu": self.keep_vae_on_cpu,
            "keep_clip_on_cpu": self.keep_clip_on_cpu,
            "keep_control_net_on_cpu": self.keep_control_net_on_cpu,
            "flash_attention": self.flash_attention,
            "vae_tiling": self.vae_tiling,
            "device": device,
            "precision": _PRECISIONS[self.torch_dtype] if on_cuda else "auto",
        }
        allowed = {f.name for f in dataclasses.fields(EngineOptions)}
        unknown = sorted(set(overrides) - allowed)
        if unknown:
            raise InvalidInputError(f"unknown EngineOptions fields {unknown}; allowed: {', '.join(sorted(allowed))}")
        fields.update(overrides)
        return EngineOptions(**fields)


#: The named presets.  T4: 16 GB VRAM (about 15 GiB usable), no bfloat16.
PRESETS: dict[str, MemoryConfig] = {
    "none": MemoryConfig(),
    "t4_speed": MemoryConfig(flash_attention=True, weight_type="f16", torch_dtype="float16"),
    "t4_balanced": MemoryConfig(
        keep_clip_on_cpu=True, vae_tiling=True, flash_attention=True, weight_type="f16", torch_dtype="float16"
    ),
    "t4_minimal": MemoryConfig(
        offload_to_cpu=True,
        keep_clip_on_cpu=True,
        vae_tiling=True,
        flash_attention=True,
        weight_type="q8_0",
        torch_dtype="float16",
        attention_slicing=True,
    ),
    "cpu": MemoryConfig(vae_tiling=True, weight_type="q8_0", attention_slicing=True),
}


def choose_preset(
    gpu_total_bytes: int | None = None, ram_available_bytes: int | None = None, *, detect: bool = True
) -> str:
    """The preset ``"auto"`` stands for.

    No CUDA GPU -> ``cpu``; GPU with >= 20 GiB -> ``t4_speed``; >= 14 GiB (a T4) ->
    ``t4_balanced``, or ``t4_minimal`` when less than 8 GiB of RAM is available to hold
    what is kept on the CPU; smaller GPUs -> ``t4_minimal``.  Values not given are
    measured on this machine unless ``detect`` is False.
    """
    if detect and gpu_total_bytes is None:
        gpu_total_bytes = _gpu_total_bytes()
    if detect and ram_available_bytes is None:
        ram_available_bytes = _ram_status().get("ram_available_bytes")
    if not gpu_total_bytes:
        return "cpu"
    if gpu_total_bytes >= 20 * _GIB:
        return "t4_speed"
    if gpu_total_bytes >= 14 * _GIB and (ram_available_bytes is None or ram_available_bytes >= 8 * _GIB):
        return "t4_balanced"
    return "t4_minimal"


# --------------------------------------------------------------------------- measuring


def get_memory_status() -> dict[str, Any]:
    """RAM and GPU memory of this machine and process, in bytes (``None`` when unknown).

    Keys: ``ram_total_bytes``, ``ram_available_bytes``, ``process_rss_bytes``, ``source``
    (``"procfs"``, ``"psutil"`` or ``None``) and ``gpus``: a list of
    ``{"index", "name", "total_bytes", "free_bytes"}`` from ``torch.cuda`` when torch is
    importable, else from ``nvidia-smi`` when present, else empty.
    """
    status = _ram_status()
    status["gpus"] = _gpu_status()
    return status


def print_memory_report(file: TextIO | None = None) -> None:
    """Print :func:`get_memory_status` in GiB to ``file`` (default: standard output)."""
    out = file if file is not None else sys.stdout
    status = get_memory_status()
    out.write("memory report\n")
    out.write(f"  RAM total      {_gib(status['ram_total_bytes'])}\n")
    out.write(f"  RAM available  {_gib(status['ram_available_bytes'])}\n")
    out.write(f"  process RSS    {_gib(status['process_rss_bytes'])}\n")
    if not status["gpus"]:
        out.write("  GPU            none found (CUDA via torch or nvidia-smi)\n")
    for gpu in status["gpus"]:
        out.write(f"  GPU {gpu['index']} {gpu['name']}: {_gib(gpu['free_bytes'])} free of {_gib(gpu['total_bytes'])}\n")
    out.write(f"  attention      {_attention_backend()}\n")
    out.flush()


def _attention_backend() -> str:
    """What fast attention the torch engine can use (the README asks whether xformers is used)."""
    xformers = importlib.util.find_spec("xformers") is not None
    if importlib.util.find_spec("torch") is None:
        return "torch not installed (the sdcpp engine uses its own kernels: flash_attention=)"
    return "PyTorch scaled-dot-product attention" + (
        "; xformers installed"
        if xformers
        else "; xformers not installed (not needed: PyTorch >= 2 has fused attention)"
    )


def setup_memory_optimization(pipe: Any, config: MemoryConfig | None = None, device: str = "cuda") -> Any:
    """Apply ``config`` (default: the ``t4_balanced`` preset) to a diffusers pipeline and
    return it: VAE tiling, attention slicing, then CPU offload (``offload_to_cpu``: model
    offload with accelerate, which also places the pipeline) or a move to ``device``.

    For gouache's own models set :class:`EnhanceConfig` ``optimize_memory`` /
    ``memory_preset`` (or :class:`gouache.EngineOptions`) instead; this is for pipelines
    built directly with diffusers (Glimpse3D's function of the same name)."""
    config = config if config is not None else PRESETS["t4_balanced"]
    if not isinstance(config, MemoryConfig):
        raise InvalidInputError(f"config must be a MemoryConfig; got {type(config).__name__}")
    kind, _ = parse_device(device)
    needed = ("enable_attention_slicing", "enable_model_cpu_offload", "to")
    missing = [m for m in needed if not callable(getattr(pipe, m, None))]
    if missing or not callable(getattr(getattr(pipe, "vae", None), "enable_tiling", None)):
        raise InvalidInputError(
            f"pipe must be a diffusers pipeline with a VAE (it lacks {', '.join(missing) or 'vae'});"
            " for gouache's models use EnhanceConfig(optimize_memory=..., memory_preset=...)"
        )
    if config.vae_tiling:
        pipe.vae.enable_tiling()
    if config.attention_slicing:
        pipe.enable_attention_slicing()
    if config.offload_to_cpu and kind != "cpu":
        pipe.enable_model_cpu_offload(device=None if kind == "auto" else device)
    elif kind != "auto":
        pipe.to(device)
    log.info("memory settings applied to %s: %s", type(pipe).__name__, config)
    return pipe


def _gib(value: int | None) -> str:
    return "unknown" if value is None else f"{value / _GIB:.2f} GiB"


def _ram_status() -> dict[str, Any]:
    procfs = _procfs_status()
    if procfs is not None:
        return procfs
    try:
        import psutil
    except ImportError:
        return {"ram_total_bytes": None, "ram_available_bytes": None, "process_rss_bytes": None, "source": None}
    vm = psutil.virtual_memory()
    return {
        "ram_total_bytes": int(vm.total),
        "ram_available_bytes": int(vm.available),
        "process_rss_bytes": int(psutil.Process().memory_info().rss),
        "source": "psutil",
    }


def _procfs_status() -> dict[str, Any] | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            meminfo = _kib_fields(fh.read())
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            proc = _kib_fields(fh.read())
    except OSError:
        return None
    if "MemTotal" not in meminfo:
        return None
    available = meminfo.get("MemAvailable", meminfo.get("MemFree"))
    return {
        "ram_total_bytes": meminfo["MemTotal"],
        "ram_available_bytes": available,
        "process_rss_bytes": proc.get("VmRSS"),
        "source": "procfs",
    }


def _kib_fields(text: str) -> dict[str, int]:
    """``Name:   123 kB`` lines as ``{name: bytes}``."""
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[name.strip()] = int(parts[0]) * 1024
    return out


def _import_torch() -> Any:
    """``torch`` when it is installed and imports, else None (never imported otherwise)."""
    from ._device import _torch

    return _torch()


def _gpu_status() -> list[dict[str, Any]]:
    """CUDA GPUs: torch's answer when torch is importable, else nvidia-smi's."""
    torch = _import_torch()
    if torch is None:
        return _nvidia_smi_status()
    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        gpus.append(
            {
                "index": index,
                "name": torch.cuda.get_device_name(index),
                "total_bytes": int(total),
                "free_bytes": int(free),
            }
        )
    return gpus


def _nvidia_smi_status() -> list[dict[str, Any]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        res = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            env={**os.environ, "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if res.returncode != 0:
        return []
    return [g for g in (_smi_line(line) for line in res.stdout.splitlines()) if g is not None]


def _smi_line(line: str) -> dict[str, Any] | None:
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != 4 or not parts[0].isdigit():
        return None
    try:
        total, free = int(float(parts[2]) * 1024**2), int(float(parts[3]) * 1024**2)  # MiB
    except ValueError:
        return None
    return {"index": int(parts[0]), "name": parts[1], "total_bytes": total, "free_bytes": free}


def _gpu_total_bytes() -> int | None:
    gpus = _gpu_status()
    return max((g["total_bytes"] for g in gpus), default=None)
