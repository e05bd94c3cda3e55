"""The engine interface: what the pipeline asks of every engine.

An engine is one loaded model on one implementation (stable-diffusion.cpp, PyTorch).
Engines are found through :mod:`.registry` by name; the pipeline never imports an
engine's module.  Each engine says itself whether it can run a model here
(:meth:`Engine.explain`), which samplers and schedulers it takes, and how it loads
(:meth:`Engine.create`).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

from .._errors import InvalidInputError
from .requests import EngineOptions, Hooks, ImageRequest, ModelFiles, ProgressFn, VideoRequest

__all__ = ["Engine", "Explanation"]


@dataclasses.dataclass(frozen=True)
class Explanation:
    """Whether an engine can run (a model) on this machine, and why (shown to users)."""

    usable: bool
    reason: str


class Engine(abc.ABC):
    """One loaded model on one engine.  Not thread-safe per instance; ``close()`` frees it."""

    name: ClassVar[str] = ""

    # -- what the engine is ------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def explain(cls, family: str | None = None, files: ModelFiles | None = None) -> Explanation:
        """Whether this engine runs on this machine (``family``/``files`` None) or runs that model."""

    @classmethod
    @abc.abstractmethod
    def samplers(cls) -> list[str]:
        """Sampler names this engine accepts (names of :mod:`gouache._vocabulary`)."""

    @classmethod
    @abc.abstractmethod
    def schedulers(cls) -> list[str]:
        """Scheduler names this engine accepts (names of :mod:`gouache._vocabulary`)."""

    @classmethod
    @abc.abstractmethod
    def create(
        cls,
        files: ModelFiles,
        *,
        options: EngineOptions,
        threads: int | None,
        weight_type: str | None,
        on_load_progress: ProgressFn | None = None,
    ) -> Engine:
        """Load ``files``; ``threads`` None: the physical cores; ``weight_type`` None: the file's."""

    @classmethod
    def upscale(cls, image: Any, model: Any, *, factor: int | None, tile_size: int, threads: int | None) -> Any:
        """Upscale a PIL RGB image with an upscaler model file (engines that have upscalers)."""
        raise InvalidInputError(f"the {cls.name} engine has no upscaler; use engine 'sdcpp'")

    # -- one loaded model ----------------------------------------------------------------

    @property
    @abc.abstractmethod
    def can_generate_video(self) -> bool: ...

    @abc.abstractmethod
    def generate_images(self, request: ImageRequest, hooks: Hooks) -> list[Any]:
        """Return ``request.batch`` PIL images (seeds ``seed``, ``seed + 1``, ...)."""

    @abc.abstractmethod
    def generate_video(self, request: VideoRequest, hooks: Hooks) -> list[Any]:
        """Return the video frames as PIL images."""

    @abc.abstractmethod
    def close(self) -> None: ...
