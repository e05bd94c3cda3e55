"""gouache.enhance.match_colors and the numpy colour conversions behind it."""

from __future__ import annotations

import numpy as np
import pytest

from gouache import InvalidInputError
from gouache.enhance import match_colors
from gouache.enhance._color import lab_to_rgb, linear_to_srgb, rgb_to_lab, srgb_to_linear


def scene(h=64, w=96, seed=0) -> np.ndarray:
    """A colourful smooth image with a few flat shapes, in [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack(
        [
            0.5 + 0.35 * np.sin(2 * np.pi * (rng.uniform(0.5, 2) * u + rng.uniform(0.5, 2) * v + p))
            for p in rng.uniform(0, 1, 3)
        ],
        axis=2,
    )
    img[10:25, 10:30] = (0.8, 0.2, 0.15)
    img[40:60, 50:90] = (0.15, 0.3, 0.75)
    return img.astype(np.float32)


def test_lab_reference_values_and_round_trip():
    assert np.allclose(rgb_to_lab(np.array([1.0, 1.0, 1.0])), [100.0, 0.0, 0.0], atol=1e-4)
    assert np.allclose(rgb_to_lab(np.array([0.0, 0.0, 0.0])), [0.0, 0.0, 0.0], atol=1e-6)
    assert np.allclose(rgb_to_lab(np.array([1.0, 0.0, 0.0])), [53.24, 80.09, 67.20], atol=0.05)
    assert np.allclose(rgb_to_lab(np.array([0.0, 0.0, 1.0])), [32.30, 79.19, -107.86], atol=0.05)
    rgb = np.random.default_rng(1).random((500, 3))
    assert np.abs(lab_to_rgb(rgb_to_lab(rgb)) - rgb).max() < 1e-9
    assert np.abs(linear_to_srgb(srgb_to_linear(rgb)) - rgb).max() < 1e-12


@pytest.mark.parametrize("method", ["lab_meanstd", "histogram"])
def test_identity_when_result_is_reference(method):
    img = scene()
    out = match_colors(img, img, method=method)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert np.abs(out - img).max() < 1e-5


@pytest.mark.parametrize("shift", ["tint", "tone"])
def test_lab_meanstd_recovers_a_colour_shifted_copy(shift):
    ref = scene()
    if shift == "tint":  # a global colour cast and a contrast change, as diffusion drifts
        shifted = lab_to_rgb(rgb_to_lab(ref) * np.array([0.9, 1.0, 1.0]) + np.array([3.0, 6.0, -8.0]))
    else:  # brightness and contrast in sRGB
        shifted = np.clip(ref * 1.1 + 0.03, 0, 1)
    before = np.abs(shifted - ref).mean()
    after = np.abs(match_colors(shifted.astype(np.float32), ref) - ref).mean()
    assert after < 0.005 and after < 0.1 * before, (before, after)


def test_histogram_recovers_per_channel_gains_lab_meanstd_improves_them():
    ref = scene()
    shifted = np.clip(ref * np.array([0.8, 1.0, 1.15]) + np.array([0.08, -0.04, 0.0]), 0, 1).astype(np.float32)
    before = np.abs(shifted - ref).mean()
    assert np.abs(match_colors(shifted, ref, method="histogram") - ref).mean() < 1e-4
    assert np.abs(match_colors(shifted, ref) - ref).mean() < 0.8 * before  # per-pixel hue shifts remain


def test_histogram_recovers_a_monotonic_per_channel_change():
    ref = np.rint(scene(seed=2) * 255).astype(np.uint8)
    curve = lambda x: (x.astype(np.float64) / 255) ** np.array([1.4, 0.8, 1.1])  # noqa: E731
    out = match_colors(curve(ref), ref, method="histogram")
    assert np.abs(out - ref / 255.0).max() < 1e-6


def test_mask_limits_statistics_and_changes():
    ref = scene(seed=3)
    shifted = ref.copy()
    mask = np.zeros(ref.shape[:2], np.float32)
    mask[:, :48] = 1.0
    shifted[:, :48] = np.clip(shifted[:, :48] + 0.1, 0, 1)  # only the masked half drifted
    for method in ("lab_meanstd", "histogram"):
        out = match_colors(shifted, ref, method=method, mask=mask)
        assert np.array_equal(out[:, 48:], shifted[:, 48:]), method  # outside untouched
        assert np.abs(out[:, :48] - ref[:, :48]).mean() < 0.02, method


def test_different_sizes_without_mask_and_errors():
    ref = scene()
    small = scene(32, 48)
    assert match_colors(small, ref).shape == small.shape
    with pytest.raises(InvalidInputError, match="method must be one of lab_meanstd, histogram"):
        match_colors(ref, ref, method="reinhard")
    with pytest.raises(InvalidInputError, match="same size"):
        match_colors(small, ref, mask=np.ones(small.shape[:2], np.float32))
    with pytest.raises(InvalidInputError, match="selects no pixel"):
        match_colors(ref, ref, mask=np.zeros(ref.shape[:2], np.float32))
    with pytest.raises(InvalidInputError, match="result float values"):
        match_colors(ref * 3, ref)
