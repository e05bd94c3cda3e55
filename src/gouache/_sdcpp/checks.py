"""Validation before any native call: the binding's check_inputs.

Several bad inputs abort or segfault the whole process inside stable-diffusion.cpp
(GGML_ASSERT or NULL dereference).  Each known path is refused here with
:class:`~gouache.InvalidInputError`, naming the bad value and what is allowed:

* ControlNet with a distilled/tiny UNet (tiny SD1/SD2, SDXS, SSD-1B, Vega);
* ControlNet with an SDXL UNet (the SDXL ControlNet graph overflows the engine's fixed
  ControlNet graph size and aborts);
* image encoding (img2img, reference images, video start/end/control frames) on a
  context created with ``vae_decode_only=True``;
* a NULL or empty upscaler path (also the hires-fix model upscaler);
* Flux.1 without any text encoder (Chroma runs on zeros without T5);
* SD3 without both CLIP-L and CLIP-G (the engine concatenates their pooled outputs and aborts,
  or segfaults, when one is missing; T5-XXL is optional);
* Wan with a block count other than 30 or 40;
* an LLM text encoder whose features are not as wide as the diffusion model reads them
  (Z-Image 2560, Qwen-Image 3584, FLUX.2 its ``txt_in``); a missing or wrong-architecture
  LLM is refused too, with the file it needs, where the engine would only fail to load;
* image encoding (img2img, reference images) with Qwen-Image's tiny autoencoder (TAEHV), whose
  encoder aborts on a still image.

Numbers are checked against the one table of limits (:mod:`gouache._limits`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from .._errors import InvalidInputError
from .._limits import check
from .._modelfiles.architecture import LLM_NEEDS, LLMFacts, ModelFacts, llm_arch_name
from .._modelfiles.folders import is_diffusers_folder
from .._modelfiles.headers import TensorInfo, check_file, read_tensors, sniff
from .genparams import SDImageGenParams, SDVideoGenParams, lora_list
from .native import CacheMode, HiresUpscaler, SampleMethod, Scheduler
from .params import SDContextParams, SDSampleParams

_DIFFUSION_FILES = ("model_path", "diffusion_model_path", "high_noise_diffusion_model_path")

# --------------------------------------------------------------------------- context


def _model_facts(p: SDContextParams) -> ModelFacts:
    """Check every file of the context; the facts of its diffusion model files."""
    tensors: dict[str, TensorInfo] = {}
    known = True
    for name in SDContextParams.PATH_FIELDS:
        value = getattr(p, name)
        if value is None:
            continue
        what = name.replace("_path", "").replace("_", " ") + " file"
        if name == "model_path" and is_diffusers_folder(value):  # the engine reads the folder itself
            known = False
            continue
        if name in _DIFFUSION_FILES:
            found = read_tensors(value, what)
            known = known and found is not None
            tensors.update(found or {})
        else:
            sniff(value, what)
    return ModelFacts.of(tensors, known=known)


def _refuse_controlnet_on_distilled(p: SDContextParams, facts: ModelFacts) -> None:
    if p.control_net_path is not None and facts.distilled_unet:
        raise InvalidInputError(
            "ControlNet cannot be used with a distilled/tiny UNet (this model has no middle_block.1:"
            " tiny SD, SDXS, SSD-1B or Vega); the engine would abort. Use a full SD1.x/SD2.x"
            " model with control_net_path, or drop control_net_path"
        )


def _refuse_controlnet_on_sdxl(p: SDContextParams, facts: ModelFacts) -> None:
    """control.hpp builds an SDXL ControlNet whose graph has more nodes than its fixed
    ``CONTROL_NET_GRAPH_SIZE`` (1536): ``GGML_ASSERT(cgraph->n_nodes < cgraph->size)`` aborts the
    process on the first generation with a control image (engine 0.4.7)."""
    if p.control_net_path is not None and facts.sdxl_unet:
        raise InvalidInputError(
            "ControlNet cannot be used with an SDXL model in this engine version (stable-diffusion.cpp of"
            " stable-diffusion-cpp-python 0.4.7): the SDXL ControlNet's compute graph exceeds the engine's"
            " fixed ControlNet graph size (1536 nodes) and the process aborts (GGML_ASSERT) on the first"
            " generation with a control image. Use an SD1.x/SD2.x model with control_net_path, or drop"
            " control_net_path"
        )


def _refuse_flux_without_text_encoder(p: SDContextParams, facts: ModelFacts) -> None:
    if facts.flux and not (p.t5xxl_path or p.clip_l_path or facts.text_encoder):
        raise InvalidInputError(
            "a Flux model needs a text encoder: set t5xxl_path and/or clip_l_path (the engine crashes without one)"
        )


def _refuse_sd3_without_both_clips(p: SDContextParams, facts: ModelFacts) -> None:
    given = {"clip_l": p.clip_l_path, "clip_g": p.clip_g_path}
    missing = [c for c in facts.sd3_clips_missing if given[c] is None]
    if missing:
        raise InvalidInputError(
            f"an SD3 model needs both CLIP text encoders: set {' and '.join(f'{c}_path' for c in missing)}"
            " (the engine crashes with one or none; t5xxl_path is optional)"
        )


def _llm_of(p: SDContextParams) -> LLMFacts | None:
    tensors = read_tensors(p.llm_path, "llm file")
    return None if tensors is None else LLMFacts.of(tensors)


def _refuse_wrong_llm(p: SDContextParams, facts: ModelFacts) -> None:
    """Z-Image, Qwen-Image and FLUX.2 read an LLM: without one (or with another architecture)
    the engine fails to load; with features of another width it aborts in its first matrix
    product (``GGML_ASSERT(ggml_can_mul_mat)`` / ``ggml_can_repeat``)."""
    if facts.llm_needs is None:
        return
    need = LLM_NEEDS[facts.llm_needs]
    arch = llm_arch_name(need.arch)
    if p.llm_path is None:
        raise InvalidInputError(f"a {need.label} model needs its {arch} text encoder: set llm_path")
    llm = _llm_of(p)
    if llm is None:
        raise InvalidInputError(f"llm file {str(p.llm_path)!r} is not an LLM text encoder; {need.label} reads {arch}")
    if llm.arch != need.arch:
        raise InvalidInputError(
            f"{need.label} reads a {arch} text encoder, but llm file {str(p.llm_path)!r} is a"
            f" {llm.arch_name} model ({llm.hidden} wide, {llm.layers} layers)"
        )
    width = need.width or facts.text_width
    got = need.output_width(llm)
    if width is not None and got != width:
        used = f"layers {', '.join(map(str, need.out_layers))} side by side" if need.out_layers else "its last layer"
        raise InvalidInputError(
            f"the {need.label} diffusion model reads {width}-wide text features, but llm file"
            f" {str(p.llm_path)!r} ({llm.hidden} wide, {llm.layers} layers) gives {got}-wide ones"
            f" ({need.label} uses {used}); the engine would abort. Use the text encoder made for this model"
        )


def _refuse_unsupported_wan(p: SDContextParams, facts: ModelFacts) -> None:
    if facts.wan_blocks is not None and facts.wan_blocks not in (30, 40):
        raise InvalidInputError(
            f"unsupported Wan model: {facts.wan_blocks} transformer blocks; allowed: 30 (Wan 1.3B/5B) or 40 (Wan 14B)"
        )


def check_context_params(p: SDContextParams) -> ModelFacts:
    """Validate files and the known crash combinations; returns facts about the model."""
    if p.model_path is None and p.diffusion_model_path is None:
        raise InvalidInputError("a model is required: set model_path or diffusion_model_path")
    facts = _model_facts(p)
    for emb in p.embedding_list():
        if not emb.name:
            raise InvalidInputError("embedding name must not be empty")
        sniff(emb.path, f"embedding {emb.name!r} file")
    if p.n_threads is not None:
        check("n_threads", p.n_threads, "threads")
    check("max_vram", p.max_vram, "memory_gb")
    for refuse in (
        _refuse_controlnet_on_distilled,
        _refuse_controlnet_on_sdxl,
        _refuse_flux_without_text_encoder,
        _refuse_sd3_without_both_clips,
        _refuse_unsupported_wan,
        _refuse_wrong_llm,
    ):
        refuse(p, facts)
    return dataclasses.replace(facts, tae=p.taesd_path is not None and not p.tae_preview_only)


# --------------------------------------------------------------------------- generation


def check_sample_params(s: SDSampleParams, prefix: str = "sample_params", *, allow_unset_steps: bool = False) -> None:
    if not (allow_unset_steps and s.sample_steps == -1):  # -1: same as the low-noise steps
        check(f"{prefix}.sample_steps", s.sample_steps, "steps")
    check(f"{prefix}.txt_cfg", s.txt_cfg, "cfg_scale")
    if s.img_cfg is not None:
        check(f"{prefix}.img_cfg", s.img_cfg, "image_cfg_scale")
    check(f"{prefix}.distilled_guidance", s.distilled_guidance, "guidance")
    check(f"{prefix}.slg_scale", s.slg_scale, "guidance")
    check(f"{prefix}.slg_layer_start", s.slg_layer_start, "fraction")
    check(f"{prefix}.slg_layer_end", s.slg_layer_end, "fraction")
    for i, layer in enumerate(s.slg_layers):
        check(f"{prefix}.slg_layers[{i}]", layer, "slg_layer")
    if s.eta is not None:
        check(f"{prefix}.eta", s.eta, "eta")
    if s.flow_shift is not None:
        check(f"{prefix}.flow_shift", s.flow_shift, "flow_shift")
    for i, sigma in enumerate(s.custom_sigmas):
        check(f"{prefix}.custom_sigmas[{i}]", sigma, "sigma")
    if s.scheduler is not None:
        Scheduler.parse(s.scheduler)
    if s.sample_method is not None:
        SampleMethod.parse(s.sample_method)


def _check_size(width: Any, height: Any) -> None:
    check("width", width, "side")
    check("height", height, "side")


def _check_loras(loras: Iterable[Any]) -> None:
    for lora in lora_list(list(loras)):
        sniff(lora.path, "LoRA file")
        check(f"LoRA {str(lora.path)!r} multiplier", lora.multiplier, "lora_weight")


def _encodes(what: str, vae_decode_only: bool) -> None:
    if vae_decode_only:
        raise InvalidInputError(
            f"{what} must be encoded by the VAE, but this context was created with"
            " vae_decode_only=True; create it with SDContextParams(vae_decode_only=False)"
        )


def _check_hires(g: SDImageGenParams) -> None:
    h = g.hires
    if not h.enabled:
        return
    if HiresUpscaler.parse(h.upscaler) == HiresUpscaler.MODEL:
        if h.model_path is None or not str(h.model_path).strip():
            raise InvalidInputError("hires.model_path is required when hires.upscaler is 'model'")
        sniff(h.model_path, "hires upscaler model file")
    check("hires.scale", h.scale, "hires_scale")
    check("hires.target_width", h.target_width, "side_or_auto")
    check("hires.target_height", h.target_height, "side_or_auto")
    check("hires.steps", h.steps, "steps_or_auto")
    check("hires.denoising_strength", h.denoising_strength, "fraction")
    check("hires.upscale_tile_size", h.upscale_tile_size, "tile")


def _check_extras(g: SDImageGenParams) -> None:
    """PhotoMaker, VAE tiling and step cache."""
    pm = g.pm_params
    if pm.id_embed_path is not None:
        check_file(pm.id_embed_path, "PhotoMaker id embedding file")
    check("pm_params.style_strength", pm.style_strength, "guidance")
    t = g.vae_tiling_params
    check("vae_tiling_params.tile_size_x", t.tile_size_x, "side_or_auto")
    check("vae_tiling_params.tile_size_y", t.tile_size_y, "side_or_auto")
    check("vae_tiling_params.target_overlap", t.target_overlap, "fraction")
    CacheMode.parse(g.cache.mode)


def _check_common(p: SDImageGenParams | SDVideoGenParams) -> None:
    """The fields image and video generation share."""
    _check_size(p.width, p.height)
    check_sample_params(p.sample_params)
    check("strength", p.strength, "fraction")
    check("seed", p.seed, "seed")
    _check_loras(p.loras)


def _refuse_tae_encode_on_qwen(g: SDImageGenParams, facts: ModelFacts | None) -> None:
    """Qwen-Image's tiny autoencoder (TAEHV) aborts encoding a still image
    (``GGML_ASSERT(a->ne[2] == b->ne[2])`` in its first convolution)."""
    if facts is None or not (facts.qwen_image and facts.tae):
        return
    what = [n for n, v in (("init_image", g.init_image), ("ref_images", g.ref_images)) if v]
    if what:
        raise InvalidInputError(
            f"{' and '.join(what)} must be encoded, and Qwen-Image's tiny autoencoder (taesd_path) cannot"
            " encode images in this engine version (it aborts); load the Qwen-Image VAE with vae_path"
            " (taesd_path may stay for previews with tae_preview_only=True)"
        )


def check_image_gen(g: SDImageGenParams, *, vae_decode_only: bool, facts: ModelFacts | None = None) -> None:
    _refuse_tae_encode_on_qwen(g, facts)
    _check_common(g)
    check("control_strength", g.control_strength, "control_strength")
    check("batch_count", g.batch_count, "batch")
    check("clip_skip", g.clip_skip, "clip_skip")
    if g.init_image is not None:
        _encodes("init_image (img2img)", vae_decode_only)
    if g.ref_images:
        _encodes("ref_images", vae_decode_only)
    if g.mask_image is not None and g.init_image is None:
        raise InvalidInputError("mask_image needs an init_image to inpaint into")
    _check_hires(g)
    _check_extras(g)


def check_video_gen(v: SDVideoGenParams, *, vae_decode_only: bool) -> None:
    _check_common(v)
    check_sample_params(v.high_noise_sample_params, "high_noise_sample_params", allow_unset_steps=True)
    check("moe_boundary", v.moe_boundary, "fraction")
    check("vace_strength", v.vace_strength, "control_strength")
    check("video_frames", v.video_frames, "frames")
    if v.init_image is not None:
        _encodes("init_image", vae_decode_only)
    if v.end_image is not None:
        _encodes("end_image", vae_decode_only)
    if v.control_frames:
        _encodes("control_frames", vae_decode_only)
