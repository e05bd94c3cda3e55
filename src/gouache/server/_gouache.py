"""Every name the server takes from gouache's private modules, in one place.

The server is a surface: it uses the public API (``import gouache``) wherever it can.  What
the public API does not offer is imported here, and only here, so a reshape of gouache's
internals has one module to repoint.
"""

from __future__ import annotations

from .._engines.registry import engine_class, select_engine
from .._engines.requests import ModelFiles
from .._errors import GouacheError, InvalidInputError
from .._files import write_atomic
from .._limits import MAX_SEED
from .._modelfiles.catalog import MODEL_EXTENSIONS, find_models
from .._modelfiles.families import edits_images
from .._pipeline.infotext import (
    A1111_SAMPLER_NAMES,
    A1111_SCHEDULE_NAMES,
    engine_scheduler_from_a1111,
    parse_infotext,
    save_image,
    split_a1111_sampler,
)
from .._pipeline.infotext import _parameters_text as parameters_text
from .._pipeline.requests import _LORA_TAG as LORA_TAG
from .._pipeline.requests import resolve_seed

__all__ = [
    "A1111_SAMPLER_NAMES",
    "A1111_SCHEDULE_NAMES",
    "GouacheError",
    "InvalidInputError",
    "LORA_TAG",
    "MAX_SEED",
    "MODEL_EXTENSIONS",
    "ModelFiles",
    "engine_class",
    "edits_images",
    "engine_scheduler_from_a1111",
    "find_models",
    "parameters_text",
    "parse_infotext",
    "resolve_seed",
    "save_image",
    "select_engine",
    "split_a1111_sampler",
    "write_atomic",
]
