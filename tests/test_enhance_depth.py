"""gouache.enhance.depth: ONNX depth estimation, confidence and its uses, saving depth maps.

Ground-truth depth comes from gouache.testing.scenes (ray cast in numpy); the ONNX models
are tiny graphs built here with the ``onnx`` package whose output is a known function of
the input.  Multi-view alignment: tests/test_enhance_align.py.
"""

from __future__ import annotations

import numpy as np
import onnx  # in the test extra: a missing package is a broken install, not a skip
import onnxruntime  # noqa: F401
import pytest
from onnx import TensorProto, helper, numpy_helper

from gouache import InvalidInputError, MissingDependencyError
from gouache._modelfiles.catalog import DownloadError
from gouache.enhance import (
    DepthEstimator,
    estimate_depth,
    estimate_depth_confidence,
    load_depth,
    normalize_inverse_depth,
)
from gouache.enhance.depth import (
    FAMILIES,
    apply_confidence_mask,
    detect_family,
    get_reliable_depth_mask,
    load_depth_raw,
    save_depth,
    save_depth_grayscale,
    save_depth_raw,
    weighted_depth_fusion,
)
from gouache.enhance.depth.estimate import get_estimator
from gouache.testing import scenes

SCENE = scenes.spheres_in_room()
W = H = 96


def render_depth(pose, K):
    return SCENE.render(pose, K, W, H).depth


# --------------------------------------------------------------------------- confidence


def test_confidence_low_on_silhouettes_high_inside_objects():
    pose, K = scenes.look_at((0.0, 0.0, 5.0)), scenes.intrinsics(W, H, focal=90.0)
    depth = render_depth(pose, K)
    conf = estimate_depth_confidence(depth)
    assert conf.dtype == np.float32 and conf.shape == depth.shape
    assert 0.0 <= conf.min() and conf.max() <= 1.0
    # the big sphere: centred, radius ~ f * r / sqrt(D^2 - r^2) pixels
    v, u = np.mgrid[0:H, 0:W]
    radius = 90.0 * 1.0 / np.sqrt(25.0 - 1.0)
    dist = np.hypot(u - (W - 1) / 2, v - (H - 1) / 2)
    inside = dist < 0.6 * radius
    jump = np.zeros(depth.shape, bool)  # pixels next to a depth step of > 1 unit
    jump[:, 1:] |= np.abs(np.diff(depth, axis=1)) > 1.0
    jump[:, :-1] |= np.abs(np.diff(depth, axis=1)) > 1.0
    assert conf[inside].min() > 0.9
    assert conf[jump].max() < 0.1
    # the same on inverse depth, and on any affine change of it
    inv_conf = estimate_depth_confidence(1.0 / depth)
    assert inv_conf[inside].min() > 0.9 and np.median(inv_conf[jump]) < 0.2
    assert np.allclose(estimate_depth_confidence(3.0 * depth + 7.0), conf, atol=1e-5)


def test_confidence_is_defined_for_constant_and_tiny_maps():
    assert np.all(estimate_depth_confidence(np.full((8, 9), 4.2)) == 1.0)
    assert np.all(estimate_depth_confidence(np.zeros((1, 1))) == 1.0)
    spike = np.zeros((16, 16))
    spike[5, 5] = 10.0
    conf = estimate_depth_confidence(spike)
    assert np.all(np.isfinite(conf)) and conf[5, 5] < 0.1 and conf[12, 12] == 1.0


def test_confidence_rgb_term_lowers_only_at_colour_edges():
    depth = np.tile(np.linspace(1.0, 2.0, 32), (32, 1))  # smooth ramp: all confident
    rgb = np.zeros((32, 32, 3), np.float32)
    rgb[:, 16:] = 1.0
    plain = estimate_depth_confidence(depth)
    with_rgb = estimate_depth_confidence(depth, rgb)
    assert plain.min() > 0.9
    assert with_rgb[:, 15:17].max() < 0.6 and np.allclose(with_rgb[:, :14], plain[:, :14])
    with pytest.raises(InvalidInputError, match="rgb is 8x8"):
        estimate_depth_confidence(depth, np.zeros((8, 8, 3), np.float32))


def test_normalize_inverse_depth_is_robust():
    x = np.linspace(0.0, 1.0, 1000)
    x[0], x[-1] = -1e6, 1e6  # outliers do not squash the range
    out = normalize_inverse_depth(x)
    assert out.min() == 0.0 and out.max() == 1.0 and 0.45 < out[500] < 0.55
    assert np.all(normalize_inverse_depth(np.full((4, 4), 3.0)) == 0.0)
    assert np.all(normalize_inverse_depth(np.array([np.nan, np.inf, 1.0, 2.0])) >= 0.0)
    with pytest.raises(InvalidInputError, match="percentiles"):
        normalize_inverse_depth(x, percentiles=(50, 10))


# --------------------------------------------------------------------------- ONNX estimation


def needs_onnx(fn):  # kept as a marker of the tests that run ONNX Runtime
    return fn


def _save(path, nodes, in_shape, out_shape, inits=()):
    graph = helper.make_graph(
        nodes,
        "tiny_depth",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, out_shape)],
        list(inits),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def channel_model(path, size, channel=0, dims=None, scale=None):
    """Output = the normalized input's ``channel`` (N x H x W), optionally resized by ``scale``."""
    h, w = dims or (size, size)
    idx = numpy_helper.from_array(np.array(channel, dtype=np.int64), "idx")
    nodes = [helper.make_node("Gather", ["image", "idx"], ["g" if scale else "depth"], axis=1)]
    inits = [idx]
    out_shape = [1, h, w]
    if scale:
        inits.append(numpy_helper.from_array(np.array([1.0, scale, scale], np.float32), "scales"))
        nodes.append(helper.make_node("Resize", ["g", "", "scales"], ["depth"], mode="linear"))
        out_shape = [1, int(h * scale), int(w * scale)] if isinstance(h, int) else [1, "oh", "ow"]
    return _save(path, nodes, [1, 3, h, w], out_shape, inits)


def mean_model(path, size):
    """Output = mean over channels of the normalized input, via ReduceMean (N x H x W)."""
    node = helper.make_node("ReduceMean", ["image"], ["depth"], axes=[1], keepdims=0)
    return _save(path, [node], [1, 3, size, size], [1, size, size])


def conv_model(path, size, weights):
    """Output = 1x1 convolution of the normalized input (N x 1 x H x W)."""
    w = numpy_helper.from_array(np.asarray(weights, np.float32).reshape(1, 3, 1, 1), "w")
    node = helper.make_node("Conv", ["image", "w"], ["depth"])
    return _save(path, [node], [1, 3, size, size], [1, 1, size, size], [w])


def _ramp_image(w=70, h=50):
    img = np.zeros((h, w, 3), np.float32)
    img[:, :, 0] = np.linspace(0.0, 1.0, w)[None, :]
    img[:, :, 1] = 0.3
    return img


@needs_onnx
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_detected_and_normalized(tmp_path, family):
    fam = FAMILIES[family]
    est = DepthEstimator(channel_model(tmp_path / "model.onnx", fam.size))
    assert est.family == family and est.input_size == (fam.size, fam.size)
    color = (0.2, 0.5, 0.8)
    raw = est.raw(np.broadcast_to(np.asarray(color, np.float32), (40, 60, 3)))
    assert raw.shape == (fam.size, fam.size)
    assert np.allclose(raw, (color[0] - fam.mean[0]) / fam.std[0], atol=1e-4)
    mean = DepthEstimator(mean_model(tmp_path / "mean.onnx", fam.size)).raw(
        np.broadcast_to(np.asarray(color, np.float32), (40, 60, 3))
    )
    want = np.mean([(c - m) / s for c, m, s in zip(color, fam.mean, fam.std)])
    assert np.allclose(mean, want, atol=1e-4)


@needs_onnx
def test_output_is_image_sized_unit_range_and_near_is_one(tmp_path):
    # raw output = normalized red channel: the redder (right) side is "nearer" (larger inverse depth)
    path = conv_model(tmp_path / "depth_anything_vits.onnx", 518, [1.0, 0.0, 0.0])
    img = _ramp_image()
    out = estimate_depth(img, path)
    assert out.shape == (50, 70) and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.all(np.diff(out, axis=1) >= -1e-6)
    assert out[:, -1].min() > 0.99 and out[:, 0].max() < 0.01
    assert np.allclose(out, out[:1], atol=1e-5)  # rows agree: no vertical artefact


@needs_onnx
def test_low_resolution_output_is_resized_back(tmp_path):
    est = DepthEstimator(channel_model(tmp_path / "dpt_small_out.onnx", 384, scale=0.5))
    assert est.raw(_ramp_image()).shape == (192, 192)
    out = est(_ramp_image(w=33, h=21))
    assert out.shape == (21, 33) and np.all(np.diff(out, axis=1) >= -1e-6)


@needs_onnx
def test_constant_output_gives_zeros(tmp_path):
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    idx = numpy_helper.from_array(np.array(0, np.int64), "idx")
    nodes = [
        helper.make_node("Gather", ["image", "idx"], ["g"], axis=1),
        helper.make_node("Mul", ["g", "zero"], ["depth"]),
    ]
    path = _save(tmp_path / "flat.onnx", nodes, [1, 3, 256, 256], [1, 256, 256], [idx, zero])
    out = estimate_depth(_ramp_image(), path)
    assert np.all(out == 0.0)


@needs_onnx
def test_dynamic_models_need_a_name_or_family(tmp_path):
    dims = ("height", "width")
    est = DepthEstimator(channel_model(tmp_path / "midas_v21_small.onnx", 0, dims=dims))
    assert est.family == "midas_small" and est.input_size == (256, 256)
    anonymous = channel_model(tmp_path / "model.onnx", 0, dims=dims)
    with pytest.raises(InvalidInputError, match="family="):
        _ = DepthEstimator(anonymous).family
    est = DepthEstimator(anonymous, family="depth_anything")
    assert est.input_size == (518, 518) and est(_ramp_image()).shape == (50, 70)


@needs_onnx
def test_explicit_family_overrides_detection(tmp_path):
    est = DepthEstimator(channel_model(tmp_path / "m.onnx", 384), family="midas_small")
    assert est.family == "midas_small" and est.input_size == (384, 384)  # the model's size still rules
    raw = est.raw(np.full((8, 8, 3), 0.6, np.float32))
    assert np.allclose(raw, (0.6 - 0.485) / 0.229, atol=1e-4)


def test_detect_family_rules():
    assert detect_family("depth_anything_v2_vits.onnx", [1, 3, "h", "w"]) == "depth_anything"
    assert detect_family("Depth-Anything-Large.onnx", [1, 3, 518, 518]) == "depth_anything"
    assert detect_family("midas_v21_small_256.onnx", [1, 3, 256, 256]) == "midas_small"
    assert detect_family("dpt_hybrid_384.onnx", [1, 3, 384, 384]) == "dpt"
    assert detect_family("dpt_beit_large_512.onnx", [1, 3, 512, 512]) == "dpt"
    assert detect_family("model.onnx", [1, 3, 256, 256]) == "midas_small"
    assert detect_family("model.onnx", [1, 3, 384, 384]) == "dpt"
    assert detect_family("model.onnx", [1, 3, 364, 644]) == "depth_anything"
    assert detect_family("model.onnx", [1, 3, 500, 500]) is None
    assert detect_family("model.onnx", ["n", 3, "h", "w"]) is None


@needs_onnx
def test_channels_last_models(tmp_path):
    idx = numpy_helper.from_array(np.array(0, np.int64), "idx")
    node = helper.make_node("Gather", ["image", "idx"], ["depth"], axis=3)
    path = _save(tmp_path / "nhwc.onnx", [node], [1, 256, 256, 3], [1, 256, 256], [idx])
    est = DepthEstimator(path)
    assert est.channels_last and est.family == "midas_small"
    assert np.allclose(est.raw(np.full((8, 8, 3), 0.6, np.float32)), (0.6 - 0.485) / 0.229, atol=1e-4)


@needs_onnx
def test_estimator_reuses_its_session(tmp_path):
    est = DepthEstimator(channel_model(tmp_path / "m.onnx", 256))
    first = est.session
    estimate_depth(_ramp_image(), est)
    est(_ramp_image())
    assert est.session is first
    with pytest.raises(InvalidInputError, match="belong to the DepthEstimator"):
        estimate_depth(_ramp_image(), est, family="dpt")


@needs_onnx
def test_model_lookup_and_errors(tmp_path, clean_env):
    channel_model(tmp_path / "dpt.onnx", 384)
    clean_env.setenv("GOUACHE_DEPTH_MODELS", str(tmp_path))
    assert DepthEstimator("dpt").path == tmp_path / "dpt.onnx"
    assert DepthEstimator(model_type="DPT_Large").path == tmp_path / "dpt.onnx"  # Glimpse3D's keyword and name
    with pytest.raises(DownloadError, match=r"looked for midas_small.onnx.*gouache pull"):
        DepthEstimator("midas_small")
    with pytest.raises(InvalidInputError, match="neither an .onnx file nor a depth model name"):
        DepthEstimator(tmp_path / "nope.onnx")
    with pytest.raises(InvalidInputError, match="not both"):
        DepthEstimator("dpt", model_type="DPT_Large")
    with pytest.raises(InvalidInputError, match="family must be one of"):
        DepthEstimator(tmp_path / "dpt.onnx", family="zoe")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(InvalidInputError, match="cannot load"):
        _ = DepthEstimator(tmp_path / "junk.onnx").session
    with pytest.raises(InvalidInputError, match="not available"):
        _ = DepthEstimator(tmp_path / "dpt.onnx", providers=["NoSuchExecutionProvider"]).session


def test_missing_onnxruntime_names_the_extra(tmp_path, monkeypatch):
    import sys

    path = tmp_path / "m.onnx"
    path.write_bytes(b"never read: onnxruntime is missing")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match=r"gouache\[enhance\]"):
        estimate_depth(_ramp_image(), path)


@needs_onnx
def test_default_model_glimpse3d_methods_and_shared_session(tmp_path, clean_env):
    path = channel_model(tmp_path / "m.onnx", 256)
    clean_env.setenv("GOUACHE_DEPTH_MODEL", str(path))
    est = DepthEstimator()  # the default is the environment's
    assert est.path == path and est.family == "midas_small"
    img = _ramp_image()
    assert np.array_equal(est.estimate(img), est(img))
    raw = est.estimate(img, normalize=False)  # the model's own units, at the image's size
    assert raw.shape == (50, 70) and raw.max() > 1.0 and raw.dtype == np.float32
    assert [d.shape for d in est.estimate_batch([img, img[:20]])] == [(50, 70), (20, 70)]
    first = get_estimator()
    estimate_depth(img)
    assert get_estimator() is first  # the README's loop over views loads the model once
    assert get_estimator(device="cpu") is not first  # another request: another session (the last one is kept)
    assert DepthEstimator(path, device="cpu").session.get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(InvalidInputError, match="device= or providers="):
        DepthEstimator(path, device="cpu", providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------- confidence helpers (Glimpse3D's)


def test_apply_confidence_mask_and_reliable_mask():
    rng = np.random.default_rng(0)
    depth = rng.random((100, 100)).astype(np.float32)
    confidence = rng.random((100, 100)).astype(np.float32)
    masked = apply_confidence_mask(depth, confidence, threshold=0.5)
    assert masked[confidence < 0.5].sum() == 0 and np.array_equal(masked[confidence >= 0.5], depth[confidence >= 0.5])
    assert np.all(apply_confidence_mask(depth, confidence, 0.5, fill_value=-1.0)[confidence < 0.5] == -1.0)
    # two solid regions, one big and one small, plus speckle
    conf = np.zeros((60, 60), np.float32)
    conf[5:35, 5:35] = 0.9
    conf[45:52, 45:52] = 0.9
    conf[rng.random((60, 60)) < 0.02] = 1.0
    mask = get_reliable_depth_mask(conf, threshold=0.5, min_region_size=100)
    assert mask.dtype == bool and mask.shape == conf.shape
    assert mask[10:30, 10:30].all() and not mask[45:52, 45:52].any()  # the small region is dropped
    assert mask.sum() < 30 * 30 + 10  # and the speckle
    assert get_reliable_depth_mask(conf, 0.5, min_region_size=0)[46:51, 46:51].all()
    with pytest.raises(InvalidInputError, match=r"confidence values must lie in \[0, 1\]"):
        get_reliable_depth_mask(conf * 3)


def test_weighted_fusion_follows_confidence():
    rng = np.random.default_rng(1)
    d1, d2 = rng.random((40, 40)).astype(np.float32), rng.random((40, 40)).astype(np.float32)
    fused, conf = weighted_depth_fusion([d1, d2], [np.full_like(d1, 0.8), np.full_like(d2, 0.2)], normalize=False)
    assert np.allclose(fused, 0.8 * d1 + 0.2 * d2, atol=1e-6) and np.all(conf == np.float32(0.8))
    norm, _ = weighted_depth_fusion([d1, d2], [np.full_like(d1, 0.8), np.full_like(d2, 0.2)])
    assert norm.min() == 0.0 and norm.max() == 1.0
    zero, _ = weighted_depth_fusion([d1, d2], [np.zeros_like(d1)] * 2, normalize=False)
    assert np.allclose(zero, (d1 + d2) / 2)  # no confidence anywhere: the plain mean
    with pytest.raises(InvalidInputError, match="one map per depth map"):
        weighted_depth_fusion([d1, d2], [d1])
    with pytest.raises(InvalidInputError, match="same shape"):
        weighted_depth_fusion([d1, d2[:10]], [d1, d2[:10]])


# --------------------------------------------------------------------------- saving and loading


def test_depth_files_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    depth = (3.0 + 4.0 * rng.random((30, 40))).astype(np.float32)
    for name in ("d.npy", "d.tiff"):
        save_depth(depth, tmp_path / name)
        assert np.array_equal(load_depth(tmp_path / name), depth)
    save_depth(depth, tmp_path / "d.png")
    back = load_depth(tmp_path / "d.png")
    assert np.abs(back - depth).max() <= (depth.max() - depth.min()) / 65535 + 1e-5  # 16-bit, original units
    from PIL import Image

    with Image.open(tmp_path / "d.png") as im:
        assert im.mode.startswith("I") and np.asarray(im).max() == 65535  # an ordinary 16-bit PNG to other tools
    save_depth_raw(depth, tmp_path / "raw.npy")
    assert np.array_equal(load_depth_raw(tmp_path / "raw.npy"), depth)
    save_depth_grayscale(depth / 8.0, tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as im:
        assert im.mode == "L" and im.size == (40, 30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npy", "d.png", "d.tiff", "g.png", "raw.npy"]


def test_depth_files_are_never_overwritten_silently(tmp_path):
    target = tmp_path / "d.npy"
    target.write_bytes(b"user data")
    with pytest.raises(InvalidInputError, match="exists"):
        save_depth_raw(np.zeros((4, 4)), target)
    assert target.read_bytes() == b"user data"
    save_depth_raw(np.ones((4, 4)), target, overwrite=True)
    assert np.all(load_depth_raw(target) == 1.0)
    with pytest.raises(InvalidInputError, match="extension must be one of"):
        save_depth(np.zeros((4, 4)), tmp_path / "d.exr")
    with pytest.raises(InvalidInputError, match="writes .npy"):
        save_depth_raw(np.zeros((4, 4)), tmp_path / "d.png")
    with pytest.raises(InvalidInputError, match="not a readable .npy"):
        (tmp_path / "bad.npy").write_bytes(b"junk")
        load_depth(tmp_path / "bad.npy")
