"""The batch package's only door into gouache's private modules.

Everything else in :mod:`gouache.batch` uses the public API (``import gouache``,
``gouache.enhance``); when gouache's internals move, this file is the one to change.
"""

from __future__ import annotations

from .._files import write_atomic
from .._pipeline.infotext import save_image
from .._pipeline.requests import resolve_seed

__all__ = ["resolve_seed", "save_image", "write_atomic"]
