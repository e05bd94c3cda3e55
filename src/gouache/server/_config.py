"""What a server is told: :class:`ServerConfig`, :class:`ModelSpec` and the one table of limits."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

from ._gouache import InvalidInputError

PathLike = str | os.PathLike[str]

#: Engines a server can run a model on.
ENGINES = ("auto", "sdcpp", "torch")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may ask for.  Every limit is checked before any work starts and
    answered with a 4xx that names it (``413`` for the body size, ``422`` for the others)."""

    #: Largest request body in bytes (base64 images included).
    max_body_bytes: int = 64 * 2**20
    #: Largest width x height of an image to generate, of an input image, and of an upscale result.
    max_pixels: int = 2048 * 2048
    #: Largest width or height in pixels.
    max_side: int = 4096
    #: Most sampling steps.
    max_steps: int = 150
    #: Most images in one request (A1111 ``batch_size * n_iter``, OpenAI ``n``, job ``batch``).
    max_batch: int = 16
    #: Most video frames.
    max_frames: int = 129

    def check(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"limit {f.name} must be a positive integer; got {value!r}")

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The files of one model a server offers under a name.

    A single-file checkpoint is ``model=``; models that ship as parts (Flux, SD3, Wan) give
    ``diffusion_model=`` plus ``vae=``, ``clip_l=``, ``t5xxl=`` ...  ``engine``: None = the
    server's ``--engine``; ``taesd``/``vae``: None = the server's.
    """

    model: PathLike | None = None
    diffusion_model: PathLike | None = None
    high_noise_diffusion_model: PathLike | None = None
    vae: PathLike | None = None
    taesd: PathLike | None = None
    clip_l: PathLike | None = None
    clip_g: PathLike | None = None
    t5xxl: PathLike | None = None
    engine: str | None = None

    FILE_FIELDS = (
        "model",
        "diffusion_model",
        "high_noise_diffusion_model",
        "vae",
        "taesd",
        "clip_l",
        "clip_g",
        "t5xxl",
    )

    def check(self, name: str) -> None:
        if self.model is None and self.diffusion_model is None:
            raise InvalidInputError(f"model {name!r}: give model= (a checkpoint file) or diffusion_model=")
        for field in self.FILE_FIELDS:
            value = getattr(self, field)
            if value is not None and not Path(value).is_file():
                raise InvalidInputError(f"model {name!r}: {field} file not found: {str(value)!r}")
        if self.engine is not None and self.engine not in ENGINES:
            raise InvalidInputError(f"model {name!r}: engine must be one of {', '.join(ENGINES)}; got {self.engine!r}")

    @property
    def main_file(self) -> Path:
        return Path(self.model if self.model is not None else self.diffusion_model)


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Everything ``gouache serve`` is told (``create_app(config)`` takes one).

    ``model``: the default model, a file path or a name found under ``models_dirs``
    (ComfyUI/AUTOMATIC1111 installations or their ``models/`` folders, or plain folders of
    checkpoints); ``models``: more models by name (Python API: parts-based models, per-model
    engine).  Clients name models only by the names the server lists.

    Security: ``host`` other than loopback needs ``api_key`` unless ``insecure``; with a key
    every route but ``/`` needs ``Authorization: Bearer KEY``.  ``cors``: origins allowed to
    call from a browser (none by default).

    Work: ``max_queue`` jobs may wait (more: ``429`` with ``Retry-After``);
    ``max_loaded_models`` models stay loaded at once (each in its own worker process; the least
    recently used idle one is unloaded to make room); ``idle_unload``: seconds after which an
    idle model is unloaded (None: kept); ``result_ttl``: seconds finished jobs and their files
    are kept; ``url_ttl``: seconds OpenAI ``url`` results are served; ``output_dir``: keep every
    result there for good (default: a temporary folder removed at shutdown);
    ``shutdown_grace``: seconds running jobs get to finish at shutdown before they are
    cancelled; ``cancel_grace``: seconds the torch engine's per-step interrupt gets before the
    worker is ended instead.  ``worker_setup``: ``"module:function"`` called first in every
    worker process (instrumentation and tests).  ``preload``: load the default model at startup
    (as AUTOMATIC1111 does), so the first request does not wait for it.
    """

    model: PathLike | None = None
    models_dirs: tuple[PathLike, ...] = ()
    models: Mapping[str, ModelSpec] = dataclasses.field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 7860
    api_key: str | None = None
    insecure: bool = False
    engine: str = "auto"
    vae: PathLike | None = None
    taesd: PathLike | None = None
    threads: int | str = "auto"
    max_queue: int = 32
    cors: tuple[str, ...] = ()
    limits: Limits = Limits()
    max_loaded_models: int = 1
    idle_unload: float | None = None
    result_ttl: float = 3600.0
    url_ttl: float = 3600.0
    output_dir: PathLike | None = None
    shutdown_grace: float = 10.0
    cancel_grace: float = 0.5
    preload: bool = True
    worker_setup: str | None = None

    def check(self) -> None:
        """Refuse a configuration that is unsafe or cannot work (InvalidInputError naming the value)."""
        if self.engine not in ENGINES:
            raise InvalidInputError(f"engine must be one of {', '.join(ENGINES)}; got {self.engine!r}")
        if not is_loopback(self.host) and not self.api_key and not self.insecure:
            raise InvalidInputError(
                f"refusing to listen on {self.host!r} without an API key: anyone who can reach this address"
                " could use the server. Give --api-key KEY (clients send 'Authorization: Bearer KEY'),"
                " bind 127.0.0.1, or pass --insecure to accept the risk"
            )
        if self.api_key is not None and (not isinstance(self.api_key, str) or len(self.api_key) < 8):
            raise InvalidInputError("api_key must be a string of at least 8 characters")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise InvalidInputError(f"port must be in [0, 65535]; got {self.port!r}")
        for name, lo in (("max_queue", 1), ("max_loaded_models", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise InvalidInputError(f"{name} must be an integer >= {lo}; got {value!r}")
        for name in ("result_ttl", "url_ttl", "shutdown_grace", "cancel_grace"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InvalidInputError(f"{name} must be a number of seconds >= 0; got {value!r}")
        if self.idle_unload is not None and (not isinstance(self.idle_unload, (int, float)) or self.idle_unload <= 0):
            raise InvalidInputError(f"idle_unload must be a number of seconds > 0 or None; got {self.idle_unload!r}")
        for origin in self.cors:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise InvalidInputError(f"cors origin must look like http(s)://host[:port] or be '*'; got {origin!r}")
        for name in ("vae", "taesd"):
            value = getattr(self, name)
            if value is not None and not Path(value).is_file():
                raise InvalidInputError(f"{name} file not found: {str(value)!r}")
        for d in self.models_dirs:
            if not Path(d).is_dir():
                raise InvalidInputError(f"models directory not found: {str(d)!r}")
        if self.output_dir is not None and not Path(self.output_dir).is_dir():
            raise InvalidInputError(f"output_dir is not a directory: {str(self.output_dir)!r}")
        if self.worker_setup is not None and ":" not in self.worker_setup:
            raise InvalidInputError(f"worker_setup must be 'module:function'; got {self.worker_setup!r}")
        self.limits.check()
        for name, spec in self.models.items():
            spec.check(name)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
