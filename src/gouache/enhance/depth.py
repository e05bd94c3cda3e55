"""Depth for enhancement: monocular estimation (ONNX Runtime), confidence, multi-view alignment.

Conventions used throughout:

* Estimated maps are **relative inverse depth** (disparity-like: larger = nearer).
  :func:`estimate_depth` normalizes them to ``[0, 1]`` with near = 1.
* Metric depth is **z-depth** (distance along the camera's optical axis, not along the
  ray), in the units of the camera poses.
* Cameras are pinhole: ``K`` is the 3x3 intrinsic matrix mapping camera coordinates to
  pixel coordinates whose integer values are pixel centres (``(0, 0)`` = centre of the
  top-left pixel); poses are 4x4 **camera-to-world** matrices, by default in the OpenCV
  convention (x right, y down, z forward); ``convention="opengl"`` accepts OpenGL/Blender
  cameras (x right, y up, looking down -z).

ONNX Runtime is needed only by :class:`DepthEstimator` / :func:`estimate_depth`
(``pip install "gouache[enhance]"``); confidence and alignment are numpy only.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .._errors import InvalidInputError, MissingDependencyError
from ._inputs import load_depth, load_image, load_mask

log = logging.getLogger("gouache.enhance")

__all__ = [
    "DepthEstimator",
    "DepthFamily",
    "FAMILIES",
    "align_depth_scales",
    "detect_family",
    "estimate_depth",
    "estimate_depth_confidence",
    "normalize_inverse_depth",
]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class DepthFamily:
    """Pre-processing of one family of monocular depth models (all output relative inverse depth)."""

    name: str
    size: int  #: default square input side when the model's input size is dynamic
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    description: str


#: The model families :class:`DepthEstimator` knows, by name.
FAMILIES: Mapping[str, DepthFamily] = {
    "midas_small": DepthFamily("midas_small", 256, _IMAGENET_MEAN, _IMAGENET_STD,
                               "MiDaS v2.1 small: 256x256, ImageNet mean/std"),
    "dpt": DepthFamily("dpt", 384, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                       "DPT (MiDaS v3 hybrid/large): 384x384, mean = std = 0.5"),
    "depth_anything": DepthFamily("depth_anything", 518, _IMAGENET_MEAN, _IMAGENET_STD,
                                  "Depth Anything (v1/v2): 518x518 (multiple of 14), ImageNet mean/std"),
}

_NAME_PATTERNS = (
    ("depth_anything", re.compile(r"depth[-_ ]?anything|\bdav2\b|\bda[-_]?v?2[-_]")),
    ("midas_small", re.compile(r"midas.*small|small.*midas|model[-_]small")),
    ("dpt", re.compile(r"dpt")),
)
_PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider",
                        "CPUExecutionProvider")
_MODEL_DIR_ENV = "GOUACHE_DEPTH_MODELS"


# =========================================================================== estimation


def detect_family(name: str, input_shape: Sequence[Any]) -> str | None:
    """The family of a depth model from its file name and its input shape (``None`` if unknown).

    The name wins (it tells the normalization apart for models of the same size):
    ``depth_anything``/``depth-anything``/``dav2`` -> ``depth_anything``; ``midas`` with
    ``small`` -> ``midas_small``; ``dpt`` -> ``dpt``.  Otherwise a fixed input size decides:
    256 -> ``midas_small``, 384 -> ``dpt``, other multiples of 14 -> ``depth_anything``.
    """
    lowered = name.lower()
    for family, pattern in _NAME_PATTERNS:
        if pattern.search(lowered):
            return family
    size = _fixed_hw(input_shape)
    if size is None:
        return None
    h, w = size
    if (h, w) == (256, 256):
        return "midas_small"
    if (h, w) == (384, 384):
        return "dpt"
    if h % 14 == 0 and w % 14 == 0:
        return "depth_anything"
    return None


def normalize_inverse_depth(inverse_depth: Any, percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """Relative inverse depth rescaled to ``[0, 1]`` (near = 1), robust to outliers.

    ``lo, hi`` are the given percentiles of the finite values; the map becomes
    ``clip((x - lo) / (hi - lo), 0, 1)``.  A constant (or empty-range) map gives zeros;
    NaN and infinite values become 0.  Never returns NaN.
    """
    lo_p, hi_p = _check_percentiles(percentiles)
    x = np.asarray(inverse_depth, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.any():
        return np.zeros(x.shape, dtype=np.float32)
    lo, hi = np.percentile(x[finite], [lo_p, hi_p])
    if not hi - lo > 1e-12 * max(1.0, abs(hi), abs(lo)):
        return np.zeros(x.shape, dtype=np.float32)
    out = np.clip((np.where(finite, x, lo) - lo) / (hi - lo), 0.0, 1.0)
    return out.astype(np.float32)


class DepthEstimator:
    """A monocular depth model run through ONNX Runtime; the session is loaded once and reused.

    ``model``: path to an ``.onnx`` file, or a family name (``midas_small``, ``dpt``,
    ``depth_anything``) looked up as ``<name>.onnx`` in the folders of the
    ``GOUACHE_DEPTH_MODELS`` environment variable (``os.pathsep``-separated) and
    ``~/.cache/gouache/depth``.  ``family``: the model family when it cannot be told
    from the file name or the input size (see :func:`detect_family`).  ``providers``:
    ONNX Runtime execution providers (default: CUDA, DirectML, CoreML then CPU, those
    available).  ``percentiles``: the robust range used by :func:`normalize_inverse_depth`.

    ``estimator(image)`` returns float32 ``(H, W)`` relative inverse depth in ``[0, 1]``
    (near = 1) at the image's size; :meth:`raw` returns the model's own output.
    """

    def __init__(self, model: str | os.PathLike[str] = "depth_anything", *, family: str | None = None,
                 providers: Sequence[str] | None = None,
                 percentiles: tuple[float, float] = (0.5, 99.5)) -> None:
        if family is not None and family not in FAMILIES:
            raise InvalidInputError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")
        if providers is not None and (isinstance(providers, str) or not all(isinstance(p, str) for p in providers)):
            raise InvalidInputError(f"providers must be a list of provider names; got {providers!r}")
        self.path: Path = _resolve_model(model)
        self.percentiles = _check_percentiles(percentiles)
        self._family_arg = family
        self._providers = list(providers) if providers is not None else None
        self._session: Any = None

    def __repr__(self) -> str:
        return f"DepthEstimator({str(self.path)!r}, family={self._family_arg!r})"

    # -- session and model facts ---------------------------------------------------

    @property
    def session(self) -> Any:
        """The ``onnxruntime.InferenceSession`` (created on first use, then reused)."""
        if self._session is None:
            self._session = _create_session(self.path, self._providers)
        return self._session

    @property
    def family(self) -> str:
        """The model family (explicit, or detected from the file name and input shape)."""
        if self._family_arg is not None:
            return self._family_arg
        shape = self._nchw_shape()
        found = detect_family(self.path.name, shape)
        if found is None:
            raise InvalidInputError(
                f"cannot tell the family of depth model {self.path.name!r} (NCHW input shape {shape});"
                f" pass family= one of {', '.join(FAMILIES)}"
            )
        return found

    @property
    def channels_last(self) -> bool:
        """Whether the model takes NHWC input (most exports take NCHW)."""
        shape = list(self.session.get_inputs()[0].shape)
        return len(shape) == 4 and shape[-1] == 3 and shape[1] != 3

    @property
    def input_size(self) -> tuple[int, int]:
        """The ``(width, height)`` images are resized to (the model's, or the family's default)."""
        fixed = _fixed_hw(self._nchw_shape())
        if fixed is not None:
            return (fixed[1], fixed[0])
        side = FAMILIES[self.family].size
        return (side, side)

    def _nchw_shape(self) -> list[Any]:
        shape = list(self.session.get_inputs()[0].shape)
        if self.channels_last:
            shape = [shape[0], shape[3], shape[1], shape[2]]
        return shape

    # -- inference -------------------------------------------------------------------

    def preprocess(self, image: Any) -> np.ndarray:
        """The model input for ``image``: resized, normalized, NCHW (or NHWC) float tensor."""
        rgb, _ = load_image(image)
        fam = FAMILIES[self.family]
        w, h = self.input_size
        planes = [_resize(rgb[:, :, c], (w, h), Image.Resampling.BICUBIC) for c in range(3)]
        x = np.clip(np.stack(planes, axis=0), 0.0, 1.0)
        x = (x - np.asarray(fam.mean)[:, None, None]) / np.asarray(fam.std)[:, None, None]
        x = x[None].astype(_input_dtype(self.session))
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1) if self.channels_last else x)

    def raw(self, image: Any) -> np.ndarray:
        """The model's output for ``image`` as a float32 2-D map at the model's resolution."""
        inp = self.session.get_inputs()[0]
        out = self.session.run(None, {inp.name: self.preprocess(image)})[0]
        arr = np.asarray(out, dtype=np.float32)
        while arr.ndim > 2 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[:, :, 0]
        if arr.ndim != 2:
            raise InvalidInputError(
                f"depth model {self.path.name!r} returned an output of shape {np.shape(out)};"
                " expected a single depth map (1, H, W), (1, 1, H, W) or (H, W)"
            )
        return arr

    def __call__(self, image: Any) -> np.ndarray:
        """Relative inverse depth of ``image`` in ``[0, 1]`` (near = 1), float32 at the image's size."""
        rgb, _ = load_image(image)
        raw = self.raw(rgb)
        h, w = rgb.shape[:2]
        clean = np.where(np.isfinite(raw), raw, np.nan)
        fill = float(np.nanmin(clean)) if np.isfinite(clean).any() else 0.0
        resized = _resize(np.nan_to_num(clean, nan=fill), (w, h), Image.Resampling.BILINEAR)
        return normalize_inverse_depth(resized, self.percentiles)


def estimate_depth(image: Any, model: str | os.PathLike[str] | DepthEstimator = "depth_anything", *,
                   family: str | None = None, providers: Sequence[str] | None = None) -> np.ndarray:
    """Relative inverse depth of ``image`` in ``[0, 1]`` (near = 1), float32 ``(H, W)``.

    ``model`` is a :class:`DepthEstimator` (reused: its session stays loaded) or what
    :class:`DepthEstimator` accepts (a path or family name; a new session is loaded per
    call, so build a ``DepthEstimator`` once for many images).
    """
    if isinstance(model, DepthEstimator):
        if family is not None or providers is not None:
            raise InvalidInputError("family= and providers= belong to the DepthEstimator when one is passed as model")
        return model(image)
    return DepthEstimator(model, family=family, providers=providers)(image)


def _check_percentiles(percentiles: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(p) for p in percentiles)
    except (TypeError, ValueError):
        raise InvalidInputError(f"percentiles must be two numbers (lo, hi); got {percentiles!r}") from None
    if not 0.0 <= lo < hi <= 100.0:
        raise InvalidInputError(f"percentiles must satisfy 0 <= lo < hi <= 100; got {percentiles!r}")
    return (lo, hi)


def _fixed_hw(shape: Sequence[Any]) -> tuple[int, int] | None:
    """``(H, W)`` of an NCHW input shape when both are fixed integers."""
    dims = list(shape)
    if len(dims) != 4:
        return None
    h, w = dims[2], dims[3]
    if isinstance(h, (int, np.integer)) and isinstance(w, (int, np.integer)) and h > 0 and w > 0:
        return (int(h), int(w))
    return None


def _model_dirs() -> list[Path]:
    dirs = [Path(p).expanduser() for p in os.environ.get(_MODEL_DIR_ENV, "").split(os.pathsep) if p]
    return dirs + [Path.home() / ".cache" / "gouache" / "depth"]


def _resolve_model(model: Any) -> Path:
    if not isinstance(model, (str, os.PathLike)):
        raise InvalidInputError(f"model must be an .onnx file path or a family name; got {type(model).__name__}")
    path = Path(model).expanduser()
    if path.is_file():
        return path
    if isinstance(model, str) and model in FAMILIES:
        tried = [d / f"{model}.onnx" for d in _model_dirs()]
        for candidate in tried:
            if candidate.is_file():
                return candidate
        raise InvalidInputError(
            f"depth model {model!r} not found (looked for {', '.join(str(t) for t in tried)});"
            f" pass the path of an ONNX export of the model or put it in one of those places"
        )
    raise InvalidInputError(
        f"depth model file not found: {str(path)!r}; give an .onnx path or one of {', '.join(FAMILIES)}"
    )


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError(
            'depth estimation needs onnxruntime: pip install "gouache[enhance]"'
        ) from None
    return onnxruntime


def _create_session(path: Path, providers: list[str] | None) -> Any:
    ort = _import_onnxruntime()
    available = ort.get_available_providers()
    if providers is None:
        providers = [p for p in _PREFERRED_PROVIDERS if p in available] or list(available)
    else:
        missing = [p for p in providers if p not in available]
        if missing:
            raise InvalidInputError(f"ONNX Runtime providers {missing} are not available; available: {available}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise InvalidInputError(f"cannot load depth model {str(path)!r}: {exc}") from None
    log.info("depth model %s loaded (providers %s)", path.name, session.get_providers())
    return session


def _input_dtype(session: Any) -> type:
    return np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32


def _resize(plane: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    if plane.shape[::-1] == tuple(size):
        return plane.astype(np.float64)
    im = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))
    return np.asarray(im.resize(tuple(size), resample), dtype=np.float64)


# =========================================================================== confidence


def estimate_depth_confidence(depth: Any, rgb: Any = None, *, edge_fraction: float = 0.05,
                              noise_factor: float = 4.0, rgb_weight: float = 0.5,
                              rgb_threshold: float = 0.1) -> np.ndarray:
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
    for label, value in (("edge_fraction", edge_fraction), ("noise_factor", noise_factor),
                         ("rgb_threshold", rgb_threshold)):
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


# =========================================================================== alignment


@dataclasses.dataclass(frozen=True)
class _Camera:
    K: np.ndarray
    K_inv: np.ndarray
    R: np.ndarray  # camera-to-world rotation (OpenCV axes)
    t: np.ndarray  # camera centre in world coordinates


@dataclasses.dataclass
class _View:
    """One view's estimate, validity, weights and (optional) metric inverse depth."""

    estimate: np.ndarray
    valid: np.ndarray
    weight: np.ndarray
    metric_inv: np.ndarray | None
    camera: _Camera | None = None


_MIN_POINTS = 16
_MIN_FACING_COS = 0.1  # surfaces seen at more than ~84 degrees from the normal are skipped
_TUKEY_C = 4.685
_LQS_QUANTILE = 0.3
_AGREE_TOL = 0.05
_POSE_WORK_SIDE = 320  # correspondences are searched on maps of at most about this many pixels a side
_LQS_GAUSS = 0.385  # the 0.65 quantile of a standard normal: |r| quantile 0.3 -> sigma
_HUBER_C = 1.345
_LOSSES = ("tukey", "huber")
_CONVENTIONS = ("opencv", "opengl")


def align_depth_scales(depth_maps: Sequence[Any], poses: Any = None, intrinsics: Any = None,
                       masks: Sequence[Any] | None = None, reference: int = 0,
                       metric_depth: Sequence[Any] | Mapping[int, Any] | None = None, *,
                       convention: str = "opencv", loss: str = "tukey",
                       max_points: int = 20000) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    """Bring affine-invariant inverse-depth maps of several views to one common scale.

    Monocular estimates (MiDaS-like) are inverse depth up to an unknown scale and shift
    per view.  For each view ``i`` a scale ``a_i`` and shift ``b_i`` are fitted so that
    ``a_i * depth_maps[i] + b_i`` agrees with the views aligned before it, by robust
    least squares on corresponding pixels ``(x = depth_maps[i] there, y = target inverse
    depth)``: a least-quantile-of-squares start (the line minimizing the 30 % quantile
    of ``|y - a x - b|`` over random point pairs, so even a majority of outliers, e.g.
    occlusions, is tolerated), then iteratively reweighted least squares with Tukey's
    biweight (``loss="tukey"``: outliers get weight 0) or Huber's loss (``loss="huber"``),
    the residual scale re-estimated from the same quantile at each step.  Every point is
    also weighted by :func:`estimate_depth_confidence` of both maps, so pixels at depth
    discontinuities count little.

    Anchors: the views with ``metric_depth`` (a list with ``None`` for views without, or
    a dict ``{view: depth}``; z-depth in pose units; pixels that are not finite and > 0
    are ignored) are fitted to ``1 / metric_depth`` on their own pixels; without any
    metric depth, the ``reference`` view is the anchor with scale 1 and shift 0, and
    the results are in its units.

    Correspondences for the other views:

    * without ``poses``: equal pixel coordinates with the ``reference`` view (or the first
      metric view when the reference has none), over pixels valid in both ``masks``;
    * with ``poses`` (4x4 camera-to-world, one per view) and ``intrinsics`` (3x3 ``K``,
      one shared or one per view): every pixel of an aligned view ``j`` is lifted to 3D
      with ``j``'s current depth (``1 / (a_j * depth_maps[j] + b_j)``, or its metric
      depth), moved into camera ``i`` and projected; view ``i``'s map is sampled there
      bilinearly (``x``) and compared with the inverse z-depth of the *same* 3D point in
      camera ``i`` (``y``).  Points that ``i`` cannot see are dropped first: behind
      another lifted point (a z-buffer), on surfaces facing away from camera ``i``, or
      outside its image or mask; occlusions by surfaces ``j`` does not see are left to
      the robust fit.  Views are aligned one at a time, the one whose fit explains most
      correspondences (within 5 %) first, each against all the views aligned so far, so
      a view opposite the anchor is reached through its neighbours.  The anchor's
      inverse depth must be in the inverse units of the poses' translations (metric
      depth, or a reference map that is already metric).

    Other arguments: ``masks`` (one per view, ``None`` for all valid; pixels > 0.5 are
    used), ``convention`` (``"opencv"`` or ``"opengl"`` camera axes, see the module
    docstring), ``max_points`` (correspondences kept per pair of views; correspondences
    are searched on every ``s``-th pixel of maps larger than about 320 pixels a side).

    Returns ``(aligned, params)``: the aligned inverse-depth maps (float32) and the
    ``(scale, shift)`` of each view.  A view that cannot be aligned at all keeps
    ``(1.0, 0.0)`` and a warning is logged.
    """
    _check_align_options(loss, max_points)
    views, anchor = _prepare_views(depth_maps, poses, intrinsics, masks, reference, metric_depth, convention)
    params: list[tuple[float, float] | None] = [None] * len(views)
    for i, view in enumerate(views):
        if view.metric_inv is not None:
            params[i] = _fit_to_metric(view, loss, i)
    if all(v.metric_inv is None for v in views):
        params[anchor] = (1.0, 0.0)
    if views[0].camera is None:
        _align_equal_pixels(views, params, anchor, loss)
    else:
        _align_reprojected(views, params, anchor, loss, max_points)
    final = [p if p is not None else _unaligned(i) for i, p in enumerate(params)]
    aligned = [(a * v.estimate + b).astype(np.float32) for (a, b), v in zip(final, views)]
    return aligned, [(float(a), float(b)) for a, b in final]


def _unaligned(i: int) -> tuple[float, float]:
    log.warning("depth map %d shares no valid pixels with the other views; left unaligned (scale 1, shift 0)", i)
    return (1.0, 0.0)


def _check_align_options(loss: str, max_points: int) -> None:
    if loss not in _LOSSES:
        raise InvalidInputError(f"loss must be one of {', '.join(_LOSSES)}; got {loss!r}")
    if not isinstance(max_points, (int, np.integer)) or max_points < _MIN_POINTS:
        raise InvalidInputError(f"max_points must be an integer >= {_MIN_POINTS}; got {max_points!r}")


# -- inputs -----------------------------------------------------------------------------


def _prepare_views(depth_maps: Sequence[Any], poses: Any, intrinsics: Any, masks: Any, reference: int,
                   metric_depth: Any, convention: str) -> tuple[list[_View], int]:
    if isinstance(depth_maps, np.ndarray) and depth_maps.ndim == 3:
        depth_maps = list(depth_maps)
    if not isinstance(depth_maps, Sequence) or isinstance(depth_maps, (str, bytes)) or len(depth_maps) == 0:
        raise InvalidInputError("depth_maps must be a non-empty list of (H, W) maps")
    n = len(depth_maps)
    if not isinstance(reference, (int, np.integer)) or not 0 <= reference < n:
        raise InvalidInputError(f"reference must be a view index in [0, {n - 1}]; got {reference!r}")
    estimates = [load_depth(m, name=f"depth_maps[{i}]").astype(np.float64) for i, m in enumerate(depth_maps)]
    valid = _masks(masks, estimates)
    metric = _metric(metric_depth, estimates)
    cameras = _cameras(poses, intrinsics, n, convention)
    views = []
    for i in range(n):
        weight = estimate_depth_confidence(estimates[i]).astype(np.float64)
        views.append(_View(estimates[i], valid[i], weight, metric[i], cameras[i] if cameras else None))
    anchor = reference
    if any(m is not None for m in metric) and metric[reference] is None:
        anchor = next(i for i, m in enumerate(metric) if m is not None)
    return views, int(anchor)


def _per_view(value: Any, n: int, label: str) -> list[Any]:
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, (int, np.integer)) or not 0 <= k < n]
        if bad:
            raise InvalidInputError(f"{label} keys must be view indices in [0, {n - 1}]; got {bad}")
        return [value.get(i) for i in range(n)]
    if isinstance(value, np.ndarray) and value.ndim == 3:
        value = list(value)
    if not isinstance(value, Sequence) or len(value) != n:
        raise InvalidInputError(f"{label} must have one entry per depth map ({n}); got {_describe(value)}")
    return list(value)


def _describe(value: Any) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return f"{len(value)} entries"
    return type(value).__name__


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


def _cameras(poses: Any, intrinsics: Any, n: int, convention: str) -> list[_Camera] | None:
    if convention not in _CONVENTIONS:
        raise InvalidInputError(f"convention must be one of {', '.join(_CONVENTIONS)}; got {convention!r}")
    if poses is None:
        if intrinsics is not None:
            raise InvalidInputError("intrinsics were given without poses; pass poses (4x4 camera-to-world) too")
        return None
    if intrinsics is None:
        raise InvalidInputError("poses need intrinsics: a 3x3 K shared by all views or one per view")
    pose_arr = np.asarray(poses, dtype=np.float64)
    if pose_arr.shape != (n, 4, 4) or not np.all(np.isfinite(pose_arr)):
        raise InvalidInputError(f"poses must be {n} finite 4x4 camera-to-world matrices; got shape {pose_arr.shape}")
    k_arr = np.asarray(intrinsics, dtype=np.float64)
    if k_arr.shape == (3, 3):
        k_arr = np.broadcast_to(k_arr, (n, 3, 3))
    if k_arr.shape != (n, 3, 3) or not np.all(np.isfinite(k_arr)):
        raise InvalidInputError(f"intrinsics must be one 3x3 K or {n} of them; got shape {np.shape(intrinsics)}")
    flip = np.diag([1.0, -1.0, -1.0, 1.0]) if convention == "opengl" else np.eye(4)
    cams = []
    for i in range(n):
        cams.append(_camera(pose_arr[i] @ flip, k_arr[i], i))
    return cams


def _camera(pose: np.ndarray, K: np.ndarray, i: int) -> _Camera:
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InvalidInputError(f"intrinsics[{i}] must have positive focal lengths; got fx={K[0, 0]}, fy={K[1, 1]}")
    R = pose[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-4):
        raise InvalidInputError(f"poses[{i}] rotation part is not orthonormal (scaled or sheared pose?)")
    return _Camera(K.copy(), np.linalg.inv(K), R.copy(), pose[:3, 3].copy())


# -- fitting ------------------------------------------------------------------------------


def _fit_to_metric(view: _View, loss: str, i: int) -> tuple[float, float]:
    assert view.metric_inv is not None
    sel = view.valid & np.isfinite(view.metric_inv)
    fit = _robust_affine(view.estimate[sel], view.metric_inv[sel], view.weight[sel], loss)
    if fit is None:
        raise InvalidInputError(f"metric_depth[{i}] shares too few valid pixels with depth_maps[{i}] to fit a scale")
    return fit


def _anchor_inverse(view: _View, params: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The view's best inverse depth (metric where known, else aligned) and where it is usable."""
    a, b = params
    inv = a * view.estimate + b
    if view.metric_inv is not None:
        inv = np.where(np.isfinite(view.metric_inv), view.metric_inv, inv)
    return inv, view.valid & np.isfinite(inv)


def _align_equal_pixels(views: list[_View], params: list[Any], anchor: int, loss: str) -> None:
    for i, view in enumerate(views):
        if params[i] is not None:
            continue
        if view.estimate.shape != views[anchor].estimate.shape:
            raise InvalidInputError(
                f"without poses, views are compared at equal pixels, so depth_maps[{i}] {view.estimate.shape}"
                f" must have the shape of view {anchor} {views[anchor].estimate.shape}; or pass poses and intrinsics"
            )
        params[i] = _equal_pixel_fit(views[anchor], params[anchor], view, loss)


def _equal_pixel_fit(ref: _View, ref_params: tuple[float, float], view: _View,
                     loss: str) -> tuple[float, float] | None:
    ref_inv, ref_valid = _anchor_inverse(ref, ref_params)
    sel = view.valid & ref_valid
    return _robust_affine(view.estimate[sel], ref_inv[sel], view.weight[sel] * ref.weight[sel], loss)


def _align_reprojected(views: list[_View], params: list[Any], anchor: int, loss: str, max_points: int) -> None:
    _grow(views, params, loss, _PairCache([_reduced(v) for v in views], params, max_points))
    for i, p in enumerate(params):
        if p is None and views[i].estimate.shape == views[anchor].estimate.shape:
            log.warning("depth map %d: no reprojected correspondences; aligned at equal pixels instead", i)
            params[i] = _equal_pixel_fit(views[anchor], params[anchor], views[i], loss)


def _reduced(view: _View) -> _View:
    """Every ``s``-th pixel of a view (no blending across depth edges) with ``K`` to match,
    so that correspondences cost the same at any resolution."""
    assert view.camera is not None
    s = max(1, int(np.ceil(max(view.estimate.shape) / _POSE_WORK_SIDE)))
    if s == 1:
        return view
    K = np.diag([1.0 / s, 1.0 / s, 1.0]) @ view.camera.K
    camera = dataclasses.replace(view.camera, K=K, K_inv=np.linalg.inv(K))
    metric = view.metric_inv[::s, ::s] if view.metric_inv is not None else None
    return _View(view.estimate[::s, ::s], view.valid[::s, ::s], view.weight[::s, ::s], metric, camera)


class _PairCache:
    """Reprojected correspondences per (source, target); a source's fit never changes once made."""

    def __init__(self, views: list[_View], params: list[Any], max_points: int) -> None:
        self.views, self.params, self.max_points = views, params, max_points
        self._pairs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._lifted: dict[int, tuple[np.ndarray, ...]] = {}

    def collect(self, sources: list[int], target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The correspondences of ``target`` with all ``sources``, concatenated."""
        parts = [self._get(j, target) for j in sources]
        if not parts:
            return np.empty(0), np.empty(0), np.empty(0)
        x, y, w = (np.concatenate(p) for p in zip(*parts))
        return x, y, w

    def _get(self, j: int, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if j not in self._lifted:
            self._lifted[j] = _lifted(self.views[j], self.params[j])
        if (j, i) not in self._pairs:
            self._pairs[(j, i)] = _reprojected_pairs(self.views[j], self._lifted[j], self.views[i], self.max_points)
        return self._pairs[(j, i)]


def _grow(views: list[_View], params: list[Any], loss: str, pairs: _PairCache) -> None:
    """Align the pending views one at a time, the one most consistent with the aligned set first."""
    pending = [i for i, p in enumerate(params) if p is None]
    tried: dict[int, tuple[int, Any, float]] = {}  # view -> (correspondences, fit, agreement)
    while pending:
        sources = [j for j, p in enumerate(params) if p is not None]
        for i in pending:
            x, y, w = pairs.collect(sources, i)
            if i in tried and tried[i][0] == x.size:
                continue  # no new correspondences since the last round
            fit = _robust_affine(x, y, w, loss)
            tried[i] = (x.size, fit, _agreement(fit, x, y, w) if fit is not None else -1.0)
        best = max(pending, key=lambda i: (tried[i][2], tried[i][0]))
        if tried[best][1] is None:
            return
        params[best] = tried[best][1]
        pending.remove(best)


def _agreement(fit: tuple[float, float], x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Weighted share of correspondences the fit explains within 5 % of the inverse depth."""
    keep = np.isfinite(x) & np.isfinite(y) & (w > 0)
    x, y, w = x[keep], y[keep], w[keep]
    if x.size == 0:
        return -1.0
    tol = _AGREE_TOL * np.maximum(np.abs(y), 0.1 * float(np.median(np.abs(y))))
    return float((w * (np.abs(fit[0] * x + fit[1] - y) <= tol)).sum() / w.sum())


def _lifted(src: _View, src_params: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, world points, normals)`` of the source pixels that can be lifted to 3D."""
    assert src.camera is not None
    inv, usable = _anchor_inverse(src, src_params)
    usable &= inv > 0
    points = _point_map(np.where(usable, inv, np.nan), src.camera)
    normals = _normals(points, src.camera.t)
    ys, xs = np.nonzero(usable & np.isfinite(normals).all(axis=2))
    return ys, xs, points[ys, xs], normals[ys, xs]


def _reprojected_pairs(src: _View, lifted: tuple[np.ndarray, ...], dst: _View,
                       max_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dst estimate at the projected pixel, inverse z of the same point in dst, weight)``.

    Source points (``lifted`` by :func:`_lifted`) are kept only when they can be seen
    from ``dst``: they project inside its image, no other source point lies in front of
    them there (a z-buffer on 2x2-pixel cells, back faces included as occluders) and
    their surface (normal from the source's point map) faces the ``dst`` camera.
    """
    assert dst.camera is not None
    ys, xs, world, normal = lifted
    cam = (world - dst.camera.t) @ dst.camera.R  # rows: points in dst camera coordinates
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = (cam @ dst.camera.K.T)[:, :2].T / cam[:, 2]
    h, w = dst.estimate.shape
    inside = (cam[:, 2] > 1e-12) & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    seen = np.zeros(inside.shape, dtype=bool)
    seen[inside] = _front_most(u[inside], v[inside], cam[inside, 2], w)  # all points occlude, back faces too
    to_dst = dst.camera.t - world
    facing = (normal * to_dst).sum(axis=1) > _MIN_FACING_COS * np.linalg.norm(to_dst, axis=1)
    keep = np.flatnonzero(seen & facing)
    keep = keep[:: max(1, int(np.ceil(keep.size / max_points)))]
    u, v, zc, ys, xs = u[keep], v[keep], cam[keep, 2], ys[keep], xs[keep]
    keep = _bilinear(dst.valid.astype(np.float64), u, v) > 0.999
    u, v, zc, ys, xs = u[keep], v[keep], zc[keep], ys[keep], xs[keep]
    weight = src.weight[ys, xs] * _bilinear(dst.weight, u, v)
    return _bilinear(dst.estimate, u, v), 1.0 / zc, weight


def _point_map(inv: np.ndarray, camera: _Camera) -> np.ndarray:
    """World coordinates ``(H, W, 3)`` of every pixel at z-depth ``1 / inv`` (NaN where unknown)."""
    h, w = inv.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], axis=2) @ camera.K_inv.T
    with np.errstate(divide="ignore", invalid="ignore"):
        cam = rays / inv[:, :, None]
    return cam @ camera.R.T + camera.t


def _normals(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Unit surface normals of a point map, turned towards the camera at ``centre`` (NaN where undefined)."""
    if min(points.shape[:2]) < 2:
        return np.full(points.shape, np.nan)
    du = np.gradient(points, axis=1)
    dv = np.gradient(points, axis=0)
    n = np.cross(du, dv)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = n / np.linalg.norm(n, axis=2, keepdims=True)
    flip = (n * (centre - points)).sum(axis=2, keepdims=True) < 0
    return np.where(flip, -n, n)


def _front_most(u: np.ndarray, v: np.ndarray, z: np.ndarray, width: int, cell: int = 2,
                tolerance: float = 0.02) -> np.ndarray:
    """Points within ``tolerance`` (relative) of the nearest point projected into their cell."""
    cols = width // cell + 1
    idx = (np.rint(v).astype(np.intp) // cell) * cols + np.rint(u).astype(np.intp) // cell
    nearest = np.full(int(idx.max(initial=0)) + 1, np.inf)
    np.minimum.at(nearest, idx, z)
    return z <= nearest[idx] * (1.0 + tolerance)


def _bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``img`` sampled at ``(u, v)`` (column, row; inside the image) with bilinear weights."""
    h, w = img.shape
    x0 = np.clip(np.floor(u).astype(np.intp), 0, max(w - 2, 0))
    y0 = np.clip(np.floor(v).astype(np.intp), 0, max(h - 2, 0))
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = u - x0, v - y0
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _robust_affine(x: np.ndarray, y: np.ndarray, w: np.ndarray, loss: str = "tukey",
                   steps: int = 50) -> tuple[float, float] | None:
    """Robust fit of ``y ~ a * x + b`` (``None`` when there are too few points).

    Start: the candidate line (from random point pairs, plus least squares) with the least
    30 % quantile of absolute residuals (high breakdown: occluded correspondences can be
    a majority).  Then IRLS with Tukey or Huber weights, the residual scale taken from the
    same quantile (``Q30(|r|) / 0.385``, consistent for Gaussian noise).
    """
    keep = np.isfinite(x) & np.isfinite(y) & (w > 0)
    x, y, w = x[keep], y[keep], w[keep]
    if x.size < _MIN_POINTS:
        return None
    a, b = _lqs_start(x, y, w)
    floor = 1e-9 * max(float(np.ptp(y)), 1e-12)
    for _ in range(steps):
        r = y - (a * x + b)
        sigma = max(_quantile_abs(r) / _LQS_GAUSS, floor)
        fit = _weighted_line(x, y, w * _loss_weights(r / sigma, loss))
        if fit is None:
            break
        done = abs(fit[0] - a) <= 1e-10 * (abs(a) + 1e-12) and abs(fit[1] - b) <= 1e-10 * (abs(b) + abs(a) + 1e-12)
        a, b = fit
        if done:
            break
    if a <= 0:
        log.warning("depth alignment found a non-positive scale %.3g: is one map depth rather than inverse depth?", a)
    return (float(a), float(b))


def _quantile_abs(r: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """The ``_LQS_QUANTILE`` quantile of ``|r|`` (along ``axis``)."""
    a = np.abs(r)
    n = a.shape[-1] if axis is not None else a.size
    k = min(n - 1, int(_LQS_QUANTILE * n))
    if axis is None:
        return float(np.partition(a.ravel(), k)[k])
    return np.partition(a, k, axis=axis)[..., k]


def _loss_weights(t: np.ndarray, loss: str) -> np.ndarray:
    if loss == "huber":
        at = np.abs(t)
        return np.where(at <= _HUBER_C, 1.0, _HUBER_C / np.maximum(at, 1e-300))
    return np.where(np.abs(t) < _TUKEY_C, np.square(1.0 - np.square(t / _TUKEY_C)), 0.0)


def _weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float] | None:
    sw = w.sum()
    if not sw > 0:
        return None
    mx, my = (w * x).sum() / sw, (w * y).sum() / sw
    sxx = (w * np.square(x - mx)).sum()
    if not sxx > 1e-24 * sw * max(mx * mx, 1.0):
        return (1.0, float(my - mx))  # x constant: only a shift is defined
    a = (w * (x - mx) * (y - my)).sum() / sxx
    return (float(a), float(my - a * mx))


def _lqs_start(x: np.ndarray, y: np.ndarray, w: np.ndarray, trials: int = 300,
               sample: int = 2000) -> tuple[float, float]:
    """Least-quantile-of-squares line from random point pairs (deterministic), plus the LS line."""
    rng = np.random.default_rng(0)
    strong = np.flatnonzero(w >= 0.5)
    pool = strong if strong.size >= _MIN_POINTS else np.arange(x.size)
    if pool.size > sample:
        pool = rng.choice(pool, sample, replace=False)
    xs, ys = x[pool], y[pool]
    i, j = rng.integers(0, xs.size, (2, trials))
    dx = xs[i] - xs[j]
    good = np.abs(dx) > 1e-12 * max(float(np.ptp(xs)), 1e-300)
    a = (ys[i] - ys[j])[good] / dx[good]
    b = ys[i][good] - a * xs[i][good]
    ls = _weighted_line(xs, ys, np.ones_like(xs))
    if ls is not None:
        a, b = np.append(a, ls[0]), np.append(b, ls[1])
    if a.size == 0:
        return (1.0, float(np.median(ys - xs)))
    score = _quantile_abs(ys[None, :] - (a[:, None] * xs[None, :] + b[:, None]), axis=1)
    best = int(np.argmin(score))
    return (float(a[best]), float(b[best]))
