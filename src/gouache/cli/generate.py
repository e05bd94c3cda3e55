"""Generation subcommands: the engine runs in a child process that sends each result as it exists.

The native engine cannot be cancelled, so Ctrl-C terminates the child at once; images
already received are kept (each is written atomically as soon as it arrives).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .arguments import _generate_kwargs, _loras, _model_kwargs
from .output import EXIT_INTERRUPTED, EXIT_OK, _Progress
from .parser import build_parser


def _child(conn, argv: list[str]) -> None:
    """Child process: load the model, generate image by image, send each one as it exists."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates us
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.debug else logging.ERROR, format="%(name)s: %(message)s")
    try:
        from .._pipeline.model import SDModel, resolve_seed

        send = conn.send
        model_kwargs = _model_kwargs(a)
        model = SDModel(a.model, on_load_progress=lambda s, t, e: send(("load", s, t)), **model_kwargs)
        if a.command == "video":
            res = model.generate_video(
                a.prompt, negative_prompt=a.negative_prompt, width=a.width, height=a.height, frames=a.frames,
                steps=a.steps, cfg_scale=a.cfg_scale, sampler=a.sampler, scheduler=a.scheduler, seed=a.seed,
                init_image=a.init_image, end_image=a.end_image, control_frames=a.control_frame,
                strength=a.strength, loras=_loras(a.lora), high_noise_steps=a.high_noise_steps,
                high_noise_cfg_scale=a.high_noise_cfg_scale, high_noise_sampler=a.high_noise_sampler,
                moe_boundary=a.moe_boundary, vace_strength=a.vace_strength, flow_shift=a.flow_shift,
                callback=lambda s, t, e: send(("step", s, t)),
            )
            send(("video", res.frames, res.seed, res.parameters, res.timings))
            send(("done",))
            return
        kw = _generate_kwargs(a)
        if a.command == "controlnet":
            kw["control_image"] = _control_image(a)
        seed = resolve_seed(a.seed)
        for i in range(a.batch):  # one call per image: each image is saved as soon as it exists
            res = model.generate(a.prompt, seed=seed + i, batch=1, callback=lambda s, t, e: send(("step", s, t)), **kw)
            send(("image", i, res.images[0], res.infotexts[0], res.seeds[0], res.parameters, res.timings))
        send(("done",))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        conn.send(("error", _error_kind(exc), f"{type(exc).__name__}: {exc}", traceback.format_exc()))


def _control_image(a: argparse.Namespace):
    if not a.canny:
        return a.control_image
    from .._sdcpp.functions import canny
    from .._image import SDImage

    return canny(SDImage.open(a.control_image).with_channels(3)).to_pil()


def _error_kind(exc: BaseException) -> str:
    from .._errors import InvalidInputError

    return "usage" if isinstance(exc, InvalidInputError) else "runtime"


def _precheck(a: argparse.Namespace) -> None:
    """Check what can be checked before the engine process starts (no model load)."""
    from .._engines.base import ModelFiles, engine_class, select_engine
    from .._errors import InvalidInputError

    engine = a.engine
    if engine == "auto" and a.model and Path(a.model).is_file():
        from .._modelfiles.inspect import inspect

        files = ModelFiles(model=Path(a.model), clip_l=a.clip_l, clip_g=a.clip_g, t5xxl=a.t5xxl, photo_maker=a.photo_maker)
        engine, _ = select_engine("auto", inspect(a.model).family.value, files)
    cls = engine_class("sdcpp" if engine == "auto" else engine)
    for name, allowed in (("sampler", cls.samplers()), ("scheduler", cls.schedulers()),
                          ("high_noise_sampler", cls.samplers())):
        value = getattr(a, name, None)
        if value is not None and value.strip().lower() not in allowed:
            raise InvalidInputError(f"unknown {name} {value!r} for engine {engine}; allowed: {', '.join(allowed)}")
    for name, lo, hi in (("width", 1, 16384), ("height", 1, 16384), ("steps", 1, 1000), ("batch", 1, 1024)):
        value = getattr(a, name, None)
        if value is not None and not lo <= value <= hi:
            raise InvalidInputError(f"--{name} must be in [{lo}, {hi}]; got {value}")
    for name in ("strength",):
        value = getattr(a, name, None)
        if value is not None and not 0.0 <= value <= 1.0:
            raise InvalidInputError(f"--{name} must be in [0, 1]; got {value}")
    for name in ("model", "diffusion_model", "vae", "taesd", "clip_l", "clip_g", "t5xxl", "control_net",
                 "photo_maker", "init_image", "mask", "control_image", "end_image"):
        value = getattr(a, name, None)
        if value is not None and not Path(value).is_file():
            raise InvalidInputError(f"--{name.replace('_', '-')} file not found: {value!r}")


def _run_generation(a: argparse.Namespace, argv: list[str]) -> int:
    from .._files import check_writable, numbered_paths, save_image

    _precheck(a)
    if a.command == "video":
        paths = [a.output]
    else:
        paths = numbered_paths(a.output, a.batch if a.batch and a.batch > 0 else 1)
    check_writable(paths, overwrite=a.overwrite)
    ctx = mp.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child_conn, argv), daemon=True)
    proc.start()
    child_conn.close()
    bars = _Progress(not (a.quiet or a.json))
    saved: list[dict[str, Any]] = []
    last_params: dict[str, Any] | None = None
    started = time.perf_counter()
    try:
        while True:
            try:
                msg = parent_conn.recv()
            except EOFError:
                proc.join(1)
                raise _Failure("runtime", f"the engine process died (exit code {proc.exitcode})", "") from None
            kind = msg[0]
            if kind == "load":
                bars.update("load", msg[1], msg[2])
            elif kind == "step":
                bars.update(f"image {len(saved) + 1}/{len(paths)}" if a.command != "video" else "video", msg[1], msg[2])
            elif kind == "image":
                _, i, image, infotext, seed, params, timings = msg
                path = save_image(image, paths[i], infotext=infotext, overwrite=a.overwrite)
                saved.append({"path": str(path), "seed": seed, "timings": timings})
                last_params = params
            elif kind == "video":
                from .._pipeline.video import save_video

                _, frames, seed, params, timings = msg
                path = save_video(frames, paths[0], fps=a.fps, overwrite=a.overwrite)
                saved.append({"path": str(path), "seed": seed, "frames": len(frames), "timings": timings})
                last_params = params
            elif kind == "error":
                raise _Failure(msg[1], msg[2], msg[3])
            elif kind == "done":
                break
    except KeyboardInterrupt:
        proc.terminate()
        proc.join(2)
        bars.close()
        print(f"gouache: interrupted; {len(saved)} of {len(paths)} file(s) were saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        bars.close()
        if proc.is_alive():
            proc.terminate()
        proc.join(5)
    result = {"outputs": saved, "parameters": last_params, "seconds": time.perf_counter() - started}
    if a.json:
        print(json.dumps(result, default=str))
    elif not a.quiet:
        for s in saved:
            print(s["path"])
    return EXIT_OK


class _Failure(Exception):
    def __init__(self, kind: str, message: str, tb: str) -> None:
        super().__init__(message)
        self.kind, self.tb = kind, tb
