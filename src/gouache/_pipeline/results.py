"""What generations return: images or frames with their seeds, parameters and timings."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from PIL import Image

from .._engines.requests import Hires, ImageRequest, VideoRequest
from .._modelfiles.hashes import lora_short_hash
from .requests import PreparedImage

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
    """How results name the model that made them (``hash``: A1111's ``Model hash``, the
    first 10 hex digits of the file's SHA-256)."""

    name: str
    family: str
    engine: str
    hash: str | None = None


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
        "model_hash": model.hash,
        "engine": model.engine,
    }


def _hires(h: Hires) -> dict[str, Any]:
    return {
        "scale": h.scale,
        "upscaler": h.upscaler,
        "model": None if h.model is None else str(h.model),
        "steps": h.steps,
        "denoising_strength": h.denoising_strength,
        "width": h.width,
        "height": h.height,
    }


def image_parameters(prepared: PreparedImage, model: ModelLabel) -> dict[str, Any]:
    """Every value one image generation used, engine-neutral (``GenerationResult.parameters``).

    ``prompt`` is the prompt as recorded (``<lora:...>`` tags kept, as A1111 records them);
    ``lora_hashes`` maps each LoRA's tag name to A1111's short hash of its file."""
    r, geometry, notes = prepared.request, prepared.geometry, prepared.notes
    p = _common(r, model)
    p.update(
        prompt=prepared.recorded_prompt or r.prompt,
        width=geometry.width,
        height=geometry.height,
        batch=r.batch,
        family=model.family,
        clip_skip=r.clip_skip,
        loras=[(str(lora.path), lora.weight) for lora in r.loras],
        lora_hashes={n: lora_short_hash(lora.path) for n, lora in zip(prepared.lora_names, r.loras)},
    )
    if r.init is not None:
        p["strength"] = r.init.strength
    if r.control is not None:
        p["control_strength"] = r.control.strength
    if r.hires is not None:
        p["hires"] = _hires(r.hires)
    if notes:
        p["size_policy"] = "; ".join(notes)
    return p


def video_parameters(r: VideoRequest, model: ModelLabel) -> dict[str, Any]:
    """Every value one video generation used (``VideoResult.parameters``)."""
    return {**_common(r, model), "width": r.width, "height": r.height, "frames": r.frames}
