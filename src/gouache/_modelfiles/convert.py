"""Tensor-name conversion for model files the engine cannot load in their published layout.

:func:`controlnet_diffusers_to_ldm` turns a diffusers ``ControlNetModel`` safetensors file
(``controlnet_cond_embedding.*``, ``down_blocks.*``, ``controlnet_down_blocks.*``,
``mid_block.*``, ``controlnet_mid_block.*``) into the ``control_model.*`` (ldm/cldm) layout that
stable-diffusion.cpp's ControlNet loader reads.  The engine (0.4.7) does not accept diffusers
ControlNet names: its name conversion only strips ``control_model.``; diffusers UNet names are
converted for the base model (``unet.``/``model.diffusion_model.`` prefixes) but never for a
ControlNet file.

The engine also always builds a ControlNet's SpatialTransformer projections as 1x1 convs
(control.hpp never enables ``use_linear_projection``), while SDXL and SD2 ControlNets store
them as Linear weights ``[C, C]``; the converter reshapes those to ``[C, C, 1, 1]`` (same
bytes: a 1x1 conv on the feature map is the same map as the per-pixel linear layer).

The conversion only rewrites the header: the tensor data are copied byte for byte in chunks,
so memory stays small and dtypes (F32, F16, BF16) are kept.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Union

from .headers import safetensors_header
from .writer import copy_tensors

__all__ = ["controlnet_diffusers_to_ldm", "controlnet_name_to_ldm", "unet_name_to_ldm"]

_PREFIX = "control_model."
_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_FIXED = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "controlnet_cond_embedding.conv_in": "input_hint_block.0",
    "controlnet_cond_embedding.conv_out": "input_hint_block.14",
    "controlnet_mid_block": "middle_block_out.0",
}
#: Transformer blocks per SpatialTransformer of the SDXL ControlNet the engine builds (control.hpp).
_SDXL_DEPTHS = {
    "input_blocks.4.1": 2,
    "input_blocks.5.1": 2,
    "input_blocks.7.1": 10,
    "input_blocks.8.1": 10,
    "middle_block.1": 10,
}

_PathLike = Union[str, "os.PathLike[str]"]


def _split_param(name: str) -> tuple[str, str]:
    module, _, param = name.rpartition(".")
    return module, param


def controlnet_name_to_ldm(name: str, layers_per_block: int = 2) -> str | None:
    """The ``control_model.*`` name of one diffusers ControlNet tensor name, or ``None`` if it has
    no counterpart in the engine's ControlNet (e.g. ControlNet-Union's extra modules)."""
    module, param = _split_param(name)
    if module in _FIXED:
        return f"{_PREFIX}{_FIXED[module]}.{param}"
    m = re.fullmatch(r"controlnet_cond_embedding\.blocks\.(\d+)", module)
    if m:
        return f"{_PREFIX}input_hint_block.{2 * (int(m.group(1)) + 1)}.{param}"
    m = re.fullmatch(r"controlnet_down_blocks\.(\d+)", module)
    if m:
        return f"{_PREFIX}zero_convs.{m.group(1)}.0.{param}"
    stride = layers_per_block + 1
    m = re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)", module)
    if m and m.group(3) in _RESNET:
        idx = stride * int(m.group(1)) + int(m.group(2)) + 1
        return f"{_PREFIX}input_blocks.{idx}.0.{_RESNET[m.group(3)]}.{param}"
    m = re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", module)
    if m:
        idx = stride * int(m.group(1)) + int(m.group(2)) + 1
        return f"{_PREFIX}input_blocks.{idx}.1.{m.group(3)}.{param}"
    m = re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv", module)
    if m:
        return f"{_PREFIX}input_blocks.{stride * (int(m.group(1)) + 1)}.0.op.{param}"
    m = re.fullmatch(r"mid_block\.resnets\.(\d+)\.(\w+)", module)
    if m and m.group(2) in _RESNET:
        return f"{_PREFIX}middle_block.{2 * int(m.group(1))}.{_RESNET[m.group(2)]}.{param}"
    m = re.fullmatch(r"mid_block\.attentions\.0\.(.+)", module)
    if m:
        return f"{_PREFIX}middle_block.1.{m.group(1)}.{param}"
    return None


_UNET_PREFIX = "model.diffusion_model."
_UNET_OUT = {"conv_norm_out": "out.0", "conv_out": "out.2"}


def unet_name_to_ldm(name: str, layers_per_block: int = 2, attention_up_blocks: frozenset = frozenset()) -> str | None:
    """The ldm name (``model.diffusion_model.*``) of one diffusers ``UNet2DConditionModel``
    tensor name, or ``None`` if the ldm UNet has no such tensor.

    ``attention_up_blocks``: indices of the up blocks that have attentions (their upsampler
    sits after the attention, at ``output_blocks.N.2``; otherwise at ``output_blocks.N.1``)."""
    module, param = _split_param(name)
    if module in _UNET_OUT:
        return f"{_UNET_PREFIX}{_UNET_OUT[module]}.{param}"
    stride = layers_per_block + 1
    m = re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)", module)
    if m and m.group(3) in _RESNET:
        return (
            f"{_UNET_PREFIX}output_blocks.{stride * int(m.group(1)) + int(m.group(2))}.0.{_RESNET[m.group(3)]}.{param}"
        )
    m = re.fullmatch(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", module)
    if m:
        return f"{_UNET_PREFIX}output_blocks.{stride * int(m.group(1)) + int(m.group(2))}.1.{m.group(3)}.{param}"
    m = re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv", module)
    if m:
        i = int(m.group(1))
        sub = 2 if i in attention_up_blocks else 1
        return f"{_UNET_PREFIX}output_blocks.{stride * i + layers_per_block}.{sub}.conv.{param}"
    if module.startswith(("controlnet_", "input_hint")):
        return None
    cn = controlnet_name_to_ldm(name, layers_per_block)
    return None if cn is None else _UNET_PREFIX + cn[len(_PREFIX) :]


def _layout_of(names: list[str]) -> str:
    if any(n.startswith(_PREFIX) or n.startswith(("input_hint_block.", "zero_convs.")) for n in names):
        return "ldm"
    if any(n.startswith(("controlnet_cond_embedding.", "controlnet_down_blocks.")) for n in names):
        return "diffusers"
    raise ValueError(
        "not a ControlNet: found neither diffusers (controlnet_cond_embedding.*) nor"
        " ldm (control_model.* / input_hint_block.*) ControlNet tensors"
    )


def _check_sdxl_depth(tensors: dict[str, dict]) -> None:
    """An SDXL ControlNet must have the full SDXL encoder: the engine builds exactly that."""
    to_k = [v["shape"] for k, v in tensors.items() if k.endswith("attn2.to_k.weight")]
    if not to_k or to_k[0][-1] != 2048:
        return
    found: dict[str, int] = {}
    for k in tensors:
        m = re.match(r"control_model\.((?:input_blocks\.\d+|middle_block)\.1)\.transformer_blocks\.(\d+)\.", k)
        if m:
            found[m.group(1)] = max(found.get(m.group(1), 0), int(m.group(2)) + 1)
    if found != _SDXL_DEPTHS:
        raise ValueError(
            "unsupported SDXL ControlNet architecture: transformer blocks per attention layer"
            f" {dict(sorted(found.items()))}; the engine builds only the full SDXL ControlNet"
            f' {dict(sorted(_SDXL_DEPTHS.items()))} ("small"/"mid" distilled SDXL ControlNets cannot be loaded)'
        )


def controlnet_diffusers_to_ldm(src_path: _PathLike, dst_path: _PathLike) -> Path:
    """Write ``dst_path``: the ControlNet ``src_path`` (diffusers layout, safetensors) in the
    ``control_model.*`` layout the engine loads; returns ``dst_path``.

    * diffusers names map to cldm names (``controlnet_cond_embedding.conv_in`` ->
      ``input_hint_block.0``, ``controlnet_down_blocks.N`` -> ``zero_convs.N.0``,
      ``down_blocks.I.resnets.J`` -> ``input_blocks.{3I+J+1}.0`` with ResBlock names,
      ``mid_block.*`` -> ``middle_block.*``, ``controlnet_mid_block`` -> ``middle_block_out.0``, ...);
    * Linear ``proj_in``/``proj_out`` weights ``[C, C]`` become ``[C, C, 1, 1]`` (the engine's
      ControlNet only has 1x1 convs there);
    * a file already in the ldm layout is passed through with only that reshape (and a
      ``control_model.`` prefix where missing);
    * tensors the engine's ControlNet has no place for (ControlNet-Union/ProMax extras, ...) and
      SDXL ControlNets other than the full architecture raise ``ValueError``.

    Data are copied unchanged (same dtype and bytes); the source is never modified.
    """
    src, dst = Path(src_path), Path(dst_path)
    if src.resolve() == dst.resolve():
        raise ValueError("dst_path must differ from src_path")
    header, data_start = safetensors_header(src)
    metadata = {k: v for k, v in (header.pop("__metadata__", None) or {}).items() if not k.startswith("gouache.forge")}
    names = list(header)
    layout = _layout_of(names)

    if layout == "diffusers":
        resnets = {int(m.group(1)) for n in names if (m := re.match(r"down_blocks\.0\.resnets\.(\d+)\.", n))}
        layers_per_block = len(resnets) or 2
        renamed = {n: controlnet_name_to_ldm(n, layers_per_block) for n in names}
    else:
        renamed = {n: n if n.startswith(_PREFIX) else _PREFIX + n for n in names}
    unknown = sorted(n for n, new in renamed.items() if new is None)
    if unknown:
        more = f" (and {len(unknown) - 8} more)" if len(unknown) > 8 else ""
        raise ValueError(f"tensors with no place in the engine's ControlNet: {', '.join(unknown[:8])}{more}")

    out: dict[str, dict] = {}
    for old, new in renamed.items():
        info = dict(header[old])
        shape = list(info["shape"])
        module, param = _split_param(new)
        if param == "weight" and module.endswith((".proj_in", ".proj_out")) and len(shape) == 2:
            info["shape"] = shape + [1, 1]
        if new in out:
            raise ValueError(f"two tensors map to {new!r}")
        out[new] = info
    _check_sdxl_depth(out)

    metadata["gouache.convert"] = f"controlnet_diffusers_to_ldm from {layout}"
    return copy_tensors(dst, [(name, info, src, data_start) for name, info in out.items()], metadata, overwrite=True)
