"""check_inputs: what a user passed to ``SDModel.generate`` / ``generate_video``, checked and
resolved into the engine-neutral requests before any native work.

Every refusal is an :class:`~gouache.InvalidInputError` naming the value and what is allowed.
Image arguments are converted here, once (:func:`gouache._image.as_pil`); sizes follow the
size policy of :mod:`.sizing`; arguments left at ``None`` take the model family's defaults.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._engines.requests import (
    Cache,
    Control,
    Guidance,
    Hires,
    ImageRequest,
    InitImage,
    LoraSpec,
    PhotoMakerInput,
    Sampling,
    VideoRequest,
)
from .._errors import InvalidInputError
from .._image import as_pil
from .._limits import MAX_SEED, check
from .._modelfiles.catalog import resolve_lora
from .._modelfiles.defaults import FamilyDefaults
from . import sizing

log = logging.getLogger("gouache")

_LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]+))?(?::[^>]*)?>")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageArgs:
    """The keyword arguments of :meth:`SDModel.generate` as the user gave them (unchecked)."""

    prompt: Any
    negative_prompt: Any
    width: Any
    height: Any
    steps: Any
    cfg_scale: Any
    sampler: Any
    scheduler: Any
    seed: Any
    batch: Any
    clip_skip: Any
    loras: Any
    control_image: Any
    control_strength: Any
    control_guidance: Any
    init_image: Any
    strength: Any
    mask: Any
    ref_images: Any
    photo_maker: Any
    hires: Any
    cache: Any
    vae_tiling: Any
    guidance: Any
    eta: Any


@dataclasses.dataclass(frozen=True, kw_only=True)
class VideoArgs:
    """The keyword arguments of :meth:`SDModel.generate_video` as the user gave them (unchecked)."""

    prompt: Any
    negative_prompt: Any
    width: Any
    height: Any
    frames: Any
    steps: Any
    cfg_scale: Any
    sampler: Any
    scheduler: Any
    seed: Any
    init_image: Any
    end_image: Any
    control_frames: Any
    strength: Any
    loras: Any
    high_noise_steps: Any
    high_noise_cfg_scale: Any
    high_noise_sampler: Any
    moe_boundary: Any
    vace_strength: Any
    flow_shift: Any


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelContext:
    """What checking needs to know about the loaded model and its engine."""

    defaults: FamilyDefaults
    engine_name: str
    samplers: tuple[str, ...]
    schedulers: tuple[str, ...]
    has_control_net: bool
    has_photo_maker: bool
    lora_dir: Path | None


@dataclasses.dataclass(frozen=True)
class PreparedImage:
    """A checked image request, the canvas it is generated on, and what the size policy did.

    ``recorded_prompt``: the prompt as infotexts record it (A1111 keeps ``<lora:...>`` tags in
    the prompt; LoRAs given as arguments are added as tags); ``lora_names``: the name each of
    ``request.loras`` goes by in those tags."""

    request: ImageRequest
    geometry: sizing.Geometry
    notes: tuple[str, ...]
    recorded_prompt: str = ""
    lora_names: tuple[str, ...] = ()


# --------------------------------------------------------------------------- small checks


def spelling(primary: str, value: Any, alias: str, alias_value: Any, *, required: bool = True) -> Any:
    """The value of an argument that has a second accepted spelling (the integration plan's
    ``model_path=``, ``init_image=``, ``video_frames=``): one of the two, never both."""
    if value is not None and alias_value is not None:
        raise InvalidInputError(f"give {primary}= or {alias}=, not both (they are the same argument)")
    value = alias_value if value is None else value
    if value is None and required:
        raise InvalidInputError(f"missing argument {primary}= (also accepted as {alias}=)")
    return value


def resolve_seed(seed: Any) -> int:
    """``-1`` (or any negative) -> a random seed in [0, 2**32); others are checked and kept."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidInputError(f"seed must be an integer (-1 = random); got {seed!r}")
    if seed < 0:
        return random.SystemRandom().randint(0, MAX_SEED)
    return check("seed", seed, "seed")


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string; got {type(value).__name__}")
    return value


def _choice(what: str, value: Any, allowed: Sequence[str], engine: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise InvalidInputError(f"unknown {what} {value!r} for engine {engine}; allowed: {', '.join(allowed)}")
    return value.strip().lower()


def _option(name: str, value: Any, cls: type) -> Any:
    if value is not None and not isinstance(value, cls):
        raise InvalidInputError(f"{name} must be a gouache.{cls.__name__}; got {type(value).__name__}")
    return value


def split_lora_tags(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """Strip A1111 ``<lora:name:weight>`` tags from the prompt and return them."""
    found: list[tuple[str, float]] = []

    def take(m: re.Match) -> str:
        weight = m.group(2)
        try:
            w = 1.0 if weight is None else float(weight)
        except ValueError:
            raise InvalidInputError(f"bad LoRA weight {weight!r} in prompt tag {m.group(0)!r}") from None
        found.append((m.group(1).strip(), w))
        return ""

    cleaned = _LORA_TAG.sub(take, prompt)
    if found:
        cleaned = re.sub(r"\s{2,}", " ", cleaned).strip().strip(",").strip()
    return cleaned, found


def _lora(path_or_name: Any, weight: Any, lora_dir: Path | None) -> LoraSpec:
    w = check("LoRA weight", weight, "lora_weight")
    p = Path(path_or_name)
    if p.is_file():
        return LoraSpec(p, w)
    if lora_dir is None:
        raise InvalidInputError(
            f"LoRA {str(path_or_name)!r} not found (give a file path, or SDModel(lora_dir=...) to resolve names)"
        )
    return LoraSpec(resolve_lora(str(path_or_name), lora_dir), w)


def _loras(given: Any, tags: list[tuple[str, float]], lora_dir: Path | None) -> tuple[LoraSpec, ...]:
    return tuple(_lora(p, w, lora_dir) for p, w in list(given) + tags)


def _lora_tag_name(path_or_name: Any) -> str:
    """The name a LoRA given as an argument goes by in a ``<lora:name:weight>`` tag."""
    p = Path(path_or_name)
    return p.stem if p.is_file() else str(path_or_name)


def _recorded(prompt: str, given: Any, tags: list[tuple[str, float]]) -> tuple[str, tuple[str, ...]]:
    """The prompt as infotexts record it, and the name of each LoRA (arguments, then tags)."""
    named = [(_lora_tag_name(p), w) for p, w in given]
    extra = " ".join(f"<lora:{n}:{w:g}>" for n, w in named)
    recorded = f"{prompt} {extra}".strip() if extra else prompt
    return recorded, tuple(n for n, _ in named) + tuple(n for n, _ in tags)


def _sampling(steps: Any, cfg_scale: Any, sampler: Any, scheduler: Any, m: ModelContext) -> Sampling:
    """Steps, CFG, sampler and schedule, each the family's default when ``None``."""
    d = m.defaults
    return Sampling(
        steps=check("steps", d.steps if steps is None else steps, "steps"),
        cfg_scale=check("cfg_scale", d.cfg_scale if cfg_scale is None else cfg_scale, "cfg_scale"),
        sampler=_choice("sampler", d.sampler if sampler is None else sampler, m.samplers, m.engine_name),
        scheduler=_choice("scheduler", d.scheduler if scheduler is None else scheduler, m.schedulers, m.engine_name),
        flow_shift=d.flow_shift,
    )


# --------------------------------------------------------------------------- images


def _image_sampling(a: ImageArgs, m: ModelContext) -> Sampling:
    guidance = _option("guidance", a.guidance, Guidance)
    if guidance is None:
        guidance = Guidance(distilled_guidance=m.defaults.distilled_guidance)
    eta = None if a.eta is None else check("eta", a.eta, "eta")
    base = _sampling(a.steps, a.cfg_scale, a.sampler, a.scheduler, m)
    return dataclasses.replace(base, guidance=guidance, eta=eta)


def _size(a: ImageArgs, init: Any, d: FamilyDefaults) -> tuple[int, int]:
    """The requested size: given, else the init image's, else the family's."""
    width, height = a.width, a.height
    if width is None and height is None and init is not None:
        width, height = init.size
    return (
        check("width", d.width if width is None else width, "side"),
        check("height", d.height if height is None else height, "side"),
    )


class _Canvas:
    """Places input images on the generation canvas and records what the size policy did."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.geometry = sizing.plan(width, height)
        self.notes: list[str] = []

    def place(self, image: Any, what: str, fill: Any) -> Any:
        """``image`` fitted to the requested size, then on the canvas (``fill`` None: edges
        replicated)."""
        fitted, note = sizing.fit(image, self.width, self.height, what=what, fill=0 if fill is None else fill)
        if note:
            self.notes.append(note)
        return sizing.to_canvas(fitted, self.geometry, fill=fill)


def _init(a: ImageArgs, init: Any, canvas: _Canvas) -> InitImage | None:
    strength = check("strength", a.strength, "fraction")
    if init is None:
        if a.mask is not None:
            raise InvalidInputError("mask needs an init_image to inpaint into")
        return None
    mask = None
    if a.mask is not None:  # padding is never repainted
        mask = canvas.place(as_pil(a.mask, "L", "mask"), "mask", 0)
    return InitImage(image=canvas.place(init, "init_image", None), strength=strength, mask=mask)


def _control(a: ImageArgs, canvas: _Canvas, m: ModelContext) -> Control | None:
    strength = check("control_strength", a.control_strength, "control_strength")
    start = check("control_guidance start", a.control_guidance[0], "fraction")
    end = check("control_guidance end", a.control_guidance[1], "fraction")
    if start >= end:
        raise InvalidInputError(f"control_guidance start must be below end; got {tuple(a.control_guidance)}")
    if a.control_image is None:
        return None
    if not m.has_control_net:
        raise InvalidInputError("control_image needs a ControlNet: load the model with SDModel(..., control_net=PATH)")
    image = canvas.place(as_pil(a.control_image, "RGB", "control_image"), "control_image", (0, 0, 0))
    return Control(image=image, strength=strength, start=start, end=end)


def _photo_maker(value: Any, m: ModelContext) -> PhotoMakerInput | None:
    pm = _option("photo_maker", value, PhotoMakerInput)
    if pm is None:
        return None
    if not m.has_photo_maker:
        raise InvalidInputError("photo_maker input needs SDModel(..., photo_maker=PATH)")
    images = tuple(as_pil(im, "RGB", f"photo_maker.images[{i}]") for i, im in enumerate(pm.images))
    return dataclasses.replace(pm, images=images)


def check_image_args(a: ImageArgs, m: ModelContext) -> PreparedImage:
    """The checked request of one ``SDModel.generate`` call (no native work)."""
    raw_prompt = _text("prompt", a.prompt)
    prompt, tags = split_lora_tags(raw_prompt)
    negative = _text("negative_prompt", a.negative_prompt)
    init = None if a.init_image is None else as_pil(a.init_image, "RGB", "init_image")
    canvas = _Canvas(*_size(a, init, m.defaults))
    sampling = _image_sampling(a, m)
    request = ImageRequest(
        prompt=prompt,
        negative_prompt=negative,
        width=canvas.geometry.canvas_width,
        height=canvas.geometry.canvas_height,
        sampling=sampling,
        seed=resolve_seed(a.seed),
        batch=check("batch", a.batch, "batch"),
        clip_skip=check("clip_skip", a.clip_skip, "clip_skip"),
        loras=_loras(a.loras, tags, m.lora_dir),
        init=_init(a, init, canvas),
        control=_control(a, canvas, m),
        ref_images=tuple(as_pil(r, "RGB", f"ref_images[{i}]") for i, r in enumerate(a.ref_images)),
        photo_maker=_photo_maker(a.photo_maker, m),
        hires=_option("hires", a.hires, Hires),
        cache=_option("cache", a.cache, Cache),
        vae_tiling=a.vae_tiling,
    )
    notes = canvas.notes
    if canvas.geometry.padded:
        notes.insert(0, canvas.geometry.describe())
        log.info("size: %s", canvas.geometry.describe())
    if sampling.cfg_scale == 1.0 and negative:
        log.warning("cfg_scale is 1: the negative prompt has no effect")
    recorded, lora_names = _recorded(raw_prompt, list(a.loras), tags)
    return PreparedImage(request, canvas.geometry, tuple(notes), recorded, lora_names)


# --------------------------------------------------------------------------- editing


def edit_images(images: Any) -> list[Any]:
    """The images of an edit: one image or a non-empty sequence of them, converted once."""
    if isinstance(images, (str, Path)) or not isinstance(images, Sequence):
        images = [images]
    if not images:
        raise InvalidInputError("edit needs at least one image to edit; got an empty sequence")
    return [as_pil(im, "RGB", f"images[{i}]") for i, im in enumerate(images)]


def edit_size(width: Any, height: Any, first: Any, d: FamilyDefaults) -> tuple[Any, Any]:
    """The size of an edit's result: given, else the first image's, scaled down (aspect kept) to
    at most the family's default area (the area the model was trained at)."""
    if width is not None or height is not None:
        return width, height
    w, h = first.size
    scale = min(1.0, ((d.width * d.height) / (w * h)) ** 0.5)
    return max(64, round(w * scale)), max(64, round(h * scale))


# --------------------------------------------------------------------------- video


def wanted_frames(value: Any, d: FamilyDefaults) -> int:
    """The number of frames the user asked for (the family's default when ``None``)."""
    return check("frames", (d.video_frames or 33) if value is None else value, "frames")


def generated_frames(wanted: int) -> int:
    """Wan makes 4k+1 frames: the smallest such count that holds ``wanted`` frames."""
    return wanted + (-(wanted - 1)) % 4


def _high_noise(a: VideoArgs, low: Sampling, m: ModelContext) -> Sampling | None:
    """Wan 2.2 MoE: the high-noise expert's sampling, the low-noise one's where not given."""
    sampler = _choice("high_noise_sampler", a.high_noise_sampler, m.samplers, m.engine_name)
    cfg = None if a.high_noise_cfg_scale is None else check("high_noise_cfg_scale", a.high_noise_cfg_scale, "cfg_scale")
    if a.high_noise_steps is None:
        return None
    return dataclasses.replace(
        low,
        steps=check("high_noise_steps", a.high_noise_steps, "steps"),
        cfg_scale=low.cfg_scale if cfg is None else cfg,
        sampler=sampler or low.sampler,
    )


def check_video_args(a: VideoArgs, m: ModelContext) -> VideoRequest:
    """The checked request of one ``SDModel.generate_video`` call (no native work)."""
    d = m.defaults
    prompt, tags = split_lora_tags(_text("prompt", a.prompt))
    sampling = _sampling(a.steps, a.cfg_scale, a.sampler, a.scheduler, m)
    if a.flow_shift is not None:
        sampling = dataclasses.replace(sampling, flow_shift=check("flow_shift", a.flow_shift, "flow_shift"))
    return VideoRequest(
        prompt=prompt,
        negative_prompt=_text("negative_prompt", a.negative_prompt),
        width=check("width", d.width if a.width is None else a.width, "video_side"),
        height=check("height", d.height if a.height is None else a.height, "video_side"),
        frames=generated_frames(wanted_frames(a.frames, d)),
        sampling=sampling,
        high_noise=_high_noise(a, sampling, m),
        seed=resolve_seed(a.seed),
        init_image=None if a.init_image is None else as_pil(a.init_image, "RGB", "init_image"),
        end_image=None if a.end_image is None else as_pil(a.end_image, "RGB", "end_image"),
        control_frames=tuple(as_pil(f, "RGB", f"control_frames[{i}]") for i, f in enumerate(a.control_frames)),
        strength=check("strength", a.strength, "fraction"),
        loras=_loras(a.loras, tags, m.lora_dir),
        moe_boundary=check("moe_boundary", a.moe_boundary, "fraction"),
        vace_strength=check("vace_strength", a.vace_strength, "control_strength"),
    )
