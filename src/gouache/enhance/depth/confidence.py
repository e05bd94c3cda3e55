"""Per-pixel confidence of depth maps (low at discontinuities and colour edges) and its uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..._errors import InvalidInputError
from .._inputs import load_depth, load_image

__all__ = [
    "apply_confidence_mask",
    "estimate_depth_confidence",
    "get_reliable_depth_mask",
    "weighted_depth_fusion",
]


def estimate_depth_confidence(
    depth: Any,
    rgb: Any = None,
    *,
    edge_fraction: float = 0.05,
    noise_factor: float = 4.0,
    rgb_weight: float = 0.5,
    rgb_threshold: float = 0.1,
) -> np.ndarray:
    """Per-pixel confidence of a depth (or inverse-depth) map, float32 ``(H, W)`` in ``[0, 1]``.

    Low at depth discontinuities, high on smooth surfaces and object interiors::

        J(p)  = max over the 4 neighbours q of |d(q) - d(p)|      (local jump)
        tau   = max(edge_fraction * (P99(d) - P1(d)), noise_factor * median(J))
        c(p)  = exp(-(J(p) / tau)^2)

    The robust range ``P99 - P1`` makes it independent of the map's units and offset, the
    ``median(J)`` term keeps noisy maps from being judged all-discontinuous.  Both pixels
    on either side of a step get low confidence.  A constant map gives all ones; when the
    robust range is 0 (flat but for a few outliers), ``max(d) - min(d)`` replaces it.

    With ``rgb`` (same size), confidence is also lowered where the image has an edge the
    depth map may have smoothed over or misplaced::

        G(p) = max over the 4 neighbours and channels of |rgb(q) - rgb(p)|
        c(p) = c(p) * (1 - rgb_weight * (1 - exp(-(G(p) / rgb_threshold)^2)))
    """
    d = load_depth(depth).astype(np.float64)
    for label, value in (
        ("edge_fraction", edge_fraction),
        ("noise_factor", noise_factor),
        ("rgb_threshold", rgb_threshold),
    ):
        if not value > 0:
            raise InvalidInputError(f"{label} must be > 0; got {value!r}")
    if not 0.0 <= rgb_weight <= 1.0:
        raise InvalidInputError(f"rgb_weight must lie in [0, 1]; got {rgb_weight!r}")
    jump = _local_jump(d[:, :, None])
    lo, hi = np.percentile(d, [1.0, 99.0])
    tau = max(edge_fraction * (hi - lo), noise_factor * float(np.median(jump)))
    if not tau > 0:  # flat but for a few outliers: use the full range instead
        tau = edge_fraction * float(d.max() - d.min()) or 1.0
    conf = np.exp(-np.square(jump / tau))
    if rgb is not None:
        conf = conf * _rgb_edge_term(rgb, d.shape, rgb_weight, rgb_threshold)
    return np.clip(conf, 0.0, 1.0).astype(np.float32)


def _local_jump(data: np.ndarray) -> np.ndarray:
    """Max absolute difference to the 4 neighbours, over channels: ``(H, W)``."""
    jump = np.zeros(data.shape[:2], dtype=np.float64)
    dy = np.abs(np.diff(data, axis=0)).max(axis=2)
    dx = np.abs(np.diff(data, axis=1)).max(axis=2)
    jump[1:, :] = np.maximum(jump[1:, :], dy)
    jump[:-1, :] = np.maximum(jump[:-1, :], dy)
    jump[:, 1:] = np.maximum(jump[:, 1:], dx)
    jump[:, :-1] = np.maximum(jump[:, :-1], dx)
    return jump


def _rgb_edge_term(rgb: Any, shape: tuple[int, ...], weight: float, threshold: float) -> np.ndarray:
    color, _ = load_image(rgb, name="rgb")
    if color.shape[:2] != shape:
        raise InvalidInputError(
            f"rgb is {color.shape[1]}x{color.shape[0]} but depth is {shape[1]}x{shape[0]}; they must match"
        )
    edge = 1.0 - np.exp(-np.square(_local_jump(color.astype(np.float64)) / threshold))
    return 1.0 - weight * edge


def apply_confidence_mask(depth: Any, confidence: Any, threshold: float = 0.3, fill_value: float = 0.0) -> np.ndarray:
    """``depth`` (float32 copy) with ``fill_value`` where ``confidence < threshold``."""
    d = load_depth(depth, name="depth")
    c = _confidence_map(confidence, d.shape)
    _check_unit("threshold", threshold)
    if not np.isfinite(fill_value):
        raise InvalidInputError(f"fill_value must be finite; got {fill_value!r}")
    return np.where(c < threshold, np.float32(fill_value), d).astype(np.float32)


def get_reliable_depth_mask(confidence: Any, threshold: float = 0.5, min_region_size: int = 100) -> np.ndarray:
    """Boolean mask of reliable depth: ``confidence >= threshold``, opened (eroded then
    dilated twice with the 4-neighbour cross: removes thin spurs and specks), then without
    the 4-connected regions smaller than ``min_region_size`` pixels."""
    c = _confidence_map(confidence, None)
    _check_unit("threshold", threshold)
    if not isinstance(min_region_size, (int, np.integer)) or isinstance(min_region_size, bool) or min_region_size < 0:
        raise InvalidInputError(f"min_region_size must be an integer >= 0; got {min_region_size!r}")
    mask = c >= threshold
    for _ in range(2):
        mask = _cross(mask, np.logical_and, False)
    for _ in range(2):
        mask = _cross(mask, np.logical_or, False)
    if min_region_size > 1 and mask.any():
        labels = _components(mask)
        sizes = np.bincount(labels[mask])
        mask &= sizes[labels] >= min_region_size
    return mask


def weighted_depth_fusion(
    depths: Sequence[Any], confidences: Sequence[Any], normalize: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Confidence-weighted mean of aligned depth maps of one view: ``(fused, confidence)``.

    ``fused = sum(c_k d_k) / sum(c_k)`` per pixel (the plain mean where every confidence
    is 0); ``confidence`` is the per-pixel maximum of the inputs'.  ``normalize``: rescale
    ``fused`` to ``[0, 1]`` (min-max), as Glimpse3D did; pass False to keep the units of
    aligned maps.  Both float32.
    """
    if isinstance(depths, (str, bytes)) or not isinstance(depths, Sequence) or len(depths) == 0:
        raise InvalidInputError("depths must be a non-empty list of depth maps")
    if not isinstance(confidences, Sequence) or len(confidences) != len(depths):
        got = len(confidences) if isinstance(confidences, Sequence) else type(confidences).__name__
        raise InvalidInputError(f"confidences must have one map per depth map ({len(depths)}); got {got}")
    maps = [load_depth(x, name=f"depths[{k}]").astype(np.float64) for k, x in enumerate(depths)]
    if len({m.shape for m in maps}) != 1:
        raise InvalidInputError(f"depths must all have the same shape; got {[m.shape for m in maps]}")
    d = np.stack(maps)
    c = np.stack([_confidence_map(x, d.shape[1:], name=f"confidences[{k}]") for k, x in enumerate(confidences)])
    total = c.sum(axis=0)
    fused = np.where(total > 0, (c * d).sum(axis=0) / np.where(total > 0, total, 1.0), d.mean(axis=0))
    if normalize:
        lo, hi = float(fused.min()), float(fused.max())
        if hi - lo > 1e-12:
            fused = (fused - lo) / (hi - lo)
    return fused.astype(np.float32), c.max(axis=0).astype(np.float32)


def _confidence_map(value: Any, shape: tuple[int, ...] | None, name: str = "confidence") -> np.ndarray:
    c = load_depth(value, name=name).astype(np.float64)
    if shape is not None and c.shape != tuple(shape):
        raise InvalidInputError(f"{name} has shape {c.shape}; the depth map has {tuple(shape)}")
    if c.min() < -1e-6 or c.max() > 1 + 1e-6:
        raise InvalidInputError(f"{name} values must lie in [0, 1]; got [{c.min():g}, {c.max():g}]")
    return np.clip(c, 0.0, 1.0)


def _check_unit(label: str, value: float) -> None:
    if not isinstance(value, (int, float, np.floating, np.integer)) or not 0.0 <= float(value) <= 1.0:
        raise InvalidInputError(f"{label} must be a number in [0, 1]; got {value!r}")


def _cross(mask: np.ndarray, op: Any, outside: bool) -> np.ndarray:
    """One binary erosion (``np.logical_and``) or dilation (``np.logical_or``) with the
    4-neighbour cross."""
    p = np.pad(mask, 1, constant_values=outside)
    out = p[1:-1, 1:-1]
    for nb in (p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]):
        out = op(out, nb)
    return out


def _components(mask: np.ndarray) -> np.ndarray:
    """4-connected component labels (0 outside ``mask``): every pixel takes the smallest
    label among its neighbours until nothing changes, with pointer jumping so long
    regions converge in few rounds."""
    h, w = mask.shape
    labels = np.where(mask, np.arange(1, h * w + 1).reshape(h, w), 0)
    big = h * w + 1
    while True:
        cur = np.where(mask, labels, big)
        p = np.pad(cur, 1, constant_values=big)
        low = np.minimum.reduce([cur, p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]])
        low = np.where(mask, low, 0)
        flat = np.concatenate([[0], low.ravel()])  # label k lives at flat[k]
        for _ in range(8):  # pointer jumping: follow each label to its label's label
            low = np.where(mask, flat[low], 0)
            flat = np.concatenate([[0], low.ravel()])
        if np.array_equal(low, labels):
            return labels
        labels = low
