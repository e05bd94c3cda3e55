"""SD2 family: the full SD2.x checkpoint (the SD-Turbo architecture), the tiny SD2 UNet
(BK-SDM-v2-Tiny) and SDXS-512-0.9, each with the OpenCLIP ViT-H/14 text tower."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .blocks import UNetShape, _chain, _open_clip, _taesd, _vae_kl, unet_of
from .io import _check_dtype, _Tensor, make

_UNET = "model.diffusion_model"
_OPEN_CLIP_H = "cond_stage_model.model"
_VAE = "first_stage_model"

#: SD2.x UNet as unet.hpp builds it for VERSION_SD2: SD1's layout with 1024-wide context and
#: Linear proj_in/proj_out (heads of 64 channels, which the tensor shapes do not show).
SD2_UNET = UNetShape(context_dim=1024, linear=True)
#: BK-SDM-v2-Tiny: num_res_blocks 1, channel_mult (1, 2, 4), no middle block.
SD2_TINY_UNET = UNetShape(channel_mult=(1, 2, 4), num_res_blocks=1, context_dim=1024, linear=True, tiny=True)
#: SDXS-512-0.9: the tiny SD2 UNet whose first level's ``attn1`` also reads the text context
#: (keys/values [320, 1024]: what the engine's ``has_attn_1024`` test finds).
SDXS09_UNET = UNetShape(
    channel_mult=(1, 2, 4), num_res_blocks=1, context_dim=1024, linear=True, tiny=True, self_context_at=(0,)
)


def _open_clip_h(p: str) -> Iterator[_Tensor]:
    """OpenCLIP ViT-H/14 text tower (width 1024, 24 layers, MLP 4096), as in SD2 checkpoints."""
    return _open_clip(p, 1024, 24, 4096)


BUILDERS = {
    "sd2": lambda s: _chain(unet_of(_UNET, SD2_UNET), _open_clip_h(_OPEN_CLIP_H), _vae_kl(_VAE)),
    "sd2_tiny": lambda s: _chain(unet_of(_UNET, SD2_TINY_UNET), _open_clip_h(_OPEN_CLIP_H), _vae_kl(_VAE)),
    # SDXS-512-0.9 ships a TAESD under first_stage_model. like SDXS-512-DS
    "sdxs09": lambda s: _chain(unet_of(_UNET, SDXS09_UNET), _open_clip_h(_OPEN_CLIP_H), _taesd(_VAE)),
}


def _make(kind: str, spec: dict) -> Path:
    return make(BUILDERS, kind, spec)


def sd2(*, dtype: str = "f16", seed: int = 0) -> Path:
    """Full SD2.x checkpoint (UNet + OpenCLIP ViT-H/14 + KL VAE), ldm names: the architecture of
    SD 2.1-base and of SD-Turbo.  The engine detects it as ``SD 2.x``.  1.30e9 parameters, ~2.6 GB in f16."""
    return _make("sd2", {"dtype": _check_dtype(dtype), "seed": int(seed)})


def sd2_tiny(*, dtype: str = "f16", seed: int = 0) -> Path:
    """Tiny SD2 (BK-SDM-v2-Tiny style UNet) + OpenCLIP ViT-H/14 + KL VAE in one file, ldm names
    as the engine's docs convert it.  Detected as ``sd2_tiny`` / ``tiny_unet``.  ~1.5 GB in f16."""
    return _make("sd2_tiny", {"dtype": _check_dtype(dtype), "seed": int(seed)})


def sdxs09(*, dtype: str = "f16", seed: int = 0) -> Path:
    """SDXS-512-0.9 style checkpoint: the tiny SD2 UNet with context-reading first-level
    attention, OpenCLIP ViT-H/14 and a TAESD under ``first_stage_model.``.  Detected as
    ``sd2_tiny`` / ``sdxs_09`` (a one-step model).  ~1.5 GB in f16."""
    return _make("sdxs09", {"dtype": _check_dtype(dtype), "seed": int(seed)})
