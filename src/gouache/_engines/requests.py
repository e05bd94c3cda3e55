"""The engine-neutral vocabulary between the pipeline and the engines: options, inputs, requests.

The pipeline turns what a user asked for into an :class:`ImageRequest` or
:class:`VideoRequest` in which every value is checked and resolved (model defaults
applied, images converted to PIL in the mode the engine needs, sizes planned); an
engine maps it onto its own API.  Options that belong together travel together
(:class:`Sampling`, :class:`InitImage`, :class:`Control`, :class:`Guidance`, ...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError

__all__ = [
    "Cache",
    "Control",
    "EngineOptions",
    "Guidance",
    "Hires",
    "Hooks",
    "ImageRequest",
    "InitImage",
    "LoraSpec",
    "ModelFiles",
    "PRECISIONS",
    "PhotoMakerInput",
    "PreviewFn",
    "PreviewSpec",
    "ProgressFn",
    "Sampling",
    "VideoRequest",
]


# --------------------------------------------------------------------------- what a model is made of

#: Values of ``EngineOptions.precision`` (read by the torch engine).
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


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
    llm_vision: Path | None = None
    control_net: Path | None = None
    photo_maker: Path | None = None
    embeddings: tuple[tuple[str, Path], ...] = ()

    @property
    def main(self) -> Path:
        """The file the model's family is read from."""
        main = self.model or self.diffusion_model
        assert main is not None, "ModelFiles needs model or diffusion_model"
        return main

    @property
    def in_parts(self) -> bool:
        """Whether the model ships as parts (separate diffusion model or text encoders)."""
        return self.model is None or any(
            p is not None for p in (self.clip_l, self.clip_g, self.t5xxl, self.llm, self.photo_maker)
        )


# --------------------------------------------------------------------------- option groups


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
class PreviewSpec:
    """Preview images during sampling: mode "proj" (fast), "tae" or "vae"; every ``interval`` steps."""

    mode: str = "proj"
    interval: int = 1


@dataclasses.dataclass(frozen=True)
class LoraSpec:
    """A LoRA file and its weight (``high_noise``: Wan 2.2's high-noise expert)."""

    path: Path
    weight: float = 1.0
    high_noise: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sampling:
    """How the noise is removed: steps, CFG, sampler and schedule (``None``: the engine's
    choice for the model), guidance extras, ``eta`` and ``flow_shift`` (``None``: defaults)."""

    steps: int
    cfg_scale: float
    sampler: str | None = None
    scheduler: str | None = None
    guidance: Guidance = Guidance()
    eta: float | None = None
    flow_shift: float | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class InitImage:
    """img2img: the image to start from (PIL RGB, canvas-sized), how much of it is re-noised,
    and for inpainting the mask (PIL L, white = repaint)."""

    image: Any
    strength: float
    mask: Any = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Control:
    """ControlNet conditioning: the control image (PIL RGB, canvas-sized), its strength and the
    fraction of the steps where it acts."""

    image: Any
    strength: float
    start: float = 0.0
    end: float = 1.0


# --------------------------------------------------------------------------- requests


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageRequest:
    """One image generation with every value checked and resolved."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    sampling: Sampling
    seed: int
    batch: int = 1
    clip_skip: int = -1
    loras: tuple[LoraSpec, ...] = ()
    init: InitImage | None = None
    control: Control | None = None
    ref_images: tuple[Any, ...] = ()
    photo_maker: PhotoMakerInput | None = None
    hires: Hires | None = None
    cache: Cache | None = None
    vae_tiling: bool | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class VideoRequest:
    """One video generation with every value checked and resolved; ``high_noise``: how Wan 2.2
    MoE models sample their high-noise part (``None``: as the low-noise part)."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    frames: int
    sampling: Sampling
    seed: int
    high_noise: Sampling | None = None
    init_image: Any = None
    end_image: Any = None
    control_frames: tuple[Any, ...] = ()
    strength: float = 0.75
    loras: tuple[LoraSpec, ...] = ()
    moe_boundary: float = 0.875
    vace_strength: float = 1.0
    clip_skip: int = 0
    vae_tiling: bool | None = None


ProgressFn = Callable[[int, int, float], object]  # (step, total, elapsed seconds)
PreviewFn = Callable[[int, list], object]  # (step, [PIL images])


@dataclasses.dataclass(frozen=True)
class Hooks:
    """Per-call callbacks: progress ``(step, total, elapsed)`` and previews."""

    progress: ProgressFn | None = None
    preview: PreviewFn | None = None
    preview_spec: PreviewSpec | None = None
