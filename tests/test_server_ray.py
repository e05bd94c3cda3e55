"""gouache serve on Ray Serve: a local Ray (2 CPUs) started here, two replicas of the real app,
each with its own model worker (sdcpp, forged tiny SD1 + TAESD, 64x64, 2 steps), reached
through the real clients over loopback on a port chosen here.

* webuiapi txt2img and openai images.generate work, both replicas serve (distinct
  ``X-Gouache-Replica``) and give the same pixels for the same seed;
* per-replica state (job API, progress, OpenAI ``url``) answers 409 naming ``--replicas 1``;
* killing one replica's actor while requests run fails at most the requests it held; later
  requests succeed, Serve replaces the replica, and the dead replica's worker process is gone;
* bad flags exit 2 with one line naming them.
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import logging
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import openai
import psutil
import pytest
import ray  # the test extra installs gouache[ray]
import webuiapi
from ray import serve

from gouache import InvalidInputError  # noqa: E402
from gouache.server import ServerConfig  # noqa: E402
from gouache.server._rayserve import (  # noqa: E402
    APP_NAME,
    DEPLOYMENT_NAME,
    RayServeOptions,
    application,
    parse_autoscaling,
    single_replica_refusal,
)
from gouache.testing import forge  # noqa: E402

from .server_helpers import FAST, unb64  # noqa: E402

REPLICA_PREFIX = f"SERVE_REPLICA::{APP_NAME}#{DEPLOYMENT_NAME}#"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_cli_serve_ray_with_one_replica_keeps_the_job_api_and_stops_on_sigterm(tmp_path):
    """``gouache serve --ray --replicas 1`` as a user runs it (its own local Ray): the job API
    works (one replica holds all state), SIGTERM shuts Serve and Ray down and exits 0."""
    port = free_port()
    log = tmp_path / "serve.log"
    argv = [sys.executable, "-m", "gouache", "serve", "--ray", "--replicas", "1", "--port", str(port)]
    argv += ["--model", str(forge.sd1_tiny()), "--taesd", str(forge.taesd()), "--engine", "sdcpp", "--threads", "1"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is not None or up(base), 300, "gouache serve --ray answering")
        assert proc.poll() is None, log.read_text()
        with httpx.Client(base_url=base, timeout=300) as c:
            r = c.post("/v1/jobs", json={"kind": "generate", "prompt": "a cube", "seed": 3, **FAST})
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            wait_for(lambda: c.get(f"/v1/jobs/{job_id}").json()["state"] not in ("queued", "running"), 300, "job")
            assert c.get(f"/v1/jobs/{job_id}").json()["state"] == "done"
            png = c.get(f"/v1/jobs/{job_id}/results/0")
            assert png.status_code == 200 and unb64_bytes(png.content).size == (64, 64)
            assert c.get("/sdapi/v1/progress").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(180) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def up(base: str) -> bool:
    try:
        return httpx.get(base + "/sdapi/v1/options", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def unb64_bytes(data: bytes):
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@pytest.fixture(scope="module")
def url():
    ray.init(num_cpus=2, object_store_memory=300 * 2**20, include_dashboard=False, logging_level=logging.WARNING)
    port = free_port()
    config = ServerConfig(model=str(forge.sd1_tiny()), taesd=str(forge.taesd()), engine="sdcpp", threads=1)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(application(config, RayServeOptions(replicas=2)), name=APP_NAME, route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def txt2img(url: str, seed: int) -> tuple[str, np.ndarray]:
    """One A1111 txt2img over httpx: (replica, pixels)."""
    r = httpx.post(f"{url}/sdapi/v1/txt2img", json={"prompt": "a red cube", "seed": seed, **FAST}, timeout=300)
    assert r.status_code == 200, r.text
    return r.headers["x-gouache-replica"], np.asarray(unb64(r.json()["images"][0]).convert("RGB"))


def concurrently(fn, n: int) -> list:
    """``fn(i)`` for i < n on n threads; each result, or the exception it raised."""
    with cf.ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(fn, i) for i in range(n)]
        out = []
        for f in futures:
            try:
                out.append(f.result(timeout=600))
            except Exception as exc:  # noqa: BLE001 - the test counts failures
                out.append(exc)
        return out


def replica_actors() -> list[str]:
    return sorted(
        a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(REPLICA_PREFIX)
    )


def running_replicas() -> int:
    app = serve.status().applications.get(APP_NAME)
    if app is None or DEPLOYMENT_NAME not in app.deployments:
        return 0
    return app.deployments[DEPLOYMENT_NAME].replica_states.get("RUNNING", 0)


@pytest.mark.slow
def test_two_replicas_serve_the_real_clients_with_the_same_pixels(url):
    host, port = url.removeprefix("http://").split(":")
    api = webuiapi.WebUIApi(host=host, port=int(port), sampler="Euler", steps=2)
    result = api.txt2img(prompt="a red cube", seed=7, width=64, height=64, cfg_scale=1.0, alwayson_scripts={})
    assert result.image.size == (64, 64) and np.asarray(result.image).std() > 0
    assert result.info["seed"] == 7

    oa = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)
    raw = oa.images.with_raw_response.generate(
        prompt="a blue sphere", size="64x64", extra_body={"steps": 2, "seed": 5, "cfg_scale": 1.0}
    )
    assert raw.headers["x-gouache-replica"]
    im = unb64(raw.parse().data[0].b64_json)
    assert im.size == (64, 64) and "Seed: 5" in im.info["parameters"]

    answers = concurrently(lambda i: txt2img(url, seed=11), 6)
    assert all(isinstance(a, tuple) for a in answers), answers
    replicas = {replica for replica, _ in answers}
    assert len(replicas) == 2, replicas  # both replicas served
    first = answers[0][1]
    assert all(np.array_equal(first, pixels) for _, pixels in answers)  # same seed, same image on each


@pytest.mark.slow
def test_state_kept_in_one_replica_is_refused_with_several(url):
    for method, path in (("GET", "/v1/jobs"), ("GET", "/sdapi/v1/progress"), ("POST", "/sdapi/v1/interrupt")):
        r = httpx.request(method, url + path, timeout=60)
        assert r.status_code == 409, (path, r.text)
        assert "--replicas 1" in r.text and r.headers["x-gouache-replica"]
    oa = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)
    with pytest.raises(openai.ConflictError, match="--replicas 1"):
        oa.images.generate(prompt="x", size="64x64", response_format="url", extra_body={"steps": 2})
    assert httpx.get(url + "/sdapi/v1/options", timeout=60).status_code == 200  # reading options is fine


def wait_for(predicate, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.5)


@pytest.mark.slow
def test_killing_a_replica_fails_only_its_requests_and_serve_replaces_it(url):
    wait_for(lambda: running_replicas() == 2, 300, "two replicas running")
    before = replica_actors()
    assert len(before) == 2, before
    victim = ray.get_actor(before[0], namespace="serve")
    victim_pid = ray.get(victim.__ray_call__.remote(lambda self: __import__("os").getpid()))
    victim_workers = [p.pid for p in psutil.Process(victim_pid).children(recursive=True)]
    assert victim_workers  # the replica owns its model worker process

    with cf.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(txt2img, url, 20 + i) for i in range(4)]
        time.sleep(1.0)  # the requests are in flight on both replicas
        done_before_kill = sum(f.done() for f in futures)
        ray.kill(victim, no_restart=True)
        results = []
        for f in futures:
            try:
                results.append(f.result(timeout=600))
            except Exception as exc:  # noqa: BLE001 - counted below
                results.append(exc)
    failed = [r for r in results if not isinstance(r, tuple)]
    survivors = {r[0] for r in results if isinstance(r, tuple)}
    # only the requests the dead replica held fail: the other replica's answers all arrive
    assert len(failed) <= 4 - done_before_kill and len(failed) < 4, results
    assert survivors, results

    after_kill = concurrently(lambda i: txt2img(url, 40 + i), 3)  # routed around the dead replica
    assert all(isinstance(a, tuple) for a in after_kill), after_kill

    wait_for(lambda: running_replicas() == 2 and before[0] not in replica_actors(), 300, "replica replaced")
    assert len(replica_actors()) == 2
    wait_for(lambda: not any(psutil.pid_exists(p) for p in victim_workers), 30, "dead replica's worker ended")


@pytest.mark.parametrize(
    ("flags", "named"),
    [(["--replicas", "0"], "--replicas"), (["--gpus-per-replica", "-1"], "--gpus-per-replica")],
)
def test_bad_ray_flags_exit_2_with_one_line(flags, named):
    p = subprocess.run(
        [sys.executable, "-m", "gouache", "serve", "--ray", *flags], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], p.stderr


def test_autoscaling_flag_passes_through_to_serve_and_refuses_bad_values():
    assert parse_autoscaling("1,4") == {"min_replicas": 1, "max_replicas": 4}
    value = parse_autoscaling('{"min_replicas": 0, "max_replicas": 3, "target_ongoing_requests": 2}')
    opts = RayServeOptions(autoscaling=value).deployment_options(ServerConfig())
    assert opts["autoscaling_config"] == value and "num_replicas" not in opts
    assert RayServeOptions(autoscaling=value).max_replicas == 3
    actor = RayServeOptions(replicas=2, gpus_per_replica=0.5).deployment_options(ServerConfig())["ray_actor_options"]
    assert actor == {"num_cpus": 1.0, "num_gpus": 0.5}
    for text, named in (("4,1", "min_replicas <= max_replicas"), ("2", "MIN,MAX"), ('{"maxi": 2}', "maxi")):
        with pytest.raises(InvalidInputError, match=named):
            parse_autoscaling(text)


def test_only_per_replica_state_is_refused():
    for method, path in (
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs/abc/events"),
        ("GET", "/v1/images/files/tok.png"),
        ("GET", "/sdapi/v1/progress"),
        ("POST", "/sdapi/v1/interrupt"),
        ("POST", "/sdapi/v1/skip"),
        ("POST", "/sdapi/v1/options"),
    ):
        assert "--replicas 1" in single_replica_refusal(method, path), path
    for method, path in (
        ("POST", "/sdapi/v1/txt2img"),
        ("POST", "/sdapi/v1/img2img"),
        ("GET", "/sdapi/v1/options"),
        ("POST", "/v1/images/generations"),
        ("GET", "/v1/server"),
        ("GET", "/v1/jobsx"),
    ):
        assert single_replica_refusal(method, path) is None, path
