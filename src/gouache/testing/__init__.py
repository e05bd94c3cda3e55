"""Testing helpers for gouache.

:mod:`gouache.testing.forge` writes random-weight models with real architectures, so
applications (and gouache's own tests) can exercise the real engine without real weights.
"""

from . import forge
from .forge import *  # noqa: F403 - gouache.testing.<name> is gouache.testing.forge.<name>

__all__ = list(forge.__all__)
