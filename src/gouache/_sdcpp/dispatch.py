"""The one dispatcher for the engine's process-global callbacks, and the engine lock.

stable-diffusion.cpp keeps its log, progress and preview callbacks in process-global
variables.  gouache installs one C callback of each kind, once, when the library is
first used, and keeps them alive for the life of the process.  Every native call
that can fire callbacks (loading, generating, upscaling, converting) runs inside
:meth:`Dispatcher.session`, which holds a process-wide lock, so the callbacks of a
call reach exactly that call's Python callables.

The lock is a plain ``threading.Lock`` held while ctypes has released the GIL, so other
Python threads keep running during a generation.  A callback that tries to start
another engine call from inside a call is refused (:class:`EngineBusyError`) instead
of deadlocking.  An exception raised by a user callback is caught in the C callback
(it never crosses into C), further user callbacks of that call are skipped, and the
exception is re-raised once the native call has returned.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import functools
import logging
import threading
from collections.abc import Callable, Iterator

from .._errors import EngineBusyError
from .._image import SDImage
from . import library
from . import native as _native
from .image import copy_from_c

#: Logger that receives every engine log line, at the engine's level.
engine_logger = logging.getLogger("gouache.engine")

_LEVELS = {
    _native.LogLevel.DEBUG: logging.DEBUG,
    _native.LogLevel.INFO: logging.INFO,
    _native.LogLevel.WARN: logging.WARNING,
    _native.LogLevel.ERROR: logging.ERROR,
}

#: How many warning/error lines of one call are kept for exception messages.
LOG_TAIL = 20


@dataclasses.dataclass(frozen=True)
class Progress:
    """One progress report of the engine.

    ``phase`` is ``"load"`` while model tensors are read, ``"sample"`` during denoising
    steps of a generation (also the VAE stages report here), ``"upscale"`` for ESRGAN
    tiles and ``"convert"`` while converting.  ``time`` is the engine's average seconds
    per step so far.
    """

    phase: str
    step: int
    total: int
    time: float


@dataclasses.dataclass(frozen=True)
class Preview:
    """An intermediate image (or video frames) sent during sampling."""

    step: int
    frames: list[SDImage]
    noisy: bool


ProgressCallback = Callable[[Progress], object]
PreviewCallback = Callable[[Preview], object]


@dataclasses.dataclass
class PreviewOptions:
    """How previews are produced: mode, every ``interval`` steps, denoised and/or noisy latents."""

    mode: _native.PreviewMode = _native.PreviewMode.PROJ
    interval: int = 1
    denoised: bool = True
    noisy: bool = False


@dataclasses.dataclass
class _Call:
    phase: str
    progress: ProgressCallback | None = None
    preview: PreviewCallback | None = None
    error: BaseException | None = None
    log_tail: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=LOG_TAIL))


class Dispatcher:
    """Owns the installed C callbacks and serializes native calls process-wide."""

    def __init__(self, cdll: ctypes.CDLL) -> None:
        self.lib = cdll
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._call: _Call | None = None
        # The CFUNCTYPE objects must stay referenced for as long as C may call them:
        # they are attributes of the dispatcher, which lives for the whole process.
        self._c_log = _native.sd_log_cb_t(self._on_log)
        self._c_progress = _native.sd_progress_cb_t(self._on_progress)
        self._c_preview = _native.sd_preview_cb_t(self._on_preview)
        cdll.sd_set_log_callback(self._c_log, None)
        cdll.sd_set_progress_callback(self._c_progress, None)
        self._set_preview(None)

    # -- sessions -----------------------------------------------------------------

    @contextlib.contextmanager
    def session(
        self,
        phase: str,
        *,
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
        preview_options: PreviewOptions | None = None,
    ) -> Iterator[_Call]:
        """Hold the engine for one native call and route its callbacks to the given callables."""
        me = threading.get_ident()
        if self._owner == me:
            raise EngineBusyError(
                "an engine call was started from inside a callback of another engine call;"
                " the engine runs one call at a time - start it after the current call returns"
            )
        call = _Call(phase=phase, progress=progress, preview=preview)
        with self._lock:
            self._owner = me
            self._call = call
            if preview is not None:
                self._set_preview(preview_options or PreviewOptions())
            try:
                yield call
            finally:
                if preview is not None:
                    self._set_preview(None)
                self._call = None
                self._owner = None
        if call.error is not None:
            raise call.error

    def _set_preview(self, options: PreviewOptions | None) -> None:
        if options is None:  # NULL callback: the engine skips preview work entirely
            self.lib.sd_set_preview_callback(
                _native.sd_preview_cb_t(), int(_native.PreviewMode.NONE), 1, False, False, None
            )
        else:
            self.lib.sd_set_preview_callback(
                self._c_preview,
                int(options.mode),
                int(options.interval),
                bool(options.denoised),
                bool(options.noisy),
                None,
            )

    # -- C callbacks (never raise) ------------------------------------------------

    def _on_log(self, level: int, text: bytes | None, _data: object) -> None:
        try:
            line = _native.decode(text).rstrip()
            if not line:
                return
            py_level = _LEVELS.get(level, logging.INFO)
            call = self._call
            if call is not None and py_level >= logging.WARNING:
                call.log_tail.append(line)
            if engine_logger.isEnabledFor(py_level):
                engine_logger.log(py_level, "%s", line)
        except BaseException:  # noqa: BLE001 - nothing may propagate into C
            pass

    def _on_progress(self, step: int, steps: int, time: float, _data: object) -> None:
        call = self._call
        if call is None or call.progress is None or call.error is not None:
            return
        try:
            call.progress(Progress(call.phase, int(step), int(steps), float(time)))
        except BaseException as exc:  # noqa: BLE001 - re-raised after the native call
            call.error = exc

    def _on_preview(self, step: int, frame_count: int, frames, noisy: bool, _data: object) -> None:
        call = self._call
        if call is None or call.preview is None or call.error is not None:
            return
        try:
            images = [copy_from_c(frames[i]) for i in range(max(0, int(frame_count)))]
            call.preview(Preview(int(step), images, bool(noisy)))
        except BaseException as exc:  # noqa: BLE001 - re-raised after the native call
            call.error = exc


_CREATE_LOCK = threading.Lock()


@functools.cache
def _create() -> Dispatcher:
    return Dispatcher(library.lib())


def dispatcher() -> Dispatcher:
    """The process's dispatcher; loading the library installs the callbacks first."""
    with _CREATE_LOCK:
        return _create()


def lib() -> ctypes.CDLL:
    """The engine library, with gouache's callbacks installed (so the engine never prints)."""
    return dispatcher().lib
