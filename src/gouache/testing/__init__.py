"""Testing helpers for gouache.

:mod:`gouache.testing.forge` writes random-weight models with real architectures, so
applications (and gouache's own tests) can exercise the real engine without real weights.
"""

from .forge import (
    FORGE_VERSION,
    cache_dir,
    clip_l,
    controlnet_sd1,
    controlnet_sdxl,
    controlnet_sdxl_diffusers,
    esrgan_x4,
    flux,
    flux_vae,
    gguf,
    lora_sd1,
    lora_sd1_tiny,
    sd1,
    sd1_tiny,
    sdxl,
    sdxs,
    spec_of,
    taehv,
    taesd,
    wan21_t2v,
    wan21_t2v_gguf,
)

__all__ = [
    "FORGE_VERSION",
    "cache_dir",
    "clip_l",
    "controlnet_sd1",
    "controlnet_sdxl",
    "controlnet_sdxl_diffusers",
    "esrgan_x4",
    "flux",
    "flux_vae",
    "gguf",
    "lora_sd1",
    "lora_sd1_tiny",
    "sd1",
    "sd1_tiny",
    "sdxl",
    "sdxs",
    "spec_of",
    "taehv",
    "taesd",
    "wan21_t2v",
    "wan21_t2v_gguf",
]
