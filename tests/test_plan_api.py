"""Every snippet of the integration plan's "Proposed Python API" runs on gouache as written.

The snippets below are copied from the plan (``seeds/000``), with ``cyllama.stablediffusion``
read as ``gouache`` (the one change the contract allows).  What a snippet leaves to its
reader is supplied here: the files it names exist in the test's working directory
("sd-v1-5.safetensors" is a forged random-weight model, "esrgan-x4.bin" the forged ESRGAN,
"vae-ft-mse.safetensors" the forged model's own VAE) and ``prompts``, ``input_image``,
``image`` are bound.  The plan's sizes would take minutes per image on a CI machine, so
:func:`small` rewrites only the numeric literals of size and step count (512/768 -> 64/128,
steps -> 2) and checks that nothing else changed; the keyword names and call shapes are the
plan's text.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from PIL import Image

import gouache as g
from gouache.testing import forge

pytestmark = pytest.mark.slow

T2I = """
from gouache import text_to_image, image_to_image, SDModel

# Simple text-to-image
images = text_to_image(
    model_path="sd-v1-5.safetensors",
    prompt="a photo of a cat",
    negative_prompt="blurry, low quality",
    width=512,
    height=512,
    steps=20,
    seed=42
)
"""

REUSE = """
# With model reuse for batch generation
model = SDModel("sd-v1-5.safetensors")
for prompt in prompts:
    images = model.generate(prompt)
"""

I2I = """
# Image-to-image
result = image_to_image(
    model_path="sd-v1-5.safetensors",
    init_image=input_image,  # PIL Image or numpy array
    prompt="make it a painting",
    strength=0.7
)
"""

VIDEO = """
# Video generation (for Wan/CogVideoX models)
frames = model.generate_video(
    prompt="a cat walking",
    video_frames=16
)
"""

UPSCALE = """
# Upscaling with ESRGAN
from gouache import Upscaler
upscaler = Upscaler("esrgan-x4.bin")
upscaled = upscaler.upscale(image, factor=4)
"""

LOW_LEVEL = """
from gouache import (
    SDContext, SDContextParams, SDImage,
    SDSampleParams, SDImageGenParams,
    SampleMethod, Scheduler, SDType
)

# Full control over context creation
params = SDContextParams()
params.model_path = "sd-v1-5.safetensors"
params.vae_path = "vae-ft-mse.safetensors"
params.n_threads = 4
params.wtype = SDType.F16

ctx = SDContext(params)

# Full control over generation
gen_params = SDImageGenParams()
gen_params.prompt = "a beautiful landscape"
gen_params.negative_prompt = "ugly, blurry"
gen_params.width = 768
gen_params.height = 512
gen_params.seed = 42

sample_params = SDSampleParams()
sample_params.sample_method = SampleMethod.EULER_A
sample_params.scheduler = Scheduler.KARRAS
sample_params.sample_steps = 25
gen_params.sample_params = sample_params

images = ctx.generate_image(gen_params)
"""

_SMALL = {"512": "64", "768": "128", "20": "2", "25": "2"}
_NUMBER = re.compile(r"(?<=[=\s])(512|768|20|25)(?=[,\s)]|$)")


def small(snippet: str) -> str:
    """The snippet with its image sizes and step counts made small, and nothing else changed."""
    out = _NUMBER.sub(lambda m: _SMALL[m.group(1)], snippet)
    assert _NUMBER.sub("N", snippet) == re.sub(r"(?<=[=\s])(64|128|2)(?=[,\s)]|$)", "N", out)
    return out


def px(im) -> np.ndarray:
    return np.asarray(im.to_pil() if hasattr(im, "to_pil") else im, dtype=np.float64)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """The files the snippets name, in the working directory."""
    (tmp_path / "sd-v1-5.safetensors").symlink_to(forge.sdxs())  # TAESD inside: fast decode
    shutil.copy(forge.esrgan_x4(), tmp_path / "esrgan-x4.bin")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_text_to_image_with_the_plans_names(workdir):
    ns: dict = {}
    exec(small(T2I), ns)
    result = ns["images"]
    assert result.images[0].size == (64, 64) and result.seeds == [42]
    assert result.parameters["negative_prompt"] == "blurry, low quality"
    assert result.parameters["steps"] == 2
    assert px(result.images[0]).std() > 1  # an image, not a blank


def test_model_reuse_loop(workdir):
    ns: dict = {"prompts": ["a cat"]}
    exec(T2I.split("\n# Simple")[0] + REUSE, ns)  # the imports, then the loop as written
    with ns["model"] as model:
        assert model.family == "sd1_tiny" and ns["images"].images[0].size == (512, 512)


def test_image_to_image_with_init_image(workdir):
    input_image = Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (64, 1, 3)))
    ns: dict = {"input_image": input_image}
    exec(T2I.split("\n# Simple")[0] + I2I, ns)
    result = ns["result"]
    assert result.images[0].size == (64, 64) and result.parameters["strength"] == 0.7
    ns["input_image"] = np.asarray(input_image)  # "PIL Image or numpy array"
    exec(T2I.split("\n# Simple")[0] + I2I, ns)
    assert ns["result"].images[0].size == (64, 64)


def test_one_spelling_at_a_time(workdir):
    with pytest.raises(g.InvalidInputError, match="model= or model_path="):
        g.text_to_image("sd-v1-5.safetensors", "x", model_path="sd-v1-5.safetensors")
    with pytest.raises(g.InvalidInputError, match="image= or init_image="):
        g.image_to_image("sd-v1-5.safetensors", np.zeros((8, 8, 3), np.uint8), "x", init_image=np.zeros((8, 8, 3)))
    with pytest.raises(g.InvalidInputError, match="missing argument model="):
        g.text_to_image(prompt="x")
    with pytest.raises(g.InvalidInputError, match="model= or model_path="):
        g.SDModel("sd-v1-5.safetensors", model_path="sd-v1-5.safetensors")


def test_upscaler_snippet(workdir):
    image = Image.new("RGB", (16, 16), (200, 100, 50))
    ns: dict = {"image": image}
    exec(UPSCALE, ns)
    assert (ns["upscaled"].width, ns["upscaled"].height) == (64, 64)


def test_low_level_snippet(tmp_path, monkeypatch):
    from safetensors.numpy import load_file, save_file

    (tmp_path / "sd-v1-5.safetensors").symlink_to(forge.sd1_tiny())
    prefix = "first_stage_model."
    state = load_file(str(forge.sd1_tiny()))
    vae = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    save_file(vae, str(tmp_path / "vae-ft-mse.safetensors"))  # a stand-alone VAE file, as published
    del state
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(small(LOW_LEVEL), ns)
    try:
        images = ns["images"]
        assert len(images) == 1 and (images[0].width, images[0].height) == (128, 64)
        assert ns["sample_params"].sample_steps == 2 and px(images[0]).std() > 1
    finally:
        ns["ctx"].close()


@pytest.mark.forge_large
def test_video_snippet_with_video_frames():
    """``video_frames=16`` (not 4k+1) returns 16 frames: Wan makes 17, the last is dropped.
    The Wan forge runs at 16x16 with one step: ``model`` is bound to the loaded Wan model
    with those two settings fixed, the call itself is the plan's."""
    import functools

    with g.SDModel(diffusion_model=forge.wan21_t2v_gguf(), taesd=forge.taehv()) as wan:

        class Small:
            generate_video = functools.partial(wan.generate_video, width=16, height=16, steps=1, cfg_scale=1.0)

        ns: dict = {"model": Small()}
        exec(VIDEO, ns)
        video = ns["frames"]
        assert len(video.frames) == 16 and video.parameters["frames"] == 16
        assert video.frames[0].size == (16, 16)
