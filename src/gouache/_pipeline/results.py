"""What generations return: images or frames with their seeds, parameters and timings."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from PIL import Image

from .._engines.requests import ImageRequest, VideoRequest
from .sizing import Geometry

PathLike = str | os.PathLike[str]


@dataclasses.dataclass
class GenerationResult:
    """What :meth:`SDModel.generate` returns.

    ``images``: PIL images; ``seeds``: the seed of each image (random seeds resolved);
    ``parameters``: every value used, engine-neutral; ``infotexts``: the A1111-style text
    of each image (what :meth:`save` writes into PNG files); ``timings``: seconds per phase
    (``load`` of the model, ``prepare`` = text encoding and image encoding, ``sample``,
    ``decode``, ``total``; the phase split is derived from the engine's progress events).
    """

    images: list[Image.Image]
    seeds: list[int]
    parameters: dict[str, Any]
    infotexts: list[str]
    timings: dict[str, float]

    def save(self, path: PathLike, *, overwrite: bool = False) -> list[Path]:
        """Save every image (``out.png``, or ``out-1.png`` ... for a batch) atomically with
        its parameters; existing files are refused unless ``overwrite``."""
        from .._files import check_writable, numbered_paths
        from .infotext import save_image

        paths = numbered_paths(path, len(self.images))
        check_writable(paths, overwrite=overwrite)
        return [
            save_image(im, p, infotext=t, overwrite=overwrite) for im, p, t in zip(self.images, paths, self.infotexts)
        ]


@dataclasses.dataclass
class VideoResult:
    """What :meth:`SDModel.generate_video` returns: frames (PIL), the seed, parameters, timings."""

    frames: list[Image.Image]
    seed: int
    parameters: dict[str, Any]
    timings: dict[str, float]

    def save(self, path: PathLike, fps: int = 16, *, overwrite: bool = False) -> Path:
        """Write the frames as MP4, animated WebP or GIF (by extension)."""
        from .video import save_video

        return save_video(self.frames, path, fps=fps, overwrite=overwrite)


@dataclasses.dataclass(frozen=True)
class ModelLabel:
    """How results name the model that made them."""

    name: str
    family: str
    engine: str


def _common(r: ImageRequest | VideoRequest, model: ModelLabel) -> dict[str, Any]:
    s = r.sampling
    return {
        "prompt": r.prompt,
        "negative_prompt": r.negative_prompt,
        "steps": s.steps,
        "sampler": s.sampler or "default",
        "scheduler": s.scheduler or "default",
        "cfg_scale": s.cfg_scale,
        "seed": r.seed,
        "model": model.name,
        "engine": model.engine,
    }


def image_parameters(r: ImageRequest, geometry: Geometry, notes: tuple[str, ...], model: ModelLabel) -> dict[str, Any]:
    """Every value one image generation used, engine-neutral (``GenerationResult.parameters``)."""
    p = _common(r, model)
    p.update(
        width=geometry.width,
        height=geometry.height,
        batch=r.batch,
        family=model.family,
        clip_skip=r.clip_skip,
        loras=[(str(lora.path), lora.weight) for lora in r.loras],
    )
    if r.init is not None:
        p["strength"] = r.init.strength
    if r.control is not None:
        p["control_strength"] = r.control.strength
    if notes:
        p["size_policy"] = "; ".join(notes)
    return p


def video_parameters(r: VideoRequest, model: ModelLabel) -> dict[str, Any]:
    """Every value one video generation used (``VideoResult.parameters``)."""
    return {**_common(r, model), "width": r.width, "height": r.height, "frames": r.frames}
