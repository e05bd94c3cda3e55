"""Generation subcommands: the engine runs in a child process that sends each result as it exists.

The native engine cannot be cancelled, so Ctrl-C terminates the child at once; images
already received are kept (each is written atomically as soon as it arrives).  The two
processes talk in the typed messages of :mod:`.protocol`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import multiprocessing as mp
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .._engines.registry import engine_class, select_engine
from .._engines.requests import ModelFiles
from .._errors import InvalidInputError
from .._files import check_writable, numbered_paths
from .._limits import check
from .._modelfiles.inspect import inspect
from .arguments import edit_kwargs, generate_kwargs, model_kwargs, resolve_prompt, video_kwargs
from .output import EXIT_INTERRUPTED, EXIT_OK, Progress
from .parser import build_parser
from .protocol import Failed, Finished, ImageReady, Loading, Message, Sampling, VideoReady

_FILE_OPTIONS = (
    "model",
    "diffusion_model",
    "vae",
    "taesd",
    "clip_l",
    "clip_g",
    "t5xxl",
    "llm",
    "llm_vision",
    "control_net",
    "photo_maker",
    "init_image",
    "mask",
    "control_image",
    "end_image",
)


class Failure(Exception):
    """A generation job failed in the child; ``kind`` is "usage" or "runtime"."""

    def __init__(self, kind: str, message: str, tb: str) -> None:
        super().__init__(message)
        self.kind, self.tb = kind, tb


# --------------------------------------------------------------------------- the child


def _run_job(a: argparse.Namespace, send) -> None:
    from .._pipeline.model import SDModel
    from .._pipeline.requests import resolve_seed

    step = lambda s, t, e: send(Sampling(s, t))  # noqa: E731 - the progress callback of every call
    model = SDModel(a.model, on_load_progress=lambda s, t, e: send(Loading(s, t)), **model_kwargs(a))
    if a.command == "video":
        res = model.generate_video(a.prompt, callback=step, **video_kwargs(a))
        send(VideoReady(res.frames, res.seed, res.parameters, res.timings))
        return
    if a.command == "edit":
        kw, run = edit_kwargs(a), lambda **k: model.edit(a.image, a.prompt, **k)
    else:
        kw, run = generate_kwargs(a), lambda **k: model.generate(a.prompt, **k)
    seed = resolve_seed(a.seed)
    for i in range(a.batch):  # one call per image: each image is saved as soon as it exists
        res = run(seed=seed + i, batch=1, callback=step, **kw)
        send(ImageReady(i, res.images[0], res.infotexts[0], res.seeds[0], res.parameters, res.timings))


def child(conn, argv: list[str]) -> None:
    """Child process: load the model, generate image by image, send each one as it exists."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates us
    a = build_parser().parse_args(argv)
    resolve_prompt(a)
    logging.basicConfig(level=logging.DEBUG if a.debug else logging.ERROR, format="%(name)s: %(message)s")
    try:
        _run_job(a, conn.send)
        conn.send(Finished())
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        kind = "usage" if isinstance(exc, InvalidInputError) else "runtime"
        conn.send(Failed(kind, f"{type(exc).__name__}: {exc}", traceback.format_exc()))


# --------------------------------------------------------------------------- the parent


def _engine_for(a: argparse.Namespace) -> str:
    """The engine the child will use (sdcpp when it cannot be told yet)."""
    if a.engine == "auto" and a.model and Path(a.model).exists():
        files = ModelFiles(
            model=Path(a.model), clip_l=a.clip_l, clip_g=a.clip_g, t5xxl=a.t5xxl, photo_maker=a.photo_maker
        )
        return select_engine("auto", inspect(a.model).family.value, files)[0]
    return "sdcpp" if a.engine == "auto" else a.engine


def precheck(a: argparse.Namespace) -> None:
    """Check what can be checked before the engine process starts (no model load)."""
    if a.command == "edit":
        edit_kwargs(a)  # refuses options edit has no use for
    engine = _engine_for(a)
    cls = engine_class(engine)
    for name, allowed in (
        ("sampler", cls.samplers()),
        ("scheduler", cls.schedulers()),
        ("high_noise_sampler", cls.samplers()),
    ):
        value = getattr(a, name, None)
        if value is not None and value.strip().lower() not in allowed:
            raise InvalidInputError(f"unknown {name} {value!r} for engine {engine}; allowed: {', '.join(allowed)}")
    side = "video_side" if a.command == "video" else "side"
    for name, limit in (
        ("width", side),
        ("height", side),
        ("steps", "steps"),
        ("batch", "batch"),
        ("strength", "fraction"),
    ):
        value = getattr(a, name, None)
        if value is not None:
            check(f"--{name}", value, limit)
    for name in _FILE_OPTIONS:
        value = getattr(a, name, None)
        if value is not None and not Path(value).is_file() and not (name == "model" and Path(value).is_dir()):
            raise InvalidInputError(f"--{name.replace('_', '-')} file not found: {value!r}")
    for name in ("image", "ref_image", "control_frame"):
        for value in getattr(a, name, None) or ():
            if not Path(value).is_file():
                raise InvalidInputError(f"--{name.replace('_', '-')} file not found: {value!r}")


@dataclasses.dataclass
class _Outputs:
    """Where results go, and what was saved so far."""

    paths: list[Path]
    saved: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    parameters: dict[str, Any] | None = None


def _handle(msg: Message, a: argparse.Namespace, out: _Outputs, bars: Progress) -> bool:
    """Act on one message; True when the job is finished."""
    from .._pipeline.infotext import save_image
    from .._pipeline.video import save_video

    if isinstance(msg, Loading):
        bars.update("load", msg.step, msg.total)
    elif isinstance(msg, Sampling):
        label = "video" if a.command == "video" else f"image {len(out.saved) + 1}/{len(out.paths)}"
        bars.update(label, msg.step, msg.total)
    elif isinstance(msg, ImageReady):
        path = save_image(msg.image, out.paths[msg.index], infotext=msg.infotext, overwrite=a.overwrite)
        out.saved.append({"path": str(path), "seed": msg.seed, "timings": msg.timings})
        out.parameters = msg.parameters
    elif isinstance(msg, VideoReady):
        path = save_video(msg.frames, out.paths[0], fps=a.fps, overwrite=a.overwrite)
        out.saved.append({"path": str(path), "seed": msg.seed, "frames": len(msg.frames), "timings": msg.timings})
        out.parameters = msg.parameters
    elif isinstance(msg, Failed):
        raise Failure(msg.kind, msg.message, msg.traceback)
    return isinstance(msg, Finished)


def _report(a: argparse.Namespace, out: _Outputs, started: float) -> None:
    result = {"outputs": out.saved, "parameters": out.parameters, "seconds": time.perf_counter() - started}
    if a.json:
        print(json.dumps(result, default=str))
    elif not a.quiet:
        for s in out.saved:
            print(s["path"])


def run_generation(a: argparse.Namespace, argv: list[str]) -> int:
    precheck(a)
    paths = [a.output] if a.command == "video" else numbered_paths(a.output, a.batch if a.batch and a.batch > 0 else 1)
    check_writable(paths, overwrite=a.overwrite)
    ctx = mp.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=child, args=(child_conn, argv), daemon=True)
    proc.start()
    child_conn.close()
    bars = Progress(not (a.quiet or a.json))
    out = _Outputs(list(paths))
    started = time.perf_counter()
    try:
        while True:
            try:
                msg = parent_conn.recv()
            except EOFError:
                proc.join(1)
                raise Failure("runtime", f"the engine process died (exit code {proc.exitcode})", "") from None
            if _handle(msg, a, out, bars):
                break
    except KeyboardInterrupt:
        proc.terminate()
        proc.join(2)
        bars.close()
        print(f"gouache: interrupted; {len(out.saved)} of {len(paths)} file(s) were saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        bars.close()
        if proc.is_alive():
            proc.terminate()
        proc.join(5)
    _report(a, out, started)
    return EXIT_OK
