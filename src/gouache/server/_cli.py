"""The ``gouache serve`` command (registered by ``gouache.cli``); argparse only at import time,
so ``gouache --help`` works without the ``server`` extra."""

from __future__ import annotations

import argparse
import os


def add_parser(subparsers, parent: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add ``serve`` to the CLI's subcommands."""
    p = subparsers.add_parser(
        "serve",
        parents=[parent] if parent is not None else [],
        help="run a local server: A1111 API, OpenAI Images API, job API, web page",
        description='Serve models over HTTP. Needs: pip install "gouache[server]".',
    )
    p.add_argument("--model", metavar="PATH|NAME", help="default model: a file, or a name found in --models-dir")
    p.add_argument(
        "--models-dir",
        metavar="DIR",
        nargs="+",
        action="extend",
        default=[],
        help="ComfyUI/AUTOMATIC1111 folder (or its models/ folder, or a folder of checkpoints); repeatable",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860, as AUTOMATIC1111)")
    p.add_argument(
        "--api-key",
        metavar="KEY",
        default=os.environ.get("GOUACHE_API_KEY"),
        help="require 'Authorization: Bearer KEY' on every route but / (default: $GOUACHE_API_KEY)",
    )
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without --api-key")
    p.add_argument("--engine", default="auto", choices=["auto", "sdcpp", "torch"], help="engine for every model")
    p.add_argument("--vae", metavar="PATH", help="VAE file used with every model")
    p.add_argument("--taesd", metavar="PATH", help="tiny autoencoder used with every model (fast decode)")
    p.add_argument("--threads", default="auto", help="CPU threads per worker ('auto' = physical cores)")
    p.add_argument("--max-queue", type=int, default=32, metavar="N", help="jobs that may wait (more: 429)")
    p.add_argument(
        "--max-loaded-models",
        type=int,
        default=1,
        metavar="N",
        help="models kept loaded at once, each in its own worker process (default 1)",
    )
    p.add_argument("--idle-unload", type=float, metavar="SECONDS", help="unload a model idle this long")
    p.add_argument(
        "--cors",
        metavar="ORIGIN",
        action="append",
        default=[],
        help="allow browser calls from ORIGIN (e.g. http://localhost:3000); repeatable; off by default",
    )
    p.add_argument("--output-dir", metavar="DIR", help="keep every result here (default: a temporary folder)")
    p.add_argument("--result-ttl", type=float, default=3600.0, metavar="SECONDS", help="keep finished jobs this long")
    p.add_argument(
        "--url-ttl", type=float, default=3600.0, metavar="SECONDS", help="serve OpenAI 'url' results this long"
    )
    p.add_argument(
        "--shutdown-grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="at SIGTERM/Ctrl-C, running jobs get this long to finish before they are cancelled",
    )
    r = p.add_argument_group(
        "Ray Serve (needs gouache[ray]; with more than one replica the job API, progress/interrupt/options"
        " and OpenAI url results answer 409: use --replicas 1 for them)"
    )
    r.add_argument("--ray", action="store_true", help="serve as a Ray Serve deployment (local Ray or --ray-address)")
    r.add_argument("--replicas", type=int, metavar="N", help="replicas, each with its own model worker (default 1)")
    r.add_argument("--gpus-per-replica", type=float, metavar="G", help="GPUs each replica reserves (default 0)")
    r.add_argument("--cpus-per-replica", type=float, metavar="C", help="CPUs each replica reserves (default 1)")
    r.add_argument(
        "--autoscaling",
        metavar="MIN,MAX|JSON",
        help="let Serve scale between MIN and MAX replicas, or a JSON object of Serve's autoscaling_config",
    )
    r.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join (e.g. ray://head:10001 or auto)")
    g = p.add_argument_group("limits (checked before any work; 4xx naming the limit)")
    g.add_argument("--max-body-mb", type=float, default=64.0, help="largest request body in MiB")
    g.add_argument("--max-pixels", type=int, default=2048 * 2048, help="largest width x height")
    g.add_argument("--max-side", type=int, default=4096, help="largest width or height")
    g.add_argument("--max-steps", type=int, default=150, help="most sampling steps")
    g.add_argument("--max-batch", type=int, default=16, help="most images per request")
    g.add_argument("--max-frames", type=int, default=129, help="most video frames")
    return p


def config_from_args(a: argparse.Namespace):
    from ._config import Limits, ServerConfig

    threads = a.threads if a.threads == "auto" else _positive_int("--threads", a.threads)
    limits = Limits(
        max_body_bytes=int(a.max_body_mb * 2**20),
        max_pixels=a.max_pixels,
        max_side=a.max_side,
        max_steps=a.max_steps,
        max_batch=a.max_batch,
        max_frames=a.max_frames,
    )
    return ServerConfig(
        model=a.model,
        models_dirs=tuple(a.models_dir),
        host=a.host,
        port=a.port,
        api_key=a.api_key,
        insecure=a.insecure,
        engine=a.engine,
        vae=a.vae,
        taesd=a.taesd,
        threads=threads,
        max_queue=a.max_queue,
        cors=tuple(a.cors),
        limits=limits,
        max_loaded_models=a.max_loaded_models,
        idle_unload=a.idle_unload,
        result_ttl=a.result_ttl,
        url_ttl=a.url_ttl,
        output_dir=a.output_dir,
        shutdown_grace=a.shutdown_grace,
    )


#: Ray Serve flags and their ``RayServeOptions`` fields.
RAY_FLAGS = {
    "replicas": "--replicas",
    "gpus_per_replica": "--gpus-per-replica",
    "cpus_per_replica": "--cpus-per-replica",
    "autoscaling": "--autoscaling",
    "ray_address": "--ray-address",
}


def ray_options_from_args(a: argparse.Namespace):
    """The Ray Serve options (None without ``--ray``; a Ray flag without ``--ray`` is refused)."""
    from ._gouache import InvalidInputError

    given = [flag for name, flag in RAY_FLAGS.items() if getattr(a, name, None) is not None]
    if not a.ray:
        if given:
            raise InvalidInputError(f"{', '.join(given)} need(s) --ray")
        return None
    from ._rayserve import RayServeOptions, parse_autoscaling

    if a.autoscaling is not None and a.replicas is not None:
        raise InvalidInputError("give --replicas or --autoscaling, not both")
    options = RayServeOptions(
        replicas=1 if a.replicas is None else a.replicas,
        gpus_per_replica=0.0 if a.gpus_per_replica is None else a.gpus_per_replica,
        cpus_per_replica=1.0 if a.cpus_per_replica is None else a.cpus_per_replica,
        autoscaling=None if a.autoscaling is None else parse_autoscaling(a.autoscaling),
        address=a.ray_address,
    )
    options.check()
    return options


def _positive_int(flag: str, value: str) -> int:
    from ._gouache import InvalidInputError

    try:
        n = int(value)
    except ValueError:
        raise InvalidInputError(f"{flag} must be 'auto' or a positive integer; got {value!r}") from None
    if n < 1:
        raise InvalidInputError(f"{flag} must be 'auto' or a positive integer; got {value!r}")
    return n


def run(a: argparse.Namespace) -> int:
    """Check the configuration (exit 2 with one line when it is refused), then serve until
    SIGTERM/Ctrl-C (exit 0)."""
    import logging

    config = config_from_args(a)
    config.check()
    ray_options = ray_options_from_args(a)

    if not a.quiet:
        logging.getLogger("gouache.server").setLevel(logging.INFO)

    if ray_options is not None:
        from ._rayserve import run as run_on_ray

        run_on_ray(config, ray_options)
        return 0
    from . import serve

    serve(config)
    return 0
