"""Depth for enhancement: monocular estimation, confidence, multi-view alignment, saving.

Conventions used throughout:

* Estimated maps are **relative inverse depth** (disparity-like: larger = nearer), known
  up to a scale and a shift per view; :func:`estimate_depth` normalizes them to
  ``[0, 1]`` with near = 1.
* Metric depth is **z-depth** (distance along the camera's optical axis, not along the
  ray), in the units of the camera poses; aligned maps are inverse z-depth.
* Cameras are pinhole: ``K`` is the 3x3 intrinsic matrix mapping camera coordinates to
  pixel coordinates whose integer values are pixel centres (``(0, 0)`` = centre of the
  top-left pixel); poses are 4x4 matrices, camera-to-world by default
  (``pose_type="w2c"`` for world-to-camera), OpenCV axes by default (x right, y down,
  z forward; ``convention="opengl"`` for OpenGL/Blender cameras: x right, y up,
  looking down -z).

Parts: :mod:`~gouache.enhance.depth.estimate` (ONNX Runtime models: ``pip install
"gouache[enhance]"``), :mod:`~gouache.enhance.depth.confidence`,
:mod:`~gouache.enhance.depth.align`, :mod:`~gouache.enhance.depth.io`; all but
estimation are numpy only.  The names of Glimpse3D's ``midas_depth`` module are here too
(``align_depth_scales_global``, ``weighted_depth_fusion``, ``save_depth_raw`` ...).
"""

from .align import (
    DepthAlignment,
    align_depth_scales,
    align_depth_scales_global,
    compute_alignment_quality,
    estimate_overlap_simple,
    fit_depth_alignment,
)
from .confidence import (
    apply_confidence_mask,
    estimate_depth_confidence,
    get_reliable_depth_mask,
    weighted_depth_fusion,
)
from .estimate import (
    FAMILIES,
    DepthEstimator,
    DepthFamily,
    detect_family,
    estimate_depth,
    normalize_inverse_depth,
)
from .io import load_depth_raw, save_depth, save_depth_grayscale, save_depth_raw

__all__ = [
    "FAMILIES",
    "DepthAlignment",
    "DepthEstimator",
    "DepthFamily",
    "align_depth_scales",
    "align_depth_scales_global",
    "apply_confidence_mask",
    "compute_alignment_quality",
    "detect_family",
    "estimate_depth",
    "estimate_depth_confidence",
    "estimate_overlap_simple",
    "fit_depth_alignment",
    "get_reliable_depth_mask",
    "load_depth_raw",
    "normalize_inverse_depth",
    "save_depth",
    "save_depth_grayscale",
    "save_depth_raw",
    "weighted_depth_fusion",
]
