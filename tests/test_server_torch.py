"""gouache serve on the torch engine (forged full SD1 + TAESD): cancel and skip stop the
running image at the next step without ending the worker process."""

from __future__ import annotations

import json
import threading
import time

import diffusers  # noqa: F401
import fastapi  # noqa: F401  (the test extra installs the server extra)
import pytest

from .server_helpers import LiveServer, models_dir, sse

LONG = {"prompt": "long", "width": 64, "height": 64, "steps": 150, "cfg_scale": 1.0}


@pytest.fixture(scope="module")
def live(tmp_path_factory, full_model, taesd_model):
    from gouache.server import ServerConfig

    root = models_dir(tmp_path_factory.mktemp("models"), checkpoints={"sd1": full_model})
    config = ServerConfig(models_dirs=(root,), model="sd1", taesd=taesd_model, engine="torch", threads=1)
    with LiveServer(config) as server:
        server.worker("sd1")
        yield server


@pytest.fixture
def client(live):
    with live.client() as c:
        yield c


def pid(client) -> int:
    return client.get("/v1/server").json()["workers"][0]["pid"]


def test_generation_on_torch(client):
    r = client.post(
        "/sdapi/v1/txt2img",
        json={"prompt": "a cube", "seed": 3, "width": 64, "height": 64, "steps": 2, "cfg_scale": 1.0},
    )
    assert r.status_code == 200
    info = json.loads(r.json()["info"])
    assert info["extra_generation_params"]["Engine"] == "torch" and info["all_seeds"] == [3]


def cancel_at_step(client, job_id: str, step: int) -> tuple[list, float]:
    """Follow the job; cancel at ``step``; ``(events, seconds from the cancel to the end)``."""
    stamps: dict = {}

    def on_event(name, data):
        if name == "progress" and data["step"] >= step and "t" not in stamps:
            stamps["t"] = time.monotonic()
            client.post(f"/v1/jobs/{job_id}/cancel")

    events = sse(client, job_id, on_event=on_event)
    return events, time.monotonic() - stamps["t"]


def test_cancel_stops_within_a_second(client):
    job_id = client.post("/v1/jobs", json={"kind": "generate", **LONG}).json()["id"]
    events, seconds = cancel_at_step(client, job_id, 1)
    assert events[-1][0] == "cancelled" and seconds < 1.0, seconds
    assert client.get(f"/v1/jobs/{job_id}").json()["step"] < 150


@pytest.fixture
def patient(live, monkeypatch):
    """Give the per-step interrupt all the time it needs (a full SD1 step on a busy 2-core
    machine can take longer than the 1 s the fallback would allow), to see it work alone."""
    import dataclasses

    monkeypatch.setattr(live.state.pool, "config", dataclasses.replace(live.state.pool.config, cancel_grace=60.0))


def test_cancel_is_a_per_step_interrupt_that_keeps_the_worker(client, live, patient):
    warm = client.post("/v1/jobs", json={"kind": "generate", **LONG, "steps": 1}).json()["id"]
    assert sse(client, warm)[-1][0] == "done"  # a live worker (an earlier cancel may have ended one)
    before = live.worker("sd1")["pid"]
    restarts = client.get("/v1/server").json()["workers"][0]["restarts"]
    job_id = client.post("/v1/jobs", json={"kind": "generate", **LONG}).json()["id"]
    events, seconds = cancel_at_step(client, job_id, 2)
    steps = [d["step"] for n, d in events if n == "progress"]
    assert events[-1][0] == "cancelled"
    assert max(steps) <= 4  # stopped at the next step or the one after
    assert pid(client) == before  # stopped by the per-step interrupt, not by ending the process
    assert client.get("/v1/server").json()["workers"][0]["restarts"] == restarts


def test_a1111_skip_moves_on_to_the_next_image(client, patient):
    box: dict = {}
    t = threading.Thread(
        target=lambda: box.setdefault(
            "r", client.post("/sdapi/v1/txt2img", json={**LONG, "steps": 4, "seed": 5, "batch_size": 2})
        )
    )
    t.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        st = client.get("/sdapi/v1/progress").json()["state"]
        if st["job_no"] == 0 and st["sampling_step"] >= 1:
            break
        time.sleep(0.05)
    assert client.post("/sdapi/v1/skip").json()["skipped"]
    t.join(300)
    info = json.loads(box["r"].json()["info"])
    assert box["r"].status_code == 200 and info["all_seeds"] == [6]  # the first image was skipped
