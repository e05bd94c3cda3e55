"""Inputs that would abort or segfault the engine are refused in Python.

Each case runs in a fresh interpreter: if a guard is missing and the engine crashes,
this test fails (non-zero/negative exit code) instead of killing the test run.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from .conftest import run_isolated

pytestmark = pytest.mark.slow

PRELUDE = """
import json, sys
import numpy as np
import gouache as g
def expect(fn, *fragments):
    try:
        fn()
    except g.InvalidInputError as exc:
        msg = str(exc)
        missing = [f for f in fragments if f not in msg]
        print(json.dumps({"raised": True, "message": msg, "missing": missing}))
        sys.exit(0)
    print(json.dumps({"raised": False}))
    sys.exit(3)
"""


def check(body: str, *fragments: str) -> None:
    res = run_isolated(PRELUDE + body)
    assert res.returncode == 0, (
        f"exit code {res.returncode} (negative = killed by a signal: the engine crashed)\n"
        f"stdout: {res.stdout[-2000:]}\nstderr: {res.stderr[-2000:]}"
    )
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["raised"], "no InvalidInputError was raised"
    assert not out["missing"], f"message {out['message']!r} lacks {out['missing']}"


def fake_model(path, names):
    save_file({n: np.zeros((1,), np.float16) for n in names}, str(path))
    return str(path)


def test_controlnet_with_tiny_unet(tiny_model):
    from gouache.testing import forge

    cn = forge.controlnet_sd1()
    check(
        f"expect(lambda: g.SDContext(g.SDContextParams(model_path={str(tiny_model)!r}, control_net_path={str(cn)!r})),"
        " 'ControlNet', 'distilled')"
    )


def test_img2img_on_decode_only_context(tiny_model, taesd_model):
    check(
        f"""
ctx = g.SDContext(g.SDContextParams(model_path={str(tiny_model)!r}, taesd_path={str(taesd_model)!r}))
init = np.zeros((64, 64, 3), np.uint8)
expect(lambda: ctx.generate_image(g.SDImageGenParams(width=64, height=64, init_image=init)),
       'vae_decode_only', 'init_image')
"""
    )


@pytest.mark.parametrize("path", ["''", "None", "'/nonexistent/x4.safetensors'"])
def test_upscaler_bad_path(path):
    check(f"expect(lambda: g.Upscaler({path}), 'upscaler')")


def test_hires_model_upscaler_without_path(tiny_model, taesd_model):
    check(
        f"""
ctx = g.SDContext(g.SDContextParams(model_path={str(tiny_model)!r}, taesd_path={str(taesd_model)!r}))
p = g.SDImageGenParams(width=64, height=64, hires=g.SDHiresParams(enabled=True, upscaler='model'))
expect(lambda: ctx.generate_image(p), 'hires.model_path')
"""
    )


def test_flux_without_text_encoder(tmp_path):
    names = ["model.diffusion_model.double_blocks.0.img_attn.qkv.weight", "model.diffusion_model.img_in.weight"]
    model = fake_model(tmp_path / "flux.safetensors", names)
    check(f"expect(lambda: g.SDContext(g.SDContextParams(diffusion_model_path={model!r})), 'Flux', 't5xxl_path')")


def test_wan_with_wrong_block_count(tmp_path):
    names = [f"model.diffusion_model.blocks.{i}.cross_attn.norm_k.weight" for i in range(12)]
    names.append("model.diffusion_model.patch_embedding.weight")
    model = fake_model(tmp_path / "wan.safetensors", names)
    check(f"expect(lambda: g.SDContext(g.SDContextParams(diffusion_model_path={model!r})), '12', '30', '40')")


def test_missing_model_file(tmp_path):
    missing = str(tmp_path / "nope.safetensors")
    check(f"expect(lambda: g.SDContext(g.SDContextParams(model_path={missing!r})), 'not found', 'nope.safetensors')")


def test_directory_as_model(tmp_path):
    check(f"expect(lambda: g.SDContext(g.SDContextParams(model_path={str(tmp_path)!r})), 'not a file')")


def test_empty_model_file(tmp_path):
    p = tmp_path / "empty.safetensors"
    p.write_bytes(b"")
    check(f"expect(lambda: g.SDContext(g.SDContextParams(model_path={str(p)!r})), 'empty file')")


def test_unknown_file_type(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello, I am not a model")
    check(f"expect(lambda: g.SDContext(g.SDContextParams(model_path={str(p)!r})), 'unknown file type', 'notes.txt')")


def test_no_model_at_all():
    check("expect(lambda: g.SDContext(g.SDContextParams()), 'model_path')")


@pytest.mark.parametrize(
    "kwargs, fragments",
    [
        ("width=0", ("width", "0")),
        ("height=-64", ("height", "-64")),
        ("width=100000", ("width", "100000")),
        ("sample_params=g.SDSampleParams(sample_steps=0)", ("sample_steps", "0")),
        ("sample_params=g.SDSampleParams(sample_steps=5000)", ("sample_steps", "5000")),
        ("sample_params=g.SDSampleParams(sample_method='bogus')", ("bogus", "euler_a")),
        ("sample_params=g.SDSampleParams(scheduler='nope')", ("nope", "karras")),
        ("sample_params=g.SDSampleParams(txt_cfg=float('nan'))", ("txt_cfg",)),
        ("strength=1.5, init_image=np.zeros((64, 64, 3), np.uint8)", ("strength", "1.5")),
        ("strength=-0.1, init_image=np.zeros((64, 64, 3), np.uint8)", ("strength", "-0.1")),
        ("batch_count=0", ("batch_count", "0")),
        ("init_image=np.zeros((64, 64, 4), np.uint8)", ("init_image", "3 channels", "4")),
        (
            "init_image=np.zeros((64, 64, 3), np.uint8), mask_image=np.zeros((64, 64, 3), np.uint8)",
            ("mask_image", "1 channel", "3"),
        ),
        ("mask_image=np.zeros((64, 64), np.uint8)", ("mask_image", "init_image")),
        ("loras=[('/nonexistent/l.safetensors', 1.0)]", ("LoRA", "not found")),
        ("control_image=np.zeros((64, 64, 3), np.uint8)", ("control_image", "control_net_path")),
    ],
)
def test_bad_generation_params(tiny_model, taesd_model, kwargs, fragments):
    frag = ", ".join(repr(f) for f in fragments)
    check(
        f"""
ctx = g.SDContext(g.SDContextParams(model_path={str(tiny_model)!r}, taesd_path={str(taesd_model)!r},
                                    vae_decode_only=False))
expect(lambda: ctx.generate_image(g.SDImageGenParams(**{{**dict(width=64, height=64), **dict({kwargs})}})), {frag})
"""
    )


def test_library_override_names_tried_path(tmp_path):
    res = run_isolated(
        f"""
import os
os.environ["GOUACHE_LIBRARY"] = {str(tmp_path / "libnothing.so")!r}
import gouache as g
try:
    g.system_info()
except g.LibraryNotFoundError as exc:
    assert "libnothing.so" in str(exc) and "GOUACHE_LIBRARY" in str(exc) and "pip install" in str(exc), str(exc)
    print("ok")
"""
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_library_override_is_used():
    from gouache._sdcpp import library

    real = library.library_path()
    res = run_isolated(
        f"""
import os
os.environ["GOUACHE_LIBRARY"] = {real!r}
from gouache._sdcpp.library import library_path

print(library_path())
"""
    )
    assert res.returncode == 0 and res.stdout.strip() == real, res.stderr
