"""Validation before any native call.

Several bad inputs abort or segfault the whole process inside stable-diffusion.cpp
(GGML_ASSERT or NULL dereference).  Each known path is refused here with
:class:`~gouache.InvalidInputError`, naming the bad value and what is allowed:

* ControlNet with a distilled/tiny UNet (tiny SD1/SD2, SDXS, SSD-1B, Vega);
* ControlNet with an SDXL UNet (the SDXL ControlNet graph overflows the engine's fixed
  ControlNet graph size and aborts);
* image encoding (img2img, reference images, video start/end/control frames) on a
  context created with ``vae_decode_only=True``;
* a NULL or empty upscaler path (also the hires-fix model upscaler);
* Flux without any text encoder;
* Wan with a block count other than 30 or 40.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .._modelfiles import headers as _modelfile
from .._errors import InvalidInputError
from .native import HiresUpscaler
from .genparams import SDImageGenParams, SDVideoGenParams, lora_list
from .params import SDContextParams, SDSampleParams

#: Largest accepted width/height in pixels (the engine's tensors overflow far beyond this).
MAX_SIDE = 16384
#: Largest accepted number of sampling steps.
MAX_STEPS = 1000
#: Largest accepted batch count in one call.
MAX_BATCH = 1024


def _int_in(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be an integer in [{lo}, {hi}]; got {value!r}")
    if not lo <= value <= hi:
        raise InvalidInputError(f"{name} must be in [{lo}, {hi}]; got {value}")


def _float_in(name: str, value: Any, lo: float = -math.inf, hi: float = math.inf, *, allow_inf: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{name} must be a number; got {value!r}")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise InvalidInputError(f"{name} must be a finite number; got {value!r}")
    if not lo <= v <= hi:
        raise InvalidInputError(f"{name} must be in [{lo:g}, {hi:g}]; got {value!r}")


# --------------------------------------------------------------------------- context


def _is_sdxl_unet(tensors: dict[str, _modelfile.TensorInfo]) -> bool:
    """A UNet with a 2048-wide cross-attention context (SDXL and its inpaint/pix2pix variants).

    control.hpp builds an SDXL ControlNet for these, whose compute graph has more nodes than
    its fixed ``CONTROL_NET_GRAPH_SIZE`` (1536): ``GGML_ASSERT(cgraph->n_nodes < cgraph->size)``
    aborts the process on the first generation with a control image (engine 0.4.7).
    """
    n = _modelfile.strip_prefix(tensors)
    is_unet = any(k.startswith(("input_blocks.", "down_blocks.", "unet.down_blocks.")) for k in n)
    return is_unet and any(
        k.endswith("attn2.to_k.weight") and len(v.shape) == 2 and v.shape[-1] == 2048 for k, v in n.items()
    )


def check_context_params(p: SDContextParams) -> dict[str, Any]:
    """Validate files and the known crash combinations; returns facts about the model."""
    if p.model_path is None and p.diffusion_model_path is None:
        raise InvalidInputError("a model is required: set model_path or diffusion_model_path")
    tensors: dict[str, _modelfile.TensorInfo] = {}
    known = True
    for name in SDContextParams.PATH_FIELDS:
        value = getattr(p, name)
        if value is None:
            continue
        what = name.replace("_path", "").replace("_", " ") + " file"
        if name in ("model_path", "diffusion_model_path", "high_noise_diffusion_model_path"):
            found = _modelfile.read_tensors(value, what)
            if found is None:
                known = False
            else:
                tensors.update(found)
        else:
            _modelfile.sniff(value, what)
    for emb in p.embedding_list():
        if not emb.name:
            raise InvalidInputError("embedding name must not be empty")
        _modelfile.sniff(emb.path, f"embedding {emb.name!r} file")
    if p.n_threads is not None:
        _int_in("n_threads", p.n_threads, 1, 4096)
    _float_in("max_vram", p.max_vram, 0.0)

    facts = {"distilled_unet": False, "flux": False, "wan_blocks": None, "known": known}
    if tensors:
        facts["distilled_unet"] = _modelfile.is_distilled_unet(tensors)
        facts["flux"] = _modelfile.is_flux(tensors)
        facts["wan_blocks"] = _modelfile.wan_block_count(tensors)
    if p.control_net_path is not None and facts["distilled_unet"]:
        raise InvalidInputError(
            "ControlNet cannot be used with a distilled/tiny UNet (this model has no middle_block.1:"
            " tiny SD, SDXS, SSD-1B or Vega); the engine would abort. Use a full SD1.x/SD2.x"
            " model with control_net_path, or drop control_net_path"
        )
    if p.control_net_path is not None and tensors and _is_sdxl_unet(tensors):
        raise InvalidInputError(
            "ControlNet cannot be used with an SDXL model in this engine version (stable-diffusion.cpp of"
            " stable-diffusion-cpp-python 0.4.7): the SDXL ControlNet's compute graph exceeds the engine's"
            " fixed ControlNet graph size (1536 nodes) and the process aborts (GGML_ASSERT) on the first"
            " generation with a control image. Use an SD1.x/SD2.x model with control_net_path, or drop"
            " control_net_path"
        )
    if facts["flux"] and not (p.t5xxl_path or p.clip_l_path or p.llm_path or _modelfile.has_text_encoder(tensors)):
        raise InvalidInputError(
            "a Flux model needs a text encoder: set t5xxl_path and/or clip_l_path"
            " (the engine crashes without one)"
        )
    blocks = facts["wan_blocks"]
    if blocks is not None and blocks not in (30, 40):
        raise InvalidInputError(
            f"unsupported Wan model: {blocks} transformer blocks; allowed: 30 (Wan 1.3B/5B) or 40 (Wan 14B)"
        )
    return facts


# --------------------------------------------------------------------------- generation


def check_sample_params(s: SDSampleParams, prefix: str = "sample_params", *, allow_unset_steps: bool = False) -> None:
    from .native import SampleMethod, Scheduler

    if not (allow_unset_steps and s.sample_steps == -1):  # -1: same as the low-noise steps
        _int_in(f"{prefix}.sample_steps", s.sample_steps, 1, MAX_STEPS)
    _float_in(f"{prefix}.txt_cfg", s.txt_cfg, 0.0, 100.0)
    if s.img_cfg is not None:
        _float_in(f"{prefix}.img_cfg", s.img_cfg, 0.0, 100.0, allow_inf=True)
    _float_in(f"{prefix}.distilled_guidance", s.distilled_guidance, 0.0, 100.0)
    _float_in(f"{prefix}.slg_scale", s.slg_scale, 0.0, 100.0)
    _float_in(f"{prefix}.slg_layer_start", s.slg_layer_start, 0.0, 1.0)
    _float_in(f"{prefix}.slg_layer_end", s.slg_layer_end, 0.0, 1.0)
    for i, layer in enumerate(s.slg_layers):
        _int_in(f"{prefix}.slg_layers[{i}]", layer, 0, 1000)
    if s.eta is not None:
        _float_in(f"{prefix}.eta", s.eta, 0.0, 100.0, allow_inf=True)
    if s.flow_shift is not None:
        _float_in(f"{prefix}.flow_shift", s.flow_shift, 0.0, 1000.0, allow_inf=True)
    for i, sigma in enumerate(s.custom_sigmas):
        _float_in(f"{prefix}.custom_sigmas[{i}]", sigma, 0.0)
    if s.scheduler is not None:
        Scheduler.parse(s.scheduler)
    if s.sample_method is not None:
        SampleMethod.parse(s.sample_method)


def _check_size(width: Any, height: Any) -> None:
    _int_in("width", width, 1, MAX_SIDE)
    _int_in("height", height, 1, MAX_SIDE)


def _check_loras(loras: Iterable[Any]) -> None:
    for lora in lora_list(list(loras)):
        _modelfile.sniff(lora.path, "LoRA file")
        _float_in(f"LoRA {str(lora.path)!r} multiplier", lora.multiplier, -100.0, 100.0)


def _encodes(what: str, vae_decode_only: bool) -> None:
    if vae_decode_only:
        raise InvalidInputError(
            f"{what} must be encoded by the VAE, but this context was created with"
            " vae_decode_only=True; create it with SDContextParams(vae_decode_only=False)"
        )


def check_image_gen(g: SDImageGenParams, *, vae_decode_only: bool) -> None:
    _check_size(g.width, g.height)
    check_sample_params(g.sample_params)
    _float_in("strength", g.strength, 0.0, 1.0)
    _float_in("control_strength", g.control_strength, 0.0, 10.0)
    _int_in("batch_count", g.batch_count, 1, MAX_BATCH)
    _int_in("seed", g.seed, -(2**63), 2**63 - 1)
    _int_in("clip_skip", g.clip_skip, -1, 12)
    _check_loras(g.loras)
    if g.init_image is not None:
        _encodes("init_image (img2img)", vae_decode_only)
    if g.ref_images:
        _encodes("ref_images", vae_decode_only)
    if g.mask_image is not None and g.init_image is None:
        raise InvalidInputError("mask_image needs an init_image to inpaint into")
    h = g.hires
    if h.enabled:
        up = HiresUpscaler.parse(h.upscaler)
        if up == HiresUpscaler.MODEL:
            if h.model_path is None or not str(h.model_path).strip():
                raise InvalidInputError("hires.model_path is required when hires.upscaler is 'model'")
            _modelfile.sniff(h.model_path, "hires upscaler model file")
        _float_in("hires.scale", h.scale, 0.0, 8.0)
        _int_in("hires.target_width", h.target_width, 0, MAX_SIDE)
        _int_in("hires.target_height", h.target_height, 0, MAX_SIDE)
        _int_in("hires.steps", h.steps, 0, MAX_STEPS)
        _float_in("hires.denoising_strength", h.denoising_strength, 0.0, 1.0)
        _int_in("hires.upscale_tile_size", h.upscale_tile_size, 1, MAX_SIDE)
    pm = g.pm_params
    if pm.id_embed_path is not None:
        _modelfile.check_file(pm.id_embed_path, "PhotoMaker id embedding file")
    _float_in("pm_params.style_strength", pm.style_strength, 0.0, 100.0)
    t = g.vae_tiling_params
    _int_in("vae_tiling_params.tile_size_x", t.tile_size_x, 0, MAX_SIDE)
    _int_in("vae_tiling_params.tile_size_y", t.tile_size_y, 0, MAX_SIDE)
    _float_in("vae_tiling_params.target_overlap", t.target_overlap, 0.0, 1.0)
    from .native import CacheMode

    CacheMode.parse(g.cache.mode)


def check_video_gen(v: SDVideoGenParams, *, vae_decode_only: bool) -> None:
    _check_size(v.width, v.height)
    check_sample_params(v.sample_params)
    check_sample_params(v.high_noise_sample_params, "high_noise_sample_params", allow_unset_steps=True)
    _float_in("strength", v.strength, 0.0, 1.0)
    _float_in("moe_boundary", v.moe_boundary, 0.0, 1.0)
    _float_in("vace_strength", v.vace_strength, 0.0, 10.0)
    _int_in("video_frames", v.video_frames, 1, 10000)
    _int_in("seed", v.seed, -(2**63), 2**63 - 1)
    _check_loras(v.loras)
    if v.init_image is not None:
        _encodes("init_image", vae_decode_only)
    if v.end_image is not None:
        _encodes("end_image", vae_decode_only)
    if v.control_frames:
        _encodes("control_frames", vae_decode_only)
