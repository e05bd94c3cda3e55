"""Jobs from requests: every API turns its request into one of these orders, which are
checked here against the limits and the server's names before anything is queued."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import gouache as g

from . import _protocol as P
from ._errors import ApiError, bad
from ._gouache import LORA_TAG, InvalidInputError, edits_images, resolve_seed
from ._jobs import Job, WorkerKey
from ._models import BUILTIN_UPSCALERS, CONTROLNET_MODULES

#: Video file formats a job can ask for.
VIDEO_FORMATS = {"webp": ".webp", "gif": ".gif", "mp4": ".mp4"}
#: The gouache.enhance presets.
ENHANCE_PRESETS = ("cpu", "speed", "quality", "t4_gpu")


@dataclasses.dataclass
class Control:
    """A ControlNet unit: ``model`` is a listed ControlNet name."""

    model: str
    image: Any
    preprocess: str = "none"
    strength: float = 1.0
    guidance: tuple[float, float] = (0.0, 1.0)
    field: str = "controlnet"


@dataclasses.dataclass
class ImageOrder:
    """An image generation, engine-neutral: sampler/scheduler are engine names (None = the
    model's default), LoRAs are listed names, images are PIL images."""

    prompt: str
    model: str | None = None
    negative_prompt: str = ""
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    scheduler: str | None = None
    seed: int = -1
    count: int = 1
    clip_skip: int = -1
    loras: list[tuple[str, float]] = dataclasses.field(default_factory=list)
    init_images: list[Any] = dataclasses.field(default_factory=list)
    strength: float = 0.75
    mask: Any = None
    control: Control | None = None
    eta: float | None = None
    hires: dict[str, Any] | None = None
    image_cfg_scale: float | None = None
    previews: bool = True
    fields: dict[str, str] = dataclasses.field(default_factory=dict)  # our name -> the API's field name

    def field(self, name: str) -> str:
        return self.fields.get(name, name)


def _num(field: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise bad(field, f"must be a number in [{lo:g}, {hi:g}]; got {value!r}")
    if not lo <= value <= hi:
        raise bad(field, f"must be in [{lo:g}, {hi:g}]; got {value!r}")
    return float(value)


def _int(field: str, value: Any, lo: int, hi: int, limit: str | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(field, f"must be an integer in [{lo}, {hi}]; got {value!r}")
    if value > hi and limit:
        raise bad(field, f"{value} exceeds the server limit {limit}={hi}")
    if not lo <= value <= hi:
        raise bad(field, f"must be in [{lo}, {hi}]; got {value}")
    return value


def check_size(state, width: int, height: int, fields: tuple[str, str] = ("width", "height")) -> None:
    limits = state.config.limits
    _int(fields[0], width, 1, limits.max_side, "max_side")
    _int(fields[1], height, 1, limits.max_side, "max_side")
    if width * height > limits.max_pixels:
        raise bad(
            f"{fields[0]}/{fields[1]}",
            f"{width}x{height} = {width * height} pixels exceeds the server limit max_pixels={limits.max_pixels}",
        )


def _seed(field: str, value: Any) -> int:
    try:
        return resolve_seed(value)
    except InvalidInputError as exc:
        raise bad(field, str(exc)) from None


def split_lora_tags(state, prompt: str, field: str) -> tuple[str, list[tuple[Path, float]]]:
    """Strip A1111 ``<lora:name:weight>`` tags; each name must be a listed LoRA."""
    found: list[tuple[Path, float]] = []

    def take(m: re.Match) -> str:
        weight = m.group(2)
        try:
            w = 1.0 if weight is None else float(weight)
        except ValueError:
            raise bad(field, f"bad LoRA weight {weight!r} in {m.group(0)!r}") from None
        found.append((state.catalog.entry("lora", m.group(1).strip(), field).path, w))
        return ""

    cleaned = LORA_TAG.sub(take, prompt)
    if found:
        cleaned = re.sub(r"\s{2,}", " ", cleaned).strip().strip(",").strip()
    return cleaned, found


def _choice(field: str, value: str | None, allowed: list[str], what: str) -> str | None:
    if value is None:
        return None
    key = value.strip().lower()
    if key not in allowed:
        raise bad(field, f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")
    return key


def image_job(state, order: ImageOrder, api: str) -> Job:
    """A generate job (one task per image) after every check the server can make."""
    limits = state.config.limits
    cat = state.catalog
    if not isinstance(order.prompt, str):
        raise bad(order.field("prompt"), "must be a string")
    model = cat.model_name(order.model, order.field("model"))
    defaults = cat.meta(model).defaults
    width, height = order.width, order.height
    if width is None and height is None and order.init_images:
        width, height = order.init_images[0].size
    width = defaults.width if width is None else width
    height = defaults.height if height is None else height
    check_size(state, width, height, (order.field("width"), order.field("height")))
    steps = None if order.steps is None else _int(order.field("steps"), order.steps, 1, limits.max_steps, "max_steps")
    count = _int(order.field("count"), order.count, 1, limits.max_batch, "max_batch")
    cfg = None if order.cfg_scale is None else _num(order.field("cfg_scale"), order.cfg_scale, 0.0, 100.0)
    sampler = _choice(order.field("sampler"), order.sampler, cat.samplers(model), "sampler")
    scheduler = _choice(order.field("scheduler"), order.scheduler, cat.schedulers(model), "scheduler")
    strength = _num(order.field("strength"), order.strength, 0.0, 1.0)
    clip_skip = _int(order.field("clip_skip"), order.clip_skip, -1, 12)
    prompt, tag_loras = split_lora_tags(state, order.prompt, order.field("prompt"))
    loras = [
        (cat.entry("lora", name, order.field("loras")).path, _num(order.field("loras"), w, -100.0, 100.0))
        for name, w in order.loras
    ] + tag_loras
    seed = _seed(order.field("seed"), order.seed)
    if order.mask is not None and not order.init_images:
        raise bad(order.field("mask"), "a mask needs an init image to inpaint into")
    controlnet = None
    kwargs: dict[str, Any] = dict(
        prompt=prompt,
        negative_prompt=order.negative_prompt,
        width=width,
        height=height,
        steps=steps,
        cfg_scale=cfg,
        sampler=sampler,
        scheduler=scheduler,
        batch=1,
        clip_skip=clip_skip,
        loras=[(str(p), w) for p, w in loras],
    )
    if order.eta is not None:
        kwargs["eta"] = _num(order.field("eta"), order.eta, 0.0, 100.0)
    meta = cat.meta(model)
    if order.image_cfg_scale is not None and edits_images(meta.family, meta.variant):
        # as in A1111, the image CFG scale only means something to instruction-editing models
        # (InstructPix2Pix, CosXL Edit ...); clients send it with every img2img
        kwargs["guidance"] = g.Guidance(
            image_cfg_scale=_num(order.field("image_cfg_scale"), order.image_cfg_scale, 0.0, 100.0)
        )
    if order.init_images:
        kwargs["strength"] = strength
    if order.mask is not None:
        kwargs["mask"] = order.mask
    preprocess = None
    if order.control is not None:
        c = order.control
        controlnet = cat.entry("controlnet", c.model, c.field).name
        if c.preprocess not in CONTROLNET_MODULES:
            raise bad(
                c.field, f"unknown preprocessor (module) {c.preprocess!r}; allowed: {', '.join(CONTROLNET_MODULES)}"
            )
        start, end = (_num(c.field, x, 0.0, 1.0) for x in c.guidance)
        if start >= end:
            raise bad(c.field, f"guidance_start must be below guidance_end; got {start}, {end}")
        kwargs.update(
            control_image=c.image, control_strength=_num(c.field, c.strength, 0.0, 10.0), control_guidance=(start, end)
        )
        preprocess = None if c.preprocess == "none" else c.preprocess
    if order.hires is not None:
        kwargs["hires"] = _hires(state, order.hires, width, height)
    tasks = []
    for i in range(count):
        kw = dict(kwargs, seed=seed + i)
        if order.init_images:
            kw["init_image"] = order.init_images[i % len(order.init_images)]
        tasks.append(P.GenerateTask(kw, control_preprocess=preprocess, previews=order.previews))
    summary = {
        "prompt": order.prompt,
        "negative_prompt": order.negative_prompt,
        "model": model,
        "width": width,
        "height": height,
        "steps": steps or defaults.steps,
        "cfg_scale": defaults.cfg_scale if cfg is None else cfg,
        "sampler": sampler or defaults.sampler or "default",
        "scheduler": scheduler or defaults.scheduler or "default",
        "seed": seed,
        "count": count,
        "strength": strength if order.init_images else None,
        "controlnet": controlnet,
    }
    return Job(api, "generate", WorkerKey("model", model, controlnet), tasks, summary)


def _hires(state, h: dict[str, Any], width: int, height: int) -> g.Hires:
    """A ``gouache.Hires`` from ``{"scale", "upscaler", "steps", "denoising_strength", "width",
    "height", "field"}``; ``upscaler`` is an engine name or a listed ESRGAN upscaler."""
    field = h.get("field", "hires")
    scale = _num(field, h.get("scale", 2.0), 1.0, 8.0)
    tw, th = int(h.get("width") or 0), int(h.get("height") or 0)
    out_w, out_h = (tw or round(width * scale)), (th or round(height * scale))
    check_size(state, out_w, out_h, (f"{field} width", f"{field} height"))
    name = h.get("upscaler") or "latent"
    engine_names = g.HiresUpscaler.names()
    model = None
    if name.strip().lower() in engine_names:
        upscaler = name.strip().lower()
    else:
        model = state.catalog.entry("upscaler", name, field).path
        upscaler = "model"
    return g.Hires(
        scale=scale,
        upscaler=upscaler,
        model=model,
        steps=_int(field, int(h.get("steps") or 0), 0, state.config.limits.max_steps, "max_steps"),
        denoising_strength=_num(field, h.get("denoising_strength", 0.7), 0.0, 1.0),
        width=tw,
        height=th,
    )


# --------------------------------------------------------------------------- other kinds


def load_job(state, model: str, api: str) -> Job:
    """Load ``model`` (no tasks): queued behind the worker's running jobs."""
    return Job(api, "load", WorkerKey("model", model), [], {"model": model})


def upscale_job(
    state,
    image,
    upscaler: str,
    width: int,
    height: int,
    *,
    crop: bool = False,
    upscaler_2: str = "None",
    visibility_2: float = 0.0,
    api: str = "jobs",
    fields: tuple[str, str] = ("upscaler", "upscaler_2"),
) -> Job:
    check_size(state, width, height)
    how = _upscaler(state, upscaler, fields[0])
    how2 = _upscaler(state, upscaler_2, fields[1])
    task = P.UpscaleTask(image, width, height, how, how2, _num("visibility", visibility_2, 0.0, 1.0), crop)
    summary = {"upscaler": upscaler, "upscaler_2": upscaler_2, "width": width, "height": height}
    return Job(api, "upscale", WorkerKey("upscale"), [task], summary)


def _upscaler(state, name: str, field: str) -> str:
    if name in BUILTIN_UPSCALERS:
        return BUILTIN_UPSCALERS[name]
    lowered = {k.lower(): v for k, v in BUILTIN_UPSCALERS.items()}
    if isinstance(name, str) and name.strip().lower() in lowered:
        return lowered[name.strip().lower()]
    return str(state.catalog.entry("upscaler", name, field).path)


def video_job(state, model: str | None, kwargs: dict[str, Any], *, fps: int, fmt: str, api: str) -> Job:
    limits = state.config.limits
    name = state.catalog.model_name(model)
    defaults = state.catalog.meta(name).defaults
    width = kwargs.get("width") or defaults.width
    height = kwargs.get("height") or defaults.height
    check_size(state, width, height)
    if kwargs.get("frames") is not None:
        _int("frames", kwargs["frames"], 1, limits.max_frames, "max_frames")
    if kwargs.get("steps") is not None:
        _int("steps", kwargs["steps"], 1, limits.max_steps, "max_steps")
    if fmt not in VIDEO_FORMATS:
        raise bad("format", f"unknown video format {fmt!r}; allowed: {', '.join(VIDEO_FORMATS)}")
    _int("fps", fps, 1, 120)
    prompt, loras = split_lora_tags(state, kwargs.get("prompt", ""), "prompt")
    for key in ("sampler", "scheduler"):
        if kwargs.get(key) is not None:
            allowed = state.catalog.samplers(name) if key == "sampler" else state.catalog.schedulers(name)
            kwargs[key] = _choice(key, kwargs[key], allowed, key)
    kw = dict(
        kwargs,
        prompt=prompt,
        width=width,
        height=height,
        seed=_seed("seed", kwargs.get("seed", -1)),
        loras=[(str(p), w) for p, w in loras],
    )
    task = P.VideoTask(kw, fps=fps, ext=VIDEO_FORMATS[fmt])
    summary = {k: v for k, v in kw.items() if not hasattr(v, "size")} | {"model": name, "fps": fps, "format": fmt}
    summary["loras"] = [[str(p), w] for p, w in loras]
    return Job(api, "video", WorkerKey("model", name), [task], summary)


def enhance_job(
    state,
    model: str | None,
    controlnet: str | None,
    image,
    *,
    depth=None,
    mask=None,
    config: dict[str, Any],
    call: dict[str, Any],
    api: str,
) -> Job:
    name = state.catalog.model_name(model)
    cn = None if controlnet is None else state.catalog.entry("controlnet", controlnet, "controlnet").name
    preset = config.get("preset", "cpu")
    if preset not in ENHANCE_PRESETS:
        raise bad("preset", f"unknown preset {preset!r}; allowed: {', '.join(ENHANCE_PRESETS)}")
    if config.get("lightning_steps") is not None:
        _int("steps", config["lightning_steps"], 1, state.config.limits.max_steps, "max_steps")
    ws = config.get("working_size")
    if ws is not None:
        if isinstance(ws, bool) or not isinstance(ws, int) or ws < 64 or ws % 64:
            raise bad("working_size", f"must be a multiple of 64, at least 64; got {ws!r}")
        check_size(state, ws, ws, ("working_size", "working_size"))
    seed = _seed("seed", call.get("seed", 42) if call.get("seed") is not None else 42)
    task = P.EnhanceTask(dict(config), dict(call, image=image, depth_map=depth, mask=mask, seed=seed))
    summary = {
        "model": name,
        "controlnet": cn,
        **config,
        **{k: v for k, v in call.items() if isinstance(v, (str, int, float)) or v is None},
        "seed": seed,
    }
    return Job(api, "enhance", WorkerKey("model", name, cn), [task], summary)


def raise_job_error(job: Job) -> None:
    """Raise a failed job's error as an ApiError (for the APIs that answer when the job ends)."""
    if job.error is not None and job.state.value == "failed":
        raise ApiError(
            job.error.status,
            job.error.message,
            kind="server_error" if job.error.status >= 500 else None,
            code=job.error.kind,
        )
