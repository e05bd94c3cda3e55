"""gouache's exception hierarchy: everything gouache raises on purpose derives from GouacheError."""

from __future__ import annotations


class GouacheError(Exception):
    """Root of every error gouache raises on purpose."""


class LibraryNotFoundError(GouacheError, OSError):
    """The stable-diffusion.cpp shared library could not be found or loaded.

    ``tried`` lists every path that was tried and why it failed.
    """

    def __init__(self, message: str, *, tried: list[str] | None = None) -> None:
        super().__init__(message)
        self.tried = list(tried or [])


class EngineError(GouacheError):
    """The native engine reported a failure.  ``engine_log`` holds its last warning/error lines."""

    def __init__(self, message: str, *, engine_log: list[str] | None = None) -> None:
        self.engine_log = list(engine_log or [])
        if self.engine_log:
            message = message + "\nengine log:\n  " + "\n  ".join(self.engine_log)
        super().__init__(message)


class ModelLoadError(EngineError):
    """The engine could not create a context from the given model files."""


class GenerationError(EngineError):
    """The engine returned no result for a generation, upscale or conversion."""


class InvalidInputError(GouacheError, ValueError):
    """An argument was rejected before any native work started (names the value and what is allowed)."""


class EngineBusyError(GouacheError, RuntimeError):
    """An engine call was made while it cannot run safely (closing a busy context, re-entrant call)."""


class MissingDependencyError(GouacheError, ImportError):
    """An optional dependency is not installed; the message says what to ``pip install``."""
