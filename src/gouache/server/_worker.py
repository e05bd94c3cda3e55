"""The worker process: holds one loaded model and runs the server's tasks one at a time.

Started with multiprocessing's spawn context, so nothing of the server process (threads,
sockets, the event loop) is inherited.  A native abort or segfault here ends only this
process; the server sees the pipe close, fails the task that was running and starts a new
worker.  The worker ignores SIGINT (Ctrl-C in a terminal reaches the whole process group:
the server decides what happens to running jobs) and dies with the server on Linux.
"""

from __future__ import annotations

import ctypes
import importlib
import io
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from . import _protocol as P


class _Cancelled(Exception):
    """Raised inside a progress callback when the server cancelled the running task."""


def main(conn, cancel, setup: str | None) -> None:
    """Process entry point: ``conn`` is the pipe to the server, ``cancel`` a shared integer
    holding the ``seq`` of a task to stop."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if setup:
        module, _, func = setup.partition(":")
        getattr(importlib.import_module(module), func)()
    worker = _Worker(conn, cancel)
    conn.send(P.Ready(os.getpid()))
    worker.serve()


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _failure_kind(exc: BaseException) -> str:
    import gouache as g

    if isinstance(exc, _Cancelled):
        return "cancelled"
    if isinstance(exc, (g.InvalidInputError, g.MissingDependencyError)):
        return "invalid"
    if isinstance(exc, g.GouacheError):
        return "engine"
    return "internal"


def _message(exc: BaseException) -> str:
    import gouache as g

    if isinstance(exc, g.InvalidInputError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class _Worker:
    def __init__(self, conn, cancel) -> None:
        self.conn = conn
        self.cancel = cancel
        self.model = None
        self.load_kwargs: dict[str, Any] = {}
        self.upscalers: dict[str, Any] = {}
        self.seq = -1

    # -- loop -------------------------------------------------------------------------

    def serve(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                break
            if isinstance(msg, P.Stop):
                break
            if isinstance(msg, P.LoadModel):
                self.load(msg)
            elif isinstance(msg, P.Run):
                self.run(msg)
        self.close()

    def close(self) -> None:
        if self.model is not None:
            self.model.close()
            self.model = None
        for up in self.upscalers.values():
            up.close()
        self.upscalers.clear()

    def send(self, msg: Any) -> None:
        self.conn.send(msg)

    def check_cancel(self) -> None:
        if self.cancel.value == self.seq:
            raise _Cancelled("cancelled")

    # -- messages -----------------------------------------------------------------------

    def load(self, msg: P.LoadModel) -> None:
        import gouache as g

        t0 = time.perf_counter()
        try:
            self.close()
            self.model = g.SDModel(**msg.kwargs)
            self.load_kwargs = dict(msg.kwargs)
        except Exception as exc:  # noqa: BLE001 - reported to the server
            self.send(P.Failed(-1, _failure_kind(exc), _message(exc)))
            return
        self.send(P.Loaded(self.model.engine_name, self.model.family, time.perf_counter() - t0))

    def run(self, msg: P.Run) -> None:
        self.seq = msg.seq
        handlers = {
            P.GenerateTask: self.generate,
            P.VideoTask: self.video,
            P.UpscaleTask: self.upscale,
            P.EnhanceTask: self.enhance,
        }
        try:
            timings = handlers[type(msg.task)](msg.task, msg.output)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a Failed message
            self.send(P.Failed(msg.seq, _failure_kind(exc), _message(exc)))
            return
        self.send(P.Done(msg.seq, timings))

    def _model(self):
        import gouache as g

        if self.model is None:
            raise g.InvalidInputError("no model is loaded in this worker")
        return self.model

    def _on_step(self, step: int, total: int, elapsed: float) -> None:
        self.check_cancel()
        self.send(P.Step(self.seq, int(step), int(total), float(elapsed)))

    def _on_preview(self, step: int, images: list) -> None:
        self.check_cancel()
        if images:
            self.send(P.PreviewImage(self.seq, int(step), _jpeg(images[0])))

    # -- tasks --------------------------------------------------------------------------

    def generate(self, task: P.GenerateTask, output: str) -> dict[str, float]:
        import gouache as g

        model = self._model()
        kwargs = dict(task.kwargs)
        if task.control_preprocess == "canny" and kwargs.get("control_image") is not None:
            kwargs["control_image"] = g.canny(g.SDImage.from_pil(kwargs["control_image"].convert("RGB"))).to_pil()
        if task.previews:
            kwargs.update(preview=self._on_preview, preview_options=g.PreviewSpec(mode="proj", interval=1))
        result = model.generate(callback=self._on_step, **kwargs)
        path = result.save(output + ".png")[0]
        image = result.images[0]
        self.send(
            P.Output(
                self.seq,
                str(path),
                "image/png",
                image.width,
                image.height,
                result.seeds[0],
                result.infotexts[0],
                _plain(result.parameters),
            )
        )
        return result.timings

    def video(self, task: P.VideoTask, output: str) -> dict[str, float]:
        model = self._model()
        result = model.generate_video(callback=self._on_step, **task.kwargs)
        path = result.save(output + task.ext, fps=task.fps)
        media = {".webp": "image/webp", ".gif": "image/gif", ".mp4": "video/mp4"}[task.ext]
        first = result.frames[0]
        self.send(
            P.Output(
                self.seq,
                str(path),
                media,
                first.width,
                first.height,
                result.seed,
                None,
                _plain({**result.parameters, "fps": task.fps, "frames": len(result.frames)}),
            )
        )
        return result.timings

    def upscale(self, task: P.UpscaleTask, output: str) -> dict[str, float]:
        from PIL import Image

        from ._gouache import save_image

        t0 = time.perf_counter()
        image = task.image.convert("RGB")
        out = self._upscale_with(task.upscaler, image, task)
        if task.upscaler_2 != "none" and task.visibility_2 > 0:
            second = self._upscale_with(task.upscaler_2, image, task)
            out = Image.blend(out, second, float(task.visibility_2))
        self.check_cancel()
        path = save_image(out, output + ".png")
        self.send(
            P.Output(
                self.seq,
                str(path),
                "image/png",
                out.width,
                out.height,
                None,
                None,
                {
                    "upscaler": Path(task.upscaler).stem if os.sep in task.upscaler else task.upscaler,
                    "width": out.width,
                    "height": out.height,
                },
            )
        )
        return {"total": time.perf_counter() - t0}

    def _upscale_with(self, how: str, image, task: P.UpscaleTask):
        from PIL import Image

        if how == "none":
            return _fit(image, task.width, task.height, task.crop, Image.Resampling.LANCZOS)
        if how in ("lanczos", "nearest"):
            method = Image.Resampling.LANCZOS if how == "lanczos" else Image.Resampling.NEAREST
            return _fit(image, task.width, task.height, task.crop, method)
        up = self._upscaler(how)
        big = up.upscale(image).to_pil()
        return _fit(big, task.width, task.height, task.crop, Image.Resampling.LANCZOS)

    def _upscaler(self, path: str):
        import gouache as g

        if path not in self.upscalers:
            for old in self.upscalers.values():
                old.close()
            self.upscalers = {path: g.Upscaler(path)}
        return self.upscalers[path]

    def enhance(self, task: P.EnhanceTask, output: str) -> dict[str, float]:
        from gouache.enhance import EnhanceConfig, EnhanceService

        from ._gouache import save_image

        t0 = time.perf_counter()
        model = self._model()
        config = dict(task.config)
        preset = {
            "cpu": EnhanceConfig.for_cpu,
            "speed": EnhanceConfig.for_speed,
            "quality": EnhanceConfig.for_quality,
            "t4_gpu": EnhanceConfig.for_t4_gpu,
        }[config.pop("preset", "cpu")]
        cfg = preset(
            model=self.load_kwargs.get("model"),
            controlnet=self.load_kwargs.get("control_net"),
            use_controlnet=self.load_kwargs.get("control_net") is not None,
            depth_model=None,
            engine=model.engine_name,
            **config,
        )
        service = EnhanceService(cfg)
        service.pipeline.model = model  # the loaded model serves the enhancement: no second load
        image = service.enhance(**task.call)
        self.check_cancel()
        path = save_image(image, output + ".png")
        self.send(
            P.Output(
                self.seq,
                str(path),
                "image/png",
                image.width,
                image.height,
                task.call.get("seed"),
                None,
                _plain({"kind": "enhance", **config, "prompt": task.call.get("prompt")}),
            )
        )
        return {"total": time.perf_counter() - t0}


def _fit(image, width: int, height: int, crop: bool, method):
    """``image`` resized to ``width`` x ``height``; with ``crop`` the aspect ratio is kept and
    the overflow cut off evenly (A1111's ``upscaling_crop``)."""
    if image.size == (width, height):
        return image
    if not crop:
        return image.resize((width, height), method)
    scale = max(width / image.width, height / image.height)
    w, h = max(width, round(image.width * scale)), max(height, round(image.height * scale))
    big = image.resize((w, h), method)
    left, top = (w - width) // 2, (h - height) // 2
    return big.crop((left, top, left + width, top + height))


def _jpeg(image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def _plain(value: Any) -> Any:
    """JSON-friendly copy of a parameters dict (paths as strings, tuples as lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
