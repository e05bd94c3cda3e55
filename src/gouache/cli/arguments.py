"""Parsed arguments -> the values the Python API takes (model options, generation keywords)."""

from __future__ import annotations

import argparse
from typing import Any

from .._engines.requests import Cache, EngineOptions, Guidance, Hires
from .._errors import InvalidInputError


def int_arg(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InvalidInputError(f"{name} must be an integer or 'auto'; got {value!r}") from None


def threads_arg(value: str) -> int | str:
    return value if value == "auto" else int_arg("--threads", value)


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def lora_args(values: list[str]) -> list[tuple[str, float]]:
    """``PATH_OR_NAME[:WEIGHT]`` options -> ``(path or name, weight)`` pairs."""
    out = []
    for v in values:
        name, sep, weight = v.rpartition(":")
        if sep and name and _is_float(weight):
            out.append((name, float(weight)))
        else:
            out.append((v, 1.0))
    return out


def resolve_prompt(a: argparse.Namespace) -> None:
    """The prompt of a generation command: positional or ``-p/--prompt`` (sd-cli's habit), one of them."""
    given = getattr(a, "prompt_option", None)
    if a.prompt is not None and given is not None:
        raise InvalidInputError("give the prompt once: as the positional PROMPT or as -p/--prompt, not both")
    if a.prompt is None and given is None:
        raise InvalidInputError(f"{a.command}: give a prompt (positional PROMPT or -p/--prompt)")
    a.prompt = a.prompt if given is None else given


def model_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``SDModel`` (the model file itself aside)."""
    return dict(
        vae=a.vae,
        taesd=a.taesd,
        clip_l=a.clip_l,
        clip_g=a.clip_g,
        t5xxl=a.t5xxl,
        llm=a.llm,
        llm_vision=a.llm_vision,
        diffusion_model=a.diffusion_model,
        high_noise_diffusion_model=a.high_noise_diffusion_model,
        control_net=a.control_net,
        photo_maker=a.photo_maker,
        lora_dir=a.lora_dir,
        embeddings=a.embeddings,
        threads=threads_arg(a.threads),
        weight_type=a.weight_type,
        engine=a.engine,
        options=EngineOptions(
            offload_to_cpu=a.offload_to_cpu,
            keep_vae_on_cpu=a.keep_vae_on_cpu,
            keep_clip_on_cpu=a.keep_clip_on_cpu,
            keep_control_net_on_cpu=a.keep_control_net_on_cpu,
            flash_attention=a.flash_attention,
            direct_conv=a.direct_conv,
            vae_tiling=a.vae_tiling,
            mmap=a.mmap,
            rng=a.rng,
            precision=a.precision,
            compile=a.compile,
        ),
    )


def _control_image(a: argparse.Namespace) -> Any:
    if not a.canny:
        return a.control_image
    from .._image import SDImage
    from .._sdcpp.functions import canny

    return canny(SDImage.open(a.control_image).with_channels(3)).to_pil()


def generate_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``SDModel.generate`` (prompt, seed and batch aside)."""
    kw: dict[str, Any] = dict(
        negative_prompt=a.negative_prompt,
        width=a.width,
        height=a.height,
        steps=a.steps,
        cfg_scale=a.cfg_scale,
        sampler=a.sampler,
        scheduler=a.scheduler,
        clip_skip=a.clip_skip,
        loras=lora_args(a.lora),
        ref_images=list(a.ref_image),
    )
    if a.guidance is not None or a.image_cfg_scale is not None:
        kw["guidance"] = Guidance(image_cfg_scale=a.image_cfg_scale, distilled_guidance=a.guidance)
    if a.eta is not None:
        kw["eta"] = a.eta
    if a.hires_scale is not None:
        kw["hires"] = Hires(
            scale=a.hires_scale,
            upscaler=a.hires_upscaler,
            model=a.hires_model,
            steps=a.hires_steps,
            denoising_strength=a.hires_strength,
        )
    if a.cache:
        kw["cache"] = Cache(mode=a.cache, threshold=a.cache_threshold)
    for name in ("strength", "control_strength", "init_image", "mask"):
        if getattr(a, name, None) is not None:
            kw[name] = getattr(a, name)
    if a.command == "controlnet":
        kw["control_image"] = _control_image(a)
    return kw


#: The keywords of ``SDModel.edit`` among those of ``SDModel.generate``.
_EDIT_KEYWORDS = (
    "negative_prompt",
    "width",
    "height",
    "steps",
    "cfg_scale",
    "sampler",
    "scheduler",
    "loras",
    "guidance",
    "cache",
)


def edit_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``SDModel.edit`` (images, instruction, seed and batch aside);
    options ``edit`` has no use for are refused by name."""
    unused = [
        flag
        for flag, given in (
            ("--ref-image", a.ref_image),
            ("--hires-scale", a.hires_scale is not None),
            ("--eta", a.eta is not None),
            ("--clip-skip", a.clip_skip != -1),
        )
        if given
    ]
    if unused:
        raise InvalidInputError(
            f"gouache edit does not take {', '.join(unused)} (it takes the images to edit with --image/-i,"
            " and the instruction as the prompt)"
        )
    kw = generate_kwargs(a)
    return {k: kw[k] for k in _EDIT_KEYWORDS if k in kw}


def video_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``SDModel.generate_video`` (prompt aside)."""
    return dict(
        negative_prompt=a.negative_prompt,
        width=a.width,
        height=a.height,
        frames=a.frames,
        steps=a.steps,
        cfg_scale=a.cfg_scale,
        sampler=a.sampler,
        scheduler=a.scheduler,
        seed=a.seed,
        init_image=a.init_image,
        end_image=a.end_image,
        control_frames=a.control_frame,
        strength=a.strength,
        loras=lora_args(a.lora),
        high_noise_steps=a.high_noise_steps,
        high_noise_cfg_scale=a.high_noise_cfg_scale,
        high_noise_sampler=a.high_noise_sampler,
        moe_boundary=a.moe_boundary,
        vace_strength=a.vace_strength,
        flow_shift=a.flow_shift,
    )
