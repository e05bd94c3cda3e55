"""EnhanceService: depth-guided few-step enhancement of rendered views, one model load for all views.

Per view: load the image (+ alpha), its depth (given, or estimated with the configured
depth model) and an optional mask; enhance on the working canvas
(:class:`SDXLLightningPipeline`); optional colour matching to the input; composite the
enhanced object over the original background by alpha (alpha returned unchanged); blend
by the user mask.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from .._errors import GouacheError, InvalidInputError
from ._color import match_colors
from ._config import EnhanceConfig
from ._geometry import composite_alpha
from ._inputs import load_depth, load_image, load_mask
from ._pipeline import SDXLLightningPipeline, _to_uint8
from .memory_utils import get_memory_status
from .prompts import PromptBuilder

log = logging.getLogger("gouache.enhance")

_PERCENTILES = (1.0, 99.0)


class EnhanceBatchResult(list):
    """What :meth:`EnhanceService.enhance_batch` returns: the list of enhanced images
    (``None`` where view ``i`` failed), with ``errors`` (``{i: reason}``), ``seconds``
    (per view) and ``ok`` (no view failed)."""

    def __init__(self, images: Sequence[Image.Image | None], errors: dict[int, str], seconds: list[float]) -> None:
        super().__init__(images)
        self.errors = errors
        self.seconds = seconds

    @property
    def images(self) -> list[Image.Image | None]:
        return list(self)

    @property
    def ok(self) -> bool:
        return not self.errors


class EnhanceService:
    """Enhance many rendered views with one model load.

    ``EnhanceService(config=None, device=None)``: ``config`` defaults to
    :class:`EnhanceConfig` ``()`` (working defaults, ``GOUACHE_ENHANCE_*``); ``device``
    (and ``optimize_memory``, as Glimpse3D's service took it) replaces the config's field
    (on a copy: the config you pass is not changed).  A CUDA
    device that is not there is an error here, before any model is fetched.  Models are
    loaded by :meth:`load` or on first use, freed by :meth:`unload` (or ``with``).
    """

    def __init__(
        self, config: EnhanceConfig | None = None, device: str | None = None, optimize_memory: bool | None = None
    ) -> None:
        config = config if config is not None else EnhanceConfig()
        if not isinstance(config, EnhanceConfig):
            raise InvalidInputError(f"config must be an EnhanceConfig; got {type(config).__name__}")
        changes = {k: v for k, v in (("device", device), ("optimize_memory", optimize_memory)) if v is not None}
        if changes:
            config = dataclasses.replace(config, **changes)
        self.pipeline = SDXLLightningPipeline(config=config)
        self.config = self.pipeline.config
        self._prompts: tuple[tuple[Any, Any], PromptBuilder] | None = None
        self._depth: Any = None
        self._warned_negative = False
        self.views_done = 0

    @property
    def device(self) -> str:
        return self.config.device

    # -- life cycle -------------------------------------------------------------------------------

    def load(self) -> EnhanceService:
        self.pipeline.load()
        return self

    def unload(self) -> None:
        """Free the models (a later call loads them again)."""
        self.pipeline.unload()
        if self._depth is not None:
            self._depth[1].close()
        self._depth = None

    close = unload

    def __enter__(self) -> EnhanceService:
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.unload()

    def status(self) -> dict[str, Any]:
        m = self.pipeline.model
        files = self.pipeline.files
        return {
            "loaded": m is not None,
            "engine": None if m is None else m.engine_name,
            "family": None if m is None else m.family,
            "device": self.config.device,
            "model": str(files.model if files else self.config.model),
            "controlnet": None
            if not self.config.use_controlnet
            else str(files.controlnet if files else self.config.controlnet),
            "load_seconds": self.pipeline.load_seconds,
            "views_enhanced": self.views_done,
            "memory": get_memory_status(),
        }

    get_status = status

    # -- one view ---------------------------------------------------------------------------------

    def enhance(
        self,
        image: Any,
        prompt: str | None = None,
        depth_map: Any = None,
        mask: Any = None,
        negative_prompt: str | None = None,
        subject: str | None = None,
        strength: float | None = None,
        controlnet_scale: float | None = None,
        seed: int | None = None,
        depth_range: tuple[float, float] | None = None,
    ) -> Image.Image:
        """Enhance one view; returns a PIL image of the input's size (RGBA when the input had
        alpha, with the alpha unchanged).  ``prompt`` overrides the template built from
        ``subject``; ``depth_map`` (inverse depth, near = large) is estimated with
        ``config.depth_model`` when missing and ``auto_depth`` is on; ``mask`` (white =
        enhance) blends the result into the input; ``depth_range``: the inverse depths
        mapped to black and white in the ControlNet's input (default: this map's range)."""
        c = self.config
        c.check()
        rgb, alpha = load_image(image, name="image")
        prompt, negative = self._prompt(prompt, negative_prompt, subject)
        user_mask = None if mask is None else load_mask(mask, name="mask")
        if user_mask is not None and user_mask.shape != rgb.shape[:2]:
            raise InvalidInputError(
                f"mask is {user_mask.shape[1]}x{user_mask.shape[0]} but the image is"
                f" {rgb.shape[1]}x{rgb.shape[0]}; they must match"
            )
        depth = self._depth_for(rgb, depth_map)
        result = self.pipeline.enhance_array(
            rgb,
            prompt,
            depth,
            negative_prompt=negative,
            strength=strength,
            controlnet_scale=controlnet_scale,
            seed=seed,
            depth_range=depth_range,
        )
        self.views_done += 1
        if c.output_size == "working":
            return Image.fromarray(_to_uint8(result))
        if c.color_match:
            result = match_colors(result, rgb, method=c.color_match, mask=alpha)
        if user_mask is not None:
            result = composite_alpha(result, rgb, user_mask)
        if alpha is not None:
            result = composite_alpha(result, rgb, alpha)
        return _with_alpha(_to_uint8(result), image, alpha)

    def _prompt(self, prompt: str | None, negative_prompt: str | None, subject: str | None) -> tuple[str, str]:
        c = self.config
        key = (c.prompt_template, c.templates_file)
        if self._prompts is None or self._prompts[0] != key:
            self._prompts = (key, PromptBuilder(c.prompt_template, c.templates_file))
        built, template_negative = self._prompts[1].build(subject or c.default_subject)
        if prompt is not None and not isinstance(prompt, str):
            raise InvalidInputError(f"prompt must be a string or None; got {type(prompt).__name__}")
        negative = template_negative if negative_prompt is None else negative_prompt
        if negative_prompt and c.cfg_scale <= 1.0 and not self._warned_negative:
            self._warned_negative = True
            log.warning("cfg_scale is %s: the negative prompt has no effect with few-step CFG-1 models", c.cfg_scale)
        return (built if prompt is None else prompt), negative

    def _depth_for(self, rgb: np.ndarray, depth_map: Any) -> np.ndarray | None:
        if depth_map is not None:
            return load_depth(depth_map, name="depth_map")
        c = self.config
        if not (c.use_controlnet and c.auto_depth and c.depth_model is not None):
            return None
        return self.depth_estimator().estimate(rgb)

    def depth_estimator(self) -> Any:
        """The configured depth model (loaded once, on the service's device)."""
        from .depth import DepthEstimator

        if self._depth is None or self._depth[0] != (self.config.depth_model, self.config.device):
            model = DepthEstimator(self.config.depth_model, device=self.config.device)
            self._depth = ((self.config.depth_model, self.config.device), model)
        return self._depth[1]

    def get_depth_for_image(self, image: Any) -> np.ndarray:
        """Glimpse3D's name: the configured depth model's estimate for ``image`` (``[0, 1]``, near = 1)."""
        return self.depth_estimator().estimate(image)

    # -- batches ----------------------------------------------------------------------------------

    def enhance_batch(
        self,
        images: Sequence[Any],
        prompt: str | None = None,
        depth_maps: Sequence[Any] | None = None,
        masks: Sequence[Any] | None = None,
        progress: Callable[[int, int], object] | None = None,
        *,
        progress_callback: Callable[[int, int], object] | None = None,
        **kwargs: Any,
    ) -> EnhanceBatchResult:
        """Enhance every view with one model load and the same seed; returns the list of
        images (an :class:`EnhanceBatchResult`: a view that fails is ``None`` there, its
        reason in ``.errors``, and the other views are kept).

        The ControlNet inputs of all views given ``depth_maps`` share one value range (the
        1st to 99th percentile over all of them), so aligned maps
        (:func:`~gouache.enhance.depth.align_depth_scales`) give the same gray for the same
        depth in every view; pass ``depth_range=`` to choose it.  ``progress(done, total)``
        (Glimpse3D: ``progress_callback``) is called after each view.
        """
        if progress is not None and progress_callback is not None:
            raise InvalidInputError("give progress= or progress_callback= (Glimpse3D's name), not both")
        progress = progress if progress is not None else progress_callback
        if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
            raise InvalidInputError(f"images must be a list of images; got {type(images).__name__}")
        n = len(images)
        for name, seq in (("depth_maps", depth_maps), ("masks", masks)):
            if seq is not None and (not isinstance(seq, Sequence) or len(seq) != n):
                got = len(seq) if isinstance(seq, Sequence) else type(seq).__name__
                raise InvalidInputError(f"{name} must have one entry per image ({n}); got {got}")
        depths = [None] * n if depth_maps is None else list(depth_maps)
        depths = [self._loaded_depth(d, i) for i, d in enumerate(depths)]
        if "depth_range" not in kwargs:
            kwargs["depth_range"] = _shared_range([d for d in depths if isinstance(d, np.ndarray)])
        self.load()
        out: list[Image.Image | None] = []
        errors: dict[int, str] = {}
        seconds: list[float] = []
        for i, img in enumerate(images):
            t0 = time.perf_counter()
            try:
                if isinstance(depths[i], GouacheError):
                    raise depths[i]
                out.append(self.enhance(img, prompt, depths[i], None if masks is None else masks[i], **kwargs))
            except (GouacheError, ValueError, OSError) as exc:
                out.append(None)
                errors[i] = f"view {i}: {type(exc).__name__}: {exc}"
                log.error("%s", errors[i])
            seconds.append(time.perf_counter() - t0)
            if progress is not None:
                progress(i + 1, n)
        return EnhanceBatchResult(out, errors, seconds)

    @staticmethod
    def _loaded_depth(value: Any, i: int) -> Any:
        """The map as an array, or the error that loading it raised (reported for that view)."""
        if value is None:
            return None
        try:
            return load_depth(value, name=f"depth_maps[{i}]")
        except InvalidInputError as exc:
            return exc

    def enhance_with_depth_confidence(
        self,
        image: Any,
        prompt: str | None = None,
        blend_with_original: bool = True,
        confidence_threshold: float = 0.5,
        seed: int | None = None,
        *,
        depth_map: Any = None,
        **kwargs: Any,
    ) -> Image.Image:
        """Enhance, then keep the original where the depth is unreliable: with confidence c
        (:func:`~gouache.enhance.depth.estimate_depth_confidence` of the depth and the image),
        each pixel is ``w * enhanced + (1 - w) * original``, ``w = clip(c / confidence_threshold, 0, 1)``.
        The depth is ``depth_map`` or estimated with ``config.depth_model``."""
        from .depth import estimate_depth_confidence

        if (
            isinstance(confidence_threshold, bool)
            or not isinstance(confidence_threshold, (int, float))
            or not 0.0 < confidence_threshold <= 1.0
        ):
            raise InvalidInputError(f"confidence_threshold must be in (0, 1]; got {confidence_threshold!r}")
        rgb, _ = load_image(image, name="image")
        depth = load_depth(depth_map, name="depth_map") if depth_map is not None else None
        if depth is None:
            if self.config.depth_model is None:
                raise InvalidInputError(
                    "enhance_with_depth_confidence needs depth_map= or a depth model"
                    " (EnhanceConfig.depth_model / GOUACHE_DEPTH_MODEL)"
                )
            depth = self.depth_estimator().estimate(rgb)
        enhanced = self.enhance(image, prompt, depth, seed=seed, **kwargs)
        if not blend_with_original:
            return enhanced
        conf = estimate_depth_confidence(_at_size(depth, rgb.shape[:2]), rgb)
        w = np.clip(conf / confidence_threshold, 0.0, 1.0)
        enh = np.asarray(enhanced.convert("RGB"), dtype=np.float32) / 255.0
        if enh.shape[:2] != rgb.shape[:2]:  # output_size="working"
            return enhanced
        blended = _to_uint8(composite_alpha(enh, rgb, w))
        if enhanced.mode == "RGBA":
            return Image.fromarray(np.dstack([blended, np.asarray(enhanced.getchannel("A"))]))
        return Image.fromarray(blended)


def _shared_range(depths: list[np.ndarray]) -> tuple[float, float] | None:
    if len(depths) < 2:
        return None
    values = np.concatenate([d[np.isfinite(d)].ravel()[:: max(1, d.size // 65536)] for d in depths])
    lo, hi = np.percentile(values, _PERCENTILES)
    return (float(lo), float(hi)) if hi > lo else None


def _at_size(depth: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if depth.shape == shape:
        return depth
    im = Image.fromarray(depth.astype(np.float32), mode="F").resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.float32)


def _with_alpha(rgb8: np.ndarray, source: Any, alpha: np.ndarray | None) -> Image.Image:
    if alpha is None:
        return Image.fromarray(rgb8)
    if isinstance(source, Image.Image) and "A" in source.getbands() and source.size == rgb8.shape[1::-1]:
        a8 = np.asarray(source.getchannel("A"))
    else:
        a8 = _to_uint8(alpha)
    return Image.fromarray(np.dstack([rgb8, a8]))


# -- one-call functions ---------------------------------------------------------------------------


class _ServiceCache:
    """The service behind :func:`enhance_view` / :func:`enhance_views_batch`: kept loaded for
    the next call with the same settings; a call with other settings unloads it first."""

    def __init__(self) -> None:
        self.key: tuple[Any, ...] | None = None
        self.service: EnhanceService | None = None

    def get(self, config: EnhanceConfig) -> EnhanceService:
        key = config.key()
        if self.service is not None and self.key == key:
            return self.service
        self.release()
        self.service, self.key = EnhanceService(config), key
        return self.service

    def release(self) -> None:
        if self.service is not None:
            self.service.unload()
        self.service = self.key = None


_CACHE = _ServiceCache()


def unload_cached_service() -> None:
    """Free the model :func:`enhance_view` / :func:`enhance_views_batch` keep loaded."""
    _CACHE.release()


def _config_for(config: EnhanceConfig | None, device: str | None) -> EnhanceConfig:
    config = config if config is not None else EnhanceConfig()
    if not isinstance(config, EnhanceConfig):
        raise InvalidInputError(f"config must be an EnhanceConfig; got {type(config).__name__}")
    return dataclasses.replace(config, device=device) if device is not None else config


def enhance_view(
    image: Any,
    prompt: str | None = None,
    depth_map: Any = None,
    device: str | None = None,
    *,
    config: EnhanceConfig | None = None,
    **kwargs: Any,
) -> Image.Image:
    """One view, as :meth:`EnhanceService.enhance`, with the default config (or ``config``)
    and ``device``.  The loaded model is kept for the next call with the same settings
    (Glimpse3D loaded and unloaded it on every call); :func:`unload_cached_service` frees it."""
    return _CACHE.get(_config_for(config, device)).enhance(image, prompt, depth_map, **kwargs)


def enhance_views_batch(
    images: Sequence[Any],
    prompt: str | None = None,
    depth_maps: Sequence[Any] | None = None,
    device: str | None = None,
    *,
    config: EnhanceConfig | None = None,
    **kwargs: Any,
) -> EnhanceBatchResult:
    """Many views, as :meth:`EnhanceService.enhance_batch`, through the same kept service as
    :func:`enhance_view`."""
    return _CACHE.get(_config_for(config, device)).enhance_batch(images, prompt, depth_maps, **kwargs)
