"""Owners of native handles: SDContext (a loaded model) and Upscaler (ESRGAN)."""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path
from typing import Any

from .._errors import EngineBusyError, GenerationError, InvalidInputError, ModelLoadError
from .._image import ImageLike, SDImage
from .._limits import check
from .._modelfiles import headers
from . import checks as _checks
from . import library
from . import native as _native
from .dispatch import PreviewCallback, PreviewOptions, ProgressCallback, dispatcher
from .functions import physical_cores
from .genparams import SDImageGenParams, SDVideoGenParams
from .image import as_c, coerce_image, copy_from_c
from .native import SampleMethod, Scheduler
from .params import SDContextParams


def _take_images(ptr: Any, count: int) -> list[SDImage]:
    """Copy ``count`` engine images into Python, then free every buffer and the array once."""
    images: list[SDImage] = []
    try:
        for i in range(count):
            item = ptr[i]
            if item.data:
                images.append(copy_from_c(item))
    finally:
        for i in range(count):
            library.free(ptr[i].data)
            ptr[i].data = None
        library.free(ptr)
    return images


class _Handle:
    """Common life cycle of a native handle: ``close()``, context manager, ``__del__``."""

    _handle: int | None = None
    _free_name = ""

    def __init__(self) -> None:
        self._handle = None
        self._busy_thread: int | None = None

    @property
    def closed(self) -> bool:
        return self._handle is None

    def _require_open(self) -> int:
        if self._handle is None:
            raise EngineBusyError(f"this {type(self).__name__} is closed")
        return self._handle

    def close(self) -> None:
        """Free the native handle.  Waits for a running call on another thread to finish;
        refused from inside a callback of this handle's own call (that would free memory in use)."""
        if self._handle is None:
            return
        if self._busy_thread == threading.get_ident():
            raise EngineBusyError(f"cannot close this {type(self).__name__} from inside one of its own callbacks")
        with dispatcher().session("close"):
            handle, self._handle = self._handle, None
            if handle:
                getattr(dispatcher().lib, self._free_name)(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._handle is not None and self._busy_thread is None:
                self.close()
        except Exception:  # noqa: BLE001 - never raise from __del__
            pass


class SDContext(_Handle):
    """A loaded model (``sd_ctx_t``): serves many generations; ``close()`` frees it.

    ``progress`` receives :class:`~gouache.Progress` events with ``phase="load"`` while
    tensors are read.  Creation failure raises :class:`~gouache.ModelLoadError` with
    the engine's last error lines.
    """

    _free_name = "free_sd_ctx"

    def __init__(self, params: SDContextParams, *, progress: ProgressCallback | None = None) -> None:
        super().__init__()
        if not isinstance(params, SDContextParams):
            raise InvalidInputError(f"SDContext needs SDContextParams, got {type(params).__name__}")
        self.params = params
        self.facts = _checks.check_context_params(params)
        lowered = params._lower()
        d = dispatcher()
        with d.session("load", progress=progress) as call:
            handle = d.lib.new_sd_ctx(lowered.ref)
            tail = list(call.log_tail)
        if not handle:
            raise ModelLoadError("the engine could not load the model", engine_log=tail)
        self._handle = handle
        self._spent = False

    # -- queries ------------------------------------------------------------------

    @property
    def supports_image_generation(self) -> bool:
        return bool(dispatcher().lib.sd_ctx_supports_image_generation(self._require_open()))

    @property
    def supports_video_generation(self) -> bool:
        return bool(dispatcher().lib.sd_ctx_supports_video_generation(self._require_open()))

    def default_sample_method(self) -> SampleMethod:
        return SampleMethod(dispatcher().lib.sd_get_default_sample_method(self._require_open()))

    def default_scheduler(self, sample_method: SampleMethod | str | None = None) -> Scheduler:
        method = self.default_sample_method() if sample_method is None else SampleMethod.parse(sample_method)
        return Scheduler(dispatcher().lib.sd_get_default_scheduler(self._require_open(), int(method)))

    # -- generation -----------------------------------------------------------------

    def _run(self, phase: str, fn, lowered, extra: tuple, progress, preview, preview_options):
        if self._spent:
            raise EngineBusyError(
                "this context was created with free_params_immediately=True, so the engine freed its"
                " weights after the first generation; create a new SDContext, or use"
                " free_params_immediately=False to serve many generations"
            )
        self._spent = bool(self.params.free_params_immediately)
        d = dispatcher()
        with d.session(phase, progress=progress, preview=preview, preview_options=preview_options) as call:
            handle = self._require_open()
            self._busy_thread = threading.get_ident()
            try:
                ptr = fn(handle, lowered.ref, *extra)
            finally:
                self._busy_thread = None
            tail = list(call.log_tail)
        return ptr, tail

    def generate_image(
        self,
        params: SDImageGenParams,
        *,
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
        preview_options: PreviewOptions | None = None,
    ) -> list[SDImage]:
        """Run one ``generate_image``: returns ``batch_count`` images (copied; engine buffers freed)."""
        if not isinstance(params, SDImageGenParams):
            raise InvalidInputError(f"generate_image needs SDImageGenParams, got {type(params).__name__}")
        self._require_open()
        _checks.check_image_gen(params, vae_decode_only=self.params.vae_decode_only, facts=self.facts)
        if params.control_image is not None and self.params.control_net_path is None:
            raise InvalidInputError("control_image was given but this context has no control_net_path")
        lowered = params._lower()
        ptr, tail = self._run(
            "sample", dispatcher().lib.generate_image, lowered, (), progress, preview, preview_options
        )
        if not ptr:
            raise GenerationError("the engine returned no images", engine_log=tail)
        images = _take_images(ptr, params.batch_count)
        if not images:
            raise GenerationError("the engine returned an empty batch", engine_log=tail)
        return images

    def generate_video(
        self,
        params: SDVideoGenParams,
        *,
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
        preview_options: PreviewOptions | None = None,
    ) -> list[SDImage]:
        """Run one ``generate_video``: returns the frames (copied; engine buffers freed)."""
        if not isinstance(params, SDVideoGenParams):
            raise InvalidInputError(f"generate_video needs SDVideoGenParams, got {type(params).__name__}")
        self._require_open()
        _checks.check_video_gen(params, vae_decode_only=self.params.vae_decode_only)
        lowered = params._lower()
        n = ctypes.c_int(0)
        ptr, tail = self._run(
            "sample", dispatcher().lib.generate_video, lowered, (ctypes.byref(n),), progress, preview, preview_options
        )
        if not ptr:
            raise GenerationError("the engine returned no video frames", engine_log=tail)
        frames = _take_images(ptr, n.value)
        if not frames:
            raise GenerationError("the engine returned zero video frames", engine_log=tail)
        return frames


class Upscaler(_Handle):
    """An ESRGAN upscaler (``upscaler_ctx_t``)."""

    _free_name = "free_upscaler_ctx"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        offload_params_to_cpu: bool = False,
        direct: bool = False,
        n_threads: int | None = None,
        tile_size: int = 128,
        progress: ProgressCallback | None = None,
    ) -> None:
        super().__init__()
        if path is None:
            raise InvalidInputError("upscaler model path must not be None")
        self.path = Path(headers.check_file(path, "upscaler model file"))
        headers.sniff(self.path, "upscaler model file")
        threads = physical_cores() if n_threads is None else n_threads
        check("n_threads", threads, "threads")
        check("tile_size", tile_size, "tile")
        d = dispatcher()
        with d.session("load", progress=progress) as call:
            handle = d.lib.new_upscaler_ctx(
                _native.encode(self.path), bool(offload_params_to_cpu), bool(direct), int(threads), int(tile_size)
            )
            tail = list(call.log_tail)
        if not handle:
            raise ModelLoadError(f"the engine could not load the upscaler {str(self.path)!r}", engine_log=tail)
        self._handle = handle

    @property
    def factor(self) -> int:
        """The model's native upscale factor (e.g. 4 for RealESRGAN x4)."""
        return int(dispatcher().lib.get_upscale_factor(self._require_open()))

    def upscale(
        self, image: ImageLike, factor: int | None = None, *, progress: ProgressCallback | None = None
    ) -> SDImage:
        """Upscale an RGB image by ``factor`` (default: the model's factor)."""
        handle = self._require_open()
        img = coerce_image(image, 3, "image")
        f = self.factor if factor is None else factor
        check("factor", f, "upscale_factor")
        d = dispatcher()
        with d.session("upscale", progress=progress) as call:
            self._busy_thread = threading.get_ident()
            try:
                out = d.lib.upscale(handle, as_c(img), int(f))
            finally:
                self._busy_thread = None
            tail = list(call.log_tail)
        if not out.data:
            raise GenerationError("the engine could not upscale the image", engine_log=tail)
        try:
            return copy_from_c(out)
        finally:
            library.free(out.data)
