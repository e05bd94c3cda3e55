"""SDXLLightningPipeline: the few-step model (+ depth ControlNet) loaded once, one view per call.

Per call: the image and its depth map go onto one working canvas with one letterbox
geometry (long side ``working_size``, padded to multiples of 64), the depth becomes the
ControlNet's control image, img2img runs, and the result is cropped and resized back to
the input's size.  Prompt templates, automatic depth, colour matching and alpha
compositing are :class:`EnhanceService`'s.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .._errors import InvalidInputError
from ._config import AUTO, EnhanceConfig, denoising_steps
from ._device import check_device, engine_for
from ._geometry import Letterbox
from ._gouache import SDModel
from ._inputs import load_depth, load_image
from ._models import auto_controlnet, resolve_model
from .memory_utils import MemoryConfig

log = logging.getLogger("gouache.enhance")


@dataclasses.dataclass(frozen=True)
class ModelFiles:
    """The files a config resolved to (names looked up, fetched on first use)."""

    model: Path
    controlnet: Path | None
    vae: Path | None
    taesd: Path | None


class SDXLLightningPipeline:
    """Low level: ``SDXLLightningPipeline(device, steps, use_controlnet, ...)``, ``.load()``,
    ``.enhance(image, prompt, depth_map, ...)``, ``.unload()`` (also a context manager).

    ``device``, ``steps`` (Lightning steps) and ``use_controlnet`` replace the fields of
    ``config`` (default: :class:`EnhanceConfig` ``()``, i.e. SDXL-Lightning 4-step + the SDXL
    depth ControlNet, or what ``GOUACHE_ENHANCE_*`` says); any other :class:`EnhanceConfig`
    field can be given by name.  Runs any checkpoint the engines load (SDXL-Lightning, base
    SDXL + Lightning LoRA, SD1.x).
    """

    def __init__(
        self,
        device: str | None = None,
        steps: int | None = None,
        use_controlnet: bool | None = None,
        *,
        config: EnhanceConfig | None = None,
        **fields: Any,
    ) -> None:
        base = config if config is not None else EnhanceConfig()
        if not isinstance(base, EnhanceConfig):
            raise InvalidInputError(f"config must be an EnhanceConfig; got {type(base).__name__}")
        names = {f.name for f in dataclasses.fields(EnhanceConfig)}
        unknown = sorted(set(fields) - names)
        if unknown:
            raise InvalidInputError(f"unknown EnhanceConfig fields {unknown}; known: {', '.join(sorted(names))}")
        changes = {
            k: v
            for k, v in (("device", device), ("lightning_steps", steps), ("use_controlnet", use_controlnet))
            if v is not None
        }
        self.config = dataclasses.replace(base, **changes, **fields) if changes or fields else base
        self.config.check()
        check_device(self.config.device, self.config.engine)
        self.model: SDModel | None = None
        self.files: ModelFiles | None = None
        self.load_seconds = 0.0

    def __enter__(self) -> SDXLLightningPipeline:
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.unload()

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def resolve(self) -> ModelFiles:
        """The model files (catalog names looked up locally or fetched); done once."""
        if self.files is None:
            c = self.config
            model = resolve_model(c.model, "model", "checkpoint")
            controlnet = None
            if c.use_controlnet:
                name = auto_controlnet(model) if c.controlnet == AUTO else c.controlnet
                controlnet = resolve_model(name, "controlnet", "controlnet")
            vae = resolve_model(c.vae, "vae", "vae") if c.vae is not None else None
            taesd = resolve_model(c.taesd, "taesd", "taesd") if c.taesd is not None else None
            self.files = ModelFiles(model, controlnet, vae, taesd)
        return self.files

    def load(self) -> SDXLLightningPipeline:
        """Load the model once (``config`` is checked again: fields may have been set since)."""
        if self.model is not None:
            return self
        c = self.config
        c.check()
        check_device(c.device, c.engine)
        files = self.resolve()
        mem = MemoryConfig.from_preset(c.memory_preset_name(), device=c.device)
        t0 = time.perf_counter()
        self.model = SDModel(
            files.model,
            vae=files.vae,
            taesd=files.taesd,
            control_net=files.controlnet,
            threads=c.threads,
            weight_type=mem.weight_type,
            options=mem.to_engine_options(device=c.device),
            engine=engine_for(c.device, c.engine),
        )
        self.load_seconds = time.perf_counter() - t0
        log.info(
            "enhancement model %s loaded on %s in %.1f s", files.model.name, self.model.engine_name, self.load_seconds
        )
        return self

    def unload(self) -> None:
        """Free the model (a later call loads it again)."""
        if self.model is not None:
            self.model.close()
            self.model = None

    close = unload

    # -- one view ---------------------------------------------------------------------------------

    def enhance(
        self,
        image: Any,
        prompt: str,
        depth_map: Any = None,
        negative_prompt: str = "",
        strength: float | None = None,
        controlnet_scale: float | None = None,
        seed: int | None = None,
        depth_range: tuple[float, float] | None = None,
    ) -> Image.Image:
        """One view: returns an RGB image of the input's size (or the working canvas with
        ``output_size="working"``).  ``depth_map``: inverse depth (near = large) at any size
        with the image's aspect; ``depth_range``: the values mapped to black and white in
        the control image (default: the map's own min and max)."""
        rgb, _ = load_image(image, name="image")
        depth = None if depth_map is None else load_depth(depth_map, name="depth_map")
        out = self.enhance_array(
            rgb,
            prompt,
            depth,
            negative_prompt=negative_prompt,
            strength=strength,
            controlnet_scale=controlnet_scale,
            seed=seed,
            depth_range=depth_range,
        )
        return Image.fromarray(_to_uint8(out))

    def enhance_array(
        self,
        rgb: np.ndarray,
        prompt: str,
        depth: np.ndarray | None,
        *,
        negative_prompt: str = "",
        strength: float | None = None,
        controlnet_scale: float | None = None,
        seed: int | None = None,
        depth_range: tuple[float, float] | None = None,
    ) -> np.ndarray:
        """:meth:`enhance` on float arrays: ``rgb`` ``(H, W, 3)`` in ``[0, 1]`` -> the same."""
        c = self.config
        if not isinstance(prompt, str):
            raise InvalidInputError(f"prompt must be a string; got {type(prompt).__name__}")
        strength = c.strength if strength is None else strength
        denoising_steps(c.lightning_steps, strength)
        scale = c.controlnet_scale if controlnet_scale is None else controlnet_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.0 <= scale <= 10.0:
            raise InvalidInputError(f"controlnet_scale must be a number in [0, 10]; got {scale!r}")
        seed = c.seed if seed is None else seed
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InvalidInputError(f"seed must be an integer >= 0; got {seed!r}")
        h, w = rgb.shape[:2]
        box = Letterbox.fit(w, h, target=c.working_size, multiple=64)
        control = None
        if depth is not None and c.use_controlnet:
            control = control_image(box.apply_depth(depth), depth_range)
        elif c.use_controlnet:
            log.warning(
                "no depth for this view (give depth_map= or set auto_depth/depth_model): enhancing without"
                " ControlNet guidance"
            )
        canvas = Image.fromarray(_to_uint8(box.apply_image(rgb, fill="edge")))
        model = self.load().model
        assert model is not None
        kw: dict[str, Any] = {}
        if control is not None:
            kw.update(
                control_image=control,
                control_strength=float(scale),
                control_guidance=(c.control_guidance_start, c.control_guidance_end),
            )
        result = model.generate(
            prompt,
            negative_prompt=negative_prompt if c.cfg_scale > 1.0 else "",
            init_image=canvas,
            strength=float(strength),
            steps=denoising_steps(c.lightning_steps, strength),
            cfg_scale=c.cfg_scale,
            sampler=c.sampler,
            scheduler=c.scheduler,
            seed=seed,
            width=canvas.width,
            height=canvas.height,
            loras=list(c.loras),
            **kw,
        )
        out = np.asarray(result.images[0].convert("RGB"), dtype=np.float32) / 255.0
        return out if c.output_size == "working" else box.restore(out)


def control_image(depth: np.ndarray, depth_range: tuple[float, float] | None = None) -> Image.Image:
    """A depth ControlNet's input: inverse depth (near = large) as gray, ``depth_range``
    (default: the map's min and max) mapped to black..white."""
    lo, hi = (float(np.min(depth)), float(np.max(depth))) if depth_range is None else map(float, depth_range)
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise InvalidInputError(f"depth_range must be two finite numbers; got {depth_range!r}")
    norm = (depth - lo) / (hi - lo) if hi > lo else np.zeros_like(depth)
    g = _to_uint8(np.clip(norm, 0.0, 1.0))
    return Image.fromarray(np.stack([g, g, g], axis=-1))


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
