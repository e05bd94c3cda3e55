"""Running the app with uvicorn, with a shutdown that drains the workers first."""

from __future__ import annotations

import logging

from ._app import create_app
from ._config import ServerConfig

log = logging.getLogger("gouache.server")


def run(config: ServerConfig) -> None:
    import uvicorn

    app = create_app(config)
    state = app.state.gouache

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            # First signal: stop taking jobs, let running ones finish within the grace period
            # (requests waiting on them then answer), then uvicorn closes the connections.
            state.begin_shutdown()
            super().handle_exit(sig, frame)
            # uvicorn re-raises the signal after its shutdown, so the process would end "killed
            # by SIGTERM" (or raise KeyboardInterrupt); a completed graceful shutdown exits 0.
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    uconfig = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level="info",
        lifespan="on",
        timeout_graceful_shutdown=int(config.shutdown_grace) + 5,
        access_log=False,
    )
    Server(uconfig).run()
