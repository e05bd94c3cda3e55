"""One-call functions: load a model, do one job, free it."""

from __future__ import annotations

from typing import Any

from PIL import Image

from .._engines.registry import engine_class
from .._image import as_pil
from .model import ImageInput, PathLike, SDModel, threads_arg
from .results import GenerationResult, VideoResult


def _one_shot(model: PathLike | None, model_kwargs: dict | None) -> SDModel:
    return SDModel(model, **(model_kwargs or {}))


def text_to_image(model: PathLike, prompt: str, *, model_kwargs: dict | None = None, **kwargs: Any) -> GenerationResult:
    """Load ``model``, generate, free it.  Keyword arguments are those of :meth:`SDModel.generate`;
    ``model_kwargs`` go to :class:`SDModel`.  Reuse an :class:`SDModel` for many images."""
    with _one_shot(model, model_kwargs) as m:
        return m.generate(prompt, **kwargs)


def image_to_image(
    model: PathLike,
    image: ImageInput,
    prompt: str,
    *,
    strength: float = 0.75,
    model_kwargs: dict | None = None,
    **kwargs: Any,
) -> GenerationResult:
    """img2img in one call: ``image`` is re-noised by ``strength`` (0 keeps it, 1 ignores it)."""
    with _one_shot(model, model_kwargs) as m:
        return m.generate(prompt, init_image=image, strength=strength, **kwargs)


def inpaint(
    model: PathLike,
    image: ImageInput,
    mask: ImageInput,
    prompt: str,
    *,
    strength: float = 1.0,
    model_kwargs: dict | None = None,
    **kwargs: Any,
) -> GenerationResult:
    """Inpainting in one call: white pixels of ``mask`` are repainted, black ones kept."""
    with _one_shot(model, model_kwargs) as m:
        return m.generate(prompt, init_image=image, mask=mask, strength=strength, **kwargs)


def generate_video(
    model: PathLike | None = None, prompt: str = "", *, model_kwargs: dict | None = None, **kwargs: Any
) -> VideoResult:
    """Text/image-to-video in one call with a Wan model (see :meth:`SDModel.generate_video`);
    Wan ships as parts, so pass ``model_kwargs={"diffusion_model": ..., "vae": ..., "t5xxl": ...}``."""
    with _one_shot(model, model_kwargs) as m:
        return m.generate_video(prompt, **kwargs)


def upscale(
    image: ImageInput, model: PathLike, *, factor: int | None = None, tile_size: int = 128, threads: int | str = "auto"
) -> Image.Image:
    """Upscale a picture with an ESRGAN model file (``factor``: the model's own by default)."""
    return engine_class("sdcpp").upscale(
        as_pil(image, "RGB", "image"), model, factor=factor, tile_size=tile_size, threads=threads_arg(threads)
    )
