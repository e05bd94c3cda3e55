"""``gouache serve``: a local diffusion server that existing clients already speak to.

* AUTOMATIC1111's API (``/sdapi/v1``: txt2img, img2img, progress, interrupt, options, model
  lists, extras, png-info; ``<lora:name:w>`` tags; sd-webui-controlnet units),
* OpenAI's Images API (``/v1/images/generations``, ``/v1/images/edits``, ``/v1/models``),
* gouache's job API (``/v1/jobs``: submit, Server-Sent Events, cancel, results),
* a web page at ``/``.

Each loaded model runs in its own worker process, so an engine crash fails one job and
never the server.  ``pip install "gouache[server]"``.

``gouache serve --ray`` runs the same app as a Ray Serve deployment (``gouache[ray]``): each
replica owns its workers; with several replicas the routes that keep state in one replica
(job API, A1111 progress/interrupt/skip/options, OpenAI ``url``) answer 409.

>>> from gouache.server import ServerConfig, create_app
>>> app = create_app(ServerConfig(model="model.safetensors"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import create_app
    from ._config import Limits, ModelSpec, ServerConfig

__all__ = ["Limits", "ModelSpec", "ServerConfig", "create_app", "serve"]

_LAZY = {"create_app": "._app", "Limits": "._config", "ModelSpec": "._config", "ServerConfig": "._config"}


def __getattr__(name: str) -> Any:
    """Load the FastAPI application only when it is asked for, so ``gouache --help`` (which
    registers ``serve`` through ``gouache.server._cli``) works without the ``server`` extra."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def serve(config: ServerConfig) -> None:
    """Run the server until SIGTERM or Ctrl-C.  At shutdown queued jobs are cancelled, running
    ones get ``config.shutdown_grace`` seconds to finish (then are cancelled), and every worker
    process is stopped; results are always written whole (atomically) or not at all."""
    from ._uvicorn import run

    run(config)
