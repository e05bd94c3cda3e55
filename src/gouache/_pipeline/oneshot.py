"""One-call functions: load a model, do one job, free it."""

from __future__ import annotations

from typing import Any

from PIL import Image

from .._engines.registry import engine_class
from .._errors import InvalidInputError
from .._image import as_pil
from .model import ImageInput, PathLike, SDModel, threads_arg
from .requests import spelling
from .results import GenerationResult, VideoResult


def _one_shot(model: PathLike | None, model_kwargs: dict | None) -> SDModel:
    return SDModel(model, **(model_kwargs or {}))


def _prompt(prompt: Any) -> str:
    if prompt is None:
        raise InvalidInputError("missing argument prompt=")
    return prompt


def text_to_image(
    model: PathLike | None = None,
    prompt: str | None = None,
    *,
    model_path: PathLike | None = None,
    model_kwargs: dict | None = None,
    **kwargs: Any,
) -> GenerationResult:
    """Load ``model``, generate, free it.  Keyword arguments are those of :meth:`SDModel.generate`;
    ``model_kwargs`` go to :class:`SDModel`.  Reuse an :class:`SDModel` for many images.

    ``model`` (primary spelling) is also accepted as ``model_path=`` (the spelling of the
    stable-diffusion.cpp integration plan): ``text_to_image(model_path="m.safetensors", prompt="a cat")``."""
    model = spelling("model", model, "model_path", model_path)
    with _one_shot(model, model_kwargs) as m:
        return m.generate(_prompt(prompt), **kwargs)


def image_to_image(
    model: PathLike | None = None,
    image: ImageInput | None = None,
    prompt: str | None = None,
    *,
    strength: float = 0.75,
    model_path: PathLike | None = None,
    init_image: ImageInput | None = None,
    model_kwargs: dict | None = None,
    **kwargs: Any,
) -> GenerationResult:
    """img2img in one call: ``image`` is re-noised by ``strength`` (0 keeps it, 1 ignores it).

    ``model`` and ``image`` (primary spellings) are also accepted as ``model_path=`` and
    ``init_image=`` (the integration plan's spellings)."""
    model = spelling("model", model, "model_path", model_path)
    image = spelling("image", image, "init_image", init_image)
    with _one_shot(model, model_kwargs) as m:
        return m.generate(_prompt(prompt), init_image=image, strength=strength, **kwargs)


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
    model: PathLike | None = None,
    prompt: str = "",
    *,
    model_path: PathLike | None = None,
    model_kwargs: dict | None = None,
    **kwargs: Any,
) -> VideoResult:
    """Text/image-to-video in one call with a Wan model (see :meth:`SDModel.generate_video`);
    Wan ships as parts, so pass ``model_kwargs={"diffusion_model": ..., "vae": ..., "t5xxl": ...}``."""
    model = spelling("model", model, "model_path", model_path, required=False)
    with _one_shot(model, model_kwargs) as m:
        return m.generate_video(prompt, **kwargs)


def upscale(
    image: ImageInput, model: PathLike, *, factor: int | None = None, tile_size: int = 128, threads: int | str = "auto"
) -> Image.Image:
    """Upscale a picture with an ESRGAN model file (``factor``: the model's own by default)."""
    return engine_class("sdcpp").upscale(
        as_pil(image, "RGB", "image"), model, factor=factor, tile_size=tile_size, threads=threads_arg(threads)
    )
