"""Colour matching of an enhanced view to its input, so that views stay consistent.

Colour spaces are implemented with numpy: sRGB <-> linear sRGB (IEC 61966-2-1 transfer
curve) <-> CIE XYZ (D65) <-> CIE L*a*b* (D65 white).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import InvalidInputError
from ._inputs import load_image, load_mask

#: Linear sRGB -> XYZ (D65).
_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE = _RGB_TO_XYZ.sum(axis=1)  # D65 white of this matrix, so sRGB white -> a = b = 0
_DELTA = 6.0 / 29.0
_METHODS = ("lab_meanstd", "histogram")
_MIN_STD = 1e-6
_MAX_RATIO = 10.0


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """sRGB values in ``[0, 1]`` to linear light."""
    c = np.asarray(rgb, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, np.power((np.maximum(c, 0.04045) + 0.055) / 1.055, 2.4))


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear light to sRGB values, clipped to ``[0, 1]``."""
    c = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(np.maximum(c, 0.0031308), 1.0 / 2.4) - 0.055)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` sRGB in ``[0, 1]`` to CIE L*a*b* (D65): L in ``[0, 100]``."""
    xyz = srgb_to_linear(rgb) @ _RGB_TO_XYZ.T / _WHITE
    f = np.where(xyz > _DELTA**3, np.cbrt(xyz), xyz / (3 * _DELTA**2) + 4.0 / 29.0)
    return np.stack(
        [116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], axis=-1
    )


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) to sRGB in ``[0, 1]`` (out-of-gamut colours clipped)."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = np.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4.0 / 29.0)) * _WHITE
    return linear_to_srgb(xyz @ _XYZ_TO_RGB.T)


def match_colors(result: Any, reference: Any, method: str = "lab_meanstd", mask: Any = None) -> np.ndarray:
    """``result``'s colours matched to ``reference``'s; float32 ``(H, W, 3)`` in ``[0, 1]``.

    ``method="lab_meanstd"``: in L*a*b*, each channel of ``result`` is shifted and scaled
    so that its mean and standard deviation equal ``reference``'s (Reinhard transfer;
    the scale is bounded to ``[0.1, 10]``).  ``method="histogram"``: each RGB channel is
    mapped through its quantiles onto ``reference``'s distribution.

    ``mask`` (``result``'s size; ``reference`` must then have the same size): statistics
    are taken over the masked region only (weighted by the mask for ``lab_meanstd``,
    pixels > 0.5 for ``histogram``), and the change is applied in proportion to the mask,
    so unmasked pixels are untouched.  Images are loaded with :func:`load_image`; their
    alpha is ignored.
    """
    if method not in _METHODS:
        raise InvalidInputError(f"method must be one of {', '.join(_METHODS)}; got {method!r}")
    res, _ = load_image(result, name="result")
    ref, _ = load_image(reference, name="reference")
    weights_res, weights_ref, blend = _weights(mask, res, ref)
    if method == "lab_meanstd":
        matched = _lab_meanstd(res, ref, weights_res, weights_ref)
    else:
        matched = _histogram(res, ref, weights_res > 0.5, weights_ref > 0.5)
    if blend is not None:
        matched = res + blend[:, :, None] * (matched - res)
    return np.clip(matched, 0.0, 1.0).astype(np.float32)


def _weights(mask: Any, res: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if mask is None:
        return np.ones(res.shape[:2]), np.ones(ref.shape[:2]), None
    m = load_mask(mask).astype(np.float64)
    if m.shape != res.shape[:2] or ref.shape != res.shape:
        raise InvalidInputError(
            f"with a mask, result, reference and mask must have the same size; got result"
            f" {res.shape[1]}x{res.shape[0]}, reference {ref.shape[1]}x{ref.shape[0]}, mask {m.shape[1]}x{m.shape[0]}"
        )
    if not (m > 0.5).any():
        raise InvalidInputError("mask selects no pixel (all values <= 0.5); nothing to match colours on")
    return m, m, m


def _weighted_stats(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = weights.reshape(-1)
    v = values.reshape(-1, values.shape[-1])
    mean = (v * w[:, None]).sum(axis=0) / w.sum()
    std = np.sqrt((np.square(v - mean) * w[:, None]).sum(axis=0) / w.sum())
    return mean, std


def _lab_meanstd(res: np.ndarray, ref: np.ndarray, w_res: np.ndarray, w_ref: np.ndarray) -> np.ndarray:
    lab_res, lab_ref = rgb_to_lab(res), rgb_to_lab(ref)
    mu_res, sd_res = _weighted_stats(lab_res, w_res)
    mu_ref, sd_ref = _weighted_stats(lab_ref, w_ref)
    ratio = np.where(sd_res > _MIN_STD, sd_ref / np.maximum(sd_res, _MIN_STD), 1.0)
    ratio = np.clip(ratio, 1.0 / _MAX_RATIO, _MAX_RATIO)
    return lab_to_rgb((lab_res - mu_res) * ratio + mu_ref)


def _histogram(res: np.ndarray, ref: np.ndarray, sel_res: np.ndarray, sel_ref: np.ndarray) -> np.ndarray:
    out = np.empty(res.shape, dtype=np.float64)
    for c in range(3):
        out[:, :, c] = _match_channel(res[:, :, c].astype(np.float64), res[:, :, c][sel_res], ref[:, :, c][sel_ref])
    return out


def _quantiles(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and their mid-rank quantiles in ``(0, 1)``."""
    uniq, counts = np.unique(values, return_counts=True)
    cdf = (np.cumsum(counts) - 0.5 * counts) / values.size
    return uniq.astype(np.float64), cdf


def _match_channel(channel: np.ndarray, src: np.ndarray, ref: np.ndarray) -> np.ndarray:
    src_vals, src_q = _quantiles(src)
    ref_vals, ref_q = _quantiles(ref)
    return np.interp(np.interp(channel, src_vals, src_q), ref_q, ref_vals)
