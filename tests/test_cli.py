"""The gouache command, run for real in a subprocess on forged models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from gouache.testing import forge

FAST = ["-W", "64", "-H", "64", "--steps", "2", "--cfg-scale", "1"]


def error_lines(stderr: str) -> list[str]:
    """The error report (progress bars are also on stderr)."""
    return [line for line in stderr.splitlines() if line.startswith("gouache:") or "Traceback" in line]


def gouache(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gouache", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def models(tiny_model, taesd_model):
    # sdcpp: the CLI's process model (an engine that cannot be cancelled, ended by Ctrl-C) is
    # what these tests hold; "auto" picks torch for tiny UNets (covered by tests/test_fast_path.py)
    return ["-m", str(tiny_model), "--taesd", str(taesd_model), "--engine", "sdcpp"]


def test_help_lists_every_subcommand():
    out = gouache("--help")
    assert out.returncode == 0
    for cmd in (
        "txt2img",
        "img2img",
        "inpaint",
        "controlnet",
        "edit",
        "upscale",
        "video",
        "convert",
        "info",
        "models",
        "pull",
        "enhance",
    ):
        assert cmd in out.stdout
    sub = gouache("txt2img", "--help").stdout
    for opt in (
        "--negative-prompt",
        "--sampler",
        "--scheduler",
        "--seed",
        "--batch",
        "--lora",
        "--hires-scale",
        "--cache",
        "--vae-tiling",
        "--offload-to-cpu",
        "--llm",
        "--llm-vision",
        "--flash-attention",
        "--overwrite",
        "--json",
        "--quiet",
    ):
        assert opt in sub, opt


@pytest.mark.slow
def test_txt2img_batch_json_numbered_and_no_overwrite(models, tmp_path):
    out = tmp_path / "cube.png"
    res = gouache("txt2img", *models, "a red cube", "-o", out, *FAST, "--batch", "2", "--seed", "7", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [o["seed"] for o in data["outputs"]] == [7, 8]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["cube-1.png", "cube-2.png"]
    with Image.open(tmp_path / "cube-2.png") as im:
        assert im.size == (64, 64) and "Seed: 8" in im.info["parameters"]
    before = (tmp_path / "cube-1.png").read_bytes()
    res = gouache("txt2img", *models, "a red cube", "-o", out, *FAST, "--batch", "2")
    assert res.returncode == 2 and "exists" in res.stderr and len(error_lines(res.stderr)) == 1
    assert (tmp_path / "cube-1.png").read_bytes() == before
    res = gouache("txt2img", *models, "a blue cube", "-o", out, *FAST, "--batch", "2", "--overwrite", "--quiet")
    assert res.returncode == 0 and (tmp_path / "cube-1.png").read_bytes() != before


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.size == (64, 64)
        return np.asarray(im.convert("RGB")).astype(np.int16)


@pytest.mark.slow
def test_img2img_uses_the_init_image(models, tmp_path):
    """Two init images, same seed: two different results (an init image dropped on the way to the
    engine would give the same txt2img image twice), and the strength is recorded."""
    inits = []
    for i in range(2):
        inits.append(tmp_path / f"init{i}.png")
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(inits[-1])
    for i, init in enumerate(inits):
        res = gouache(
            "img2img",
            *models,
            "-i",
            init,
            "--strength",
            "0.5",
            "x",
            "-o",
            tmp_path / f"a{i}.png",
            "--seed",
            "5",
            *FAST[:4],
            "--steps",
            "4",
            "--cfg-scale",
            "1",
        )
        assert res.returncode == 0, res.stderr
    assert np.abs(pixels(tmp_path / "a0.png") - pixels(tmp_path / "a1.png")).mean() > 1.0
    with Image.open(tmp_path / "a0.png") as im:
        assert "Denoising strength: 0.5" in im.info["parameters"]


@pytest.mark.slow
def test_inpaint_repaints_only_the_mask(models, tmp_path):
    """Two seeds (a batch): the white half of the mask changes with the seed, the black half keeps
    the init image (a mask dropped on the way would repaint everything; a dropped init image fails)."""
    init = tmp_path / "init.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(init)
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    res = gouache(
        "inpaint",
        *models,
        "-i",
        init,
        "--mask",
        tmp_path / "mask.png",
        "x",
        "-o",
        tmp_path / "b.png",
        "--batch",
        "2",
        "--seed",
        "1",
        *FAST[:4],
        "--steps",
        "3",
        "--cfg-scale",
        "1",
    )
    assert res.returncode == 0, res.stderr
    d = np.abs(pixels(tmp_path / "b-1.png") - pixels(tmp_path / "b-2.png")).mean(axis=2)
    kept, repainted = d[:, :16].mean(), d[:, 48:].mean()
    assert repainted > 5 * kept + 1, (kept, repainted)


@pytest.mark.slow
def test_controlnet_uses_the_control_image(full_model, tmp_path):
    """The same model, ControlNet and seed with and without a control image (Canny edges of a
    square): two different results (a control image dropped on the way to the engine would give
    the same image twice)."""
    control = np.zeros((64, 64, 3), np.uint8)
    control[16:48, 16:48] = 255
    Image.fromarray(control).save(tmp_path / "control.png")
    common = [
        "-m",
        full_model,
        "--control-net",
        forge.controlnet_sd1(),
        "x",
        "-W",
        "64",
        "-H",
        "64",
        "--steps",
        "1",
        "--cfg-scale",
        "1",
        "--seed",
        "2",
        "--engine",
        "sdcpp",
    ]
    res = gouache("txt2img", *common, "-o", tmp_path / "plain.png")
    assert res.returncode == 0, res.stderr
    res = gouache(
        "controlnet",
        *common,
        "--canny",
        "--control-image",
        tmp_path / "control.png",
        "--control-strength",
        "1.0",
        "-o",
        tmp_path / "controlled.png",
    )
    assert res.returncode == 0, res.stderr
    assert np.abs(pixels(tmp_path / "plain.png") - pixels(tmp_path / "controlled.png")).mean() > 0.5


def test_usage_errors_exit_2_with_one_line(models, tmp_path):
    res = gouache("txt2img", *models, "x", "-o", tmp_path / "o.png", *FAST, "--sampler", "bogus")
    assert res.returncode == 2 and "bogus" in res.stderr and "euler_a" in res.stderr
    assert len(error_lines(res.stderr)) == 1
    res = gouache("txt2img", "-m", tmp_path / "missing.safetensors", "x", "-o", tmp_path / "o.png")
    assert res.returncode == 2 and "not found" in res.stderr
    assert gouache("txt2img", "--no-such-option").returncode == 2
    assert not (tmp_path / "o.png").exists()


def test_runtime_error_exit_1_traceback_only_with_debug(tmp_path):
    from safetensors.numpy import save_file

    bogus = tmp_path / "bogus.safetensors"
    save_file({"nothing.weight": np.zeros((2, 2), np.float32)}, str(bogus))
    res = gouache("txt2img", "-m", bogus, "x", "-o", tmp_path / "o.png")
    assert res.returncode == 1 and "ModelLoadError" in res.stderr and "Traceback" not in res.stderr
    assert len(error_lines(res.stderr)) == 1
    res = gouache("txt2img", "-m", bogus, "x", "-o", tmp_path / "o.png", "--debug")
    assert res.returncode == 1 and "Traceback" in res.stderr


@pytest.mark.slow
def test_ctrl_c_stops_within_a_second_and_leaves_no_partial_file(models, tmp_path):
    """Ctrl-C while the first of 3 images samples: the CLI and its engine process are gone within
    a second of the signal, exit code 130, no file (partial or temporary) left.

    The engine runs on one thread (``--threads 1``) so that the CLI process has a core of its own
    to react on, as on any machine with an idle core; with both cores busy sampling, the stop
    measured the scheduler's latency under load, not the CLI (it failed 1 run in 5 that way).
    Sampling has started when the CLI draws the "image 1/3" bar, which it does on the engine's
    first step callback."""
    out = tmp_path / "slow.png"
    # fmt: off
    argv = [sys.executable, "-m", "gouache", "txt2img", *models, "x", "-o", str(out), "-W", "256", "-H", "256",
            "--steps", "200", "--cfg-scale", "1", "--batch", "3", "--threads", "1"]
    # fmt: on
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # stderr is read to its end by a thread, as a terminal would: a pipe left unread fills with
    # progress output and blocks the CLI in write(), which is a hang of the test, not of the CLI
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: proc.stderr.read1(4096), b"")), daemon=True)
    reader.start()
    deadline = time.time() + 120
    while time.time() < deadline and b"image 1/3" not in b"".join(chunks) and proc.poll() is None:
        time.sleep(0.02)
    assert b"image 1/3" in b"".join(chunks), b"".join(chunks)[-2000:]
    engine = [p for p in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(p.cmdline())]
    assert len(engine) == 1, "the CLI has no engine process"
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        states = {q.pid: q.status() for q in [psutil.Process(proc.pid), *engine] if q.is_running()}
        proc.kill()
        tail = b"".join(chunks)[-800:]
        pytest.fail(f"the CLI still runs 10 s after Ctrl-C (process states {states}); stderr: {tail}")
    elapsed = time.perf_counter() - t0
    reader.join(10)
    assert proc.returncode == 130
    assert elapsed < 1.0, elapsed
    assert not engine[0].is_running() or engine[0].status() == psutil.STATUS_ZOMBIE  # sampling stopped
    assert list(tmp_path.iterdir()) == []  # nothing partial, no temp files


@pytest.mark.slow
def test_upscale_convert_info(tmp_path, tiny_model):
    img = tmp_path / "small.png"
    Image.new("RGB", (16, 8), (10, 200, 30)).save(img)
    res = gouache("upscale", "-m", forge.esrgan_x4(), img, "-o", tmp_path / "big.png", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["width"] == 64
    res = gouache("convert", forge.taesd(), tmp_path / "taesd-f16.gguf", "--type", "f16", "--json")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "taesd-f16.gguf").stat().st_size > 0
    assert json.loads(res.stdout)["bytes"] == (tmp_path / "taesd-f16.gguf").stat().st_size
    res = gouache("info", tiny_model, "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["family"] in ("sd1_tiny", "sd1") and data["tensors"] > 100
    res = gouache("info", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["physical_cores"] >= 1


def test_models_lists_comfyui_layout(tmp_path):
    (tmp_path / "models" / "loras").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "loras" / "style.safetensors").write_bytes(b"x")
    (tmp_path / "models" / "checkpoints" / "base.gguf").write_bytes(b"x")
    res = gouache("models", tmp_path, "--json")
    assert res.returncode == 0, res.stderr
    kinds = {(e["kind"], e["name"]) for e in json.loads(res.stdout)}
    assert kinds == {("lora", "style"), ("checkpoint", "base")}


def test_pull_offline_fails_clearly(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    res = subprocess.run(
        [sys.executable, "-m", "gouache", "pull", "sd15"], capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 1
    assert len(error_lines(res.stderr)) == 1 and ("offline" in res.stderr.lower() or "gouache[hub]" in res.stderr)


@pytest.mark.slow
def test_pull_model_in_parts_from_cache(tmp_path):
    from gouache._modelfiles.catalog import MODEL_RECIPES, RECIPES

    cache = tmp_path / "cache"
    for recipe in MODEL_RECIPES["chroma"].values():
        repo, filename = RECIPES[recipe]
        repo_dir = cache / ("models--" + repo.replace("/", "--"))
        (repo_dir / "refs").mkdir(parents=True)
        (repo_dir / "refs" / "main").write_text("0" * 40)
        target = repo_dir / "snapshots" / ("0" * 40) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(recipe.encode())
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    res = subprocess.run(
        [sys.executable, "-m", "gouache", "pull", "chroma", "--dir", str(cache), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out["parts"]) == {"diffusion_model", "vae", "t5xxl"}
    assert all(Path(p).read_bytes() == MODEL_RECIPES["chroma"][k].encode() for k, p in out["parts"].items())
    assert out["options"].startswith("--diffusion-model ")


@pytest.mark.slow
def test_enhance_views_with_depth_folder(full_model, tmp_path):
    views, depth = tmp_path / "views", tmp_path / "depth"
    views.mkdir()
    depth.mkdir()
    for i in range(2):
        rgba = np.zeros((64, 96, 4), np.uint8)
        rgba[..., :3] = np.random.default_rng(i).integers(0, 256, (64, 96, 3), dtype=np.uint8)
        rgba[16:48, 24:72, 3] = 255
        Image.fromarray(rgba).save(views / f"view{i}.png")
        np.save(depth / f"view{i}.npy", np.tile(np.linspace(0, 1, 96, dtype=np.float32), (64, 1)))
    res = gouache(
        "enhance",
        views / "view0.png",
        views / "view1.png",
        "-m",
        full_model,
        "--controlnet",
        forge.controlnet_sd1(),
        "--depth",
        depth,
        "--engine",
        "sdcpp",
        "--working-size",
        "64",
        "--steps",
        "1",
        "--out",
        tmp_path / "out",
        "--json",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(res.stdout)
    assert data["failed"] == 0 and len(data["views"]) == 2
    with Image.open(tmp_path / "out" / "view1.png") as im:
        assert im.size == (96, 64) and im.mode == "RGBA"


def _env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GOUACHE_MODEL", "GOUACHE_MODEL_DIRS")}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), **extra}


def run_env(env: dict, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gouache", *map(str, args)], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.slow
def test_forge_first_run_and_prompt_option(tmp_path):
    res = gouache("txt2img", "-p", "a lighthouse", "--forge", "-o", tmp_path / "f.jpg", "--seed", "3")
    assert res.returncode == 0, res.stderr
    assert "random-weight" in res.stderr and "noise" in res.stderr
    from gouache import read_parameters

    r = read_parameters(tmp_path / "f.jpg")  # full metadata, also in JPEG
    assert (r["prompt"], r["width"], r["seed"]) == ("a lighthouse", 256, 3) and len(r["Model hash"]) == 10
    assert oct((tmp_path / "f.jpg").stat().st_mode & 0o777) != oct(0o600)


def test_prompt_once_and_forge_alone(models, tmp_path):
    res = gouache("txt2img", *models, "a", "-p", "b", "-o", tmp_path / "o.png")
    assert res.returncode == 2 and "not both" in res.stderr and len(error_lines(res.stderr)) == 1
    res = gouache("txt2img", *models, "-o", tmp_path / "o.png")
    assert res.returncode == 2 and "give a prompt" in res.stderr
    res = gouache("txt2img", *models, "--forge", "x", "-o", tmp_path / "o.png")
    assert res.returncode == 2 and "--forge replaces" in res.stderr


def test_no_model_offline_says_how_to_get_one(tmp_path):
    res = run_env(_env(tmp_path), "txt2img", "a lighthouse", "-o", tmp_path / "o.png")
    assert res.returncode == 2 and len(error_lines(res.stderr)) == 1, res.stderr
    assert "sd-turbo" in res.stderr and "--forge" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_default_model_from_env_and_model_dirs(tmp_path, tiny_model):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    (folder / "notes.safetensors").write_bytes(b"not a model")
    (folder / "mine.safetensors").symlink_to(tiny_model)
    args = ("txt2img", "a", *FAST, "--json", "-o")
    res = run_env(_env(tmp_path, GOUACHE_MODEL_DIRS=str(folder)), *args, tmp_path / "a.png")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["parameters"]["model"] == "mine"
    res = run_env(_env(tmp_path, GOUACHE_MODEL=str(forge.sdxs())), *args, tmp_path / "b.png")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["parameters"]["model"] == forge.sdxs().stem
    res = run_env(_env(tmp_path, GOUACHE_MODEL="no-such-model"), *args, tmp_path / "c.png")
    assert res.returncode == 2 and "catalog" in res.stderr


def test_unexpected_errors_are_one_line(tmp_path, monkeypatch, capsys):
    from gouache import cli

    def boom(a):
        raise RuntimeError("something odd\nsecond line")

    monkeypatch.setitem(cli._COMMANDS, "models", boom)
    assert cli.main(["models", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "gouache: error: RuntimeError: something odd (rerun with --debug for the traceback)"
    assert cli.main(["models", str(tmp_path), "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_info_lists_usable_engines_and_a_readable_version():
    res = gouache("info", "--json")
    data = json.loads(res.stdout)
    assert isinstance(data["stable_diffusion_cpp"], str) and "{" not in data["stable_diffusion_cpp"]
    from gouache._engines.registry import engine_class

    usable = [n for n in ("sdcpp", "torch") if engine_class(n).explain().usable]
    assert data["engines"] == ", ".join(usable)
