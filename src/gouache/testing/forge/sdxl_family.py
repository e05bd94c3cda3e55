"""SDXL: base 1.0 at its real size (single-file "sgm" layout), SDXL ControlNets in the engine's and
in diffusers' layout, and an SDXL UNet alone in diffusers' layout (as SDXL-Lightning publishes it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

from .blocks import (
    UNetShape,
    _chain,
    _clip_l,
    _conv,
    _linear,
    _norm,
    _open_clip,
    _spatial_transformer,
    _vae_kl,
    controlnet_of,
    unet_of,
)
from .io import _check_dtype, _Tensor, make
from .sd1_family import _UNET, _VAE, _ldm_to_diffusers_block

_SDXL_CONTEXT = 2048  # CLIP-L (768) + OpenCLIP bigG (1280) hidden states, concatenated
_SDXL_ADM = 2816  # label_emb input: bigG pooled (1280) + 6 size/crop embeddings of 256
_SDXL_CHANNEL_MULT = (1, 2, 4)
_SDXL_ATTENTION_RESOLUTIONS = (2, 4)  # no attention at full resolution
_SDXL_TRANSFORMER_DEPTH = (1, 2, 10)  # per level (level 0 has none); the middle block uses the last
_SDXL_CLIP_L = "conditioner.embedders.0.transformer.text_model"
_SDXL_CLIP_G = "conditioner.embedders.1.model"


#: SDXL's UNet as unet.hpp builds it for VERSION_SDXL: num_res_blocks 2, channel_mult (1, 2, 4),
#: attention at ds 2 and 4 with depth 2 and 10, middle depth 10, context 2048, linear projections,
#: label_emb from 2816 features.
SDXL_UNET = UNetShape(
    channel_mult=_SDXL_CHANNEL_MULT,
    attention_at=_SDXL_ATTENTION_RESOLUTIONS,
    context_dim=_SDXL_CONTEXT,
    depth=_SDXL_TRANSFORMER_DEPTH,
    linear=True,
    adm_in=_SDXL_ADM,
)


#: SSD-1B (Segmind): SDXL's UNet without the middle block's transformer and second resnet, 4
#: transformer blocks at the deepest level, and the irregular decoder depths unet.hpp gives
#: VERSION_SDXL_SSD1B (output blocks at level 2: 4, 4, 10; at level 1: 2, 1, 1).
SSD1B_UNET = dataclasses.replace(
    SDXL_UNET, depth=(1, 2, 4), decoder_depth=((1, 1, 1), (2, 1, 1), (4, 4, 10)), middle="resnet"
)
#: Segmind Vega: transformer depth 1/1/2 and the same middle block as SSD-1B (VERSION_SDXL_VEGA).
VEGA_UNET = dataclasses.replace(SDXL_UNET, depth=(1, 1, 2), middle="resnet")


def _unet_sdxl(p: str) -> Iterator[_Tensor]:
    """SDXL UNet (sgm openaimodel), mirrors unet.hpp for VERSION_SDXL (:data:`SDXL_UNET`)."""
    return unet_of(p, SDXL_UNET)


def _open_clip_bigg(p: str) -> Iterator[_Tensor]:
    """OpenCLIP ViT-bigG/14 text tower (open_clip names), as in the SDXL checkpoint under
    ``conditioner.embedders.1.model``; mirrors clip.hpp OPEN_CLIP_VIT_BIGG_14 (width 1280, 32 layers,
    20 heads, MLP 5120, projection 1280) after name_conversion.cpp."""
    return _open_clip(p, 1280, 32, 5120)


def _controlnet_sdxl(p: str) -> Iterator[_Tensor]:
    """SDXL ControlNet as the engine builds it (control.hpp, ControlNetBlock for an SDXL base):
    the SDXL encoder half (label_emb, depth 1/2/10, middle depth 10) plus input_hint_block,
    9 zero_convs and middle_block_out.  control.hpp never switches the ControlNet's
    SpatialTransformers to linear projections (it looks for ``proj_out.weight`` in the *base*
    model's tensors under the ControlNet's own unprefixed names, which never match), so
    proj_in/proj_out must be 1x1 convs ([C, C, 1, 1]); a [C, C] Linear fails with "wrong shape"."""
    return controlnet_of(p, SDXL_UNET)


def _diffusers_resnet(p: str, ch: int, emb: int, out: int) -> Iterator[_Tensor]:
    yield from _norm(f"{p}.norm1", ch)
    yield from _conv(f"{p}.conv1", ch, out)
    yield from _linear(f"{p}.time_emb_proj", emb, out)
    yield from _norm(f"{p}.norm2", out)
    yield from _conv(f"{p}.conv2", out, out)
    if ch != out:
        yield from _conv(f"{p}.conv_shortcut", ch, out, k=1)


def _controlnet_sdxl_diffusers(model_channels: int = 320) -> Iterator[_Tensor]:
    """SDXL ControlNet in the diffusers ``ControlNetModel`` layout (``diffusion_pytorch_model.safetensors``
    of e.g. diffusers/controlnet-depth-sdxl-1.0): ``conv_in``, ``time_embedding``, ``add_embedding``,
    ``controlnet_cond_embedding``, ``down_blocks.N.{resnets,attentions,downsamplers}``,
    ``controlnet_down_blocks.N``, ``mid_block``, ``controlnet_mid_block``; linear projections."""
    mc, num_res_blocks = model_channels, 2
    emb = mc * 4
    yield from _conv("conv_in", 4, mc)
    yield from _linear("time_embedding.linear_1", mc, emb)
    yield from _linear("time_embedding.linear_2", emb, emb)
    yield from _linear("add_embedding.linear_1", _SDXL_ADM, emb)
    yield from _linear("add_embedding.linear_2", emb, emb)
    yield from _conv("controlnet_cond_embedding.conv_in", 3, 16)
    for i, (n_in, n_out) in enumerate([(16, 16), (16, 32), (32, 32), (32, 96), (96, 96), (96, 256)]):
        yield from _conv(f"controlnet_cond_embedding.blocks.{i}", n_in, n_out)
    yield from _conv("controlnet_cond_embedding.conv_out", 256, mc)
    yield from _conv("controlnet_down_blocks.0", mc, mc, k=1)
    ch, zero, ds = mc, 1, 1
    for i, mult in enumerate(_SDXL_CHANNEL_MULT):
        for j in range(num_res_blocks):
            yield from _diffusers_resnet(f"down_blocks.{i}.resnets.{j}", ch, emb, mult * mc)
            ch = mult * mc
            if ds in _SDXL_ATTENTION_RESOLUTIONS:
                yield from _spatial_transformer(
                    f"down_blocks.{i}.attentions.{j}", ch, _SDXL_CONTEXT, _SDXL_TRANSFORMER_DEPTH[i], linear=True
                )
            yield from _conv(f"controlnet_down_blocks.{zero}", ch, ch, k=1)
            zero += 1
        if i != len(_SDXL_CHANNEL_MULT) - 1:
            yield from _conv(f"down_blocks.{i}.downsamplers.0.conv", ch, ch)
            yield from _conv(f"controlnet_down_blocks.{zero}", ch, ch, k=1)
            zero += 1
            ds *= 2
    yield from _diffusers_resnet("mid_block.resnets.0", ch, emb, ch)
    yield from _spatial_transformer(
        "mid_block.attentions.0", ch, _SDXL_CONTEXT, _SDXL_TRANSFORMER_DEPTH[-1], linear=True
    )
    yield from _diffusers_resnet("mid_block.resnets.1", ch, emb, ch)
    yield from _conv("controlnet_mid_block", ch, ch, k=1)


BUILDERS = {
    "sdxl": lambda s: _chain(_unet_sdxl(_UNET), _clip_l(_SDXL_CLIP_L), _open_clip_bigg(_SDXL_CLIP_G), _vae_kl(_VAE)),
    "controlnet_sdxl": lambda s: _controlnet_sdxl("control_model"),
    "controlnet_sdxl_diffusers": lambda s: _controlnet_sdxl_diffusers(),
}
BUILDERS["sdxl_unet_diffusers"] = lambda s: _unet_sdxl_diffusers()
BUILDERS["ssd1b"] = lambda s: _sdxl_checkpoint(SSD1B_UNET)
BUILDERS["vega"] = lambda s: _sdxl_checkpoint(VEGA_UNET)


def _sdxl_checkpoint(unet: UNetShape) -> Iterator[_Tensor]:
    """An SDXL-family single file: the UNet of shape ``unet`` with SDXL's two text encoders and VAE."""
    return _chain(unet_of(_UNET, unet), _clip_l(_SDXL_CLIP_L), _open_clip_bigg(_SDXL_CLIP_G), _vae_kl(_VAE))


def _make(kind: str, spec: dict) -> Path:
    return make(BUILDERS, kind, spec)


def sdxl(*, dtype: str = "f16", seed: int = 0) -> Path:
    """Full SDXL base 1.0 checkpoint at its real size, original single-file ("sgm") names:
    UNet ``model.diffusion_model.*`` (with ``label_emb``), CLIP ViT-L/14
    ``conditioner.embedders.0.transformer.text_model.*``, OpenCLIP ViT-bigG/14
    ``conditioner.embedders.1.model.*`` (with ``text_projection``) and the KL VAE
    ``first_stage_model.*``.

    The engine detects it as ``SDXL`` and fixes every width from that, so it cannot be made
    smaller: 3.47e9 parameters, ~6.9 GB in f16 (the writer streams, so memory stays bounded;
    writing takes a minute or two).
    """
    return _make("sdxl", {"dtype": _check_dtype(dtype), "seed": int(seed)})


def controlnet_sdxl(*, dtype: str = "f16", seed: int = 0) -> Path:
    """SDXL ControlNet in the layout the engine loads (``control_model.*``, ldm/cldm names:
    input_hint_block, zero_convs, middle_block_out, label_emb; transformer depth 1/2/10).

    Pair it with :func:`sdxl` (the engine builds the ControlNet from the base model's version).
    Its SpatialTransformer projections are 1x1 convs, the only form the engine accepts for an
    SDXL ControlNet.  1.25e9 parameters, ~2.5 GB in f16.
    """
    return _make("controlnet_sdxl", {"dtype": _check_dtype(dtype), "seed": int(seed)})


def controlnet_sdxl_diffusers(*, dtype: str = "f16", seed: int = 0) -> Path:
    """The SDXL ControlNet of :func:`controlnet_sdxl` in the diffusers layout it is usually
    published in (``controlnet_cond_embedding.*``, ``down_blocks.*``, ``controlnet_down_blocks.*``,
    ``mid_block.*``, ``controlnet_mid_block.*``; linear projections).  The engine cannot load this
    layout; convert it with :func:`gouache._modelfiles.convert.controlnet_diffusers_to_ldm`.  ~2.5 GB in f16.
    """
    return _make("controlnet_sdxl_diffusers", {"dtype": _check_dtype(dtype), "seed": int(seed)})


# ---- a UNet published alone in the diffusers layout (SDXL-Lightning's *_unet.safetensors)

_TO_DIFFUSERS_FIXED = {
    "time_embed.0": "time_embedding.linear_1",
    "time_embed.2": "time_embedding.linear_2",
    "label_emb.0.0": "add_embedding.linear_1",
    "label_emb.0.2": "add_embedding.linear_2",
    "input_blocks.0.0": "conv_in",
    "out.0": "conv_norm_out",
    "out.2": "conv_out",
}
_TO_DIFFUSERS_RESNET = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}


def _ldm_unet_name_to_diffusers(name: str) -> str:
    """``input_blocks.1.0.in_layers.2.weight`` -> ``down_blocks.0.resnets.0.conv1.weight`` for a
    UNet with 2 res blocks per level (SD1, SDXL), written independently of gouache's converter."""
    module, param = name.rsplit(".", 1)
    if module in _TO_DIFFUSERS_FIXED:
        return f"{_TO_DIFFUSERS_FIXED[module]}.{param}"
    parts = module.split(".")
    if parts[0] == "middle_block" and parts[1] in ("0", "2"):
        return f"mid_block.resnets.{int(parts[1]) // 2}.{_TO_DIFFUSERS_RESNET['.'.join(parts[2:])]}.{param}"
    kind, n, sub, rest = parts[0], int(parts[1]), parts[2], ".".join(parts[3:])
    if kind == "input_blocks" and rest == "op":
        return f"down_blocks.{n // 3 - 1}.downsamplers.0.conv.{param}"
    if kind == "output_blocks" and rest == "conv":
        return f"up_blocks.{n // 3}.upsamplers.0.conv.{param}"
    if sub == "0":
        i, j = divmod(n - 1, 3) if kind == "input_blocks" else divmod(n, 3)
        blocks = "down_blocks" if kind == "input_blocks" else "up_blocks"
        return f"{blocks}.{i}.resnets.{j}.{_TO_DIFFUSERS_RESNET[rest]}.{param}"
    return f"{_ldm_to_diffusers_block(module)}.{param}"


def _unet_sdxl_diffusers() -> Iterator[_Tensor]:
    for name, shape, init in _unet_sdxl(_UNET):
        yield _ldm_unet_name_to_diffusers(name[len(_UNET) + 1 :]), shape, init


def sdxl_unet_diffusers(*, dtype: str = "f16", seed: int = 1) -> Path:
    """The SDXL UNet alone, in the diffusers ``UNet2DConditionModel`` layout: the form
    SDXL-Lightning publishes its UNets in (``sdxl_lightning_4step_unet.safetensors``).
    Seed 1 by default, so its weights differ from :func:`sdxl`'s UNet; combine the two with
    :func:`gouache.assemble_checkpoint`.  2.57e9 parameters, ~5.1 GB in f16."""
    return _make("sdxl_unet_diffusers", {"dtype": _check_dtype(dtype), "seed": int(seed)})


# ---- the distilled SDXL UNets (Segmind)


def ssd1b(*, dtype: str = "f16", seed: int = 0) -> Path:
    """SSD-1B checkpoint (single file, SDXL names): the distilled SDXL UNet of
    :data:`SSD1B_UNET` with SDXL's CLIP-L, OpenCLIP bigG and VAE.  Detected as
    ``sdxl_distilled`` / ``ssd1b``.  2.16e9 parameters, ~4.3 GB in f16."""
    return _make("ssd1b", {"dtype": _check_dtype(dtype), "seed": int(seed)})


def vega(*, dtype: str = "f16", seed: int = 0) -> Path:
    """Segmind Vega checkpoint (single file, SDXL names): the UNet of :data:`VEGA_UNET` with
    SDXL's text encoders and VAE.  Detected as ``sdxl_distilled`` / ``vega``.  1.65e9
    parameters, ~3.3 GB in f16."""
    return _make("vega", {"dtype": _check_dtype(dtype), "seed": int(seed)})
