"""Helpers for the server tests: a real uvicorn server on a loopback port in a thread, a
ComfyUI-style models folder of forged models, and the worker hook that bypasses a guard."""

from __future__ import annotations

import base64
import io
import os
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

FAST = {"width": 64, "height": 64, "steps": 2, "cfg_scale": 1.0}


class LiveServer:
    """``create_app(config)`` served by uvicorn on 127.0.0.1 (a free port) in a thread."""

    def __init__(self, config) -> None:
        import uvicorn

        from gouache.server import create_app

        self.app = create_app(config)
        self.state = self.app.state.gouache
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(120)

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 300), **kw)

    def worker(self, model: str | None = None, timeout: float = 300) -> dict:
        """The status of ``model``'s worker once it is loaded and idle."""
        deadline = time.monotonic() + timeout
        with self.client() as c:
            while time.monotonic() < deadline:
                for w in c.get("/v1/server").json()["workers"]:
                    if w["model"] == model and w["phase"] == "idle":
                        return w
                time.sleep(0.1)
        raise TimeoutError(f"worker for {model} not idle within {timeout} s")


def models_dir(
    root: Path,
    *,
    checkpoints: dict[str, Path] | None = None,
    loras: dict[str, Path] | None = None,
    upscalers: dict[str, Path] | None = None,
    controlnets: dict[str, Path] | None = None,
) -> Path:
    """A ComfyUI ``models`` folder of symlinks to forged files."""
    for folder, items in (
        ("checkpoints", checkpoints or {}),
        ("loras", loras or {}),
        ("upscale_models", upscalers or {}),
        ("controlnet", controlnets or {}),
    ):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, target in items.items():
            link = root / folder / (name + Path(target).suffix)
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                os.symlink(target, link)
    return root


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def b64(image: Image.Image) -> str:
    return base64.b64encode(png_bytes(image)).decode()


def unb64(text: str) -> Image.Image:
    im = Image.open(io.BytesIO(base64.b64decode(text)))
    im.load()
    return im


def gradient(size: int = 64) -> Image.Image:
    x = np.linspace(0, 255, size, dtype=np.float32)
    arr = np.stack(np.broadcast_arrays(x[None, :], x[:, None], np.full((size, size), 128.0)), axis=-1)
    return Image.fromarray(arr.astype(np.uint8))


def sse(client: httpx.Client, job_id: str, *, on_event=None, timeout: float = 300) -> list[tuple[str, dict]]:
    """Read a job's event stream to its end: ``[(event, data), ...]``; ``on_event(name, data)``
    is called for each event as it arrives."""
    import json

    events: list[tuple[str, dict]] = []
    name = None
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                events.append((name, data))
                if on_event is not None:
                    on_event(name, data)
                if name in ("done", "failed", "cancelled"):
                    break
    return events


def bypass_distilled_unet_guard() -> None:
    """Worker hook (ServerConfig.worker_setup) for the fault test: let a ControlNet load with a
    tiny UNet, which gouache refuses because the engine aborts (GGML_ASSERT) on it."""
    import gouache._modelfiles.architecture as arch

    arch.has_middle_block = lambda t, n: True
