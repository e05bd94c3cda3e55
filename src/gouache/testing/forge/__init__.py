"""Forge: random-weight models with real architectures for testing applications without real weights.

Every function here writes (once) and returns the path of a ``.safetensors`` file whose
tensor names and shapes are exactly those of a real model family, as read by the
stable-diffusion.cpp engine bundled with ``stable-diffusion-cpp-python`` 0.4.7.  The
weights are random, so generated images are noise-like, but every code path of the real
engine runs (model detection, loading, text encoding, sampling, VAE/TAESD decode, LoRA,
ControlNet, ESRGAN upscaling) at real speed and memory cost.  No network and no real
weights are needed; only numpy.

Weights are drawn deterministically from ``numpy.random.default_rng`` seeded by the
spec's seed and the tensor name (normal values as quantiles of a 65536-level table indexed by
16 random bits, which is fast and loses nothing at f16): linear/conv weights, biases, norm biases and
embeddings ~ N(0, 0.02); GroupNorm/LayerNorm weights are 1.  The small convolutional
nets without normalisation layers (TAESD, ESRGAN) use fan-in scaled conv weights
(std 1/sqrt(fan_in)) and an output bias of ~0.5, because they emit [0, 1] pixels
directly: with 0.02 weights their output would be black, with zero-mean output half
of it would clamp to 0.

Files are cached in :func:`cache_dir` under ``<kind>-<sha of the spec>.safetensors``
and written atomically (temporary file + ``os.replace``), so concurrent processes are
safe and a model, even the ~2 GB full SD1, is only ever written once per spec.  The spec
is stored in the safetensors metadata (``gouache.forge`` / ``gouache.forge.spec``) and
can be read back with :func:`spec_of`.
"""

from __future__ import annotations

from typing import Any

from . import (
    dit_family,
    flux2_family,
    llm_family,
    qwen_family,
    sd1_family,
    sd2_family,
    sd3_family,
    sdxl_family,
    zimage_family,
)
from .dit_family import (
    FLUX_HEAD_DIM,
    WAN21_1_3B,
    WAN22_TI2V_5B,
    chroma,
    clip_l,
    flux,
    flux_kontext,
    flux_vae,
    taehv,
    wan21_t2v,
    wan21_t2v_gguf,
    wan22_ti2v,
    wan_vae,
)
from .flux2_family import FLUX2_DEV_SINGLE_BLOCKS, flux2, flux2_vae
from .io import FORGE_VERSION, cache_dir, spec_of
from .llm_family import LLM_ARCHS, LLM_SIZES, llm
from .qwen_family import QWEN_IMAGE_CONTEXT, QWEN_IMAGE_WIDTH, qwen_image
from .sd1_family import (
    controlnet_sd1,
    esrgan_x4,
    gguf,
    lcm_lora_sd1,
    lora_sd1,
    lora_sd1_tiny,
    sd1,
    sd1_pix2pix,
    sd1_tiny,
    sdxs,
    taesd,
)
from .sd2_family import sd2, sd2_tiny, sdxs09
from .sd3_family import clip_g, sd3
from .sdxl_family import controlnet_sdxl, controlnet_sdxl_diffusers, sdxl, sdxl_unet_diffusers, ssd1b, vega
from .zimage_family import Z_IMAGE, z_image

__all__ = [
    "FLUX2_DEV_SINGLE_BLOCKS",
    "FLUX_HEAD_DIM",
    "FORGE_VERSION",
    "LLM_ARCHS",
    "LLM_SIZES",
    "QWEN_IMAGE_CONTEXT",
    "QWEN_IMAGE_WIDTH",
    "WAN21_1_3B",
    "WAN22_TI2V_5B",
    "Z_IMAGE",
    "cache_dir",
    "chroma",
    "clip_g",
    "clip_l",
    "controlnet_sd1",
    "controlnet_sdxl",
    "controlnet_sdxl_diffusers",
    "esrgan_x4",
    "flux",
    "flux2",
    "flux2_vae",
    "flux_kontext",
    "flux_vae",
    "gguf",
    "lcm_lora_sd1",
    "llm",
    "lora_sd1",
    "lora_sd1_tiny",
    "qwen_image",
    "sd1",
    "sd1_pix2pix",
    "sd1_tiny",
    "sd2",
    "sd2_tiny",
    "sd3",
    "sdxl",
    "sdxl_unet_diffusers",
    "sdxs",
    "sdxs09",
    "spec_of",
    "ssd1b",
    "taehv",
    "taesd",
    "vega",
    "wan21_t2v",
    "wan21_t2v_gguf",
    "wan22_ti2v",
    "wan_vae",
    "z_image",
]


def _layout(kind: str, **spec: Any) -> dict:
    """``{tensor name: shape}`` of a forge model, without writing it (for tests and tooling)."""
    builders = {
        **sd1_family.BUILDERS,
        **sd2_family.BUILDERS,
        **dit_family.BUILDERS,
        **sdxl_family.BUILDERS,
        **flux2_family.BUILDERS,
        **llm_family.BUILDERS,
        **qwen_family.BUILDERS,
        **zimage_family.BUILDERS,
        **sd3_family.BUILDERS,
    }
    spec.setdefault("num_block", 1)
    if kind.startswith("lora_"):
        spec.setdefault("base", kind[len("lora_") :])
        spec.setdefault("naming", "kohya")
        spec.setdefault("rank", 4)
        spec.setdefault("target", "unet")
    return {name: shape for name, shape, _ in builders[kind](spec)}
