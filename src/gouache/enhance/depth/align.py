"""Bringing relative inverse-depth maps of several views to one common scale.

Monocular estimators return inverse depth up to an unknown scale and shift per view.
:func:`fit_depth_alignment` finds every view's ``(scale, shift)`` and returns a
:class:`DepthAlignment`; :func:`align_depth_scales` returns just the aligned maps (what
Glimpse3D's ``align_depth_scales(depth_maps, poses, intrinsics)`` returned, so the result
goes straight to ``EnhanceService.enhance_batch(depth_maps=...)``).

* **With poses and intrinsics** every view's scale and shift are fitted jointly: each
  view's pixels are lifted to 3D with its current depth, projected into the neighbouring
  views, and the log z-depth of the same point is compared with what those views
  estimate there; the disagreement over all pairs is minimized robustly (occlusions
  and estimator failures get no weight).  The baseline between cameras fixes the scale:
  the result is inverse z-depth in the units of the poses' translations (``gauge ==
  "metric"``).  When the baseline is too small for the scale to be observable (views
  from one point, or a baseline that is tiny against the depth: ``noise_to_parallax``
  above 0.5, which on the synthetic scenes means a scale error above about 5 %), the
  maps are still made consistent with each other but expressed in the reference view's
  units (``gauge == "relative"``: the reference keeps scale 1 and shift 0), and a warning
  says so.
* **With metric depth** for some views (``metric_depth``), those views anchor the
  result (``gauge == "metric_depth"``).
* **Without poses** views are compared at equal pixel coordinates with the reference
  view (views from nearly the same viewpoint); ``gauge == "relative"`` unless metric
  depth anchors it.

Differences from Glimpse3D's ``midas_depth``: results are inverse depth in a common
unit, not renormalized to ``[0, 1]`` (renormalizing each map would undo the alignment);
``align_depth_scales`` uses poses when given instead of ignoring them; scale *and* shift
are fitted (relative estimates have both).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..._errors import InvalidInputError
from .._inputs import load_depth, load_mask
from . import _equal, _joint
from ._cameras import Camera, cameras
from ._robust import LOSSES, MIN_POINTS
from .confidence import estimate_depth_confidence

log = logging.getLogger("gouache.enhance")

__all__ = [
    "DepthAlignment",
    "align_depth_scales",
    "align_depth_scales_global",
    "compute_alignment_quality",
    "estimate_overlap_simple",
    "fit_depth_alignment",
]

#: Above this ratio of residual noise to parallax sensitivity the metric scale is not
#: trusted and the relative gauge is used (about 5 % expected scale error).
MAX_NOISE_TO_PARALLAX = 0.5
_OCCLUDED_SHARE = 20.0  # percent of reprojected correspondences left out of the quality mean
_CLIP_SHARE = 0.001  # a map's extreme value held by more pixels than this share: clipped pixels


@dataclasses.dataclass
class DepthAlignment:
    """Result of :func:`fit_depth_alignment`.

    ``aligned[i] = params[i][0] * depth_maps[i] + params[i][1]`` (float32 inverse z-depth);
    ``gauge``: ``"metric"`` (units of the poses, from parallax), ``"metric_depth"``
    (anchored to the given metric depth) or ``"relative"`` (the reference view's units);
    ``method``: ``"poses"`` or ``"equal_pixels"``; ``residual``: robust scale of the
    views' remaining disagreement (relative depth with poses: 0.01 = 1 %; in inverse-depth
    units at equal pixels); ``noise_to_parallax``: with poses, the residual noise over the
    sensitivity of the residuals to the common scale (small: the metric scale is well
    determined); ``unaligned``: views that could not be aligned (kept at ``(1, 0)``).
    """

    aligned: list[np.ndarray]
    params: list[tuple[float, float]]
    gauge: str
    reference: int
    method: str
    residual: float
    noise_to_parallax: float | None = None
    unaligned: tuple[int, ...] = ()

    def depths(self) -> list[np.ndarray]:
        """The aligned maps as z-depth (``inf`` where the inverse depth is not positive)."""
        out = []
        for a in self.aligned:
            with np.errstate(divide="ignore"):
                out.append(np.where(a > 0, 1.0 / np.where(a > 0, a, 1.0), np.inf).astype(np.float32))
        return out


def align_depth_scales(
    depth_maps: Sequence[Any],
    poses: Any = None,
    intrinsics: Any = None,
    masks: Sequence[Any] | None = None,
    reference: int = 0,
    metric_depth: Sequence[Any] | Mapping[int, Any] | None = None,
    *,
    convention: str = "opencv",
    pose_type: str = "c2w",
    loss: str = "tukey",
    samples_per_view: int = 1024,
    max_neighbors: int = 8,
) -> list[np.ndarray]:
    """The aligned inverse-depth maps (float32, one per view); see :func:`fit_depth_alignment`
    for the arguments and for the per-view scales and shifts.  An empty list gives ``[]``."""
    if isinstance(depth_maps, Sequence) and not isinstance(depth_maps, (str, bytes)) and len(depth_maps) == 0:
        return []
    return fit_depth_alignment(
        depth_maps,
        poses,
        intrinsics,
        masks,
        reference,
        metric_depth,
        convention=convention,
        pose_type=pose_type,
        loss=loss,
        samples_per_view=samples_per_view,
        max_neighbors=max_neighbors,
    ).aligned


def fit_depth_alignment(
    depth_maps: Sequence[Any],
    poses: Any = None,
    intrinsics: Any = None,
    masks: Sequence[Any] | None = None,
    reference: int = 0,
    metric_depth: Sequence[Any] | Mapping[int, Any] | None = None,
    *,
    convention: str = "opencv",
    pose_type: str = "c2w",
    loss: str = "tukey",
    samples_per_view: int = 1024,
    max_neighbors: int = 8,
) -> DepthAlignment:
    """Fit every view's inverse-depth scale and shift (see the module docstring).

    ``depth_maps``: relative inverse depth per view (``(H, W)``; views may differ in
    size with poses); ``poses``: one 4x4 matrix per view, camera-to-world
    (``pose_type="c2w"``) or world-to-camera (``"w2c"``), OpenCV axes
    (``convention="opencv"``: x right, y down, z forward) or OpenGL/Blender axes
    (``"opengl"``: y up, looking down -z); ``intrinsics``: one 3x3 ``K`` for all views or
    one per view, integer pixel coordinates at pixel centres; ``masks``: per view, pixels
    > 0.5 are used (``None`` entries: all); ``reference``: the view whose units the
    relative gauge uses; ``metric_depth``: z-depth for some views (list with ``None``
    for the others, or ``{view: depth}``; non-finite or <= 0 pixels ignored);
    ``loss``: ``"tukey"`` (outliers get no weight) or ``"huber"``; ``samples_per_view``:
    correspondence samples per view (poses); ``max_neighbors``: views each view is
    compared with (the ones that see most of it).
    """
    _check_options(loss, samples_per_view, max_neighbors)
    maps = _as_list(depth_maps)
    n = len(maps)
    if n == 0:
        return DepthAlignment([], [], "relative", 0, "equal_pixels", 0.0)
    if not isinstance(reference, (int, np.integer)) or isinstance(reference, bool) or not 0 <= reference < n:
        raise InvalidInputError(f"reference must be a view index in [0, {n - 1}]; got {reference!r}")
    estimates = [load_depth(m, name=f"depth_maps[{i}]").astype(np.float64) for i, m in enumerate(maps)]
    valid = _masks(masks, estimates)
    metric = _metric(metric_depth, estimates)
    cams = cameras(poses, intrinsics, n, convention, pose_type)
    if n == 1 and metric[0] is None:  # nothing to align with: the map as it is
        return _finish(estimates, [(1.0, 0.0)], "relative", 0, "poses" if cams else "equal_pixels", 0.0, None)
    weights = [estimate_depth_confidence(e).astype(np.float64) * _not_clipped(e, v) for e, v in zip(estimates, valid)]
    if cams is None:
        return _by_equal_pixels(estimates, valid, weights, metric, int(reference), loss)
    return _by_poses(estimates, valid, weights, metric, cams, int(reference), loss, samples_per_view, max_neighbors)


# -- with poses ------------------------------------------------------------------------------


def _by_poses(
    estimates,
    valid,
    weights,
    metric,
    cams: list[Camera],
    reference: int,
    loss: str,
    samples_per_view: int,
    max_neighbors: int,
) -> DepthAlignment:
    n = len(estimates)
    usable, spans = [], []
    for i, (e, v) in enumerate(zip(estimates, valid)):
        lo, hi = np.percentile(e[v], [1.0, 99.0]) if int(v.sum()) >= MIN_POINTS else (0.0, 0.0)
        spans.append((float(lo), float(hi - lo)))
        if hi - lo > 1e-12 * max(abs(lo), abs(hi), 1e-300):
            usable.append(i)
        else:
            log.warning("depth map %d is constant (or nearly all masked): left unaligned", i)
    params: list[tuple[float, float] | None] = [None] * n
    result = None
    if len(usable) >= 2 or any(metric[i] is not None for i in usable):
        views = [
            _joint.JointView((estimates[i] - spans[i][0]) / spans[i][1], valid[i], weights[i], cams[i], metric[i])
            for i in usable
        ]
        result = _joint.solve(views, loss=loss, samples_per_view=samples_per_view, max_neighbors=max_neighbors)
        linked = {k for pair in result.pairs for k in pair} | {k for k, i in enumerate(usable) if metric[i] is not None}
        for k, i in enumerate(usable):
            if k in linked:
                lo, span = spans[i]
                s = float(np.exp(result.lam[k]))
                params[i] = (s / span, s * (result.u[k] - lo / span))
    ratio = None
    if result is not None and result.scale_sensitivity > 0:
        ratio = result.sigma / result.scale_sensitivity
    if any(m is not None for m in metric):
        gauge = "metric_depth"
    elif ratio is not None and ratio <= MAX_NOISE_TO_PARALLAX:
        gauge = "metric"
    else:
        gauge = "relative"
        shown = "inf" if ratio is None else f"{ratio:.2f}"
        log.warning(
            "depth alignment: the baseline between the cameras is too small to observe the metric scale"
            " (noise/parallax %s > %.2f); the maps agree with each other in view %d's units"
            " (relative gauge)",
            shown,
            MAX_NOISE_TO_PARALLAX,
            reference,
        )
        params = _relative_gauge(params, reference)
    return _finish(
        estimates, params, gauge, reference, "poses", result.disagreement if result is not None else 0.0, ratio
    )


def _relative_gauge(params: list[Any], reference: int) -> list[Any]:
    """The same maps up to one affine map, chosen so the reference keeps scale 1, shift 0."""
    ref = params[reference]
    if ref is None:  # the reference could not be aligned: express in its own units anyway
        return params
    a, b = ref
    return [None if p is None else (p[0] / a, (p[1] - b) / a) for p in params]


# -- without poses -----------------------------------------------------------------------------


def _by_equal_pixels(estimates, valid, weights, metric, reference: int, loss: str) -> DepthAlignment:
    n = len(estimates)
    params: list[tuple[float, float] | None] = [None] * n
    for i in range(n):
        if metric[i] is not None:
            params[i] = _equal.fit_to_metric(estimates[i], valid[i], weights[i], metric[i], loss, i)
    anchor = reference
    if any(m is not None for m in metric) and metric[reference] is None:
        anchor = next(i for i, m in enumerate(metric) if m is not None)
    if params[anchor] is None:
        params[anchor] = (1.0, 0.0)
    a, b = params[anchor]
    anchor_inv = a * estimates[anchor] + b
    if metric[anchor] is not None:
        anchor_inv = np.where(np.isfinite(metric[anchor]), metric[anchor], anchor_inv)
    residuals = []
    for i in range(n):
        if params[i] is None:
            params[i] = _equal.fit_to_anchor(
                anchor_inv, valid[anchor], weights[anchor], estimates[i], valid[i], weights[i], loss, i, anchor
            )
        if params[i] is not None and i != anchor and estimates[i].shape == anchor_inv.shape:
            sel = valid[i] & valid[anchor]
            residuals.append((params[i][0] * estimates[i] + params[i][1] - anchor_inv)[sel])
    every = np.concatenate(residuals) if residuals else np.zeros(0)
    spread = 1.4826 * float(np.median(np.abs(every - np.median(every)))) if every.size else 0.0
    gauge = "metric_depth" if any(m is not None for m in metric) else "relative"
    return _finish(estimates, params, gauge, reference, "equal_pixels", spread, None)


def _finish(estimates, params, gauge, reference, method, residual, ratio) -> DepthAlignment:
    missing = tuple(i for i, p in enumerate(params) if p is None)
    for i in missing:
        log.warning("depth map %d shares no usable pixels with the other views; left unaligned (scale 1, shift 0)", i)
    final = [(1.0, 0.0) if p is None else (float(p[0]), float(p[1])) for p in params]
    for i, (a, _) in enumerate(final):
        if a <= 0:
            log.warning(
                "depth alignment found a non-positive scale %.3g for view %d: is that map depth rather"
                " than inverse depth?",
                a,
                i,
            )
    aligned = [(a * e + b).astype(np.float32) for (a, b), e in zip(final, estimates)]
    return DepthAlignment(aligned, final, gauge, reference, method, float(residual), ratio, missing)


# -- Glimpse3D's other alignment helpers ---------------------------------------------------------


def align_depth_scales_global(
    depth_maps: Sequence[Any],
    overlap_masks: Sequence[Sequence[Any]] | None = None,
    *,
    reference: int = 0,
    loss: str = "tukey",
) -> list[np.ndarray]:
    """All views' scales and shifts in one robust least-squares fit at equal pixels.

    Unlike :func:`align_depth_scales` without poses (each view to the reference), every
    pair of views constrains the result, so a view that overlaps the reference poorly is
    held by the others.  ``overlap_masks[i][j]``: the pixels where views ``i`` and ``j``
    show the same surface (``None``: all pixels valid in both); the reference keeps
    scale 1 and shift 0.  Returns the aligned maps (float32).
    """
    _check_options(loss, MIN_POINTS, 1)
    maps = _as_list(depth_maps)
    n = len(maps)
    if n == 0:
        return []
    if not isinstance(reference, (int, np.integer)) or not 0 <= reference < n:
        raise InvalidInputError(f"reference must be a view index in [0, {n - 1}]; got {reference!r}")
    estimates = [load_depth(m, name=f"depth_maps[{i}]").astype(np.float64) for i, m in enumerate(maps)]
    shape = estimates[reference].shape
    bad = [i for i, e in enumerate(estimates) if e.shape != shape]
    if bad:
        raise InvalidInputError(
            f"align_depth_scales_global compares equal pixels: depth_maps {bad} differ in shape"
            f" from the reference's {shape}"
        )
    weights = [estimate_depth_confidence(e).astype(np.float64) for e in estimates]
    overlaps = {}
    for i in range(n):
        for j in range(i + 1, n):
            overlaps[(i, j)] = _pair_mask(overlap_masks, i, j, shape)
    params = _equal.fit_jointly(estimates, overlaps, weights, int(reference), loss)
    return _finish(estimates, params, "relative", int(reference), "equal_pixels", 0.0, None).aligned


def _pair_mask(masks: Any, i: int, j: int, shape: tuple[int, ...]) -> np.ndarray:
    if masks is None:
        return np.ones(shape, dtype=bool)
    try:
        mij, mji = masks[i][j], masks[j][i]
    except (TypeError, IndexError, KeyError):
        raise InvalidInputError(
            "overlap_masks must be an N x N nested list (overlap_masks[i][j]: view i's pixels that view j also sees)"
        ) from None
    out = np.ones(shape, dtype=bool)
    for label, m in ((f"overlap_masks[{i}][{j}]", mij), (f"overlap_masks[{j}][{i}]", mji)):
        if m is None:
            continue
        arr = load_mask(m, name=label) > 0.5
        if arr.shape != shape:
            raise InvalidInputError(f"{label} has shape {arr.shape}; the depth maps have {shape}")
        out &= arr
    return out


def estimate_overlap_simple(depth1: Any, depth2: Any, view_angle_diff: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """Glimpse3D's heuristic overlap of two views without poses: ``(mask1, mask2)``, boolean.

    A centred disc whose radius shrinks with the angle between the views (the image
    centre is most likely seen by both: radius = half-diagonal x max(0.3, 1 - angle / 180)),
    minus each map's extreme 5 % of its range (the nearest and farthest surfaces are the
    least likely to be shared), eroded by 5 pixels.  A heuristic: with poses,
    :func:`fit_depth_alignment` finds the real correspondences.
    """
    d1 = load_depth(depth1, name="depth1")
    d2 = load_depth(depth2, name="depth2")
    if d1.shape != d2.shape:
        raise InvalidInputError(f"depth1 {d1.shape} and depth2 {d2.shape} must have the same shape")
    if not np.isfinite(view_angle_diff) or view_angle_diff < 0:
        raise InvalidInputError(f"view_angle_diff must be a finite angle >= 0 in degrees; got {view_angle_diff!r}")
    h, w = d1.shape
    y, x = np.ogrid[:h, :w]
    dist = np.hypot(x - (w - 1) / 2.0, y - (h - 1) / 2.0)
    disc = dist < np.hypot((w - 1) / 2.0, (h - 1) / 2.0) * max(0.3, 1.0 - view_angle_diff / 180.0)
    return _erode(disc & _mid_range(d1), 5), _erode(disc & _mid_range(d2), 5)


def _mid_range(d: np.ndarray) -> np.ndarray:
    lo, hi = float(d.min()), float(d.max())
    if not hi > lo:
        return np.ones(d.shape, dtype=bool)
    t = (d - lo) / (hi - lo)
    return (t > 0.05) & (t < 0.95)


def _erode(mask: np.ndarray, iterations: int) -> np.ndarray:
    """Binary erosion with the 4-neighbour cross, ``iterations`` times (outside = False)."""
    m = mask.copy()
    for _ in range(iterations):
        p = np.pad(m, 1, constant_values=False)
        m = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m


def compute_alignment_quality(
    aligned_depths: Sequence[Any],
    overlap_masks: Sequence[Any] | None = None,
    *,
    poses: Any = None,
    intrinsics: Any = None,
    convention: str = "opencv",
    pose_type: str = "c2w",
) -> dict[str, Any]:
    """How well consecutive aligned views agree: ``{"n_views", "pairwise_errors", "mean_error",
    "max_error"}`` (``{"status": "insufficient_views", "n_views"}`` for fewer than 2 views).

    Each entry of ``pairwise_errors`` is ``{"views": (i, i + 1), "mean_relative_error",
    "overlap_pixels"}``.  With ``poses`` and ``intrinsics`` (the maps being inverse
    z-depth in the poses' units, e.g. :func:`align_depth_scales` with poses) the error is
    measured between reprojected correspondences: ``|z_i - z_j| / max(z_i, z_j)`` for
    the same 3D point, averaged over the best 80 % of the correspondences (points one
    view sees and the other does not, occlusions, are the rest), with its median as
    ``median_relative_error``; without, at equal pixels inside ``overlap_masks[i]`` (or
    :func:`estimate_overlap_simple`): ``|d_i - d_j| / max(d_i, d_j)``.  Pairs with too
    few shared pixels are left out; with none left, the errors are NaN (Glimpse3D
    reported 0.0, which reads as a perfect alignment).
    """
    maps = [
        load_depth(m, name=f"aligned_depths[{i}]").astype(np.float64) for i, m in enumerate(_as_list(aligned_depths))
    ]
    n = len(maps)
    if n < 2:
        return {"status": "insufficient_views", "n_views": n}
    cams = cameras(poses, intrinsics, n, convention, pose_type)
    pairs = [(i, i + 1) for i in range(n - 1)]
    entries = []
    if cams is not None:
        views = [_joint.JointView(m, np.isfinite(m) & (m > 0), np.ones(m.shape), c) for m, c in zip(maps, cams)]
        for (i, j), r in _joint.log_depth_disagreement(views, pairs, 4096).items():
            if r.size > MIN_POINTS:
                rel = 1.0 - np.exp(-np.abs(r))  # |z_i - z_j| / max(z_i, z_j)
                kept = rel[rel <= np.percentile(rel, 100.0 - _OCCLUDED_SHARE)]
                entries.append(
                    {
                        "views": (i, j),
                        "mean_relative_error": float(kept.mean()),
                        "median_relative_error": float(np.median(rel)),
                        "overlap_pixels": int(r.size),
                    }
                )
    else:
        for i, j in pairs:
            if overlap_masks is not None and i < len(overlap_masks) and overlap_masks[i] is not None:
                overlap = load_mask(overlap_masks[i], name=f"overlap_masks[{i}]") > 0.5
            else:
                overlap, _ = estimate_overlap_simple(maps[i], maps[j])
            if overlap.shape != maps[i].shape or maps[i].shape != maps[j].shape:
                raise InvalidInputError(
                    f"without poses, aligned_depths[{i}], [{j}] and their overlap mask must have the same shape"
                )
            a, b = maps[i][overlap], maps[j][overlap]
            if a.size > MIN_POINTS:
                rel = np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-12)
                entries.append(
                    {"views": (i, j), "mean_relative_error": float(rel.mean()), "overlap_pixels": int(a.size)}
                )
    errors = [e["mean_relative_error"] for e in entries]
    return {
        "n_views": n,
        "pairwise_errors": entries,
        "mean_error": float(np.mean(errors)) if errors else float("nan"),
        "max_error": float(np.max(errors)) if errors else float("nan"),
    }


# -- inputs -------------------------------------------------------------------------------------


def _check_options(loss: str, samples_per_view: int, max_neighbors: int) -> None:
    if loss not in LOSSES:
        raise InvalidInputError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    for label, value, low in (("samples_per_view", samples_per_view, MIN_POINTS), ("max_neighbors", max_neighbors, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise InvalidInputError(f"{label} must be an integer >= {low}; got {value!r}")


def _as_list(depth_maps: Any) -> list[Any]:
    if isinstance(depth_maps, np.ndarray) and depth_maps.ndim == 3:
        return list(depth_maps)
    if not isinstance(depth_maps, Sequence) or isinstance(depth_maps, (str, bytes)):
        raise InvalidInputError(f"depth_maps must be a list of (H, W) maps; got {type(depth_maps).__name__}")
    return list(depth_maps)


def _per_view(value: Any, n: int, label: str) -> list[Any]:
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, (int, np.integer)) or not 0 <= k < n]
        if bad:
            raise InvalidInputError(f"{label} keys must be view indices in [0, {n - 1}]; got {bad}")
        return [value.get(i) for i in range(n)]
    if isinstance(value, np.ndarray) and value.ndim == 3:
        value = list(value)
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) or len(value) != n:
        got = f"{len(value)} entries" if isinstance(value, Sequence) else type(value).__name__
        raise InvalidInputError(f"{label} must have one entry per depth map ({n}); got {got}")
    return list(value)


def _masks(masks: Any, estimates: list[np.ndarray]) -> list[np.ndarray]:
    if masks is None:
        return [np.ones(e.shape, dtype=bool) for e in estimates]
    out = []
    for i, m in enumerate(_per_view(masks, len(estimates), "masks")):
        if m is None:
            out.append(np.ones(estimates[i].shape, dtype=bool))
            continue
        mask = load_mask(m, name=f"masks[{i}]") > 0.5
        if mask.shape != estimates[i].shape:
            raise InvalidInputError(f"masks[{i}] has shape {mask.shape}; depth_maps[{i}] has {estimates[i].shape}")
        out.append(mask)
    return out


def _metric(metric_depth: Any, estimates: list[np.ndarray]) -> list[np.ndarray | None]:
    if metric_depth is None:
        return [None] * len(estimates)
    out: list[np.ndarray | None] = []
    for i, m in enumerate(_per_view(metric_depth, len(estimates), "metric_depth")):
        if m is None:
            out.append(None)
            continue
        arr = np.asarray(m, dtype=np.float64)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.shape != estimates[i].shape:
            raise InvalidInputError(
                f"metric_depth[{i}] has shape {arr.shape}; depth_maps[{i}] has {estimates[i].shape}"
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(np.isfinite(arr) & (arr > 0), 1.0 / arr, np.nan)
        if not np.isfinite(inv).any():
            raise InvalidInputError(f"metric_depth[{i}] has no finite positive depth value")
        out.append(inv)
    return out


def _not_clipped(estimate: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """0 where a map sits at an extreme value many pixels share (clipped by normalization:
    not an affine function of the true inverse depth there), else 1."""
    out = np.ones(estimate.shape)
    values = estimate[valid]
    if values.size == 0:
        return out
    for extreme in (values.min(), values.max()):
        at = valid & (estimate == extreme)
        if at.sum() > _CLIP_SHARE * values.size:
            out[at] = 0.0
    return out
