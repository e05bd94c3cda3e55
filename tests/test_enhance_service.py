"""EnhanceService end to end on forged models (SD1 + ControlNet on both engines; SDXL once on torch)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from gouache import InvalidInputError
from gouache.enhance import (
    EnhanceConfig,
    EnhanceService,
    SDXLLightningPipeline,
    denoising_steps,
    enhance_view,
    enhance_views_batch,
)
from gouache.testing import forge

from .test_enhance_depth import channel_model

pytestmark = pytest.mark.slow  # every test but one loads a model


def rgba_view(w=96, h=64, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    alpha[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
    return Image.fromarray(np.dstack([rgb, alpha]))


def depth_ramp(w=96, h=64, flip=False) -> np.ndarray:
    d = np.tile(np.linspace(0.0, 1.0, w, dtype=np.float32), (h, 1))
    return d[:, ::-1].copy() if flip else d


@pytest.fixture(scope="module")
def cfg(full_model):
    return EnhanceConfig.for_cpu(model=full_model, controlnet=forge.controlnet_sd1(), engine="sdcpp",
                                 working_size=64, steps=1, depth_model=None, memory_preset="t4_speed")


@pytest.fixture(scope="module")
def service(cfg):
    with EnhanceService(cfg) as s:
        yield s


@pytest.mark.parametrize("steps, strength", [(1, 0.1), (2, 0.3), (4, 0.5), (2, 0.5), (1, 1.0), (3, 0.65)])
def test_denoising_steps_never_zero(steps, strength):
    total = denoising_steps(steps, strength)
    assert int(total * strength) >= steps and total >= steps


def test_rgba_view_keeps_alpha_and_background(service):
    view = rgba_view()
    out = service.enhance(view, prompt="a statue", depth_map=depth_ramp())
    assert out.size == view.size and out.mode == "RGBA"
    a_in, a_out = np.asarray(view), np.asarray(out)
    assert np.array_equal(a_in[:, :, 3], a_out[:, :, 3])  # alpha unchanged
    bg = a_in[:, :, 3] == 0
    assert np.abs(a_in[bg][:, :3].astype(int) - a_out[bg][:, :3].astype(int)).max() <= 1  # background kept
    fg = a_in[:, :, 3] == 255
    assert np.abs(a_in[fg][:, :3].astype(int) - a_out[fg][:, :3].astype(int)).mean() > 2  # object enhanced


def test_depth_guides_the_result_and_other_sizes_are_resampled(service):
    view = rgba_view(seed=1).convert("RGB")
    a = np.asarray(service.enhance(view, depth_map=depth_ramp(), controlnet_scale=2.0), np.int16)
    b = np.asarray(service.enhance(view, depth_map=depth_ramp(flip=True), controlnet_scale=2.0), np.int16)
    assert np.abs(a - b).mean() > 0.1  # the depth ControlNet acts
    from gouache.enhance import Letterbox

    box = Letterbox.fit(96, 64, target=64)
    full = np.asarray(service._control_image(depth_ramp(), box), np.int16)
    half = np.asarray(service._control_image(depth_ramp(48, 32), box), np.int16)  # same aspect, half size
    assert full.shape == (64, 64, 3) and np.abs(full - half).max() <= 3


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(depth_map=np.zeros((4, 4, 4, 4), np.float32)), "depth"),
        (dict(depth_map=np.full((64, 96), np.nan, np.float32)), "NaN"),
        (dict(image=np.zeros((0, 0, 3), np.uint8)), "empty"),
        (dict(strength=0.0), "strength"),
    ],
)
def test_bad_inputs_raise_clearly(service, kwargs, fragment):
    args = {"image": rgba_view(), **kwargs}
    with pytest.raises(InvalidInputError, match=fragment):
        service.enhance(**args)


def test_batch_keeps_good_views_and_reports_bad_one(service):
    views = [rgba_view(seed=2), np.zeros((0, 0, 3), np.uint8), rgba_view(seed=2)]
    seen = []
    res = service.enhance_batch(views, depth_maps=[depth_ramp(), None, depth_ramp()],
                                progress=lambda i, n: seen.append((i, n)))
    assert res.images[0] is not None and res.images[2] is not None and res.images[1] is None
    assert list(res.errors) == [1] and "view 1" in res.errors[1]
    assert np.array_equal(np.asarray(res.images[0]), np.asarray(res.images[2]))  # same seed across views
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_confidence_blend_keeps_original_at_discontinuities(service):
    view = rgba_view(seed=3).convert("RGB")
    depth = np.zeros((64, 96), np.float32)
    depth[:, 48:] = 1.0  # one sharp discontinuity
    out = np.asarray(service.enhance_with_depth_confidence(view, depth_map=depth, confidence_threshold=0.5), np.int16)
    plain = np.asarray(service.enhance(view, depth_map=depth), np.int16)
    orig = np.asarray(view, np.int16)
    edge = np.abs(out[:, 46:50] - orig[:, 46:50]).mean()
    assert edge < np.abs(plain[:, 46:50] - orig[:, 46:50]).mean()


def test_negative_prompt_warns_once_at_cfg_1(service, caplog):
    service._warned_negative = False
    with caplog.at_level(logging.WARNING, logger="gouache.enhance"):
        service.enhance(rgba_view(), negative_prompt="blurry", depth_map=depth_ramp())
        service.enhance(rgba_view(), negative_prompt="blurry", depth_map=depth_ramp())
    assert sum("no effect" in r.getMessage() for r in caplog.records) == 1


def test_status_and_single_load(service):
    st = service.status()
    assert st["loaded"] and st["engine"] == "sdcpp" and st["family"] == "sd1" and st["views_enhanced"] > 0
    assert "ram" in str(st["memory"]).lower()


def test_auto_depth_with_onnx_model_and_presets(tmp_path, full_model):
    model = channel_model(tmp_path / "midas_small.onnx", 256)
    for preset in (EnhanceConfig.for_t4_gpu, EnhanceConfig.for_quality, EnhanceConfig.for_speed, EnhanceConfig.for_cpu):
        c = preset(model=full_model, controlnet=forge.controlnet_sd1(), depth_model=model, engine="sdcpp",
                   working_size=64, steps=1)
        c.check()
    c = EnhanceConfig.for_speed(model=full_model, controlnet=forge.controlnet_sd1(), depth_model=model,
                                engine="sdcpp", working_size=64, steps=1)  # t4_speed memory preset
    out = enhance_view(rgba_view(), c, prompt="a vase")
    out2 = enhance_view(rgba_view(seed=4), c, prompt="a vase")
    from gouache.enhance._service import _cached_service

    assert _cached_service.cache_info().misses == 1 and out.size == out2.size == (96, 64)
    res = enhance_views_batch([rgba_view(), rgba_view(seed=5)], c)
    assert res.ok and len(res) == 2
    _cached_service(c).unload()
    _cached_service.cache_clear()


def test_low_level_pipeline(cfg):
    p = SDXLLightningPipeline(cfg).load()
    img = Image.new("RGB", (64, 64), (120, 60, 30))
    out = p.enhance(img, Image.new("RGB", (64, 64), (128, 128, 128)), "a cube", "", strength=0.5,
                    controlnet_scale=0.5, seed=1)
    p.unload()
    assert out.size == (64, 64)


@pytest.mark.torch
def test_torch_engine_sd1_enhance(full_model):
    c = EnhanceConfig.for_cpu(model=full_model, controlnet=forge.controlnet_sd1(), engine="torch",
                              working_size=64, steps=1, memory_preset="cpu", control_guidance_end=0.8)
    with EnhanceService(c) as s:
        out = s.enhance(rgba_view(), depth_map=depth_ramp())
        assert s.status()["engine"] == "torch"
    assert out.size == (96, 64) and out.mode == "RGBA"


@pytest.mark.forge_large
@pytest.mark.torch
def test_sdxl_with_depth_controlnet_on_torch():
    """SDXL + SDXL ControlNet aborts stable-diffusion.cpp (refused there), so it runs on torch;
    the ControlNet is in diffusers layout, as the published depth ControlNets are."""
    c = EnhanceConfig.for_t4_gpu(model=forge.sdxl(), controlnet=forge.controlnet_sdxl_diffusers(), engine="torch",
                                 working_size=64, steps=1, depth_model=None, memory_preset="cpu")
    with EnhanceService(c) as s:
        assert s.status()["family"] == "sdxl"
        a = s.enhance(rgba_view(), depth_map=depth_ramp())
        b = s.enhance(rgba_view(), depth_map=depth_ramp(flip=True))
    assert a.size == (96, 64)
    assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean() > 0.1
