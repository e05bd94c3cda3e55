"""Architecture facts read from tensor names and shapes: the one home of "what kind of network is this".

Family detection (:mod:`.families`) and the engine's crash guards
(:mod:`gouache._sdcpp.checks`, through :class:`ModelFacts`) both ask here, so a UNet,
its middle block or its cross-attention width is recognised the same way everywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .headers import TensorInfo

__all__ = [
    "UNET_PREFIX",
    "ModelFacts",
    "Tensors",
    "any_prefix",
    "any_substr",
    "context_dim",
    "has_middle_block",
    "has_text_encoder",
    "has_unet",
    "is_flux",
    "last_dim",
    "shape_of",
    "strip_prefix",
    "unet_names",
    "wan_block_count",
]

Tensors = Mapping[str, TensorInfo]

#: Prefix of the diffusion model's tensors in single-file checkpoints.
UNET_PREFIX = "model.diffusion_model."


def strip_prefix(names: Tensors) -> dict[str, TensorInfo]:
    """Names with a leading ``model.diffusion_model.`` removed (diffusion-model-only files lack it)."""
    return {k[len(UNET_PREFIX) :] if k.startswith(UNET_PREFIX) else k: v for k, v in names.items()}


def unet_names(tensors: Tensors) -> Tensors:
    """A bare diffusers UNet file (``conv_in.weight``, ``down_blocks.*``) seen with the ``unet.``
    prefix the engine's diffusers loader gives it; other files unchanged."""
    if "conv_in.weight" in tensors and "time_embedding.linear_1.weight" in tensors:
        return {"unet." + k: v for k, v in tensors.items()}
    return tensors


def any_prefix(names: Tensors, *prefixes: str) -> bool:
    return any(k.startswith(prefixes) for k in names)


def any_substr(names: Tensors, *parts: str) -> bool:
    return any(p in k for k in names for p in parts)


def shape_of(names: Tensors, *candidates: str) -> tuple[int, ...] | None:
    """Shape of the first candidate name present."""
    for c in candidates:
        if c in names:
            return names[c].shape
    return None


def last_dim(names: Tensors, *candidates: str) -> int | None:
    """ggml's ``ne[0]`` (the innermost dimension) of the first candidate present."""
    shape = shape_of(names, *candidates)
    return shape[-1] if shape else None


# --------------------------------------------------------------------------- UNets


def has_unet(t: Tensors, n: Tensors) -> bool:
    """An SD-style UNet (ldm ``input_blocks`` or diffusers ``unet.down_blocks``); ``t`` seen through
    :func:`unet_names`, ``n`` = ``strip_prefix(t)``."""
    return any_prefix(n, "input_blocks.") or any_prefix(t, "unet.down_blocks.")


def has_middle_block(t: Tensors, n: Tensors) -> bool:
    """The UNet has its middle block (distilled UNets, tiny SD, SDXS, SSD-1B and Vega, lack it)."""
    return any_prefix(n, "middle_block.1.") or any_prefix(t, "unet.mid_block.resnets.1.")


def context_dim(n: Tensors) -> int | None:
    """Cross-attention context width of a UNet (768 SD1, 1024 SD2, 2048 SDXL, 1280 refiner)."""
    for k, v in n.items():
        if k.endswith("attn2.to_k.weight") and len(v.shape) == 2:
            return v.shape[-1]
    return None


# --------------------------------------------------------------------------- DiTs and text encoders


def is_flux(names: Tensors) -> bool:
    return any_prefix(strip_prefix(names), "double_blocks.")


def has_text_encoder(t: Tensors) -> bool:
    return any_prefix(t, "text_encoders.", "cond_stage_model.", "conditioner.", "te.text_model.", "text_model.")


def wan_block_count(names: Tensors) -> int | None:
    """Number of transformer blocks of a Wan model, or ``None`` when the file is not Wan."""
    n = strip_prefix(names)
    if "blocks.0.cross_attn.norm_k.weight" not in n:
        return None
    idx = [int(k.split(".")[1]) for k in n if k.startswith("blocks.") and k.split(".")[1].isdigit()]
    return max(idx) + 1


# --------------------------------------------------------------------------- facts for the guards


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    """What the engine's crash guards need to know about the model files of a context.

    ``known``: every diffusion model file had a readable header (pickled checkpoints do not);
    ``distilled_unet``: a UNet without its middle block (ControlNet aborts the engine);
    ``sdxl_unet``: a UNet with 2048-wide cross-attention (the SDXL ControlNet graph overflows the
    engine's fixed ControlNet graph size); ``flux``: a Flux DiT; ``text_encoder``: the files hold
    a text encoder; ``wan_blocks``: the block count of a Wan DiT, else ``None``.
    """

    known: bool = True
    distilled_unet: bool = False
    sdxl_unet: bool = False
    flux: bool = False
    text_encoder: bool = False
    wan_blocks: int | None = None

    @classmethod
    def of(cls, tensors: Tensors, *, known: bool = True) -> ModelFacts:
        t = unet_names(tensors)
        n = strip_prefix(t)
        unet = has_unet(t, n)
        return cls(
            known=known,
            distilled_unet=unet and not has_middle_block(t, n),
            sdxl_unet=unet and context_dim(n) == 2048,
            flux=is_flux(n),
            text_encoder=has_text_encoder(t),
            wan_blocks=wan_block_count(t),
        )
