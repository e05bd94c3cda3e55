"""Parsed arguments -> the values the Python API takes (model options, generation keywords)."""

from __future__ import annotations

import argparse
from typing import Any


def _model_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    from .._engines.base import EngineOptions

    threads: Any = a.threads if a.threads == "auto" else _int_arg("--threads", a.threads)
    return dict(
        vae=a.vae, taesd=a.taesd, clip_l=a.clip_l, clip_g=a.clip_g, t5xxl=a.t5xxl,
        diffusion_model=a.diffusion_model, high_noise_diffusion_model=a.high_noise_diffusion_model,
        control_net=a.control_net, photo_maker=a.photo_maker, lora_dir=a.lora_dir, embeddings=a.embeddings,
        threads=threads, weight_type=a.weight_type, engine=a.engine,
        options=EngineOptions(
            offload_to_cpu=a.offload_to_cpu, keep_vae_on_cpu=a.keep_vae_on_cpu, keep_clip_on_cpu=a.keep_clip_on_cpu,
            keep_control_net_on_cpu=a.keep_control_net_on_cpu, flash_attention=a.flash_attention,
            direct_conv=a.direct_conv, vae_tiling=a.vae_tiling, mmap=a.mmap, rng=a.rng,
            precision=a.precision, compile=a.compile,
        ),
    )


def _int_arg(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        from .._errors import InvalidInputError

        raise InvalidInputError(f"{name} must be an integer or 'auto'; got {value!r}") from None


def _loras(values: list[str]) -> list[tuple[str, float]]:
    out = []
    for v in values:
        name, sep, weight = v.rpartition(":")
        if sep and name and _is_float(weight):
            out.append((name, float(weight)))
        else:
            out.append((v, 1.0))
    return out


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _generate_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    from .._engines.base import Cache, Guidance, Hires

    kw: dict[str, Any] = dict(
        negative_prompt=a.negative_prompt, width=a.width, height=a.height, steps=a.steps, cfg_scale=a.cfg_scale,
        sampler=a.sampler, scheduler=a.scheduler, clip_skip=a.clip_skip, loras=_loras(a.lora),
        ref_images=list(a.ref_image),
    )
    if a.guidance is not None or a.image_cfg_scale is not None:
        kw["guidance"] = Guidance(image_cfg_scale=a.image_cfg_scale, distilled_guidance=a.guidance)
    if a.eta is not None:
        kw["eta"] = a.eta
    if a.hires_scale is not None:
        kw["hires"] = Hires(scale=a.hires_scale, upscaler=a.hires_upscaler, model=a.hires_model,
                            steps=a.hires_steps, denoising_strength=a.hires_strength)
    if a.cache:
        kw["cache"] = Cache(mode=a.cache, threshold=a.cache_threshold)
    for name in ("strength", "control_strength"):
        if getattr(a, name, None) is not None:
            kw[name] = getattr(a, name)
    if getattr(a, "init_image", None):
        kw["init_image"] = a.init_image
    if getattr(a, "mask", None):
        kw["mask"] = a.mask
    return kw
