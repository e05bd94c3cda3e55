"""Diffusers model folders: ``model_index.json`` beside ``unet/`` (or ``transformer/``),
``vae/``, ``text_encoder/`` ... subfolders, as ``save_pretrained`` writes them and the Hub
serves them.

The family is read from the folder's configs: the denoiser's class and, for UNets, its
``cross_attention_dim`` (768: SD 1.x, 1024: SD 2.x, 2048 or ``addition_embed_type
"text_time"``: SDXL), ``in_channels`` (9: inpainting, 8: instruct-pix2pix) and block count
(no middle block: the tiny distilled UNets); the scheduler's ``prediction_type`` marks SD 2.x
768-v models.  Weight files are the ``.safetensors`` (else ``.bin``) files of the subfolders.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError
from .families import Family

__all__ = ["folder_family", "folder_weight_files", "is_diffusers_folder"]

INDEX = "model_index.json"

# Denoiser classes of transformer pipelines -> family.
_TRANSFORMERS = {
    "SD3Transformer2DModel": Family.SD3,
    "FluxTransformer2DModel": Family.FLUX,
    "Flux2Transformer2DModel": Family.FLUX2,
    "WanTransformer3DModel": Family.WAN2_1,
}
_UNET_WIDTHS = {768: (Family.SD1, Family.SD1_INPAINT, Family.SD1_PIX2PIX, Family.SD1_TINY)}
_UNET_WIDTHS[1024] = (Family.SD2, Family.SD2_INPAINT, Family.SD1_PIX2PIX, Family.SD2_TINY)
_UNET_WIDTHS[2048] = (Family.SDXL, Family.SDXL_INPAINT, Family.SDXL_PIX2PIX, Family.SDXL_DISTILLED)


def is_diffusers_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding a diffusers ``model_index.json``."""
    p = Path(path)
    return p.is_dir() and (p / INDEX).is_file()


def _config(folder: Path, sub: str, name: str = "config.json") -> dict[str, Any] | None:
    path = folder / sub / name if sub else folder / name
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InvalidInputError(
            f"diffusers folder {str(folder)!r}: {sub or '.'}/{name} is unreadable ({exc})"
        ) from None
    return data if isinstance(data, dict) else None


def _unet_family(folder: Path, unet: dict[str, Any]) -> tuple[Family, str | None]:
    width = unet.get("cross_attention_dim")
    width = width[0] if isinstance(width, list) else width
    if unet.get("addition_embed_type") == "text_time":
        width = 2048
    plain, inpaint, pix2pix, tiny = _UNET_WIDTHS.get(width, (Family.UNKNOWN,) * 4)
    channels = unet.get("in_channels", 4)
    if channels == 9:
        return inpaint, None
    if channels == 8:
        return pix2pix, None
    if unet.get("mid_block_type", "") is None:  # BK-SDM, SDXS, SSD-1B-style distilled UNets
        return tiny, None
    scheduler = _config(folder, "scheduler", "scheduler_config.json") or {}
    if plain is Family.SD2 and scheduler.get("prediction_type") == "v_prediction":
        return plain, "768-v"
    return plain, None


def folder_family(path: str | os.PathLike[str]) -> tuple[Family, str | None]:
    """``(family, variant)`` of a diffusers folder, from its configs."""
    folder = Path(path)
    if not is_diffusers_folder(folder):
        raise InvalidInputError(f"{str(folder)!r} is not a diffusers folder (no {INDEX} in it)")
    transformer = _config(folder, "transformer")
    if transformer is not None:
        return _TRANSFORMERS.get(str(transformer.get("_class_name")), Family.UNKNOWN), None
    unet = _config(folder, "unet")
    if unet is not None:
        return _unet_family(folder, unet)
    return Family.UNKNOWN, None


def folder_weight_files(path: str | os.PathLike[str]) -> list[Path]:
    """The weight files of a diffusers folder's subfolders: ``.safetensors``, else ``.bin``."""
    folder = Path(path)
    files: list[Path] = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = sorted(sub.glob("*.safetensors")) or sorted(sub.glob("*.bin"))
        files.extend(found)
    return files
