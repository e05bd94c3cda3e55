"""``gouache serve --ray``: the same app as a Ray Serve deployment.

Each replica is a Ray actor that builds ``create_app(config)`` from the (picklable)
:class:`ServerConfig` and serves it through ``@serve.ingress``; the app's lifespan starts the
replica's own model worker process(es), exactly as the plain server does, and stops them when
the replica stops.  Serve's ``check_health`` asks the replica's worker pool whether it is usable
(not shutting down, every worker's runner alive); a replica that fails it, or dies, is replaced.

State.  A1111 txt2img/img2img and OpenAI ``b64_json`` answers are stateless: any replica serves
them.  The job API, A1111 progress/interrupt/skip/options and OpenAI ``url`` results keep state
in the replica that made it, and Serve's proxy does not route a follow-up request to that
replica.  So when the deployment may run more than one replica those routes answer ``409``
(``code: needs_single_replica``) naming the fix (``--replicas 1``) instead of a silently wrong
answer (an unknown job, an idle progress bar, an option set on another replica).  Every answer
carries ``X-Gouache-Replica`` (the Serve replica id and its process id).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
from collections.abc import Mapping
from typing import Any

from gouache import MissingDependencyError

from ._config import ServerConfig
from ._gouache import InvalidInputError

log = logging.getLogger("gouache.server")

#: The Serve application and deployment names (the replica actors are named after them).
APP_NAME = "gouache"
DEPLOYMENT_NAME = "GouacheReplica"

#: Routes whose state lives in one replica (method None: every method).
STATEFUL_ROUTES: tuple[tuple[str | None, str], ...] = (
    (None, "/v1/jobs"),
    (None, "/v1/images/files/"),
    (None, "/sdapi/v1/progress"),
    (None, "/sdapi/v1/interrupt"),
    (None, "/sdapi/v1/skip"),
    ("POST", "/sdapi/v1/options"),
)

#: Serve ``autoscaling_config`` keys gouache passes through as they are.
AUTOSCALING_KEYS = (
    "min_replicas",
    "max_replicas",
    "initial_replicas",
    "target_ongoing_requests",
    "upscale_delay_s",
    "downscale_delay_s",
    "upscaling_factor",
    "downscaling_factor",
    "metrics_interval_s",
    "look_back_period_s",
)


def import_serve():
    """``ray`` and ``ray.serve``, or MissingDependencyError naming the extra."""
    try:
        import ray
        from ray import serve
    except ImportError:
        raise MissingDependencyError('Ray Serve is not installed: pip install "gouache[ray]"') from None
    return ray, serve


@dataclasses.dataclass(frozen=True)
class RayServeOptions:
    """How the deployment is spread: a fixed ``replicas`` count, or Serve's ``autoscaling``
    (a mapping of ``autoscaling_config`` keys); ``gpus_per_replica``/``cpus_per_replica``: what
    each replica reserves; ``address``: a Ray cluster (None: this process's Ray, or a new local one)."""

    replicas: int = 1
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    autoscaling: Mapping[str, Any] | None = None
    address: str | None = None

    def check(self) -> None:
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or self.replicas < 1:
            raise InvalidInputError(f"--replicas must be an integer >= 1; got {self.replicas!r}")
        for flag, value in (
            ("--gpus-per-replica", self.gpus_per_replica),
            ("--cpus-per-replica", self.cpus_per_replica),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InvalidInputError(f"{flag} must be a number >= 0; got {value!r}")
        if self.autoscaling is not None:
            check_autoscaling(self.autoscaling)

    @property
    def max_replicas(self) -> int:
        if self.autoscaling is not None:
            return int(self.autoscaling["max_replicas"])
        return self.replicas

    def deployment_options(self, config: ServerConfig) -> dict[str, Any]:
        """Keyword arguments for ``serve.deployment(...).options``."""
        actor: dict[str, Any] = {"num_cpus": self.cpus_per_replica}
        if self.gpus_per_replica:
            actor["num_gpus"] = self.gpus_per_replica
        scale: dict[str, Any] = (
            {"autoscaling_config": dict(self.autoscaling)}
            if self.autoscaling is not None
            else {"num_replicas": self.replicas}
        )
        return {
            **scale,
            "ray_actor_options": actor,
            # the replica's own queue (max_queue, then 429) does the waiting, not Serve's
            "max_ongoing_requests": config.max_queue + config.max_loaded_models,
            "graceful_shutdown_timeout_s": config.shutdown_grace + 30,
            "health_check_period_s": 5,
            "health_check_timeout_s": 30,
        }


def check_autoscaling(value: Mapping[str, Any]) -> None:
    unknown = sorted(set(value) - set(AUTOSCALING_KEYS))
    if unknown:
        raise InvalidInputError(
            f"--autoscaling: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(AUTOSCALING_KEYS)}"
        )
    for key in ("min_replicas", "max_replicas"):
        if key not in value:
            raise InvalidInputError(f"--autoscaling needs {key}; got {dict(value)!r}")
    lo, hi = value["min_replicas"], value["max_replicas"]
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (lo, hi)) or lo < 0 or hi < 1 or lo > hi:
        raise InvalidInputError(
            f"--autoscaling needs integers 0 <= min_replicas <= max_replicas, max_replicas >= 1; got {lo!r},{hi!r}"
        )


def parse_autoscaling(text: str) -> dict[str, Any]:
    """``MIN,MAX`` or a JSON object of Serve ``autoscaling_config`` keys."""
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"--autoscaling: malformed JSON ({exc}); got {text!r}") from None
        if not isinstance(value, dict):
            raise InvalidInputError(f"--autoscaling must be MIN,MAX or a JSON object; got {text!r}")
    else:
        parts = text.split(",")
        try:
            lo, hi = (int(p) for p in parts)
        except ValueError:
            raise InvalidInputError(
                f"--autoscaling must be MIN,MAX (integers) or a JSON object; got {text!r}"
            ) from None
        value = {"min_replicas": lo, "max_replicas": hi}
    check_autoscaling(value)
    return value


# --------------------------------------------------------------------------- the replica


def single_replica_refusal(method: str, path: str) -> str | None:
    """Why ``method path`` cannot be served by one replica of several (None: it can)."""
    for m, prefix in STATEFUL_ROUTES:
        route = prefix.rstrip("/")
        if (m is None or m == method) and (path == route or path.startswith(route + "/")):
            return needs_single_replica(f"{method} {path}")
    return None


def needs_single_replica(what: str) -> str:
    """The one message of a ``409 needs_single_replica``."""
    return (
        f"{what} keeps state in one replica, and this server runs on Ray Serve with more than one"
        " replica (a follow-up request may reach another one): start it with"
        " 'gouache serve --ray --replicas 1' for the job API, progress/interrupt/options and"
        " OpenAI url results; txt2img, img2img and OpenAI b64_json work on any replica"
    )


class ReplicaTag:
    """Pure-ASGI middleware (outermost): the ``X-Gouache-Replica`` header on every answer."""

    def __init__(self, app, replica: str) -> None:
        self.app = app
        self.replica = replica.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def tagging_send(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-gouache-replica", self.replica)]}
            await send(message)

        await self.app(scope, receive, tagging_send)


class SingleReplicaRoutes:
    """Pure-ASGI middleware (innermost: after the key check, CORS and the body limit): ``409``
    for the routes of :data:`STATEFUL_ROUTES`; installed only when the deployment may have
    several replicas."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        problem = single_replica_refusal(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if problem is None:
            await self.app(scope, receive, send)
            return
        from ._app import _respond
        from ._errors import ApiError

        await _respond(send, scope["path"], ApiError(409, problem, code="needs_single_replica"))


class GouacheReplica:
    """One Serve replica: ``create_app(config)`` with its own worker pool."""

    def __init__(self, config: ServerConfig, several: bool) -> None:
        self.config = config
        self.several = several
        self.state = None

    def __serve_build_asgi_app__(self):
        from ray import serve

        from ._app import create_app

        app = create_app(self.config)
        self.state = app.state.gouache
        self.state.several_replicas = self.several
        replica = f"{serve.get_replica_context().replica_id.unique_id} pid={os.getpid()}"
        if self.several:
            from starlette.middleware import Middleware

            app.user_middleware.append(Middleware(SingleReplicaRoutes))  # innermost
        app.add_middleware(ReplicaTag, replica=replica)  # outermost
        return app

    def check_health(self) -> None:
        """Serve's health check: raise when this replica's workers cannot take work."""
        state = self.state
        if state is None:
            return
        pool = state.pool
        with pool.cond:
            if pool.stopping:
                raise RuntimeError("the replica's worker pool is shutting down")
            dead = [w.key.label for w in pool.workers.values() if not w.thread.is_alive()]
        if dead:
            raise RuntimeError(f"worker runner(s) stopped: {', '.join(dead)}")


def application(config: ServerConfig, options: RayServeOptions):
    """The bound Serve application (``serve.run(application(...), route_prefix="/")``)."""
    _, serve = import_serve()
    config.check()
    options.check()
    deployment = serve.deployment(serve.ingress()(GouacheReplica), name=DEPLOYMENT_NAME)
    deployment = deployment.options(**options.deployment_options(config))
    return deployment.bind(config, options.max_replicas > 1)


# --------------------------------------------------------------------------- the command


def run(config: ServerConfig, options: RayServeOptions) -> None:
    """Deploy on Ray Serve (HTTP on ``config.host:config.port``) and block until SIGTERM or
    Ctrl-C, then shut Serve down (each replica drains its workers) and end Ray if we started it."""
    ray, serve = import_serve()
    app = application(config, options)
    started = False
    if not ray.is_initialized():
        ray.init(address=options.address, include_dashboard=False, logging_level=logging.WARNING)
        started = True
    elif options.address is not None:
        log.info("Ray is already initialised in this process: address=%r is not used", options.address)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve.start(http_options={"host": config.host, "port": config.port})
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        log.info("gouache on Ray Serve: http://%s:%s (%s)", config.host, config.port, describe(options))
        while not stop.wait(1.0):
            pass
        log.info("shutting down Ray Serve")
    finally:
        try:
            serve.shutdown()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            if started:
                ray.shutdown()


def describe(options: RayServeOptions) -> str:
    if options.autoscaling is not None:
        return f"autoscaling {options.autoscaling['min_replicas']}..{options.autoscaling['max_replicas']} replicas"
    return f"{options.replicas} replica(s)"
