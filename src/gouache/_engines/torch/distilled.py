"""The distilled families' single files, made loadable by diffusers' converters.

Tiny UNets (BK-SDM-Tiny, SDXS-512, BK-SDM-v2-Tiny, SDXS-512-0.9) are published as ldm files
written by diffusers' ``convert_diffusers_to_original_stable_diffusion.py``, which numbers the
blocks as if every level had SD's two res blocks (``input_blocks.1``, ``.3`` (downsample),
``.4``, ``.6``, ``.7``; ``output_blocks.0``, ``.1``, ``.2.1`` (upsample), ...), the numbering
stable-diffusion.cpp reads too.  diffusers' ldm -> diffusers converter expects the numbering
of one res block per level; :func:`compact_tiny_unet` renumbers.  The SDXS files keep a TAESD
under ``first_stage_model.``; :func:`tiny_autoencoder` builds diffusers' ``AutoencoderTiny``
from such tensors (or from a TAESD file's).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..._errors import InvalidInputError

_UNET = "model.diffusion_model."
_BLOCK = re.compile(r"^(input_blocks|output_blocks)\.(\d+)\.(\d+)\.(.*)$")
#: Where a TAESD's tensors sit in a checkpoint: the SDXS files, sd.cpp's renamed form, a bare file.
_TAE_PREFIXES = ("first_stage_model.", "tae.", "taesd.", "")


def is_tiny_unet(unet_config: dict) -> bool:
    """One res block per level and no middle block: the tiny UNets' layout."""
    return unet_config.get("layers_per_block") == 1 and unet_config.get("mid_block_type", "x") is None


def _compact_input(n: int) -> int:
    if n == 0:
        return 0
    level, r = divmod(n - 1, 3)
    if r == 0:  # the level's res block (+ transformer)
        return 2 * level + 1
    if r == 2:  # the level's downsampler
        return 2 * level + 2
    raise InvalidInputError(f"input_blocks.{n} is not part of a tiny UNet (one res block per level)")


def _compact_output(n: int, sub: int) -> tuple[int, int]:
    level, r = divmod(n, 3)
    if r < 2:
        return 2 * level + r, sub
    return 2 * level + 1, 2  # the upsampler, placed after the level's last block and its transformer


def compact_tiny_unet(ckpt: dict[str, Any]) -> dict[str, Any]:
    """``ckpt`` with its tiny UNet's blocks renumbered for one res block per level (same tensors)."""
    out: dict[str, Any] = {}
    for name, tensor in ckpt.items():
        m = _BLOCK.match(name[len(_UNET) :]) if name.startswith(_UNET) else None
        if m is None:
            out[name] = tensor
            continue
        kind, n, sub, rest = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        if kind == "input_blocks":
            n = _compact_input(n)
        else:
            n, sub = _compact_output(n, sub)
        out[f"{_UNET}{kind}.{n}.{sub}.{rest}"] = tensor
    return out


def taesd_tensors(state: dict[str, Any]) -> dict[str, Any] | None:
    """The ``encoder.layers.*`` / ``decoder.layers.*`` tensors of a TAESD inside ``state``, or ``None``."""
    for prefix in _TAE_PREFIXES:
        found = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix + "decoder.layers.")}
        if found:
            found.update({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix + "encoder.layers.")})
            return found
    return None


def tiny_autoencoder(state: dict[str, Any], dtype, what: str, config: dict | None = None):
    """diffusers' ``AutoencoderTiny`` with the TAESD weights found in ``state``; a decoder-only
    TAESD file gives a decoder-only autoencoder (the encoder stays unused).  ``what`` names the
    source in errors."""
    from diffusers import AutoencoderTiny

    tensors = taesd_tensors(state)
    if tensors is None:
        raise InvalidInputError(f"{what} holds no TAESD (decoder.layers.* tensors)")
    cfg = {k: v for k, v in (config or {}).items() if not k.startswith("_")}
    decoder_in = tensors.get("decoder.layers.0.weight")
    if decoder_in is not None:
        cfg["latent_channels"] = int(decoder_in.shape[1])
    vae = AutoencoderTiny(**cfg)
    missing, unexpected = vae.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.startswith("encoder.")] if not _has_encoder(tensors) else missing
    if missing or unexpected:
        raise InvalidInputError(
            f"{what} does not match diffusers' AutoencoderTiny (missing {list(missing)[:3]},"
            f" unexpected {list(unexpected)[:3]})"
        )
    return vae.to(dtype)


def _has_encoder(tensors: dict[str, Any]) -> bool:
    return any(k.startswith("encoder.") for k in tensors)


def config_of(cfg: Path, component: str) -> dict:
    """The JSON config of ``component`` in the config folder ``cfg``."""
    return json.loads((cfg / component / "config.json").read_text())
