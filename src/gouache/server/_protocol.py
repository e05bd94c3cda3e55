"""The typed messages between the server and its worker processes (pickled over a pipe).

Server -> worker: :class:`LoadModel`, :class:`Run` (one task: :class:`GenerateTask`,
:class:`VideoTask`, :class:`UpscaleTask` or :class:`EnhanceTask`), :class:`Stop`.
Worker -> server: :class:`Ready`, :class:`Loaded`, :class:`Step`, :class:`PreviewImage`,
:class:`Output`, :class:`Done`, :class:`Failed`.  Cancelling is not a message: the server
writes the task's ``seq`` into a shared value the worker checks at every step (torch), or
ends the process (sdcpp, which cannot stop inside a call).
"""

from __future__ import annotations

import dataclasses
from typing import Any

#: Failure kinds: ``invalid`` (the request was refused: a 4xx), ``engine`` (the engine failed),
#: ``crashed`` (the worker process died), ``cancelled``, ``internal``.
FAILURE_KINDS = ("invalid", "engine", "crashed", "cancelled", "internal")


# --------------------------------------------------------------------------- server -> worker


@dataclasses.dataclass(frozen=True)
class LoadModel:
    """Load one model: keyword arguments of :class:`gouache.SDModel`."""

    kwargs: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class GenerateTask:
    """One :meth:`gouache.SDModel.generate` call (images are PIL images); ``control_preprocess``
    ("canny") turns ``control_image`` into edges first; ``previews``: send preview images."""

    kwargs: dict[str, Any]
    control_preprocess: str | None = None
    previews: bool = True


@dataclasses.dataclass(frozen=True)
class VideoTask:
    """One :meth:`gouache.SDModel.generate_video` call, written as ``ext`` (.webp, .gif, .mp4)."""

    kwargs: dict[str, Any]
    fps: int = 16
    ext: str = ".webp"


@dataclasses.dataclass(frozen=True)
class UpscaleTask:
    """Upscale ``image`` to ``width`` x ``height``: ``upscaler`` is "none", "lanczos",
    "nearest" or the path of an ESRGAN file; ``upscaler_2`` is blended in with
    ``visibility_2``; ``crop``: keep the aspect ratio and crop to the target."""

    image: Any
    width: int
    height: int
    upscaler: str = "none"
    upscaler_2: str = "none"
    visibility_2: float = 0.0
    crop: bool = False


@dataclasses.dataclass(frozen=True)
class EnhanceTask:
    """One :meth:`gouache.enhance.EnhanceService.enhance` call on the loaded model:
    ``config``: :class:`~gouache.enhance.EnhanceConfig` fields (``preset`` picks the preset),
    ``call``: the keyword arguments of ``enhance`` (image, depth_map, mask, prompt ...)."""

    config: dict[str, Any]
    call: dict[str, Any]


Task = GenerateTask | VideoTask | UpscaleTask | EnhanceTask


@dataclasses.dataclass(frozen=True)
class Run:
    """Run ``task``; results are written to ``output`` + extension (atomically)."""

    seq: int
    task: Task
    output: str


@dataclasses.dataclass(frozen=True)
class Stop:
    """Free the model and exit."""


# --------------------------------------------------------------------------- worker -> server


@dataclasses.dataclass(frozen=True)
class Ready:
    pid: int


@dataclasses.dataclass(frozen=True)
class Loaded:
    engine: str
    family: str
    seconds: float


@dataclasses.dataclass(frozen=True)
class Step:
    seq: int
    step: int
    total: int
    elapsed: float


@dataclasses.dataclass(frozen=True)
class PreviewImage:
    seq: int
    step: int
    jpeg: bytes


@dataclasses.dataclass(frozen=True)
class Output:
    seq: int
    path: str
    media_type: str
    width: int
    height: int
    seed: int | None = None
    infotext: str | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Done:
    seq: int
    timings: dict[str, float]


@dataclasses.dataclass(frozen=True)
class Failed:
    """``seq`` -1: loading failed."""

    seq: int
    kind: str
    message: str
