"""The ASGI application: state, security middleware, error shapes, routes."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import threading
import time
from typing import Any

from ._config import ServerConfig
from ._errors import ApiError, error_body
from ._gouache import InvalidInputError
from ._jobs import Job, JobStore
from ._models import Catalog
from ._pool import Pool

log = logging.getLogger("gouache.server")

#: Routes that need no key: the web page (it asks for the key and sends it with every call).
OPEN_PATHS = ("/",)
#: Prefix of OpenAI ``url`` results: the unguessable, expiring token in the path is the credential.
SHARED_PREFIX = "/v1/images/files/"


class ServerState:
    """Everything one server holds: configuration, names, jobs, workers, A1111 options."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.catalog = Catalog(config)
        self.store = JobStore(ttl=config.result_ttl, output_dir=config.output_dir)
        self.pool = Pool(config, self.catalog, self.store)
        self.started = time.time()
        self.options: dict[str, Any] = {
            "CLIP_stop_at_last_layers": 1,
            "sd_vae": "Automatic",
            "samples_format": "png",
            "live_previews_enable": True,
            "eta_noise_seed_delta": 0,
        }
        #: Set by a Ray Serve replica when the deployment may have several replicas: state
        #: kept in one replica (OpenAI url results) is then refused with a 409.
        self.several_replicas = False
        self._shutdown: threading.Thread | None = None
        self._lock = threading.Lock()
        self._sweeper: asyncio.Task | None = None

    async def start(self) -> None:
        self.store.bind(asyncio.get_running_loop())
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        if self.config.preload and self.catalog.default is not None:
            from ._build import load_job

            self.pool.submit(load_job(self, self.catalog.default, "server"))

    async def _sweep(self) -> None:
        every = max(1.0, min(60.0, self.config.result_ttl / 4 or 1.0))
        while True:
            await asyncio.sleep(every)
            await asyncio.to_thread(self.store.sweep)

    def begin_shutdown(self) -> threading.Thread:
        """Start the graceful shutdown of the workers (once); returns its thread."""
        with self._lock:
            if self._shutdown is None:
                self._shutdown = threading.Thread(
                    target=self.pool.shutdown, args=(self.config.shutdown_grace,), name="gouache-shutdown", daemon=True
                )
                self._shutdown.start()
            return self._shutdown

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        thread = self.begin_shutdown()
        await asyncio.to_thread(thread.join, self.config.shutdown_grace + 30)
        self.store.close()

    def submit(self, job: Job) -> Job:
        return self.pool.submit(job)

    async def run(self, job: Job) -> Job:
        """Submit and wait for the end."""
        self.pool.submit(job)
        return await self.store.wait(job)


# --------------------------------------------------------------------------- middleware


class Guard:
    """Pure-ASGI middleware: the API key (``Authorization: Bearer KEY``, or HTTP Basic with
    the key as password, which A1111 clients send) compared in constant time, and the body
    size limit (``Content-Length`` first, then the bytes actually received)."""

    def __init__(self, app, state: ServerState) -> None:
        self.app = app
        self.state = state
        key = state.config.api_key
        self.key = key.encode() if key else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.key is not None and path not in OPEN_PATHS and not path.startswith(SHARED_PREFIX):
            problem = self._auth_problem(scope)
            if problem is not None:
                await _respond(
                    send,
                    path,
                    ApiError(
                        401,
                        problem,
                        kind="authentication_error",
                        code="invalid_api_key",
                        headers={"WWW-Authenticate": 'Bearer realm="gouache"'},
                    ),
                )
                return
        limit = self.state.config.limits.max_body_bytes
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _drain_and_respond(receive, send, path, _too_large(int(length), limit))
            return
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(received)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge as exc:
            if not started:
                await _drain_and_respond(receive, send, path, _too_large(exc.size, limit))

    def _auth_problem(self, scope) -> str | None:
        value = _header(scope, b"authorization")
        if not value:
            return "this server needs an API key: send 'Authorization: Bearer KEY'"
        scheme, _, credential = value.partition(" ")
        given = b""
        if scheme.lower() == "bearer":
            given = credential.strip().encode()
        elif scheme.lower() == "basic":
            try:
                given = base64.b64decode(credential.strip(), validate=True).partition(b":")[2]
            except (binascii.Error, ValueError):
                given = b""
        if not hmac.compare_digest(given, self.key):
            return "wrong API key"
        return None


class _BodyTooLarge(BaseException):  # not Exception: FastAPI turns those into a 400 while reading the body
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        f"request body of {size} bytes exceeds the server limit max_body_bytes={limit} (gouache serve --max-body-mb)",
        code="body_too_large",
    )


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


#: How much of a refused body is read (and dropped) so the client sees the 413 instead of a reset.
DRAIN_BYTES = 256 * 2**20


async def _drain_and_respond(receive, send, path: str, err: ApiError) -> None:
    drained = 0
    while drained <= DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            break
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await _respond(send, path, err)


async def _respond(send, path: str, err: ApiError) -> None:
    import json

    body = json.dumps(error_body(path, err)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- the app


def create_app(config: ServerConfig | None = None):
    """The ASGI app of ``gouache serve`` (FastAPI): A1111 ``/sdapi/v1``, OpenAI ``/v1/images``
    and ``/v1/models``, the job API ``/v1/jobs``, the web page ``/``, OpenAPI at ``/docs``.

    Raises :class:`gouache.InvalidInputError` for an unsafe or unusable configuration (for
    example a public ``host`` without ``api_key``).  Worker processes start with the app's
    lifespan (the default model is loaded at startup) and stop with it.
    """
    try:
        from fastapi import FastAPI
        from fastapi.exceptions import RequestValidationError
        from starlette.exceptions import HTTPException
        from starlette.middleware.cors import CORSMiddleware
    except ImportError as exc:
        import gouache as g

        raise g.MissingDependencyError(
            f'gouache serve needs FastAPI and uvicorn ({exc.name} is missing): pip install "gouache[server]"'
        ) from None
    from .._version import __version__
    from ._routes import a1111, jobs, openai, web

    config = config or ServerConfig()
    config.check()
    state = ServerState(config)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="gouache",
        version=__version__,
        lifespan=lifespan,
        description="Local diffusion server: AUTOMATIC1111 API, OpenAI Images API, job API, web page.",
    )
    app.state.gouache = state

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return _json_error(request.url.path, exc)

    @app.exception_handler(InvalidInputError)
    async def _invalid(request, exc: InvalidInputError):
        return _json_error(request.url.path, ApiError(422, str(exc)))

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc: RequestValidationError):
        err = validation_error(exc.errors())
        if request.url.path.startswith("/v1/images"):
            err.status = 400  # OpenAI answers bad parameters with 400
        return _json_error(request.url.path, err)

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):
        return _json_error(request.url.path, ApiError(exc.status_code, str(exc.detail), headers=exc.headers or {}))

    @app.exception_handler(Exception)
    async def _internal(request, exc: Exception):
        log.exception("internal error on %s", request.url.path)
        return _json_error(request.url.path, ApiError(500, f"internal server error: {type(exc).__name__}"))

    app.include_router(web.router)
    app.include_router(a1111.router)
    app.include_router(openai.router)
    app.include_router(jobs.router)
    app.add_middleware(Guard, state=state)
    if config.cors:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors),
            allow_methods=["*"],
            allow_headers=["*"],
            allow_credentials=False,
        )
    return app


def _json_error(path: str, err: ApiError):
    from fastapi.responses import JSONResponse

    return JSONResponse(error_body(path, err), status_code=err.status, headers=err.headers)


def validation_error(errors: list[dict[str, Any]]) -> ApiError:
    """One 422 naming the first bad field of a pydantic validation failure."""
    if not errors:
        return ApiError(422, "invalid request")
    e = errors[0]
    loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path")]
    if e.get("type") == "json_invalid":
        return ApiError(422, f"body: malformed JSON ({e.get('ctx', {}).get('error', e.get('msg'))})", field="body")
    if e.get("type") == "model_attributes_type" or (not loc and e.get("type") in ("dict_type", "model_type")):
        return ApiError(422, "body: must be a JSON object", field="body")
    field = ".".join(loc[1:] if loc and loc[0] in ("generate", "video", "upscale", "enhance") else loc) or "body"
    msg = e.get("msg", "invalid")
    if e.get("type") == "extra_forbidden":
        msg = "unknown field"
    if e.get("type") == "missing":
        msg = "is required"
    return ApiError(422, f"{field}: {msg}", field=field)
