"""Every keyword of SDModel.generate reaches the sdcpp engine: it is found in the C struct the
engine receives (``sd_img_gen_params_t`` as lowered, and the engine's own ``sd_img_gen_params_to_str``),
or, for the callbacks, it is called.  The engine really runs: the parameters are recorded at
the binding's boundary (``SDContext.generate_image``) and passed on unchanged.

The torch engine's counterpart (every keyword reaches the diffusers pipeline call) is in
``test_torch_engine.py``.
"""

from __future__ import annotations

import ctypes
import inspect
import logging

import numpy as np
import pytest

import gouache as g
from gouache._engines.requests import ImageRequest, PhotoMakerInput, Sampling
from gouache._engines.sdcpp import image_params
from gouache.testing import forge

pytestmark = pytest.mark.slow

RNG = np.random.default_rng(7)
INIT = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
MASK = np.zeros((64, 64), np.uint8)
MASK[:, 32:] = 255
CONTROL = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
REF = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)


class Recorder:
    """Wraps an SDContext's generate_image: keeps what each call received, then runs it."""

    def __init__(self, ctx: g.SDContext) -> None:
        self.real = ctx.generate_image
        self.calls: list[tuple[ctypes.Structure, str, object]] = []
        ctx.generate_image = self  # instance attribute: only this context is wrapped

    def __call__(self, params, **kw):
        lowered = params._lower()
        self.calls.append((lowered.struct, repr(params), lowered))  # keep the lowering alive
        return self.real(params, **kw)

    @property
    def struct(self):
        return self.calls[-1][0]

    @property
    def text(self) -> str:
        return self.calls[-1][1]


def pixels(c_image) -> np.ndarray:
    h, w, ch = int(c_image.height), int(c_image.width), int(c_image.channel)
    return np.ctypeslib.as_array(c_image.data, shape=(h * w * ch,)).reshape(h, w, ch).copy()


@pytest.fixture(scope="module")
def tiny(tiny_model, taesd_model):
    with g.SDModel(tiny_model, taesd=taesd_model, engine="sdcpp") as m:
        yield m, Recorder(m._engine.ctx)


@pytest.fixture(scope="module")
def controlled(full_model):
    with g.SDModel(full_model, control_net=forge.controlnet_sd1(), engine="sdcpp") as m:
        yield m, Recorder(m._engine.ctx)


@pytest.fixture(scope="module")
def img2img_call(tiny):
    """One img2img + inpainting call carrying a non-default value for most keywords."""
    model, rec = tiny
    model.generate(
        "a red cube",
        negative_prompt="blurry, dark",
        width=72,
        height=64,
        steps=3,
        cfg_scale=2.5,
        sampler="heun",
        scheduler="karras",
        seed=1234,
        batch=2,
        clip_skip=2,
        loras=[(forge.lora_sd1_tiny(), 0.7)],
        init_image=INIT,
        strength=0.55,
        mask=MASK,
        vae_tiling=True,
        eta=0.4,
        guidance=g.Guidance(
            image_cfg_scale=1.7, distilled_guidance=2.2, slg_layers=(7,), slg_start=0.1, slg_end=0.3, slg_scale=0.5
        ),
    )
    return rec.struct, rec.text


def test_prompt_size_sampling_seed_batch(img2img_call):
    c, text = img2img_call
    assert c.prompt == b"a red cube" and c.negative_prompt == b"blurry, dark"
    assert (c.width, c.height) == (128, 64)  # 72 wide: generated on the next multiple of 64, cropped back
    s = c.sample_params
    assert s.sample_steps == 3 and s.guidance.txt_cfg == pytest.approx(2.5)
    assert s.sample_method == int(g.SampleMethod.HEUN) and s.scheduler == int(g.Scheduler.KARRAS)
    assert "heun" in text and "karras" in text  # the engine's own description of what it received
    assert c.seed == 1234 and c.batch_count == 2 and c.clip_skip == 2
    assert s.eta == pytest.approx(0.4)


def test_guidance_reaches_the_struct(img2img_call):
    g_ = img2img_call[0].sample_params.guidance
    assert g_.img_cfg == pytest.approx(1.7) and g_.distilled_guidance == pytest.approx(2.2)
    assert g_.slg.layer_count == 1 and g_.slg.layers[0] == 7 and g_.slg.scale == pytest.approx(0.5)
    assert (g_.slg.layer_start, g_.slg.layer_end) == (pytest.approx(0.1), pytest.approx(0.3))


def test_lora_init_mask_strength_tiling(img2img_call):
    c, _ = img2img_call
    assert c.lora_count == 1 and c.loras[0].path == str(forge.lora_sd1_tiny()).encode()
    assert c.loras[0].multiplier == pytest.approx(0.7)
    assert c.strength == pytest.approx(0.55)
    # 64x64 letterboxed into the requested 72x64, centred on the 128x64 canvas: x 32..96
    init = pixels(c.init_image)
    assert init.shape == (64, 128, 3) and np.array_equal(init[:, 32:96], INIT)
    mask = pixels(c.mask_image)[:, :, 0]
    assert mask.shape == (64, 128) and np.array_equal(mask[:, 32:96], MASK)
    assert mask[:, :32].max() == 0 and mask[:, 96:].max() == 0  # canvas padding is never repainted
    assert c.vae_tiling_params.enabled


def test_callbacks_are_called(tiny):
    model, _ = tiny
    steps, previews = [], []
    model.generate(
        "a cube",
        width=64,
        height=64,
        steps=4,
        cfg_scale=1.0,
        seed=2,
        callback=lambda s, t, e: steps.append((s, t)),
        preview=lambda s, ims: previews.append(s),
        preview_options=g.PreviewSpec("proj", 2),
    )
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert previews and all(s % 2 == 0 for s in previews)  # preview_options.interval reached the engine


def test_control_image_strength_and_guidance_warning(controlled, caplog):
    model, rec = controlled
    with caplog.at_level(logging.WARNING, logger="gouache"):
        model.generate(
            "a robot",
            width=64,
            height=64,
            steps=1,
            cfg_scale=1.0,
            seed=3,
            control_image=CONTROL,
            control_strength=0.6,
            control_guidance=(0.0, 0.5),
        )
    c = rec.struct
    assert c.control_strength == pytest.approx(0.6)
    assert np.array_equal(pixels(c.control_image), CONTROL)
    # sdcpp has no start/end for ControlNet: the engine says so instead of dropping it silently
    assert any("control_guidance" in r.getMessage() for r in caplog.records)


def test_hires_cache_and_reference_images(tiny):
    model, rec = tiny
    model.generate(
        "a cube",
        width=64,
        height=64,
        steps=2,
        cfg_scale=1.0,
        seed=5,
        ref_images=[REF],
        hires=g.Hires(scale=1.5, steps=1, denoising_strength=0.4),
        cache=g.Cache("easycache", threshold=0.3),
    )
    c = rec.struct
    assert c.ref_images_count == 1 and np.array_equal(pixels(c.ref_images[0]), REF)
    assert c.auto_resize_ref_image  # references scaled to the output's area, as the engine's CLI does
    assert c.hires.enabled and c.hires.scale == pytest.approx(1.5) and c.hires.steps == 1
    assert c.hires.denoising_strength == pytest.approx(0.4)
    assert c.cache.mode == int(g.CacheMode.EASYCACHE) and c.cache.reuse_threshold == pytest.approx(0.3)


def test_photo_maker_reaches_the_struct(tmp_path):
    """PhotoMaker needs a PhotoMaker model file, which the forge cannot make: its request is
    lowered by the sdcpp engine's own mapping (the same code generate_images runs)."""
    embed = tmp_path / "id.safetensors"
    embed.write_bytes(b"x")
    request = ImageRequest(
        prompt="a face",
        negative_prompt="",
        width=64,
        height=64,
        seed=1,
        sampling=Sampling(steps=1, cfg_scale=1.0),
        photo_maker=PhotoMakerInput(
            images=(g.SDImage.from_numpy(REF).to_pil(),), id_embedding=embed, style_strength=33.0
        ),
    )
    pm = image_params(request, g.EngineOptions())._lower().struct.pm_params
    assert pm.id_images_count == 1 and pm.style_strength == pytest.approx(33.0)
    assert pm.id_embed_path == str(embed).encode()


#: The test of each keyword of SDModel.generate; a new keyword needs a line here (and a test).
COVERED = {
    "prompt": "test_prompt_size_sampling_seed_batch",
    "negative_prompt": "test_prompt_size_sampling_seed_batch",
    "width": "test_prompt_size_sampling_seed_batch",
    "height": "test_prompt_size_sampling_seed_batch",
    "steps": "test_prompt_size_sampling_seed_batch",
    "cfg_scale": "test_prompt_size_sampling_seed_batch",
    "sampler": "test_prompt_size_sampling_seed_batch",
    "scheduler": "test_prompt_size_sampling_seed_batch",
    "seed": "test_prompt_size_sampling_seed_batch",
    "batch": "test_prompt_size_sampling_seed_batch",
    "clip_skip": "test_prompt_size_sampling_seed_batch",
    "eta": "test_prompt_size_sampling_seed_batch",
    "loras": "test_lora_init_mask_strength_tiling",
    "init_image": "test_lora_init_mask_strength_tiling",
    "strength": "test_lora_init_mask_strength_tiling",
    "mask": "test_lora_init_mask_strength_tiling",
    "vae_tiling": "test_lora_init_mask_strength_tiling",
    "guidance": "test_guidance_reaches_the_struct",
    "control_image": "test_control_image_strength_and_guidance_warning",
    "control_strength": "test_control_image_strength_and_guidance_warning",
    "control_guidance": "test_control_image_strength_and_guidance_warning",
    "ref_images": "test_hires_cache_and_reference_images",
    "hires": "test_hires_cache_and_reference_images",
    "cache": "test_hires_cache_and_reference_images",
    "photo_maker": "test_photo_maker_reaches_the_struct",
    "callback": "test_callbacks_are_called",
    "preview": "test_callbacks_are_called",
    "preview_options": "test_callbacks_are_called",
}


def test_every_keyword_is_covered():
    keywords = set(inspect.signature(g.SDModel.generate).parameters) - {"self"}
    assert keywords == set(COVERED), f"keywords without a wiring test: {sorted(keywords - set(COVERED))}"
    assert all(name in globals() for name in COVERED.values())
