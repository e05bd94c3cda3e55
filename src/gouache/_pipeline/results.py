"""What generations return: images or frames with their seeds, parameters and timings."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from PIL import Image

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
        from .._files import check_writable, numbered_paths, save_image

        paths = numbered_paths(path, len(self.images))
        check_writable(paths, overwrite=overwrite)
        return [save_image(im, p, infotext=t, overwrite=overwrite) for im, p, t in zip(self.images, paths, self.infotexts)]


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
