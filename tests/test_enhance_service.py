"""EnhanceService end to end on forged models: SD1 + its depth ControlNet on stable-diffusion.cpp
(one service for the module), the tiny SD1 + TAESD for the one-call functions.

The torch engine (device=, setup_memory_optimization) runs in tests/test_enhance_snippets.py.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from gouache import InvalidInputError
from gouache.enhance import (
    EnhanceBatchResult,
    EnhanceConfig,
    EnhanceService,
    Letterbox,
    SDXLLightningPipeline,
    enhance_view,
    enhance_views_batch,
    unload_cached_service,
)
from gouache.enhance._pipeline import control_image
from gouache.testing import forge

from .enhance_support import depth_ramp, rgba_view
from .test_enhance_depth import channel_model

pytestmark = pytest.mark.slow  # every test here loads a model


@pytest.fixture(scope="module")
def cfg(full_model):
    return EnhanceConfig.for_cpu(
        model=full_model,
        controlnet=forge.controlnet_sd1(),
        engine="sdcpp",
        working_size=64,
        lightning_steps=1,
        depth_model=None,
        memory_preset="t4_speed",
    )


@pytest.fixture(scope="module")
def service(cfg):
    with EnhanceService(cfg) as s:
        yield s


def px(image: Image.Image) -> np.ndarray:
    return np.asarray(image, np.int16)


def test_rgba_view_keeps_alpha_and_background(service):
    view = rgba_view()
    out = service.enhance(view, "a statue", depth_ramp())
    assert out.size == view.size and out.mode == "RGBA"
    a_in, a_out = px(view), px(out)
    assert np.array_equal(a_in[:, :, 3], a_out[:, :, 3])  # alpha unchanged
    bg = a_in[:, :, 3] == 0
    assert np.abs(a_in[bg][:, :3] - a_out[bg][:, :3]).max() <= 1  # background kept
    fg = a_in[:, :, 3] == 255
    assert np.abs(a_in[fg][:, :3] - a_out[fg][:, :3]).mean() > 2  # object enhanced


def test_depth_guides_the_result_and_other_sizes_are_resampled(service):
    view = rgba_view(seed=1).convert("RGB")
    a = px(service.enhance(view, depth_map=depth_ramp(), controlnet_scale=2.0))
    b = px(service.enhance(view, depth_map=depth_ramp(flip=True), controlnet_scale=2.0))
    assert np.abs(a - b).mean() > 0.1  # the depth ControlNet acts
    box = Letterbox.fit(96, 64, target=64)
    full = px(control_image(box.apply_depth(depth_ramp())))
    half = px(control_image(box.apply_depth(depth_ramp(48, 32))))  # same aspect, half size
    assert full.shape == (64, 64, 3) and np.abs(full - half).max() <= 3


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(depth_map=np.zeros((4, 4, 4, 4), np.float32)), "depth"),
        (dict(depth_map=np.full((64, 96), np.nan, np.float32)), "NaN"),
        (dict(image=np.zeros((0, 0, 3), np.uint8)), "empty"),
        (dict(strength=0.0), "strength"),
        (dict(seed=-2), "seed must be an integer >= 0"),
        (dict(mask=np.ones((10, 10), np.float32)), "mask is 10x10 but the image is 96x64"),
        (dict(prompt=3), "prompt must be a string"),
    ],
)
def test_bad_inputs_raise_clearly(service, kwargs, fragment):
    args = {"image": rgba_view(), **kwargs}
    with pytest.raises(InvalidInputError, match=fragment):
        service.enhance(**args)


def test_batch_is_a_list_that_keeps_good_views_and_reports_bad_ones(service):
    views = [rgba_view(seed=2), np.zeros((0, 0, 3), np.uint8), rgba_view(seed=2), rgba_view(seed=2)]
    seen = []
    res = service.enhance_batch(
        views,
        "a vase",
        [depth_ramp(), None, depth_ramp(), np.full((3, 3), np.nan)],
        progress_callback=lambda i, n: seen.append((i, n)),
    )
    assert isinstance(res, list) and isinstance(res, EnhanceBatchResult) and len(res) == 4
    assert res[0] is not None and res[2] is not None and res[1] is None and res[3] is None
    assert sorted(res.errors) == [1, 3] and "view 1" in res.errors[1] and "NaN" in res.errors[3]
    assert np.array_equal(px(res[0]), px(res[2]))  # same seed across views
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)] and len(res.seconds) == 4 and not res.ok
    with pytest.raises(InvalidInputError, match="depth_maps must have one entry per image"):
        service.enhance_batch(views, depth_maps=[depth_ramp()])


def test_batch_control_images_share_one_depth_range(service):
    """Aligned maps: the same inverse depth is the same gray in every view.  Two views with
    the same image, one map a shifted copy of the other, come out different; with one range
    per view (depth_range=None) they are the same."""
    view = rgba_view(seed=5).convert("RGB")
    near = depth_ramp()
    far = 0.5 * near  # the same shape, farther away
    shared = service.enhance_batch([view, view], depth_maps=[near, far], controlnet_scale=2.0)
    own = service.enhance_batch([view, view], depth_maps=[near, far], controlnet_scale=2.0, depth_range=None)
    assert np.abs(px(shared[0]) - px(shared[1])).mean() > 0.1
    assert np.array_equal(px(own[0]), px(own[1]))


def test_confidence_blend_keeps_original_at_discontinuities(service):
    view = rgba_view(seed=3).convert("RGB")
    depth = np.zeros((64, 96), np.float32)
    depth[:, 48:] = 1.0  # one sharp discontinuity
    out = px(service.enhance_with_depth_confidence(view, depth_map=depth, confidence_threshold=0.5))
    plain = px(service.enhance(view, depth_map=depth))
    orig = px(view)
    edge = np.abs(out[:, 46:50] - orig[:, 46:50]).mean()
    assert edge < np.abs(plain[:, 46:50] - orig[:, 46:50]).mean()
    with pytest.raises(InvalidInputError, match="needs depth_map= or a depth model"):
        service.enhance_with_depth_confidence(view)


def test_negative_prompt_warns_once_at_cfg_1(service, caplog):
    service._warned_negative = False
    with caplog.at_level(logging.WARNING, logger="gouache.enhance"):
        service.enhance(rgba_view(), negative_prompt="blurry", depth_map=depth_ramp())
        service.enhance(rgba_view(), negative_prompt="blurry", depth_map=depth_ramp())
    assert sum("no effect" in r.getMessage() for r in caplog.records) == 1


def test_status_and_single_load(service):
    st = service.status()
    assert st["loaded"] and st["engine"] == "sdcpp" and st["family"] == "sd1" and st["views_enhanced"] > 0
    assert st["device"] == "cpu" and "ram" in str(st["memory"]).lower()


def test_low_level_pipeline(cfg):
    with SDXLLightningPipeline(config=cfg) as p:
        img = Image.new("RGB", (80, 60), (120, 60, 30))
        out = p.enhance(img, "a cube", depth_ramp(80, 60), strength=0.5, seed=1)
        assert out.size == (80, 60) and out.mode == "RGB"
        assert p.loaded
    assert not p.loaded


# --------------------------------------------------------------------------- one-call functions


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """The one-call functions on the tiny SD1 with TAESD (no ControlNet fits its UNet)."""
    monkeypatch.setenv("GOUACHE_ENHANCE_MODEL", str(forge.sd1_tiny()))
    monkeypatch.setenv("GOUACHE_ENHANCE_TAESD", str(forge.taesd()))
    monkeypatch.setenv("GOUACHE_ENHANCE_USE_CONTROLNET", "0")
    monkeypatch.setenv("GOUACHE_ENHANCE_ENGINE", "sdcpp")
    monkeypatch.setenv("GOUACHE_ENHANCE_WORKING_SIZE", "64")
    monkeypatch.setenv("GOUACHE_ENHANCE_LIGHTNING_STEPS", "1")
    yield
    unload_cached_service()


def test_one_call_functions_keep_one_service_and_unload_the_one_they_replace(tiny):
    from gouache.enhance import _service

    a = enhance_view(rgba_view(), "a vase", None, "cpu")  # README order: image, prompt, depth_map, device
    first = _service._CACHE.service
    b = enhance_view(rgba_view(seed=4), "a vase", device="cpu")
    assert _service._CACHE.service is first and first.pipeline.loaded  # same settings: same loaded model
    assert a.size == b.size == (96, 64)
    res = enhance_views_batch([rgba_view(), rgba_view(seed=5)], "a vase", None, "cpu")
    assert _service._CACHE.service is first and res.ok and len(res) == 2
    enhance_view(rgba_view(), "a vase", config=EnhanceConfig(seed=7))  # other settings
    assert _service._CACHE.service is not first
    assert not first.pipeline.loaded  # the replaced service was unloaded
    unload_cached_service()
    assert _service._CACHE.service is None


def test_auto_depth_uses_the_configured_onnx_model(tiny, tmp_path, caplog):
    model = channel_model(tmp_path / "midas_small.onnx", 256)
    service = EnhanceService(
        EnhanceConfig(depth_model=model, use_controlnet=True, controlnet=forge.controlnet_sd1(), model=forge.sd1())
    )
    est = service.depth_estimator()
    assert est.path == model and est.family == "midas_small"
    assert service.get_depth_for_image(rgba_view()).shape == (64, 96)
    without = EnhanceService(EnhanceConfig(use_controlnet=False, depth_model=model))
    assert without._depth_for(np.zeros((8, 8, 3), np.float32), None) is None  # no ControlNet: no depth needed
