"""``gouache serve`` as a command: graceful shutdown on SIGTERM and Ctrl-C (SIGINT to the
whole process group, as a terminal sends it): running jobs finish or are cancelled within
the grace period, the worker processes end, no half-written output is left."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import fastapi  # noqa: F401  (the test extra installs the server extra)
import httpx

from .server_helpers import sse


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(tmp_path, tiny_model, taesd_model, grace: float):
    port = free_port()
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gouache",
            "serve",
            "--model",
            str(tiny_model),
            "--taesd",
            str(taesd_model),
            "--port",
            str(port),
            "--threads",
            "1",
            "--output-dir",
            str(out),
            "--shutdown-grace",
            str(grace),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            workers = httpx.get(url + "/v1/server", timeout=5).json()["workers"]
            if workers and workers[0]["phase"] == "idle":
                return proc, url, out, workers[0]["pid"]
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError(proc.stdout.read())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def follow_then_signal(url: str, body: dict, send_signal) -> tuple[list, float]:
    """Submit, signal the server once the job runs, follow its events; ``(events, seconds
    from the signal to the job's end)``."""
    stamps: dict = {}
    with httpx.Client(base_url=url, timeout=300) as c:
        job_id = c.post("/v1/jobs", json=body).json()["id"]

        def on_event(name, data):
            if name == "progress" and data["step"] >= 1 and "t" not in stamps:
                stamps["t"] = time.monotonic()
                send_signal()

        events = sse(c, job_id, on_event=on_event)
    return events, time.monotonic() - stamps["t"]


def test_sigterm_lets_the_running_job_finish(tmp_path, tiny_model, taesd_model):
    proc, url, out, worker = serve(tmp_path, tiny_model, taesd_model, grace=120)
    body = {"kind": "generate", "prompt": "finish me", "width": 64, "height": 64, "steps": 6, "cfg_scale": 1.0}
    events, _ = follow_then_signal(url, body, lambda: proc.send_signal(signal.SIGTERM))
    assert events[-1][0] == "done" and len(events[-1][1]["results"]) == 1
    assert proc.wait(60) == 0
    assert not alive(worker)
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 1 and files[0].endswith(".png") and not files[0].startswith(".")


def test_ctrl_c_cancels_a_long_job_after_the_grace_period(tmp_path, tiny_model, taesd_model):
    proc, url, out, worker = serve(tmp_path, tiny_model, taesd_model, grace=1)
    body = {"kind": "generate", "prompt": "too long", "width": 64, "height": 64, "steps": 150, "cfg_scale": 1.0}
    events, seconds = follow_then_signal(url, body, lambda: os.killpg(proc.pid, signal.SIGINT))
    assert events[-1][0] == "cancelled"
    assert seconds < 1 + 1.0, seconds  # the grace period, then the cancel bound
    assert proc.wait(60) == 0
    assert not alive(worker)
    assert list(out.iterdir()) == []  # nothing half-written
