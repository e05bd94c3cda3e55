"""gouache: local diffusion from Python - generate, edit, upscale and animate images.

The low-level API (this release) exposes all of stable-diffusion.cpp's C API safely:
parameter dataclasses that lower to the engine's structs, owners of native handles
(:class:`SDContext`, :class:`Upscaler`) with ``close()`` and context managers, images
copied into Python (:class:`SDImage`), engine logs on the ``gouache.engine`` logger,
per-call progress/preview callbacks, and checks that refuse inputs the engine would
crash on.
"""

from ._context import SDContext, Upscaler, canny, convert_model, physical_cores, system_info, version
from ._dispatch import Preview, PreviewOptions, Progress
from ._errors import (
    EngineBusyError,
    EngineError,
    GenerationError,
    GouacheError,
    InvalidInputError,
    LibraryNotFoundError,
    ModelLoadError,
)
from ._image import SDImage
from ._native import (
    CacheMode,
    HiresUpscaler,
    LogLevel,
    LoraApplyMode,
    Prediction,
    PreviewMode,
    RNGType,
    SampleMethod,
    Scheduler,
    SDType,
)
from ._params import (
    SDCacheParams,
    SDContextParams,
    SDEmbedding,
    SDHiresParams,
    SDImageGenParams,
    SDLora,
    SDPhotoMakerParams,
    SDSampleParams,
    SDTilingParams,
    SDVideoGenParams,
)
from ._version import __version__

__all__ = [
    "CacheMode",
    "EngineBusyError",
    "EngineError",
    "GenerationError",
    "GouacheError",
    "HiresUpscaler",
    "InvalidInputError",
    "LibraryNotFoundError",
    "LogLevel",
    "LoraApplyMode",
    "ModelLoadError",
    "Prediction",
    "Preview",
    "PreviewMode",
    "PreviewOptions",
    "Progress",
    "RNGType",
    "SDCacheParams",
    "SDContext",
    "SDContextParams",
    "SDEmbedding",
    "SDHiresParams",
    "SDImage",
    "SDImageGenParams",
    "SDLora",
    "SDPhotoMakerParams",
    "SDSampleParams",
    "SDTilingParams",
    "SDType",
    "SDVideoGenParams",
    "SampleMethod",
    "Scheduler",
    "Upscaler",
    "__version__",
    "canny",
    "convert_model",
    "physical_cores",
    "system_info",
    "version",
]
