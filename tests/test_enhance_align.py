"""Multi-view alignment of relative inverse-depth maps (gouache.enhance.depth.align).

Scenes are ray cast in numpy (gouache.testing.scenes: spheres and a box in an off-centre
room, known cameras); every "estimate" is what a monocular network gives: the true inverse
depth blurred, noisy, times a random scale plus a random shift per view, normalized to
[0, 1] (clipped at the 0.5/99.5 percentiles), sometimes with wrong patches.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from gouache import InvalidInputError
from gouache.enhance import align_depth_scales
from gouache.enhance.depth import (
    align_depth_scales_global,
    compute_alignment_quality,
    estimate_overlap_simple,
    fit_depth_alignment,
)
from gouache.testing import scenes

SCENE = scenes.spheres_in_room()
W = H = 112
K = scenes.intrinsics(W, H, fov_deg=50)


def render(poses, K=K, w=W, h=H):
    return [1.0 / SCENE.render(p, K, w, h).depth for p in poses]


def estimates(inv, seed, **kw):
    rng = np.random.default_rng(seed)
    kw = {"noise": 0.005, "blur": 1, **kw}
    return [scenes.estimate_like(1.0 / t, rng, **kw) for t in inv]


def relative_residual(aligned, truth, keep=None):
    """Mean |x - t| / t over all views, after ONE affine map shared by all views (fitted by
    relative least squares), and the raw one (no affine: the maps' own units)."""
    keep = keep or [np.ones(t.shape, bool) for t in truth]
    a = np.concatenate([x[k] for x, k in zip(aligned, keep)]).astype(np.float64)
    t = np.concatenate([x[k] for x, k in zip(truth, keep)])
    coef, *_ = np.linalg.lstsq(np.stack([a / t, 1.0 / t], 1), np.ones_like(t), rcond=None)
    return float(np.mean(np.abs(coef[0] * a + coef[1] - t) / t)), float(np.mean(np.abs(a - t) / t))


def oracle(maps, truth, keep=None):
    """The same measure when every view's own affine map is fitted to the truth: the floor
    the noise and blur allow."""
    keep = keep or [np.ones(t.shape, bool) for t in truth]
    out = []
    for m, t, k in zip(maps, truth, keep):
        coef = np.polyfit(m[k], t[k], 1, w=1.0 / t[k])
        out.append(np.abs(np.polyval(coef, m[k]) - t[k]) / t[k])
    return float(np.mean(np.concatenate(out)))


def rot_y(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


# --------------------------------------------------------------------------- the scene


@pytest.fixture(scope="module")
def orbit20():
    poses = scenes.orbit(4, step_deg=20, wobble=0.05)
    inv = render(poses)
    est = estimates(inv, seed=0)
    return poses, inv, [e.map for e in est]


def test_relative_estimates_with_poses_meet_the_targets_in_metric_units(orbit20):
    poses, inv, maps = orbit20
    result = fit_depth_alignment(maps, poses, K)
    after_affine, raw = relative_residual(result.aligned, inv)
    floor = oracle(maps, inv)
    assert result.gauge == "metric" and result.method == "poses" and not result.unaligned
    assert after_affine < 0.03 and after_affine < floor + 0.002, (after_affine, floor)
    assert raw < 0.03, raw  # no affine needed: the poses' units
    assert result.noise_to_parallax < 0.5
    for (a, b), m, x in zip(result.params, maps, result.aligned):
        assert np.allclose(a * m + b, x, rtol=1e-5, atol=1e-6)
    # what the same maps give without poses, and with Glimpse3D's plain fit at equal pixels
    no_poses, _ = relative_residual(align_depth_scales(maps), inv)
    plain = [maps[0]] + [np.polyval(np.polyfit(m.ravel(), maps[0].ravel(), 1), m) for m in maps[1:]]
    assert after_affine < min(no_poses, relative_residual(plain, inv)[0]) - 0.01, (after_affine, no_poses)


def test_depths_are_metric_z_depth(orbit20):
    poses, inv, maps = orbit20
    result = fit_depth_alignment(maps, poses, K)
    depth = result.depths()[1]
    truth = 1.0 / inv[1]
    assert depth.dtype == np.float32 and depth.shape == truth.shape
    assert np.median(np.abs(depth - truth) / truth) < 0.03


@pytest.mark.parametrize("convention, pose_type", [("opencv", "w2c"), ("opengl", "c2w"), ("opengl", "w2c")])
def test_camera_conventions_give_the_same_alignment(orbit20, convention, pose_type):
    poses, _, maps = orbit20
    ref = fit_depth_alignment(maps, poses, K)
    other = [scenes.convert_pose(p, convention=convention, pose_type=pose_type) for p in poses]
    got = fit_depth_alignment(maps, other, [K] * len(other), convention=convention, pose_type=pose_type)
    assert np.allclose(got.params, ref.params, rtol=1e-6)
    # and the wrong convention is not silently equivalent
    wrong = fit_depth_alignment(
        maps, other, K, convention="opencv" if convention == "opengl" else "opengl", pose_type=pose_type
    )
    assert not np.allclose(wrong.params, ref.params, rtol=1e-2)


def test_turntable_all_around():
    """Eight views over 360 degrees: the opposite views see the other side; occlusions are
    a large share of the correspondences between 45-degree neighbours."""
    poses = scenes.orbit(8, step_deg=45)
    inv = render(poses)
    maps = [e.map for e in estimates(inv, seed=1)]
    result = fit_depth_alignment(maps, poses, K)
    after_affine, raw = relative_residual(result.aligned, inv)
    assert result.gauge == "metric"
    assert after_affine < 0.03 and raw < 0.06, (after_affine, raw)


def test_forward_motion():
    base = scenes.look_at((0.0, 1.2, 5.0))
    poses = []
    for k in range(4):
        p = base.copy()
        p[:3, 3] += 0.3 * k * base[:3, 2]  # walking towards the objects
        poses.append(p)
    inv = render(poses)
    maps = [e.map for e in estimates(inv, seed=2)]
    after_affine, _ = relative_residual(fit_depth_alignment(maps, poses, K).aligned, inv)
    assert after_affine < 0.03


def test_wrong_patches_and_masks_are_ignored():
    poses = scenes.orbit(4, step_deg=20, wobble=0.05)
    inv = render(poses)
    est = estimates(inv, seed=3, bad_patches=3)
    maps = [e.map for e in est]
    keep = [~e.corrupted for e in est]
    result = fit_depth_alignment(maps, poses, K)
    after_affine, raw = relative_residual(result.aligned, inv, keep)
    assert after_affine < 0.03 and raw < 0.04, (after_affine, raw)
    # a mask that hides a garbage half of one view
    garbage = [m.copy() for m in maps]
    garbage[2][:, : W // 2] = np.random.default_rng(4).uniform(0, 1, (H, W // 2))
    masks = [None, None, np.ones((H, W), bool), None]
    masks[2][:, : W // 2] = False
    masked = fit_depth_alignment(garbage, poses, K, masks=masks)
    keep[2] = keep[2] & masks[2]  # the garbage half has no true value to compare with
    assert relative_residual(masked.aligned, inv, keep)[0] < 0.03
    unmasked = fit_depth_alignment(garbage, poses, K)
    assert relative_residual(unmasked.aligned, inv, keep)[0] > relative_residual(masked.aligned, inv, keep)[0]


def test_views_of_different_sizes_and_intrinsics():
    sizes = [(160, 120, 40.0), (96, 72, 55.0), (72, 120, 45.0)]
    poses = scenes.orbit(3, step_deg=18, wobble=0.05)
    Ks = [scenes.intrinsics(w, h, fov_deg=f) for w, h, f in sizes]
    inv = [1.0 / SCENE.render(p, k, w, h).depth for p, k, (w, h, _) in zip(poses, Ks, sizes)]
    maps = [e.map for e in estimates(inv, seed=5)]
    result = fit_depth_alignment(maps, poses, Ks)
    assert [m.shape for m in result.aligned] == [(120, 160), (72, 96), (120, 72)]
    after_affine, raw = relative_residual(result.aligned, inv)
    assert after_affine < 0.03 and raw < 0.05, (after_affine, raw)


def test_metric_depth_anchors_the_scale(orbit20):
    poses, inv, maps = orbit20
    depth2 = 1.0 / inv[2]
    depth2[:5] = np.inf  # non-finite pixels are ignored
    result = fit_depth_alignment(maps, poses, K, metric_depth={2: depth2})
    assert result.gauge == "metric_depth"
    assert relative_residual(result.aligned, inv)[1] < 0.03
    # without poses, the metric view is fitted on its own pixels and the others to it
    eq = fit_depth_alignment(maps, metric_depth=[None, None, 1.0 / inv[2], None], reference=2)
    assert eq.gauge == "metric_depth" and np.mean(np.abs(eq.aligned[2] - inv[2]) / inv[2]) < 0.02


# --------------------------------------------------------------------------- when the scale is not observable


def test_same_viewpoint_views_agree_within_one_percent(caplog):
    """Views rotating about one point: no parallax, so no metric scale; the maps must still
    agree with each other (one affine map for all of them), in the reference's units."""
    base = scenes.look_at((0.0, 1.2, 5.0))
    poses = []
    for k in range(4):
        p = base.copy()
        p[:3, :3] = rot_y(7.0 * (k - 1.5)) @ base[:3, :3]
        poses.append(p)
    inv = render(poses)
    maps = [e.map for e in estimates(inv, seed=6, noise=0.0, blur=0)]
    with caplog.at_level(logging.WARNING, logger="gouache.enhance"):
        result = fit_depth_alignment(maps, poses, K, reference=1)
    assert result.gauge == "relative" and "relative gauge" in caplog.text
    assert result.params[1] == pytest.approx((1.0, 0.0))
    assert np.allclose(result.aligned[1], maps[1])
    assert relative_residual(result.aligned, inv)[0] < 0.01


def test_identical_poses_fall_back_like_equal_pixels():
    pose = scenes.look_at((0.0, 1.2, 5.0))
    inv = render([pose])[0]
    maps = [e.map for e in estimates([inv] * 3, seed=7, noise=0.0, blur=0)]
    result = fit_depth_alignment(maps, [pose] * 3, K)
    assert result.gauge == "relative" and result.params[0] == pytest.approx((1.0, 0.0))
    assert relative_residual(result.aligned, [inv] * 3)[0] < 0.01


def test_tiny_baseline_falls_back_to_the_relative_gauge():
    poses = scenes.orbit(4, step_deg=0.1)
    inv = render(poses)
    maps = [e.map for e in estimates(inv, seed=8)]
    result = fit_depth_alignment(maps, poses, K)
    assert result.gauge == "relative" and result.noise_to_parallax > 0.5
    assert relative_residual(result.aligned, inv)[0] < 0.03


# --------------------------------------------------------------------------- without poses


@pytest.mark.parametrize("loss", ["tukey", "huber"])
def test_equal_pixel_alignment_recovers_scale_and_shift_despite_outliers(loss):
    rng = np.random.default_rng(3)
    inv = render([scenes.look_at((0.0, 1.2, 5.0))])[0]
    truth = [(1.0, 0.0), (0.37, 0.21), (2.5, -0.04), (1.3, 0.11)]
    maps = [inv]
    for a, b in truth[1:]:
        m = (inv - b) / a
        bad = rng.random(m.shape) < 0.05
        m[bad] = rng.uniform(m.min(), m.max(), int(bad.sum()))
        maps.append(m)
    result = fit_depth_alignment(maps, loss=loss)
    assert result.method == "equal_pixels" and result.gauge == "relative"
    for (a, b), (fa, fb) in zip(truth, result.params):
        assert abs(fa - a) < 0.01 * a and abs(fb - b) < 0.01 * a + 1e-9, (a, b, fa, fb)
    assert all(x.dtype == np.float32 and x.shape == inv.shape for x in result.aligned)


def test_masks_exclude_garbage_regions_at_equal_pixels():
    rng = np.random.default_rng(5)
    inv = render([scenes.look_at((0.0, 1.2, 5.0))])[0]
    m = (inv - 0.1) / 0.8
    m[:, : W // 2] = rng.uniform(0, 5, (H, W // 2))
    mask = np.ones(inv.shape, bool)
    mask[:, : W // 2] = False
    params = fit_depth_alignment([inv, m], masks=[None, mask]).params
    assert params[1] == pytest.approx((0.8, 0.1), rel=0.01)


def test_glimpse3d_global_alignment_holds_views_through_each_other():
    """View 1 shares only a strip with the reference, view 2 only the other half; every pair
    constrains the joint fit, so all three come out exact."""
    rng = np.random.default_rng(9)
    inv = render([scenes.look_at((0.0, 1.2, 5.0))])[0]
    truth = [(1.0, 0.0), (0.5, 0.1), (2.0, -0.05)]
    maps = [(inv - b) / a for a, b in truth]
    left = np.zeros(inv.shape, bool)
    left[:, : W // 2] = True
    overlap = [
        [None, left & (np.arange(W) < 8)[None, :], ~left],
        [None, None, np.ones(inv.shape, bool)],
        [None, None, None],
    ]
    overlap[1][0], overlap[2][0], overlap[2][1] = overlap[0][1], overlap[0][2], overlap[1][2]
    aligned = align_depth_scales_global(maps, overlap)
    for x in aligned:
        assert np.allclose(x, inv, rtol=1e-4, atol=1e-6)
    noisy = [m + 0.002 * rng.standard_normal(m.shape) for m in maps]
    assert all(np.median(np.abs(x - inv) / inv) < 0.02 for x in align_depth_scales_global(noisy))


def test_glimpse3d_helpers():
    rng = np.random.default_rng(10)
    assert align_depth_scales([]) == []
    single = rng.random((20, 30)).astype(np.float32)
    assert np.allclose(align_depth_scales([single])[0], single)
    one = fit_depth_alignment([single], [np.eye(4)], K)
    assert one.params == [(1.0, 0.0)] and one.unaligned == () and np.array_equal(one.aligned[0], single)
    d1, d2 = rng.random((100, 100)), rng.random((100, 100))
    m1, m2 = estimate_overlap_simple(d1, d2)
    assert m1.dtype == bool and m2.shape == (100, 100)
    ramp = np.tile(np.linspace(0.0, 1.0, 100), (100, 1))
    wide, _ = estimate_overlap_simple(ramp, ramp, view_angle_diff=0.0)
    mid, _ = estimate_overlap_simple(ramp, ramp)
    narrow, _ = estimate_overlap_simple(ramp, ramp, view_angle_diff=150.0)
    assert wide.sum() > mid.sum() > narrow.sum() > 0
    assert not wide[:, :5].any() and not wide[:, -5:].any()  # extreme values excluded
    assert compute_alignment_quality([single]) == {"status": "insufficient_views", "n_views": 1}
    base = 0.25 + 0.5 * ramp
    same = compute_alignment_quality([base, base])
    assert same["n_views"] == 2 and same["mean_error"] == 0.0 and same["max_error"] == 0.0
    off = compute_alignment_quality([base, base * 1.5])
    assert off["mean_error"] == pytest.approx(1 / 3, rel=1e-6) and off["pairwise_errors"][0]["views"] == (0, 1)
    speckle = compute_alignment_quality([d1, d2])  # nothing survives the overlap heuristic: no number
    assert speckle["pairwise_errors"] == [] and np.isnan(speckle["mean_error"])


def test_quality_with_poses_compares_the_same_3d_points(orbit20):
    poses, inv, maps = orbit20
    good = compute_alignment_quality(inv, poses=poses, intrinsics=K)
    assert len(good["pairwise_errors"]) == 3 and good["max_error"] < 0.01
    aligned = fit_depth_alignment(maps, poses, K).aligned
    assert compute_alignment_quality(aligned, poses=poses, intrinsics=K)["mean_error"] < 0.03
    assert compute_alignment_quality(maps, poses=poses, intrinsics=K)["mean_error"] > 0.1  # not aligned


def test_alignment_rejects_bad_inputs(orbit20):
    poses, _, maps = orbit20
    maps = maps[:2]
    bad = maps[1].copy()
    bad[3, 3] = np.nan
    with pytest.raises(InvalidInputError, match=r"depth_maps\[1\].*NaN"):
        fit_depth_alignment([maps[0], bad])
    with pytest.raises(InvalidInputError, match="intrinsics"):
        fit_depth_alignment(maps, poses[:2])
    with pytest.raises(InvalidInputError, match="reference"):
        fit_depth_alignment(maps, reference=2)
    with pytest.raises(InvalidInputError, match="poses must be 2"):
        fit_depth_alignment(maps, poses[:3], K)
    with pytest.raises(InvalidInputError, match="equal pixels"):
        fit_depth_alignment([maps[0], maps[1][:50]])
    with pytest.raises(InvalidInputError, match="loss"):
        fit_depth_alignment(maps, loss="l2")
    with pytest.raises(InvalidInputError, match="convention"):
        fit_depth_alignment(maps, poses[:2], K, convention="unity")
    with pytest.raises(InvalidInputError, match="pose_type"):
        fit_depth_alignment(maps, poses[:2], K, pose_type="view")
    scaled = [p.copy() for p in poses[:2]]
    scaled[1][:3, :3] *= 2.0
    with pytest.raises(InvalidInputError, match=r"poses\[1\] rotation"):
        fit_depth_alignment(maps, scaled, K)
    with pytest.raises(InvalidInputError, match="samples_per_view"):
        fit_depth_alignment(maps, poses[:2], K, samples_per_view=3)
