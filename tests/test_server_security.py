"""Security defaults of gouache serve: loopback by default, an API key for anything else,
constant-time key check, names instead of paths, body limit, CORS off unless asked."""

from __future__ import annotations

import subprocess
import sys

import fastapi  # noqa: F401  (the test extra installs the server extra)
import httpx
import pytest

import gouache as g

from .server_helpers import LiveServer, b64, gradient, models_dir

KEY = "correct horse battery staple"


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_model):
    from gouache.testing import forge

    return models_dir(
        tmp_path_factory.mktemp("models"), checkpoints={"tiny": tiny_model}, loras={"ink": forge.lora_sd1_tiny()}
    )


@pytest.fixture(scope="module")
def live(root, taesd_model):
    from gouache.server import Limits, ServerConfig

    config = ServerConfig(
        models_dirs=(root,),
        model="tiny",
        api_key=KEY,
        preload=False,
        threads=1,
        limits=Limits(max_body_bytes=2**20),
        cors=("http://allowed.example",),
    )
    with LiveServer(config) as server:
        yield server


def authed(live) -> httpx.Client:
    return live.client(headers={"Authorization": f"Bearer {KEY}"})


def test_public_address_without_key_is_refused():
    from gouache.server import ServerConfig, create_app

    for host in ("0.0.0.0", "192.168.1.10", "::"):
        with pytest.raises(g.InvalidInputError, match="without an API key"):
            create_app(ServerConfig(host=host, preload=False))
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        ServerConfig(host=host).check()
    ServerConfig(host="0.0.0.0", api_key=KEY).check()
    ServerConfig(host="0.0.0.0", insecure=True).check()
    with pytest.raises(g.InvalidInputError, match="at least 8"):
        ServerConfig(api_key="short").check()


def test_cli_refuses_public_address_without_key():
    res = subprocess.run(
        [sys.executable, "-m", "gouache", "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert "--api-key" in res.stderr and "--insecure" in res.stderr and "0.0.0.0" in res.stderr


def test_every_route_but_the_page_needs_the_key(live):
    with live.client() as anon:
        assert anon.get("/").status_code == 200
        for method, path in (
            ("GET", "/sdapi/v1/sd-models"),
            ("GET", "/v1/models"),
            ("GET", "/v1/server"),
            ("POST", "/v1/jobs"),
            ("POST", "/sdapi/v1/txt2img"),
            ("GET", "/docs"),
            ("GET", "/openapi.json"),
            ("GET", "/v1/jobs/x/events"),
            ("POST", "/v1/images/generations"),
        ):
            r = anon.request(method, path)
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers["www-authenticate"].startswith("Bearer")
    with live.client(headers={"Authorization": "Bearer wrong key, same length!"}) as wrong:
        r = wrong.get("/v1/models")
        assert r.status_code == 401 and r.json()["error"]["message"] == "wrong API key"
        r = wrong.get("/sdapi/v1/sd-models")
        assert r.status_code == 401 and r.json()["detail"] == "wrong API key"  # A1111's shape there
    with authed(live) as ok:
        assert [m["id"] for m in ok.get("/v1/models").json()["data"]] == ["tiny"]
        assert "/sdapi/v1/txt2img" in ok.get("/openapi.json").json()["paths"] and ok.get("/docs").status_code == 200
    with live.client(auth=("anyone", KEY)) as basic:  # A1111 clients send HTTP Basic
        assert basic.get("/sdapi/v1/sd-models").status_code == 200


@pytest.mark.parametrize(
    "name",
    [
        "../tiny",
        "/root/.cache/gouache/forge/x.safetensors",
        "C:\\models\\x.ckpt",
        "checkpoints/../../etc/passwd",
        "~/x.safetensors",
    ],
)
def test_paths_in_model_names_are_refused(live, name):
    with authed(live) as c:
        checks = [
            c.post("/sdapi/v1/options", json={"sd_model_checkpoint": name}),
            c.post("/sdapi/v1/txt2img", json={"prompt": "x", "override_settings": {"sd_model_checkpoint": name}}),
            c.post("/v1/images/generations", json={"prompt": "x", "model": name}),
            c.post("/v1/jobs", json={"kind": "generate", "prompt": "x", "model": name}),
            c.post("/sdapi/v1/txt2img", json={"prompt": f"x <lora:{name}:1>"}),
            c.post("/v1/jobs", json={"kind": "upscale", "image": b64(gradient(8)), "upscaler": name}),
        ]
        for r in checks:
            assert r.status_code in (400, 422), (r.request.url, r.text)
            if "bad LoRA weight" not in r.text:  # "<lora:C:\\...:1>" already fails to parse as a tag
                assert "not a model name" in r.text and "paths" in r.text, r.text
        status = c.get("/v1/server").json()
        assert status["workers"] == [] and status["queued"] == 0  # nothing was started


def test_oversize_body_is_413_naming_the_limit(live):
    big = {"prompt": "x", "init_images": ["A" * (2 * 2**20)]}
    with authed(live) as c:
        r = c.post("/sdapi/v1/img2img", json=big)
        assert r.status_code == 413 and "max_body_bytes=1048576" in r.json()["detail"]
        r = c.post("/v1/jobs", json={"kind": "upscale", "image": "A" * (2 * 2**20), "upscaler": "Lanczos"})
        assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]["message"]

        def chunks():  # no Content-Length: counted as it arrives
            for _ in range(40):
                yield b"A" * 65536

        r = c.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.get("/v1/server").status_code == 200


def test_cors_only_for_the_named_origin(live, root):
    with live.client() as c:
        pre = c.options(
            "/v1/models",
            headers={
                "Origin": "http://allowed.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "http://allowed.example"
        other = c.options(
            "/v1/models", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"}
        )
        assert "access-control-allow-origin" not in other.headers
    from gouache.server import ServerConfig

    with LiveServer(ServerConfig(models_dirs=(root,), preload=False)) as plain, plain.client() as c:
        r = c.get("/v1/models", headers={"Origin": "http://allowed.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
