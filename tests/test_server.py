"""gouache serve on the real engine (sdcpp, forged tiny SD1 + TAESD), through the real clients
over loopback: webuiapi (A1111), openai (Images API), httpx (job API, Server-Sent Events)."""

from __future__ import annotations

import io
import threading
import time

import fastapi  # noqa: F401  (the test extra installs the server extra)
import httpx
import numpy as np
import openai
import pytest
import webuiapi
from PIL import Image

import gouache as g
from gouache.testing import forge

from .server_helpers import FAST, LiveServer, b64, gradient, models_dir, sse, unb64


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_model, taesd_model):
    from gouache.server import ServerConfig

    root = models_dir(
        tmp_path_factory.mktemp("models"),
        checkpoints={"tiny": tiny_model, "sdxs": forge.sdxs()},
        loras={"styles/ink": forge.lora_sd1_tiny()},
        upscalers={"esrgan-x4": forge.esrgan_x4()},
    )
    config = ServerConfig(
        models_dirs=(root,), model="tiny", taesd=taesd_model, max_loaded_models=1, threads=1, engine="sdcpp"
    )
    with LiveServer(config) as server:
        server.worker("tiny")
        yield server


@pytest.fixture
def api(live):
    host, port = live.url.removeprefix("http://").split(":")
    return webuiapi.WebUIApi(host=host, port=int(port), sampler="Euler", steps=2)


@pytest.fixture
def client(live):
    with live.client() as c:
        yield c


def infotext_of(image: Image.Image, tmp_path) -> dict:
    """Parse the PNG's infotext with gouache's public A1111 reader."""
    path = tmp_path / "out.png"
    path.write_bytes(png_bytes_with_info(image))
    return g.read_parameters(path)


def png_bytes_with_info(image: Image.Image) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", image.info["parameters"])
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


# --------------------------------------------------------------------------- A1111 (webuiapi)


def test_a1111_txt2img_batch_lora_tag_and_infotext(api, tmp_path):
    res = api.txt2img(prompt="a red cube <lora:ink:0.5>", seed=7, batch_size=2, **FAST)
    assert [im.size for im in res.images] == [(64, 64), (64, 64)]
    assert res.info["all_seeds"] == [7, 8]
    assert res.info["sd_model_name"] == "tiny"
    for im, seed in zip(res.images, (7, 8)):
        p = infotext_of(im, tmp_path)
        # as A1111 writes it: the prompt keeps its <lora:> tag, the LoRA is named in Lora hashes
        want = ("a red cube <lora:ink:0.5>", seed, 2, "euler", 64)
        assert (p["prompt"], p["seed"], p["steps"], p["sampler"], p["width"]) == want
        assert p["Lora hashes"].startswith("ink: ") and p["Model"] == "tiny"
    assert not np.array_equal(np.asarray(res.images[0]), np.asarray(res.images[1]))


def seed_dependence(a: Image.Image, b: Image.Image) -> tuple[float, float]:
    """Mean difference between two seeds' outputs in the kept (right) and repainted (left) parts."""
    d = np.abs(np.asarray(a.convert("RGB"), dtype=np.int16) - np.asarray(b.convert("RGB"), dtype=np.int16))
    return float(d[:, 40:].mean()), float(d[:, :24].mean())


def test_a1111_img2img_with_mask_repaints_only_the_mask(api):
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))  # repaint the left half
    res = api.img2img(
        images=[gradient()],
        mask_image=mask,
        mask_blur=0,
        inpainting_fill=1,
        denoising_strength=1.0,
        prompt="a red cube",
        seed=3,
        batch_size=2,
        **FAST,
    )
    assert [im.size for im in res.images] == [(64, 64), (64, 64)] and res.info["all_seeds"] == [3, 4]
    kept, repainted = seed_dependence(*res.images)
    assert kept < repainted / 4, (kept, repainted)
    assert res.info["denoising_strength"] == 1.0


def test_a1111_progress_during_a_job_then_interrupt(api, live):
    box: dict = {}

    def run():
        box["res"] = api.txt2img(prompt="slow", seed=1, width=64, height=64, steps=150, cfg_scale=1.0)
        box["returned"] = time.monotonic()

    t = threading.Thread(target=run)
    t.start()
    seen = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        p = api.get_progress()
        if p["state"]["sampling_step"] >= 1:
            seen = p
            break
        time.sleep(0.05)
    assert seen is not None, "no progress seen"
    assert 0 < seen["progress"] < 1 and seen["state"]["sampling_steps"] == 150 and seen["state"]["job_count"] >= 1
    assert seen["eta_relative"] > 0
    assert unb64(seen["current_image"]).size[0] > 0  # the live preview
    t0 = time.monotonic()
    assert api.interrupt()["interrupted"]
    t.join(30)
    assert box["returned"] - t0 < 1.0, box["returned"] - t0
    assert box["res"].info["interrupted"] is True and box["res"].images == []
    assert api.get_progress()["state"]["job_count"] == 0
    # the sdcpp worker was ended to stop it: the next job gets a new one
    res = api.txt2img(prompt="after", seed=2, **FAST)
    assert res.image.size == (64, 64)


def test_a1111_models_options_and_switch(api, live):
    titles = api.util_get_model_names()
    assert any(t.startswith("tiny.safetensors [") for t in titles) and any(t.startswith("sdxs") for t in titles)
    api.util_set_model("sdxs")
    assert api.util_get_current_model().startswith("sdxs.safetensors [")
    res = api.txt2img(prompt="switched", seed=1, width=64, height=64, steps=1, cfg_scale=1.0)
    assert res.info["sd_model_name"] == "sdxs"
    workers = {w["model"]: w for w in httpx.get(live.url + "/v1/server").json()["workers"]}
    assert workers["tiny"]["phase"] == "stopped"  # max_loaded_models=1: tiny was unloaded
    api.set_options({"sd_model_checkpoint": "tiny"})
    assert api.get_options()["sd_model_checkpoint"].startswith("tiny.safetensors")
    r = api.session.post(api.baseurl + "/options", json={"sd_model_checkpoint": "nope"})
    assert r.status_code == 400 and "nope" in r.json()["detail"] and "tiny" in r.json()["detail"]


def test_a1111_lists(api):
    assert "Euler a" in api.util_get_sampler_names()
    assert "karras" in api.util_get_scheduler_names()
    assert [lora["name"] for lora in api.get_loras()] == ["styles/ink"]
    assert "esrgan-x4" in [u["name"] for u in api.get_upscalers()]


def test_a1111_png_info_round_trip(api):
    res = api.txt2img(prompt="round trip, with comma", negative_prompt="blurry", seed=11, **FAST)
    info = api.png_info(res.image)
    assert info.info == res.image.info["parameters"]
    parsed = info.json["parameters"]
    assert parsed["prompt"] == "round trip, with comma" and parsed["negative_prompt"] == "blurry"
    assert parsed["seed"] == 11


def test_a1111_extra_single_image_esrgan(api):
    src = gradient(32)
    out = api.extra_single_image(src, upscaler_1="esrgan-x4", upscaling_resize=4).image
    assert out.size == (128, 128)
    half = api.extra_single_image(src, upscaler_1="Lanczos", upscaling_resize=1.5).image
    assert half.size == (48, 48)
    r = api.session.post(
        api.baseurl + "/extra-single-image",
        json={"image": b64(src), "upscaler_1": "../esrgan-x4", "upscaling_resize": 2},
    )
    assert r.status_code == 400 and "not a model name" in r.json()["detail"]


# --------------------------------------------------------------------------- OpenAI (openai client)


@pytest.fixture
def oa(live):
    return openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def test_openai_generate_b64_and_url(oa, live):
    r = oa.images.generate(
        prompt="a blue sphere", model="tiny", size="64x64", n=1, extra_body={"steps": 2, "seed": 5, "cfg_scale": 1.0}
    )
    im = unb64(r.data[0].b64_json)
    assert im.size == (64, 64) and "Seed: 5" in im.info["parameters"]
    r = oa.images.generate(
        prompt="a blue sphere",
        size="64x64",
        n=2,
        response_format="url",
        extra_body={"steps": 2, "seed": 5, "cfg_scale": 1.0},
    )
    assert len(r.data) == 2
    fetched = [Image.open(io.BytesIO(httpx.get(d.url).content)) for d in r.data]
    assert [f.size for f in fetched] == [(64, 64), (64, 64)]
    assert np.array_equal(np.asarray(fetched[0].convert("RGB")), np.asarray(im.convert("RGB")))  # same seed, same image
    assert "Seed: 6" in fetched[1].info["parameters"]
    store = live.state.store  # the links expire after url_ttl
    store.sweep(now=time.time() + live.state.config.url_ttl + 1)
    assert httpx.get(r.data[0].url).status_code == 404


def test_openai_edit_with_image_and_mask_file(oa, tmp_path):
    image = tmp_path / "image.png"
    gradient().save(image)
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 32, 64))  # transparent = edit
    mask_path = tmp_path / "mask.png"
    mask.save(mask_path)
    with open(image, "rb") as f, open(mask_path, "rb") as m:
        r = oa.images.edit(
            image=f,
            mask=m,
            prompt="a red cube",
            size="64x64",
            n=2,
            extra_body={"steps": 2, "seed": 4, "cfg_scale": 1.0},
        )
    a, b = (unb64(d.b64_json) for d in r.data)
    kept, repainted = seed_dependence(a, b)
    assert kept < repainted / 4, (kept, repainted)
    assert "Denoising strength: 1" in a.info["parameters"] and "Seed: 5" in b.info["parameters"]


def test_openai_models_and_error_shape(oa):
    assert {"tiny", "sdxs"} <= {m.id for m in oa.models.list()}
    with pytest.raises(openai.BadRequestError) as err:
        oa.images.generate(prompt="x", model="missing-model", size="64x64")
    body = err.value.body
    assert body["param"] == "model" and "missing-model" in body["message"] and "tiny" in body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        oa.images.generate(prompt="x", size="big")
    assert err.value.body["param"] == "size"


# --------------------------------------------------------------------------- job API (httpx)


def test_jobs_submit_stream_results(client):
    r = client.post(
        "/v1/jobs",
        json={
            "kind": "generate",
            "prompt": "a cube",
            "seed": 9,
            "steps": 3,
            "width": 64,
            "height": 64,
            "cfg_scale": 1.0,
            "batch": 2,
        },
    )
    assert r.status_code == 202 and r.json()["state"] in ("queued", "running")
    job_id = r.json()["id"]
    events = sse(client, job_id)
    names = [n for n, _ in events]
    assert names[-1] == "done"
    steps = [d["step"] for n, d in events if n == "progress" and d["step"]]
    assert steps and steps == sorted(steps) or len(set(steps)) > 1
    assert "preview" in names and names.count("result") == 2
    done = client.get(f"/v1/jobs/{job_id}").json()
    assert done["state"] == "done" and done["progress"] == 1 and [x["seed"] for x in done["results"]] == [9, 10]
    png = client.get(done["results"][1]["url"])
    assert png.headers["content-type"] == "image/png"
    im = Image.open(io.BytesIO(png.content))
    assert im.size == (64, 64) and "Seed: 10" in im.info["parameters"]
    assert client.get(f"/v1/jobs/{job_id}/results/5").status_code == 404


def test_jobs_cancel_mid_run_stops_within_a_second(client, live):
    r = client.post(
        "/v1/jobs",
        json={"kind": "generate", "prompt": "long", "steps": 150, **{k: v for k, v in FAST.items() if k != "steps"}},
    )
    job_id = r.json()["id"]
    stamps: dict = {}

    def on_event(name, data):
        if name == "progress" and data["step"] >= 1 and "cancel" not in stamps:
            stamps["cancel"] = time.monotonic()
            assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200

    events = sse(client, job_id, on_event=on_event)
    stopped = time.monotonic()
    assert events[-1][0] == "cancelled"
    assert stopped - stamps["cancel"] < 1.0, stopped - stamps["cancel"]
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "cancelled" and job["step"] < 150
    r = client.post("/v1/jobs", json={"kind": "generate", "prompt": "next", **FAST})
    assert sse(client, r.json()["id"])[-1][0] == "done"


def test_jobs_upscale_and_kept_for_the_ttl(client, live):
    r = client.post("/v1/jobs", json={"kind": "upscale", "image": b64(gradient(16)), "upscaler": "esrgan-x4"})
    job_id = r.json()["id"]
    assert sse(client, job_id)[-1][0] == "done"
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert (job["results"][0]["width"], job["results"][0]["height"]) == (64, 64)
    path = live.state.store.get(job_id).results[0].path
    assert path.is_file()
    store = live.state.store
    finished = store.get(job_id).finished
    store.sweep(now=finished + store.ttl - 1)  # not yet expired
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200 and path.is_file()
    assert store.sweep(now=finished + store.ttl + 1) >= 1
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404 and not path.exists()


def test_jobs_list_and_errors(client):
    assert (
        client.post("/v1/jobs", json={"kind": "generate", "prompt": "x", "sampler": "nope"}).json()["error"]["param"]
        == "sampler"
    )
    r = client.post("/v1/jobs", json={"kind": "paint", "prompt": "x"})
    assert r.status_code == 422 and "kind" in r.json()["error"]["message"]
    r = client.post("/v1/jobs", json={"kind": "generate", "prompt": "x", "frames": 5})
    assert r.status_code == 422 and r.json()["error"]["message"] == "frames: unknown field"
    assert client.get("/v1/jobs/nope").status_code == 404
    job_id = client.post(
        "/v1/jobs", json={"kind": "upscale", "image": b64(gradient(8)), "upscaler": "Lanczos", "scale": 2}
    ).json()["id"]
    assert sse(client, job_id)[-1][0] == "done"
    listing = client.get("/v1/jobs", params={"state": "done"}).json()["jobs"]
    assert job_id in [j["id"] for j in listing] and all(j["state"] == "done" for j in listing)
    assert listing[0]["results"][0]["width"] == 16


def test_jobs_enhance_keeps_the_alpha(client):
    """A gouache.enhance job: an RGBA view comes back at its size with its alpha unchanged."""
    view = gradient().convert("RGBA")
    alpha = Image.new("L", (64, 64), 0)
    alpha.paste(255, (8, 8, 56, 56))
    view.putalpha(alpha)
    depth = Image.fromarray(np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (64, 1)))
    r = client.post(
        "/v1/jobs",
        json={
            "kind": "enhance",
            "image": b64(view),
            "depth": b64(depth),
            "prompt": "a statue",
            "steps": 1,
            "strength": 0.5,
            "working_size": 64,
            "seed": 3,
        },
    )
    assert r.status_code == 202, r.text
    events = sse(client, r.json()["id"])
    assert events[-1][0] == "done", events[-1]
    out = Image.open(io.BytesIO(client.get(events[-1][1]["results"][0]["url"]).content))
    assert out.size == (64, 64) and out.mode == "RGBA"
    assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(alpha))


def test_a1111_resize_modes():
    from gouache.server._images import resize

    wide = Image.new("RGB", (80, 40), "red")
    wide.paste("blue", (0, 0, 20, 40))  # a blue band on the left quarter
    for mode in (0, 1, 2, 3):
        assert resize(wide, 64, 64, mode).size == (64, 64)
    cropped = np.asarray(resize(wide, 64, 64, 1))  # cover + centre crop: the left band is mostly cut
    filled = np.asarray(resize(wide, 64, 64, 2))  # fit inside, edges stretched into the bands
    assert cropped[32, 0, 0] > 200 and cropped[32, 63, 0] > 200
    assert filled[0, 0, 2] > 200 and filled[32, 63, 0] > 200 and filled[0, 32, 0] > 200
