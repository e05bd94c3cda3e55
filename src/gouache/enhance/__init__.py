"""Enhancement of rendered views of 3D scenes with depth-guided diffusion: the engine-independent parts.

* Inputs: :func:`load_image`, :func:`load_depth`, :func:`load_mask` (float32 arrays).
* Geometry: :class:`Letterbox` (one working-size geometry for image, depth and mask, and
  the way back), :func:`composite_alpha`.
* Depth (:mod:`gouache.enhance.depth`): :func:`estimate_depth` / :class:`DepthEstimator`
  (MiDaS small, DPT, Depth Anything through ONNX Runtime, ``pip install "gouache[enhance]"``),
  :func:`estimate_depth_confidence`, :func:`align_depth_scales` (multi-view scale and shift).
* Service: :class:`EnhanceConfig` (presets ``for_t4_gpu``, ``for_quality``, ``for_speed``,
  ``for_cpu``), :class:`EnhanceService` (one load, many views), :class:`SDXLLightningPipeline`,
  :func:`enhance_view`, :func:`enhance_views_batch`, :func:`denoising_steps`.
* Prompts: :class:`PromptBuilder`.  Memory: :class:`MemoryConfig`, :func:`get_memory_status`,
  :func:`print_memory_report`.  Colour: :func:`match_colors`.
"""

from ._color import match_colors
from ._geometry import Letterbox, composite_alpha
from ._inputs import load_depth, load_image, load_mask
from .depth import (
    DepthEstimator,
    align_depth_scales,
    estimate_depth,
    estimate_depth_confidence,
    normalize_inverse_depth,
)
from .memory import MemoryConfig, get_memory_status, print_memory_report
from .prompts import PromptBuilder
from ._service import (
    EnhanceBatchResult,
    EnhanceConfig,
    EnhanceService,
    SDXLLightningPipeline,
    denoising_steps,
    enhance_view,
    enhance_views_batch,
)

__all__ = [
    "DepthEstimator",
    "EnhanceBatchResult",
    "EnhanceConfig",
    "EnhanceService",
    "Letterbox",
    "MemoryConfig",
    "PromptBuilder",
    "SDXLLightningPipeline",
    "align_depth_scales",
    "composite_alpha",
    "denoising_steps",
    "enhance_view",
    "enhance_views_batch",
    "estimate_depth",
    "estimate_depth_confidence",
    "get_memory_status",
    "load_depth",
    "load_image",
    "load_mask",
    "match_colors",
    "normalize_inverse_depth",
    "print_memory_report",
]
