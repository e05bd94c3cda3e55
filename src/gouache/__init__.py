"""gouache: local diffusion from Python - generate, edit, upscale and animate images.

High-level API: :class:`SDModel` (load once, generate many) returning
:class:`GenerationResult`, the one-call functions :func:`text_to_image`,
:func:`image_to_image`, :func:`inpaint`, :func:`generate_video`, :func:`upscale`,
:func:`save_video`, :func:`inspect` and :func:`read_parameters`.

The low-level API exposes all of stable-diffusion.cpp's C API safely:
parameter dataclasses that lower to the engine's structs, owners of native handles
(:class:`SDContext`, :class:`Upscaler`) with ``close()`` and context managers, images
copied into Python (:class:`SDImage`), engine logs on the ``gouache.engine`` logger,
per-call progress/preview callbacks, and checks that refuse inputs the engine would
crash on.
"""

import logging as _logging

from ._engines.requests import Cache, EngineOptions, Guidance, Hires, PhotoMakerInput, PreviewSpec
from ._errors import (
    EngineBusyError,
    EngineError,
    GenerationError,
    GouacheError,
    InvalidInputError,
    LibraryNotFoundError,
    MissingDependencyError,
    ModelLoadError,
)
from ._image import SDImage
from ._modelfiles.assemble import assemble_checkpoint
from ._modelfiles.catalog import pull, pull_model
from ._modelfiles.families import Family
from ._modelfiles.inspect import ModelInfo, inspect
from ._pipeline.infotext import format_infotext, read_parameters, save_image
from ._pipeline.model import SDModel
from ._pipeline.oneshot import generate_video, image_to_image, inpaint, text_to_image, upscale
from ._pipeline.results import GenerationResult, VideoResult
from ._pipeline.video import save_video
from ._sdcpp.dispatch import Preview, PreviewOptions, Progress
from ._sdcpp.functions import canny, convert_model, physical_cores, system_info, version
from ._sdcpp.genparams import SDImageGenParams, SDVideoGenParams
from ._sdcpp.handles import SDContext, Upscaler
from ._sdcpp.native import (
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
from ._sdcpp.params import (
    SDCacheParams,
    SDContextParams,
    SDEmbedding,
    SDHiresParams,
    SDLora,
    SDPhotoMakerParams,
    SDSampleParams,
    SDTilingParams,
)
from ._version import __version__

# A library never configures logging; without a handler of the application's, gouache is silent.
_logging.getLogger("gouache").addHandler(_logging.NullHandler())

__all__ = [
    "Cache",
    "CacheMode",
    "EngineBusyError",
    "EngineError",
    "EngineOptions",
    "Family",
    "GenerationError",
    "GenerationResult",
    "GouacheError",
    "Guidance",
    "Hires",
    "HiresUpscaler",
    "InvalidInputError",
    "LibraryNotFoundError",
    "LogLevel",
    "LoraApplyMode",
    "MissingDependencyError",
    "ModelInfo",
    "ModelLoadError",
    "PhotoMakerInput",
    "Prediction",
    "Preview",
    "PreviewMode",
    "PreviewOptions",
    "PreviewSpec",
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
    "SDModel",
    "SDPhotoMakerParams",
    "SDSampleParams",
    "SDTilingParams",
    "SDType",
    "SDVideoGenParams",
    "SampleMethod",
    "Scheduler",
    "Upscaler",
    "VideoResult",
    "__version__",
    "assemble_checkpoint",
    "canny",
    "convert_model",
    "format_infotext",
    "generate_video",
    "image_to_image",
    "inpaint",
    "inspect",
    "physical_cores",
    "pull",
    "pull_model",
    "read_parameters",
    "save_image",
    "save_video",
    "system_info",
    "text_to_image",
    "upscale",
    "version",
]
