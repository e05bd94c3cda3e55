"""Monocular depth estimation through ONNX Runtime (MiDaS small, DPT, Depth Anything).

Models output relative inverse depth; :class:`DepthEstimator` runs one with the right
pre-processing for its family and returns it normalized to ``[0, 1]`` (near = 1) at the
image's size.  ONNX Runtime is needed (``pip install "gouache[enhance]"``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..._errors import InvalidInputError, MissingDependencyError
from .._inputs import load_image

log = logging.getLogger("gouache.enhance")

__all__ = [
    "DepthEstimator",
    "DepthFamily",
    "FAMILIES",
    "detect_family",
    "estimate_depth",
    "get_estimator",
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
    "midas_small": DepthFamily(
        "midas_small", 256, _IMAGENET_MEAN, _IMAGENET_STD, "MiDaS v2.1 small: 256x256, ImageNet mean/std"
    ),
    "dpt": DepthFamily(
        "dpt", 384, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "DPT (MiDaS v3 hybrid/large): 384x384, mean = std = 0.5"
    ),
    "depth_anything": DepthFamily(
        "depth_anything",
        518,
        _IMAGENET_MEAN,
        _IMAGENET_STD,
        "Depth Anything (v1/v2): 518x518 (multiple of 14), ImageNet mean/std",
    ),
}

_NAME_PATTERNS = (
    ("depth_anything", re.compile(r"depth[-_ ]?anything|\bdav2\b|\bda[-_]?v?2[-_]")),
    ("midas_small", re.compile(r"midas.*small|small.*midas|model[-_]small")),
    ("dpt", re.compile(r"dpt")),
)
_PREFERRED_PROVIDERS = (
    "CUDAExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    "CPUExecutionProvider",
)


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

    ``model``: an ``.onnx`` file, or a name: ``"MiDaS_small"`` (the default, or
    ``GOUACHE_DEPTH_MODEL`` when set), ``"DPT_Large"``, ``"DPT_Hybrid"`` (Glimpse3D's names,
    also accepted as ``model_type=``), ``"midas_small"``, ``"dpt"``, ``"depth_anything"``.
    A name is looked up as a local file (``GOUACHE_DEPTH_MODELS``, ``GOUACHE_MODEL_DIRS``,
    ``~/.cache/gouache/depth``: e.g. ``midas_small.onnx``), then in the Hugging Face
    cache, then fetched (the small class as Depth Anything V2 Small, the large one as
    DPT-Large; see :mod:`gouache.enhance._models`).  ``family``: the model family when it
    cannot be told from the file name or the input size (see :func:`detect_family`).
    ``device``: "auto", "cpu", "cuda" or "cuda:N" (ONNX Runtime providers to match), or
    ``providers``: ONNX Runtime execution providers (default: CUDA, DirectML, CoreML then
    CPU, those available).  ``percentiles``: the robust range used by
    :func:`normalize_inverse_depth`.

    ``estimator(image)`` (or ``estimator.estimate(image)``) returns float32 ``(H, W)``
    relative inverse depth in ``[0, 1]`` (near = 1) at the image's size; :meth:`raw`
    returns the model's own output.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        family: str | None = None,
        providers: Sequence[Any] | None = None,
        percentiles: tuple[float, float] = (0.5, 99.5),
        device: str | None = None,
        model_type: str | None = None,
    ) -> None:
        from .._device import onnx_providers
        from .._models import resolve_depth_model

        if model is not None and model_type is not None:
            raise InvalidInputError("give the depth model as model= or model_type= (Glimpse3D's name), not both")
        if family is not None and family not in FAMILIES:
            raise InvalidInputError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")
        if providers is not None and device is not None:
            raise InvalidInputError("give device= or providers=, not both")
        if providers is not None and (
            isinstance(providers, str) or not all(isinstance(p, (str, tuple)) for p in providers)
        ):
            raise InvalidInputError(f"providers must be a list of provider names; got {providers!r}")
        chosen = model if model is not None else model_type if model_type is not None else default_depth_model()
        if not isinstance(chosen, (str, os.PathLike)):
            raise InvalidInputError(
                f"model must be an .onnx file path or a depth model name; got {type(chosen).__name__}"
            )
        self.path, named_family = resolve_depth_model(chosen)
        self.percentiles = _check_percentiles(percentiles)
        self._family_arg = family if family is not None else named_family
        self._providers = list(providers) if providers is not None else onnx_providers(device or "auto")
        self._session: Any = None

    def __repr__(self) -> str:
        return f"DepthEstimator({str(self.path)!r}, family={self._family_arg!r})"

    def close(self) -> None:
        """Free the ONNX Runtime session (a later call creates it again)."""
        self._session = None

    def __enter__(self) -> DepthEstimator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        return self.estimate(image)

    def estimate(self, image: Any, normalize: bool = True) -> np.ndarray:
        """Relative inverse depth of ``image`` at the image's size, float32: in ``[0, 1]``
        (near = 1) with ``normalize``, else in the model's own units (Glimpse3D's method)."""
        rgb, _ = load_image(image)
        raw = self.raw(rgb)
        h, w = rgb.shape[:2]
        clean = np.where(np.isfinite(raw), raw, np.nan)
        fill = float(np.nanmin(clean)) if np.isfinite(clean).any() else 0.0
        resized = _resize(np.nan_to_num(clean, nan=fill), (w, h), Image.Resampling.BILINEAR)
        if not normalize:
            return resized.astype(np.float32)
        return normalize_inverse_depth(resized, self.percentiles)

    def estimate_batch(self, images: Sequence[Any], normalize: bool = True) -> list[np.ndarray]:
        """:meth:`estimate` for each image (one session for all)."""
        return [self.estimate(image, normalize=normalize) for image in images]


def default_depth_model() -> str:
    """``GOUACHE_DEPTH_MODEL`` when set, else ``"MiDaS_small"``."""
    from .._config import env_name

    return os.environ.get(env_name("depth_model"), "").strip() or "MiDaS_small"


@functools.lru_cache(maxsize=1)
def _shared_estimator(
    model: str, family: str | None, providers: tuple[Any, ...] | None, device: str | None
) -> DepthEstimator:
    return DepthEstimator(model, family=family, providers=None if providers is None else list(providers), device=device)


def get_estimator(
    model: str | os.PathLike[str] | None = None,
    *,
    family: str | None = None,
    providers: Sequence[Any] | None = None,
    device: str | None = None,
    model_type: str | None = None,
) -> DepthEstimator:
    """A :class:`DepthEstimator` shared by the calls that ask for the same model (the last
    one asked for is kept loaded), as Glimpse3D's ``get_estimator``."""
    if model is not None and model_type is not None:
        raise InvalidInputError("give the depth model as model= or model_type= (Glimpse3D's name), not both")
    chosen = model if model is not None else model_type if model_type is not None else default_depth_model()
    if not isinstance(chosen, (str, os.PathLike)):
        raise InvalidInputError(f"model must be an .onnx file path or a depth model name; got {type(chosen).__name__}")
    return _shared_estimator(os.fspath(chosen), family, None if providers is None else tuple(providers), device)


def estimate_depth(
    image: Any,
    model: str | os.PathLike[str] | DepthEstimator | None = None,
    *,
    family: str | None = None,
    providers: Sequence[Any] | None = None,
    device: str | None = None,
    model_type: str | None = None,
    normalize: bool = True,
) -> np.ndarray:
    """Relative inverse depth of ``image``, float32 ``(H, W)``: in ``[0, 1]`` (near = 1), or
    the model's own units with ``normalize=False``.

    ``model`` is a :class:`DepthEstimator`, or what :class:`DepthEstimator` accepts (a
    path or name; default ``GOUACHE_DEPTH_MODEL``, else ``"MiDaS_small"``; Glimpse3D's
    ``model_type=`` works too); the session is shared with the next calls for the same
    model (:func:`get_estimator`), so a loop over views loads the model once.
    """
    if isinstance(model, DepthEstimator):
        if family is not None or providers is not None or device is not None or model_type is not None:
            raise InvalidInputError(
                "family=, providers=, device= and model_type= belong to the DepthEstimator when one is passed as model"
            )
        return model.estimate(image, normalize=normalize)
    estimator = get_estimator(model, family=family, providers=providers, device=device, model_type=model_type)
    return estimator.estimate(image, normalize=normalize)


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


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError('depth estimation needs onnxruntime: pip install "gouache[enhance]"') from None
    return onnxruntime


def _create_session(path: Path, providers: list[Any] | None) -> Any:
    ort = _import_onnxruntime()
    available = ort.get_available_providers()
    if providers is None:
        providers = [p for p in _PREFERRED_PROVIDERS if p in available] or list(available)
    else:
        missing = [p for p in providers if (p[0] if isinstance(p, tuple) else p) not in available]
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
