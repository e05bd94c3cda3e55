"""Enhancement of rendered views of 3D scenes with depth-guided few-step diffusion.

The API of Glimpse3D's ``ai_modules.diffusion`` (read ``ai_modules.diffusion`` as
``gouache.enhance`` and ``ai_modules.midas_depth`` as ``gouache.enhance.depth``), with
working defaults: SDXL-Lightning 4-step + the SDXL depth ControlNet + a MiDaS-small-class
depth model, found locally or fetched on first use, each overridable from the environment
(``GOUACHE_ENHANCE_MODEL``, ``GOUACHE_ENHANCE_CONTROLNET``, ``GOUACHE_DEPTH_MODEL``,
``GOUACHE_ENHANCE_<FIELD>``).

* Service: :class:`EnhanceConfig` (presets ``for_t4_gpu``, ``for_quality``, ``for_speed``,
  ``for_cpu``), :class:`EnhanceService` (one load, many views: ``enhance``,
  ``enhance_batch``, ``enhance_with_depth_confidence``), :class:`SDXLLightningPipeline`,
  :func:`enhance_view`, :func:`enhance_views_batch`, :func:`denoising_steps`.
* Depth (:mod:`gouache.enhance.depth`): :func:`estimate_depth` / :class:`DepthEstimator`
  (ONNX Runtime, ``pip install "gouache[enhance]"``), :func:`estimate_depth_confidence`,
  :func:`align_depth_scales` / :func:`fit_depth_alignment` (multi-view scale and shift,
  pose-aware), saving and loading depth maps.
* Inputs: :func:`load_image`, :func:`load_depth`, :func:`load_mask`.  Geometry:
  :class:`Letterbox`, :func:`composite_alpha`.  Prompts: :class:`PromptBuilder`.  Memory
  (:mod:`gouache.enhance.memory_utils`): :class:`MemoryConfig`, :func:`get_memory_status`,
  :func:`print_memory_report`, :func:`setup_memory_optimization`.  Colour: :func:`match_colors`.
"""

from ._color import match_colors
from ._config import EnhanceConfig, denoising_steps
from ._geometry import Letterbox, composite_alpha
from ._inputs import load_depth, load_image, load_mask
from ._pipeline import SDXLLightningPipeline
from ._service import (
    EnhanceBatchResult,
    EnhanceService,
    enhance_view,
    enhance_views_batch,
    unload_cached_service,
)
from .depth import (
    DepthAlignment,
    DepthEstimator,
    align_depth_scales,
    estimate_depth,
    estimate_depth_confidence,
    fit_depth_alignment,
    normalize_inverse_depth,
    save_depth,
)
from .memory_utils import MemoryConfig, get_memory_status, print_memory_report, setup_memory_optimization
from .prompts import PromptBuilder

__all__ = [
    "DepthAlignment",
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
    "fit_depth_alignment",
    "get_memory_status",
    "load_depth",
    "load_image",
    "load_mask",
    "match_colors",
    "normalize_inverse_depth",
    "print_memory_report",
    "save_depth",
    "setup_memory_optimization",
    "unload_cached_service",
]
