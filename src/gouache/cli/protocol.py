"""The messages the generation child process sends to the command's process, one type each."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Loading:
    """Model loading progress."""

    step: int
    total: int


@dataclasses.dataclass(frozen=True)
class Sampling:
    """A sampling step of the current image or video."""

    step: int
    total: int


@dataclasses.dataclass(frozen=True)
class ImageReady:
    """Image ``index`` of the batch, ready to be saved."""

    index: int
    image: Any  # PIL image
    infotext: str
    seed: int
    parameters: dict[str, Any]
    timings: dict[str, float]


@dataclasses.dataclass(frozen=True)
class VideoReady:
    """The frames of the video, ready to be saved."""

    frames: list[Any]
    seed: int
    parameters: dict[str, Any]
    timings: dict[str, float]


@dataclasses.dataclass(frozen=True)
class Failed:
    """The job failed: ``kind`` "usage" (bad input, exit 2) or "runtime" (exit 1)."""

    kind: str
    message: str
    traceback: str


@dataclasses.dataclass(frozen=True)
class Finished:
    """Every result was sent."""


Message = Loading | Sampling | ImageReady | VideoReady | Failed | Finished
