"""The engine-neutral interface between pipelines (SDModel, CLI) and engines (sdcpp, torch).

Pipelines build :class:`ImageRequest` / :class:`VideoRequest` objects out of shared
concepts (sampler and scheduler names, seed, size, strength, LoRA, control image) and
hand them to an :class:`Engine`.  Engines are looked up by name through
:func:`load_engine`; pipelines never import an engine's module.  Engine-specific knobs
(thread counts, memory placement) travel in :class:`EngineOptions`, which each engine
maps onto its own settings.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._errors import InvalidInputError

#: Engines gouache knows, by name -> module that defines ``create_engine``.
ENGINES = {"sdcpp": "gouache._engines.sdcpp", "torch": "gouache._engines.torch_engine"}


# --------------------------------------------------------------------------- options and inputs


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    """Memory and speed knobs, grouped instead of dozens of keywords.

    ``offload_to_cpu``: keep weights in RAM and move them to the GPU per use (GPU builds);
    ``keep_vae_on_cpu`` / ``keep_clip_on_cpu`` / ``keep_control_net_on_cpu``: run those parts
    on the CPU; ``flash_attention``: flash attention everywhere it is supported;
    ``direct_conv``: direct convolution kernels (less memory on some backends);
    ``vae_tiling``: decode/encode the VAE in tiles (bounded memory at large sizes);
    ``mmap``: map model files instead of reading them; ``rng``: noise generator
    ("cuda" matches most web UIs, "cpu" matches ComfyUI, "std_default").

    Read by the torch engine only: ``precision`` ("auto": bf16 on CPUs with AVX512-BF16/AMX,
    fp16 on CUDA, fp32 otherwise; or "bf16", "fp16", "fp32"), ``channels_last`` (on by
    default on CPU), ``compile`` (``torch.compile`` the UNet; off by default), ``device``
    ("auto": the first CUDA GPU when PyTorch sees one, else the CPU; "cpu", "cuda",
    "cuda:N"; a CUDA device that is not there is an error).  The sdcpp engine's precision
    is the weight type (``SDModel(weight_type=...)``) and its device is fixed by the
    library's build.
    """

    offload_to_cpu: bool = False
    keep_vae_on_cpu: bool = False
    keep_clip_on_cpu: bool = False
    keep_control_net_on_cpu: bool = False
    flash_attention: bool = False
    direct_conv: bool = False
    vae_tiling: bool = False
    mmap: bool = False
    rng: str = "cuda"
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    device: str = "auto"


def parse_device(device: str) -> tuple[str, int | None]:
    """``EngineOptions.device`` as ``(kind, index)``: "auto", "cpu", "cuda" or "cuda:N"."""
    if isinstance(device, str):
        head, sep, index = device.partition(":")
        if device in ("auto", "cpu", "cuda"):
            return device, None
        if head == "cuda" and sep and index.isdigit():
            return "cuda", int(index)
    raise InvalidInputError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (N = 0, 1, ...); got {device!r}")


@dataclasses.dataclass(frozen=True)
class ModelFiles:
    """The files that make up one loaded model (all optional but one of model/diffusion_model)."""

    model: Path | None = None
    diffusion_model: Path | None = None
    high_noise_diffusion_model: Path | None = None
    vae: Path | None = None
    taesd: Path | None = None
    clip_l: Path | None = None
    clip_g: Path | None = None
    clip_vision: Path | None = None
    t5xxl: Path | None = None
    llm: Path | None = None
    control_net: Path | None = None
    photo_maker: Path | None = None
    embeddings: tuple[tuple[str, Path], ...] = ()


@dataclasses.dataclass(frozen=True)
class Guidance:
    """Guidance beyond plain CFG: image CFG (instruct/inpaint models), distilled guidance
    (Flux-dev style), skip-layer guidance (SD3/Wan)."""

    image_cfg_scale: float | None = None
    distilled_guidance: float | None = None
    slg_layers: tuple[int, ...] = ()
    slg_start: float = 0.01
    slg_end: float = 0.2
    slg_scale: float = 0.0


@dataclasses.dataclass(frozen=True)
class Hires:
    """Hires fix: generate, upscale (latent/pixel/model), then refine at the larger size."""

    scale: float = 2.0
    upscaler: str = "latent"
    model: Path | None = None
    steps: int = 0
    denoising_strength: float = 0.7
    width: int = 0
    height: int = 0


@dataclasses.dataclass(frozen=True)
class Cache:
    """Step caching to skip redundant model evaluations (easycache, ucache, dbcache, taylorseer,
    cache_dit, spectrum); ``threshold`` trades quality for speed."""

    mode: str = "easycache"
    threshold: float | None = None
    start: float = 0.15
    end: float = 0.95


@dataclasses.dataclass(frozen=True)
class PhotoMakerInput:
    """PhotoMaker identity: reference face images and/or a precomputed id embedding."""

    images: tuple[Any, ...] = ()
    id_embedding: Path | None = None
    style_strength: float = 20.0


@dataclasses.dataclass(frozen=True)
class LoraSpec:
    path: Path
    weight: float = 1.0
    high_noise: bool = False


@dataclasses.dataclass(frozen=True)
class PreviewSpec:
    """Preview images during sampling: mode "proj" (fast), "tae" or "vae"; every ``interval`` steps."""

    mode: str = "proj"
    interval: int = 1


ProgressFn = Callable[[int, int, float], object]  # (step, total, elapsed seconds)
PreviewFn = Callable[[int, list], object]  # (step, [PIL images])


@dataclasses.dataclass
class ImageRequest:
    """One image generation, with every value already resolved (no ``None`` defaults left
    except where "engine default" is meant)."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    cfg_scale: float
    sampler: str | None
    scheduler: str | None
    seed: int
    batch: int = 1
    clip_skip: int = -1
    loras: tuple[LoraSpec, ...] = ()
    init_image: Any = None  # PIL.Image (RGB)
    strength: float = 0.75
    mask: Any = None  # PIL.Image (L), white = repaint
    control_image: Any = None  # PIL.Image (RGB)
    control_strength: float = 0.9
    control_guidance: tuple[float, float] = (0.0, 1.0)  # fraction of steps where ControlNet acts
    ref_images: tuple[Any, ...] = ()
    photo_maker: PhotoMakerInput | None = None
    hires: Hires | None = None
    cache: Cache | None = None
    vae_tiling: bool | None = None
    guidance: Guidance = dataclasses.field(default_factory=Guidance)
    eta: float | None = None
    flow_shift: float | None = None


@dataclasses.dataclass
class VideoRequest:
    prompt: str
    negative_prompt: str
    width: int
    height: int
    frames: int
    steps: int
    cfg_scale: float
    sampler: str | None
    scheduler: str | None
    seed: int
    init_image: Any = None
    end_image: Any = None
    control_frames: tuple[Any, ...] = ()
    strength: float = 0.75
    loras: tuple[LoraSpec, ...] = ()
    high_noise_steps: int | None = None
    high_noise_cfg_scale: float | None = None
    high_noise_sampler: str | None = None
    moe_boundary: float = 0.875
    vace_strength: float = 1.0
    flow_shift: float | None = None
    clip_skip: int = 0
    guidance: Guidance = dataclasses.field(default_factory=Guidance)
    vae_tiling: bool | None = None


@dataclasses.dataclass
class Hooks:
    """Per-call callbacks: progress ``(step, total, elapsed)`` and previews."""

    progress: ProgressFn | None = None
    preview: PreviewFn | None = None
    preview_spec: PreviewSpec | None = None


# --------------------------------------------------------------------------- engine


class Engine(abc.ABC):
    """One loaded model on one engine.  Not thread-safe per instance; ``close()`` frees it."""

    name: str = ""

    @property
    @abc.abstractmethod
    def can_generate_video(self) -> bool: ...

    @abc.abstractmethod
    def generate_images(self, request: ImageRequest, hooks: Hooks) -> list[Any]:
        """Return ``request.batch`` PIL images (seeds ``seed``, ``seed + 1``, ...)."""

    @abc.abstractmethod
    def generate_video(self, request: VideoRequest, hooks: Hooks) -> list[Any]:
        """Return the video frames as PIL images."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @classmethod
    @abc.abstractmethod
    def samplers(cls) -> list[str]:
        """Sampler names this engine accepts (engine-neutral spelling: euler_a, dpm++2m, ...)."""

    @classmethod
    @abc.abstractmethod
    def schedulers(cls) -> list[str]: ...


def load_engine(name: str, files: ModelFiles, *, options: EngineOptions, threads: int | None,
                weight_type: str | None, on_load_progress: ProgressFn | None = None) -> Engine:
    """Create engine ``name`` for ``files``; unknown names raise with the list of engines."""
    module_name = ENGINES.get(name)
    if module_name is None:
        raise InvalidInputError(f"unknown engine {name!r}; allowed: {', '.join(sorted(ENGINES))}")
    module = importlib.import_module(module_name)
    return module.create_engine(files, options=options, threads=threads, weight_type=weight_type,
                                on_load_progress=on_load_progress)


def select_engine(requested: str, family: str, files: ModelFiles) -> tuple[str, str]:
    """``(engine name, reason)``: "auto" picks torch when it is installed and runs this model
    family from a single file, else sdcpp; other names are taken as they are."""
    if requested != "auto":
        engine_class(requested)  # validates the name
        return requested, f"engine={requested} requested"
    from ._engines.torch_engine import explain

    if files.model is None or any(getattr(files, f) is not None for f in ("clip_l", "clip_g", "t5xxl", "photo_maker")):
        return "sdcpp", "model ships as parts: sdcpp"
    if str(files.model).lower().endswith(".gguf"):
        return "sdcpp", "GGUF file: sdcpp"
    ok, why = explain(family)
    return ("torch", f"torch: {why}") if ok else ("sdcpp", f"sdcpp: torch unavailable - {why}")


def engine_class(name: str) -> type[Engine]:
    module_name = ENGINES.get(name)
    if module_name is None:
        raise InvalidInputError(f"unknown engine {name!r}; allowed: {', '.join(sorted(ENGINES))}")
    return importlib.import_module(module_name).ENGINE_CLASS


def as_tuple(values: Sequence[Any] | None) -> tuple[Any, ...]:
    return tuple(values or ())
