"""Parameter objects of one generation: ``generate_image`` and ``generate_video`` calls."""

from __future__ import annotations

import ctypes
import dataclasses
from collections.abc import Sequence
from typing import Any

from .._image import ImageLike
from . import native as _native
from .image import c_image, c_image_array
from .params import (
    Lowered,
    PathLike,
    SDCacheParams,
    SDHiresParams,
    SDLora,
    SDPhotoMakerParams,
    SDSampleParams,
    SDTilingParams,
    _engine_defaults,
    _struct_repr,
    _text,
)


def lora_list(loras: Sequence[SDLora | tuple[PathLike, float]]) -> list[SDLora]:
    """``loras`` as SDLora objects (``(path, multiplier)`` pairs accepted)."""
    return [x if isinstance(x, SDLora) else SDLora(x[0], float(x[1])) for x in loras]


def _loras(loras: Sequence[SDLora | tuple[PathLike, float]], keep: list[Any]):
    items = lora_list(loras)
    if not items:
        return None, 0
    arr = (_native.sd_lora_t * len(items))(
        *[_native.sd_lora_t(bool(x.is_high_noise), float(x.multiplier), _text(x.path, keep)) for x in items]
    )
    keep.append(arr)
    return ctypes.cast(arr, ctypes.POINTER(_native.sd_lora_t)), len(items)


def _fill_common(c: Any, p: Any, keep: list[Any]) -> None:
    """Fields shared by sd_img_gen_params_t and sd_vid_gen_params_t."""
    ptr, n = _loras(p.loras, keep)
    if ptr is not None:
        c.loras = ptr
    c.lora_count = n
    c.prompt = _text(p.prompt, keep)
    c.negative_prompt = _text(p.negative_prompt, keep)
    c.clip_skip = p.clip_skip
    c.init_image = c_image(p.init_image, 3, "init_image", keep)
    c.width = p.width
    c.height = p.height
    p.sample_params._fill(c.sample_params, keep)
    c.strength = p.strength
    c.seed = p.seed
    p.vae_tiling_params._fill(c.vae_tiling_params)
    p.cache._fill(c.cache, keep)


# --------------------------------------------------------------------------- image generation


@dataclasses.dataclass(repr=False)
class SDImageGenParams:
    """One ``generate_image`` call: txt2img, img2img (``init_image``), inpainting (``mask_image``),
    ControlNet (``control_image``), reference images, PhotoMaker, hires fix, caching.

    Image fields take an :class:`SDImage`, a numpy array, a PIL image or a file path.
    ``init_image``/``control_image``/``ref_images`` need RGB, ``mask_image`` grayscale
    (white = repaint); PIL images and files are converted, arrays must match.
    """

    prompt: str = ""
    negative_prompt: str = ""
    loras: Sequence[SDLora | tuple[PathLike, float]] = ()
    clip_skip: int = -1
    init_image: ImageLike | None = None
    ref_images: Sequence[ImageLike] = ()
    auto_resize_ref_image: bool = False
    increase_ref_index: bool = False
    mask_image: ImageLike | None = None
    width: int = 512
    height: int = 512
    sample_params: SDSampleParams = dataclasses.field(default_factory=SDSampleParams)
    strength: float = 0.75
    seed: int = -1
    batch_count: int = 1
    control_image: ImageLike | None = None
    control_strength: float = 0.9
    pm_params: SDPhotoMakerParams = dataclasses.field(default_factory=SDPhotoMakerParams)
    vae_tiling_params: SDTilingParams = dataclasses.field(default_factory=SDTilingParams)
    cache: SDCacheParams = dataclasses.field(default_factory=SDCacheParams)
    hires: SDHiresParams = dataclasses.field(default_factory=SDHiresParams)

    def _lower(self) -> Lowered[_native.sd_img_gen_params_t]:
        keep: list[Any] = []
        c = _engine_defaults(_native.sd_img_gen_params_t)
        _fill_common(c, self, keep)
        ptr, n = c_image_array(self.ref_images, 3, "ref_images", keep)
        if ptr is not None:
            c.ref_images = ptr
        c.ref_images_count = n
        c.auto_resize_ref_image = self.auto_resize_ref_image
        c.increase_ref_index = self.increase_ref_index
        c.mask_image = c_image(self.mask_image, 1, "mask_image", keep)
        c.batch_count = self.batch_count
        c.control_image = c_image(self.control_image, 3, "control_image", keep)
        c.control_strength = self.control_strength
        self.pm_params._fill(c.pm_params, keep)
        self.hires._fill(c.hires, keep)
        return Lowered(c, keep)

    def __repr__(self) -> str:
        return _struct_repr(self, "sd_img_gen_params_to_str")


@dataclasses.dataclass
class SDVideoGenParams:
    """One ``generate_video`` call (Wan 2.x): start/end images, VACE control frames,
    high-noise sampling for Wan 2.2 MoE models, frames."""

    prompt: str = ""
    negative_prompt: str = ""
    loras: Sequence[SDLora | tuple[PathLike, float]] = ()
    clip_skip: int = 0
    init_image: ImageLike | None = None
    end_image: ImageLike | None = None
    control_frames: Sequence[ImageLike] = ()
    width: int = 512
    height: int = 512
    sample_params: SDSampleParams = dataclasses.field(default_factory=SDSampleParams)
    high_noise_sample_params: SDSampleParams = dataclasses.field(
        default_factory=lambda: SDSampleParams(sample_steps=-1)
    )
    moe_boundary: float = 0.875
    strength: float = 0.75
    seed: int = -1
    video_frames: int = 6
    vace_strength: float = 1.0
    vae_tiling_params: SDTilingParams = dataclasses.field(default_factory=SDTilingParams)
    cache: SDCacheParams = dataclasses.field(default_factory=SDCacheParams)

    def _lower(self) -> Lowered[_native.sd_vid_gen_params_t]:
        keep: list[Any] = []
        c = _engine_defaults(_native.sd_vid_gen_params_t)
        _fill_common(c, self, keep)
        c.end_image = c_image(self.end_image, 3, "end_image", keep)
        ptr, n = c_image_array(self.control_frames, 3, "control_frames", keep)
        if ptr is not None:
            c.control_frames = ptr
        c.control_frames_size = n
        self.high_noise_sample_params._fill(c.high_noise_sample_params, keep)
        c.moe_boundary = self.moe_boundary
        c.video_frames = self.video_frames
        c.vace_strength = self.vace_strength
        return Lowered(c, keep)
