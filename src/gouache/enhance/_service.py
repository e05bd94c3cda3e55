"""EnhanceService: depth-guided few-step enhancement of rendered views, one model load for all views.

Per view: load image (+ alpha), depth (given, or estimated with an ONNX depth model) and
an optional mask; place all three on the working canvas with ONE shared letterbox
geometry; run img2img guided by a depth ControlNet; crop/resize back exactly; optional
colour matching to the input; composite the enhanced object over the original
background by alpha (alpha returned unchanged); blend by the user mask.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .._errors import GouacheError, InvalidInputError
from ._color import match_colors
from ._geometry import Letterbox, composite_alpha
from ._inputs import load_depth, load_image, load_mask
from .memory import MemoryConfig, get_memory_status
from .prompts import PromptBuilder

log = logging.getLogger("gouache.enhance")

PathLike = str | Path


def denoising_steps(steps: int, strength: float) -> int:
    """Total scheduler steps so that ``int(total * strength) >= steps``: img2img at strength s
    runs only ``int(total * s)`` denoising steps, so 2 steps at strength 0.3 must schedule 7,
    never 0.  ``steps`` is the number of denoising steps actually run."""
    if steps < 1:
        raise InvalidInputError(f"steps must be >= 1; got {steps}")
    if not 0.0 < strength <= 1.0:
        raise InvalidInputError(f"strength must be in (0, 1]; got {strength}")
    total = max(steps, math.ceil(steps / strength - 1e-9))
    while int(total * strength) < steps:
        total += 1
    return total


@dataclasses.dataclass(frozen=True)
class EnhanceConfig:
    """Everything an :class:`EnhanceService` needs; presets: :meth:`for_t4_gpu`, :meth:`for_quality`,
    :meth:`for_speed`, :meth:`for_cpu`.

    ``model``: an SDXL(-Lightning) checkpoint, or an SD1.x one for :meth:`for_cpu`;
    ``controlnet``: a depth ControlNet of the same family (ldm or diffusers layout);
    ``loras``: e.g. the SDXL-Lightning LoRA on a base SDXL; ``steps``: denoising steps
    actually run (the schedule is stretched for img2img, see :func:`denoising_steps`);
    ``controlnet_scale``, ``control_guidance_start``/``end`` (torch engine);
    ``prompt_template``: a :class:`PromptBuilder` template; ``auto_depth``: estimate depth
    with ``depth_model`` when a view has none; ``working_size``: long side of the canvas
    the model sees (multiple of 64); ``output_size``: "input" (restore exactly) or
    "working"; ``color_match``: None, "lab_meanstd" or "histogram"; ``seed``: the same
    seed for every view of a batch (consistency across views).
    """

    model: PathLike | None = None
    controlnet: PathLike | None = None
    vae: PathLike | None = None
    taesd: PathLike | None = None
    loras: tuple[tuple[PathLike, float], ...] = ()
    engine: str = "auto"
    steps: int = 4
    strength: float = 0.5
    cfg_scale: float = 1.0
    sampler: str | None = "euler"
    scheduler: str | None = "sgm_uniform"
    controlnet_scale: float = 0.5
    control_guidance_start: float = 0.0
    control_guidance_end: float = 1.0
    prompt_template: str = "default"
    templates_file: PathLike | None = None
    default_subject: str = "an object"
    auto_depth: bool = True
    depth_model: PathLike | None = None
    seed: int = 42
    memory_preset: str = "auto"
    working_size: int = 1024
    output_size: str = "input"
    color_match: str | None = "lab_meanstd"
    threads: int | str = "auto"

    @classmethod
    def for_t4_gpu(cls, **kw: Any) -> "EnhanceConfig":
        """16 GB GPU: 4 steps, ControlNet on, memory-saving options, small depth model."""
        return cls(**{"steps": 4, "strength": 0.5, "controlnet_scale": 0.5, "memory_preset": "t4_balanced",
                      "depth_model": kw.pop("depth_model", "midas_small"), **kw})

    @classmethod
    def for_quality(cls, **kw: Any) -> "EnhanceConfig":
        """More change, more structure: strength 0.65, larger depth model, ControlNet scale 0.6."""
        return cls(**{"steps": 8, "strength": 0.65, "controlnet_scale": 0.6, "color_match": "lab_meanstd",
                      "depth_model": kw.pop("depth_model", "depth_anything"), **kw})

    @classmethod
    def for_speed(cls, **kw: Any) -> "EnhanceConfig":
        """2 steps at strength 0.5."""
        return cls(**{"steps": 2, "strength": 0.5, "controlnet_scale": 0.5, "memory_preset": "t4_speed", **kw})

    @classmethod
    def for_cpu(cls, **kw: Any) -> "EnhanceConfig":
        """CPU: smaller working size, 2 steps, the CPU memory preset (SD1.x models fit well)."""
        return cls(**{"steps": 2, "strength": 0.5, "working_size": 512, "memory_preset": "cpu",
                      "depth_model": kw.pop("depth_model", "midas_small"), **kw})

    def check(self) -> None:
        if self.model is None:
            raise InvalidInputError("EnhanceConfig.model is required (an SDXL/SD1 checkpoint)")
        denoising_steps(self.steps, self.strength)
        if not 0.0 <= self.controlnet_scale <= 10.0:
            raise InvalidInputError(f"controlnet_scale must be in [0, 10]; got {self.controlnet_scale}")
        if not 0.0 <= self.control_guidance_start < self.control_guidance_end <= 1.0:
            raise InvalidInputError("control guidance must satisfy 0 <= start < end <= 1; got"
                                    f" {self.control_guidance_start}, {self.control_guidance_end}")
        if self.working_size < 64 or self.working_size % 64:
            raise InvalidInputError(f"working_size must be a multiple of 64 >= 64; got {self.working_size}")
        if self.output_size not in ("input", "working"):
            raise InvalidInputError(f"output_size must be 'input' or 'working'; got {self.output_size!r}")
        if self.color_match not in (None, "lab_meanstd", "histogram"):
            raise InvalidInputError(f"color_match must be None, 'lab_meanstd' or 'histogram'; got {self.color_match!r}")


class SDXLLightningPipeline:
    """Low level: the few-step model (+ depth ControlNet) loaded once; ``enhance`` runs one
    canvas-sized img2img.  Works with any checkpoint the engines load (SDXL-Lightning
    full checkpoint, base SDXL + Lightning LoRA, or SD1.x for CPU)."""

    def __init__(self, config: EnhanceConfig) -> None:
        config.check()
        self.config = config
        self.model = None
        self.load_seconds = 0.0

    def load(self) -> "SDXLLightningPipeline":
        if self.model is not None:
            return self
        from .._pipeline.model import SDModel

        c = self.config
        mem = MemoryConfig.from_preset(c.memory_preset)
        t0 = time.perf_counter()
        self.model = SDModel(c.model, vae=c.vae, taesd=c.taesd, control_net=c.controlnet, threads=c.threads,
                             weight_type=mem.weight_type, options=mem.to_engine_options(), engine=c.engine)
        self.load_seconds = time.perf_counter() - t0
        return self

    def enhance(self, image: Image.Image, control: Image.Image | None, prompt: str, negative: str, *,
                strength: float, controlnet_scale: float, seed: int) -> Image.Image:
        if self.model is None:
            raise InvalidInputError("SDXLLightningPipeline.enhance before load()")
        c = self.config
        kw: dict[str, Any] = {}
        if control is not None and c.controlnet is not None:
            kw.update(control_image=control, control_strength=controlnet_scale,
                      control_guidance=(c.control_guidance_start, c.control_guidance_end))
        result = self.model.generate(
            prompt, negative_prompt=negative if c.cfg_scale > 1.0 else "", init_image=image,
            strength=strength, steps=denoising_steps(c.steps, strength), cfg_scale=c.cfg_scale,
            sampler=c.sampler, scheduler=c.scheduler, seed=seed, width=image.width, height=image.height,
            loras=list(c.loras), **kw,
        )
        return result.images[0]

    def unload(self) -> None:
        if self.model is not None:
            self.model.close()
            self.model = None


@dataclasses.dataclass
class EnhanceBatchResult:
    """Results of :meth:`EnhanceService.enhance_batch`: ``images[i]`` is ``None`` where view
    ``i`` failed, and ``errors[i]`` says why; the other views are kept."""

    images: list[Image.Image | None]
    errors: dict[int, str]
    seconds: list[float]

    @property
    def ok(self) -> bool:
        return not self.errors

    def __iter__(self):
        return iter(self.images)

    def __len__(self) -> int:
        return len(self.images)


class EnhanceService:
    """Enhance many rendered views with one model load (``load()``/``unload()``, context manager)."""

    def __init__(self, config: EnhanceConfig | None = None, device: str | None = None) -> None:
        self.config = config or EnhanceConfig()
        self.config.check()
        if device not in (None, "cpu", "cuda"):
            raise InvalidInputError(f"device must be None, 'cpu' or 'cuda'; got {device!r}")
        self.device = device
        self.pipeline = SDXLLightningPipeline(self.config)
        self.prompts = PromptBuilder(self.config.prompt_template, self.config.templates_file)
        self._depth = None
        self._warned_negative = False
        self.views_done = 0

    # -- life cycle -------------------------------------------------------------------

    def load(self) -> "EnhanceService":
        self.pipeline.load()
        return self

    def unload(self) -> None:
        self.pipeline.unload()
        self._depth = None

    def __enter__(self) -> "EnhanceService":
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.unload()

    def status(self) -> dict[str, Any]:
        m = self.pipeline.model
        return {
            "loaded": m is not None,
            "engine": None if m is None else m.engine_name,
            "family": None if m is None else m.family,
            "model": str(self.config.model),
            "controlnet": None if self.config.controlnet is None else str(self.config.controlnet),
            "load_seconds": self.pipeline.load_seconds,
            "views_enhanced": self.views_done,
            "memory": get_memory_status(),
        }

    # -- one view -----------------------------------------------------------------------

    def _depth_for(self, rgb: np.ndarray, depth_map: Any) -> np.ndarray | None:
        if depth_map is not None:
            return load_depth(depth_map, name="depth_map")
        if not self.config.auto_depth or self.config.depth_model is None:
            return None
        from .depth import DepthEstimator

        if self._depth is None:
            self._depth = DepthEstimator(self.config.depth_model)
        return self._depth(rgb)

    def _control_image(self, depth: np.ndarray, box: Letterbox) -> Image.Image:
        d = box.apply_depth(depth)
        lo, hi = float(np.min(d)), float(np.max(d))
        norm = (d - lo) / (hi - lo) if hi > lo else np.zeros_like(d)
        g = np.clip(np.rint(norm * 255), 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([g, g, g], axis=-1))

    def enhance(self, image: Any, prompt: str | None = None, depth_map: Any = None, mask: Any = None,
                negative_prompt: str | None = None, subject: str | None = None, strength: float | None = None,
                controlnet_scale: float | None = None, seed: int | None = None) -> Image.Image:
        """Enhance one view; returns a PIL image of the input's size (RGBA when the input had alpha,
        with the alpha unchanged).  ``prompt`` overrides the template built from ``subject``."""
        c = self.config
        rgb, alpha = load_image(image, name="image")
        h, w = rgb.shape[:2]
        if prompt is None:
            prompt, template_negative = self.prompts.build(subject or c.default_subject)
        else:
            template_negative = self.prompts.build(subject or c.default_subject)[1]
        negative = template_negative if negative_prompt is None else negative_prompt
        if negative_prompt and c.cfg_scale <= 1.0 and not self._warned_negative:
            self._warned_negative = True
            log.warning("cfg_scale is %s: the negative prompt has no effect with few-step CFG-1 models", c.cfg_scale)
        strength = c.strength if strength is None else float(strength)
        denoising_steps(c.steps, strength)
        scale = c.controlnet_scale if controlnet_scale is None else float(controlnet_scale)
        box = Letterbox.fit(w, h, target=c.working_size, multiple=64)
        depth = self._depth_for(rgb, depth_map)
        user_mask = None if mask is None else load_mask(mask, name="mask")
        if user_mask is not None:
            box.apply_mask(user_mask)  # validates size/aspect against the image
        canvas = box.apply_image(rgb, fill="edge")
        control = self._control_image(depth, box) if depth is not None else None
        if control is None and c.controlnet is not None:
            log.warning("no depth for this view (give depth_map= or set depth_model=): enhancing without ControlNet")
        out = self.pipeline.load().enhance(
            Image.fromarray(np.clip(np.rint(canvas * 255), 0, 255).astype(np.uint8)), control, prompt, negative,
            strength=strength, controlnet_scale=scale, seed=c.seed if seed is None else int(seed),
        )
        result = np.asarray(out.convert("RGB"), dtype=np.float32) / 255.0
        if c.output_size == "working":
            self.views_done += 1
            return Image.fromarray(np.clip(np.rint(result * 255), 0, 255).astype(np.uint8))
        result = box.restore(result)
        weight = alpha if alpha is not None else None
        if c.color_match:
            result = match_colors(result, rgb, method=c.color_match, mask=weight)
        if user_mask is not None:
            result = composite_alpha(result, rgb, user_mask)
        if alpha is not None:
            result = composite_alpha(result, rgb, alpha)
        self.views_done += 1
        rgb8 = np.clip(np.rint(result * 255), 0, 255).astype(np.uint8)
        if alpha is None:
            return Image.fromarray(rgb8)
        a8 = np.asarray(image.getchannel("A")) if isinstance(image, Image.Image) and "A" in image.getbands() \
            else np.clip(np.rint(alpha * 255), 0, 255).astype(np.uint8)
        return Image.fromarray(np.dstack([rgb8, a8]), mode=None)

    # -- batches ------------------------------------------------------------------------

    def enhance_batch(self, images: Sequence[Any], prompt: str | None = None, depth_maps: Sequence[Any] | None = None,
                      masks: Sequence[Any] | None = None, progress: Callable[[int, int], object] | None = None,
                      **kwargs: Any) -> EnhanceBatchResult:
        """Enhance every view with one model load and the same seed; a view that fails is reported
        in ``errors`` (by index) and the others are kept."""
        n = len(images)
        for name, seq in (("depth_maps", depth_maps), ("masks", masks)):
            if seq is not None and len(seq) != n:
                raise InvalidInputError(f"{name} has {len(seq)} entries for {n} images")
        self.load()
        out: list[Image.Image | None] = []
        errors: dict[int, str] = {}
        seconds: list[float] = []
        for i, img in enumerate(images):
            t0 = time.perf_counter()
            try:
                out.append(self.enhance(img, prompt=prompt, depth_map=None if depth_maps is None else depth_maps[i],
                                        mask=None if masks is None else masks[i], **kwargs))
            except (GouacheError, ValueError, OSError) as exc:
                out.append(None)
                errors[i] = f"view {i}: {type(exc).__name__}: {exc}"
                log.error("%s", errors[i])
            seconds.append(time.perf_counter() - t0)
            if progress is not None:
                progress(i + 1, n)
        return EnhanceBatchResult(out, errors, seconds)

    def enhance_with_depth_confidence(self, image: Any, depth_map: Any = None, blend_with_original: bool = True,
                                      confidence_threshold: float = 0.5, **kwargs: Any) -> Image.Image:
        """Enhance, then keep the original where the depth is unreliable: with confidence c (see
        :func:`~gouache.enhance.depth.estimate_depth_confidence`), each pixel is
        ``w * enhanced + (1 - w) * original`` with ``w = clip(c / confidence_threshold, 0, 1)``."""
        from .depth import estimate_depth_confidence

        if not 0.0 < confidence_threshold <= 1.0:
            raise InvalidInputError(f"confidence_threshold must be in (0, 1]; got {confidence_threshold}")
        rgb, alpha = load_image(image, name="image")
        depth = self._depth_for(rgb, depth_map)
        if depth is None:
            raise InvalidInputError("enhance_with_depth_confidence needs depth_map= or EnhanceConfig(depth_model=...)")
        enhanced = self.enhance(image, depth_map=depth, **kwargs)
        if not blend_with_original:
            return enhanced
        conf = estimate_depth_confidence(depth, rgb)
        if conf.shape != rgb.shape[:2]:
            conf = np.asarray(Image.fromarray(conf).resize((rgb.shape[1], rgb.shape[0]), Image.Resampling.BILINEAR))
        w = np.clip(conf / confidence_threshold, 0.0, 1.0)
        enh = np.asarray(enhanced.convert("RGB"), dtype=np.float32) / 255.0
        blended = composite_alpha(enh, rgb, w)
        rgb8 = np.clip(np.rint(blended * 255), 0, 255).astype(np.uint8)
        if enhanced.mode == "RGBA":
            return Image.fromarray(np.dstack([rgb8, np.asarray(enhanced.getchannel("A"))]))
        return Image.fromarray(rgb8)


@functools.lru_cache(maxsize=1)
def _cached_service(config: EnhanceConfig) -> EnhanceService:
    return EnhanceService(config).load()


def enhance_view(image: Any, config: EnhanceConfig, **kwargs: Any) -> Image.Image:
    """One view through a cached service (the model is loaded once per config)."""
    return _cached_service(config).enhance(image, **kwargs)


def enhance_views_batch(images: Sequence[Any], config: EnhanceConfig, **kwargs: Any) -> EnhanceBatchResult:
    """Many views through the cached service (see :meth:`EnhanceService.enhance_batch`)."""
    return _cached_service(config).enhance_batch(images, **kwargs)
