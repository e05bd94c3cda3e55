"""Faults never take the server down: a worker killed mid-job, an engine abort, a full queue,
bad input of every kind (4xx naming the field, never a 500, never a stuck job)."""

from __future__ import annotations

import os
import signal
import time

import fastapi  # noqa: F401  (the test extra installs the server extra)
import numpy as np
import pytest
from PIL import Image

from gouache.testing import forge

from .server_helpers import FAST, LiveServer, b64, gradient, models_dir, sse

LONG = {"kind": "generate", "prompt": "long", "width": 64, "height": 64, "steps": 150, "cfg_scale": 1.0}


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_model, taesd_model):
    from gouache.server import Limits, ModelSpec, ServerConfig

    root = models_dir(tmp_path_factory.mktemp("models"), controlnets={"canny": forge.controlnet_sd1()})
    models = {
        "tiny": ModelSpec(model=tiny_model, taesd=taesd_model, engine="sdcpp"),  # sdcpp: its aborts are the subject
        "sd1": ModelSpec(model=forge.sd1(), engine="sdcpp"),
    }
    config = ServerConfig(
        models_dirs=(root,),
        models=models,
        model="tiny",
        threads=1,
        max_queue=1,
        max_loaded_models=2,
        limits=Limits(max_steps=150, max_batch=4, max_side=1024),
        worker_setup="tests.server_helpers:bypass_distilled_unet_guard",
    )
    with LiveServer(config) as server:
        server.worker("tiny")
        yield server


@pytest.fixture
def client(live):
    with live.client() as c:
        yield c


def wait_running(client, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] == "running" and job["step"] >= 1:
            return job
        time.sleep(0.05)
    raise TimeoutError(job)


def worker_pid(client, model: str = "tiny") -> int:
    return next(w["pid"] for w in client.get("/v1/server").json()["workers"] if w["model"] == model)


def test_sigkill_mid_job_fails_that_job_and_the_next_one_runs(client):
    job_id = client.post("/v1/jobs", json=LONG).json()["id"]
    wait_running(client, job_id)
    pid = worker_pid(client)
    os.kill(pid, signal.SIGKILL)
    events = sse(client, job_id)
    assert events[-1][0] == "failed"
    error = events[-1][1]["error"]
    assert error["kind"] == "crashed" and "SIGKILL" in error["message"] and "tiny" in error["message"]
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "next", "seed": 1, **FAST})
    assert r.status_code == 200 and len(r.json()["images"]) == 1
    assert worker_pid(client) != pid


def test_a1111_request_whose_worker_dies_answers_500_in_a1111_shape(client, live):
    import threading

    box = {}
    t = threading.Thread(
        target=lambda: box.setdefault(
            "r",
            client.post(
                "/sdapi/v1/txt2img",
                json={"prompt": "doomed", "width": 64, "height": 64, "steps": 150, "cfg_scale": 1.0},
            ),
        )
    )
    t.start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and client.get("/sdapi/v1/progress").json()["state"]["sampling_step"] < 1:
        time.sleep(0.05)
    os.kill(worker_pid(client), signal.SIGKILL)
    t.join(60)
    r = box["r"]
    assert r.status_code == 500 and "died" in r.json()["detail"] and r.json()["error"] == "ServerError"


def test_engine_abort_fails_one_job_and_the_server_survives(client):
    """ControlNet on a tiny UNet makes the engine abort (GGML_ASSERT); the worker runs with that
    guard bypassed (a test-only worker hook), so the abort really happens, in the worker."""
    r = client.post(
        "/v1/jobs",
        json={
            "kind": "generate",
            "prompt": "boom",
            "seed": 1,
            **FAST,
            "control": {"model": "canny", "image": b64(gradient())},
        },
    )
    assert r.status_code == 202
    events = sse(client, r.json()["id"])
    assert events[-1][0] == "failed"
    assert "SIGABRT" in events[-1][1]["error"]["message"]
    assert client.get("/v1/server").status_code == 200
    r = client.post("/v1/jobs", json={"kind": "generate", "prompt": "fine", "seed": 1, **FAST})
    assert sse(client, r.json()["id"])[-1][0] == "done"


def test_full_queue_answers_429_with_retry_after(client):
    running = client.post("/v1/jobs", json=LONG).json()["id"]
    wait_running(client, running)
    queued = client.post("/v1/jobs", json=LONG)
    assert queued.status_code == 202 and queued.json()["state"] == "queued"
    full = client.post("/v1/jobs", json=LONG)
    assert full.status_code == 429 and int(full.headers["Retry-After"]) >= 1
    assert "max_queue=1" in full.json()["error"]["message"] and full.json()["error"]["type"] == "rate_limit_error"
    a1111 = client.post("/sdapi/v1/txt2img", json={"prompt": "x", **FAST})
    assert a1111.status_code == 429 and "max_queue" in a1111.json()["detail"]
    assert client.post(f"/v1/jobs/{queued.json()['id']}/cancel").json()["state"] == "cancelled"
    assert client.post(f"/v1/jobs/{running}/cancel").status_code == 200
    assert sse(client, running)[-1][0] == "cancelled"


BAD_A1111 = [
    ("/sdapi/v1/txt2img", {"prompt": "x", "sampler_name": "Bogus"}, 422, "sampler_name"),
    ("/sdapi/v1/txt2img", {"prompt": "x", "scheduler": "Beta"}, 422, "scheduler"),
    ("/sdapi/v1/txt2img", {"prompt": "x", "width": 99999}, 422, "max_side"),
    ("/sdapi/v1/txt2img", {"prompt": "x", "steps": 151}, 422, "max_steps"),
    ("/sdapi/v1/txt2img", {"prompt": "x", "batch_size": 3, "n_iter": 2}, 422, "max_batch"),
    ("/sdapi/v1/txt2img", {"prompt": "x", "steps": "many"}, 422, "steps"),
    ("/sdapi/v1/txt2img", {"prompt": "x <lora:nowhere:1>"}, 400, "nowhere"),
    ("/sdapi/v1/txt2img", {"prompt": "x", "override_settings": {"sd_model_checkpoint": "other"}}, 400, "other"),
    ("/sdapi/v1/txt2img", {"prompt": "x", "restore_faces": True}, 422, "restore_faces"),
    ("/sdapi/v1/txt2img", {"prompt": "x", "alwayson_scripts": {"ADetailer": {"args": [True]}}}, 422, "adetailer"),
    ("/sdapi/v1/img2img", {"prompt": "x"}, 422, "init_images"),
    ("/sdapi/v1/img2img", {"prompt": "x", "init_images": ["%%%not base64%%%"]}, 422, "init_images[0]"),
    ("/sdapi/v1/img2img", {"prompt": "x", "init_images": [b64(gradient())], "mask": "aGVsbG8="}, 422, "mask"),
    ("/sdapi/v1/img2img", {"prompt": "x", "init_images": [b64(gradient())], "resize_mode": 7}, 422, "resize_mode"),
    ("/sdapi/v1/png-info", {"image": "aGVsbG8gd29ybGQ="}, 422, "not a readable image"),
    ("/sdapi/v1/extra-single-image", {"image": b64(gradient(8)), "upscaler_1": "Nope"}, 400, "upscaler_1"),
    ("/sdapi/v1/options", {"sd_model_checkpoint": "/etc/passwd"}, 400, "not a model name"),
    ("/sdapi/v1/options", {"no_such_option": 1}, 422, "no_such_option"),
]


@pytest.mark.parametrize(
    "path,body,status,fragment", BAD_A1111, ids=[f"{p.rsplit('/', 1)[1]}-{f}" for p, _, _, f in BAD_A1111]
)
def test_bad_a1111_input_is_a_4xx_naming_the_field(client, path, body, status, fragment):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert fragment.lower() in r.json()["detail"].lower(), r.json()


def test_bad_input_everywhere_never_500_never_stuck(client, live):
    cases = [
        (
            "/sdapi/v1/txt2img",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            "malformed JSON",
        ),
        ("/sdapi/v1/txt2img", {"content": b"[1, 2]", "headers": {"content-type": "application/json"}}, "JSON object"),
        ("/v1/images/generations", {"json": {"prompt": ""}}, "prompt"),
        ("/v1/images/generations", {"json": {"prompt": "x", "n": 99}}, "max_batch"),
        ("/v1/images/generations", {"json": {"prompt": "x", "response_format": "gif"}}, "response_format"),
        ("/v1/images/edits", {"data": {"prompt": "x"}}, "image"),
        (
            "/v1/images/edits",
            {"data": {"prompt": "x"}, "files": {"image": ("a.png", b"not a png", "image/png")}},
            "image",
        ),
        ("/v1/jobs", {"json": {"kind": "generate", "prompt": "x", "init_image": "###"}}, "init_image"),
        ("/v1/jobs", {"json": {"kind": "generate", "prompt": "x", "mask": b64(gradient())}}, "mask"),
        ("/v1/jobs", {"json": {"kind": "generate", "prompt": "x", "width": 2000, "height": 2000}}, "max_side"),
        (
            "/v1/jobs",
            {
                "json": {
                    "kind": "generate",
                    "prompt": "x",
                    "control": {"model": "canny", "image": "x", "preprocess": "depth"},
                }
            },
            "preprocess",
        ),
        (
            "/v1/jobs",
            {"json": {"kind": "upscale", "image": b64(gradient(8)), "upscaler": "Lanczos", "scale": 999}},
            "scale",
        ),
        ("/v1/jobs", {"json": {"kind": "video", "prompt": "x", "format": "avi"}}, "format"),
        ("/v1/jobs", {"json": {"kind": "video", "prompt": "x", "frames": 1000}}, "max_frames"),
        ("/v1/jobs", {"json": {"kind": "enhance", "image": b64(gradient()), "working_size": 100}}, "working_size"),
    ]
    for path, kw, fragment in cases:
        r = client.post(path, **kw)
        assert 400 <= r.status_code < 500, (path, kw, r.status_code, r.text)
        body = r.json()
        message = body["detail"] if path.startswith("/sdapi") else body["error"]["message"]
        assert fragment.lower() in message.lower(), (path, fragment, message)
    status = client.get("/v1/server").json()
    assert status["queued"] == 0 and all(w["current_job"] is None for w in status["workers"])


def test_worker_side_refusal_is_a_4xx(client):
    """What only the engine can check (video on an image model) comes back as a 4xx too."""
    r = client.post("/v1/jobs", json={"kind": "video", "prompt": "x", "width": 64, "height": 64, "frames": 5})
    events = sse(client, r.json()["id"])
    assert events[-1][0] == "failed"
    assert events[-1][1]["error"]["kind"] == "invalid" and "video" in events[-1][1]["error"]["message"]


def test_a1111_controlnet_unit_from_webuiapi(live):
    """sd-webui-controlnet's unit shape, as webuiapi sends it (canny preprocessor, model title
    with a hash); the control image steers the result."""
    import webuiapi

    host, port = live.url.removeprefix("http://").split(":")
    api = webuiapi.WebUIApi(host=host, port=int(port), sampler="Euler", steps=1)
    api.has_controlnet = True
    squares = Image.new("RGB", (64, 64), "black")
    squares.paste("white", (16, 16, 48, 48))
    outs = []
    for module, weight in (("none", 2.0), ("canny", 2.0), ("none", 0.0)):
        unit = webuiapi.ControlNetUnit(image=squares, module=module, model="canny [0123abcd]", weight=weight)
        res = api.txt2img(
            prompt="a house",
            seed=3,
            width=64,
            height=64,
            steps=1,
            cfg_scale=1.0,
            override_settings={"sd_model_checkpoint": "sd1"},
            controlnet_units=[unit],
            alwayson_scripts={},  # webuiapi writes the units into its shared default dict otherwise
        )
        assert res.image.size == (64, 64) and res.info["sd_model_name"] == "sd1"
        outs.append(np.asarray(res.image.convert("RGB"), dtype=np.int16))
    assert np.abs(outs[0] - outs[2]).mean() > 5  # the ControlNet acts (weight 2 vs 0, same seed)
    assert np.abs(outs[0] - outs[1]).mean() > 0.01  # the canny preprocessor changed the control image
    bad = webuiapi.ControlNetUnit(image=squares, module="openpose", model="canny")
    with pytest.raises(RuntimeError, match="openpose"):
        api.txt2img(
            prompt="x",
            override_settings={"sd_model_checkpoint": "sd1"},
            controlnet_units=[bad],
            alwayson_scripts={},
            **FAST,
        )


def test_idle_model_is_unloaded_and_reloaded_on_use(tiny_model, taesd_model):
    from gouache.server import ModelSpec, ServerConfig

    config = ServerConfig(models={"tiny": ModelSpec(model=tiny_model, taesd=taesd_model)}, threads=1, idle_unload=1.0)
    with LiveServer(config) as server, server.client() as c:
        first = server.worker("tiny")["pid"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and c.get("/v1/server").json()["workers"][0]["phase"] != "stopped":
            time.sleep(0.1)
        assert c.get("/v1/server").json()["workers"][0]["phase"] == "stopped"
        with pytest.raises(ProcessLookupError):
            os.kill(first, 0)
        r = c.post("/v1/jobs", json={"kind": "generate", "prompt": "again", **FAST})
        assert sse(c, r.json()["id"])[-1][0] == "done"
