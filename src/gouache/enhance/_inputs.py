"""Loading images, depth maps and masks into float32 numpy arrays.

Every loader takes a path, a PIL image, a numpy array or an :class:`gouache.SDImage` and
returns float32 arrays in a fixed convention:

* :func:`load_image` -> ``(rgb, alpha)``: ``rgb`` is ``(H, W, 3)`` in ``[0, 1]``,
  ``alpha`` is ``(H, W)`` in ``[0, 1]`` or ``None`` when the input has no alpha channel.
* :func:`load_depth` -> ``(H, W)`` with the values as stored (no rescaling; ``.npy``
  files as saved; 16-bit PNGs written by :func:`gouache.enhance.save_depth` in their
  original units, from the value range stored in the PNG).
* :func:`load_mask` -> ``(H, W)`` in ``[0, 1]``.

Integer data is scaled by its type's range (uint8 by 255, uint16 by 65535) for images
and masks; floating-point images and masks must already lie in ``[0, 1]``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .._errors import InvalidInputError

#: PNG text field in which :func:`gouache.enhance.save_depth` stores a 16-bit map's value range.
DEPTH_RANGE_KEY = "gouache:depth_range"
#: Luma weights (ITU-R BT.601, as PIL's "L" conversion) for colour masks.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_TOLERANCE = 1e-5


def load_image(value: Any, *, name: str = "image") -> tuple[np.ndarray, np.ndarray | None]:
    """An image as ``(rgb, alpha)`` float32 arrays in ``[0, 1]``.

    ``value``: a path, a PIL image (any mode: L, RGB, RGBA, LA, P, I;16, I, F, CMYK...),
    an :class:`gouache.SDImage`, or a numpy array ``(H, W)``, ``(H, W, 1)``,
    ``(H, W, 2)`` (gray + alpha), ``(H, W, 3)`` or ``(H, W, 4)`` of dtype uint8, uint16,
    bool or float in ``[0, 1]``.  Gray images are replicated to three channels.  ``alpha``
    is ``None`` unless the input carries an alpha channel.  ``name`` is used in errors.
    """
    arr = _to_array(value, name, kind="image")
    arr = _channels_last(arr, name, allowed=(1, 2, 3, 4))
    data = _unit_range(arr, name)
    channels = data.shape[2]
    alpha = data[:, :, -1].copy() if channels in (2, 4) else None
    color = data[:, :, :3] if channels >= 3 else np.repeat(data[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(color, dtype=np.float32), alpha


def load_depth(value: Any, *, name: str = "depth") -> np.ndarray:
    """A depth (or inverse-depth) map as a float32 ``(H, W)`` array, values as stored.

    ``value``: a path (``.npy``, 16-bit PNG, 8-bit PNG, TIFF/float images), a PIL image,
    or a numpy array ``(H, W)`` / ``(H, W, 1)`` of any real dtype.  A ``(H, W, 3|4)`` array or image
    is accepted only when its colour channels are equal (a gray map saved as RGB).  No
    rescaling is done: a uint16 PNG gives values in ``[0, 65535]``.  NaN or infinite
    values, empty maps and other shapes raise :class:`InvalidInputError`.
    """
    arr = _depth_array(value, name)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = _gray_from_equal_channels(arr, name)
    if arr.ndim != 2:
        raise InvalidInputError(
            f"{name} must be a 2-D depth map of shape (H, W) or (H, W, 1); got an array of shape {arr.shape}"
        )
    _check_not_empty(arr, name)
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InvalidInputError(f"{name} must hold integer or floating-point values; got dtype {arr.dtype}")
    out = np.asarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise InvalidInputError(f"{name} contains {bad} NaN or infinite value(s); only finite values are allowed")
    return np.ascontiguousarray(out)


def load_mask(value: Any, *, name: str = "mask") -> np.ndarray:
    """A mask as a float32 ``(H, W)`` array in ``[0, 1]`` (1 = selected).

    ``value``: a path, PIL image or numpy array (bool, uint8, uint16 or float in
    ``[0, 1]``).  Colour inputs are reduced to luma; an alpha channel multiplies it
    (transparent pixels are never selected).
    """
    arr = _to_array(value, name, kind="mask")
    arr = _channels_last(arr, name, allowed=(1, 2, 3, 4))
    data = _unit_range(arr, name)
    channels = data.shape[2]
    gray = data[:, :, 0] if channels <= 2 else data[:, :, :3] @ _LUMA
    if channels in (2, 4):
        gray = gray * data[:, :, -1]
    return np.ascontiguousarray(np.clip(gray, 0.0, 1.0), dtype=np.float32)


# --------------------------------------------------------------------------- helpers


def _depth_array(value: Any, name: str) -> np.ndarray:
    """A depth map's raw array: ``.npy`` files loaded, gouache's 16-bit PNGs restored."""
    if isinstance(value, (str, os.PathLike)) and Path(value).suffix.lower() == ".npy":
        p = Path(value)
        if not p.is_file():
            raise InvalidInputError(f"{name} file not found: {str(p)!r}")
        try:
            return np.asarray(np.load(p, allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{name} file {str(p)!r} is not a readable .npy array: {exc}") from None
    image = _open(value, name) if isinstance(value, (str, os.PathLike)) else value
    arr = _to_array(image, name, kind="depth")
    stored = image.info.get(DEPTH_RANGE_KEY) if isinstance(image, Image.Image) else None
    if stored is None or arr.dtype != np.uint16:
        return arr
    try:
        lo, hi = (float(x) for x in str(stored).split(","))
    except ValueError:
        raise InvalidInputError(f"{name} has a malformed {DEPTH_RANGE_KEY} field: {stored!r}") from None
    return lo + arr.astype(np.float64) / 65535.0 * (hi - lo)


def _to_array(value: Any, name: str, *, kind: str) -> np.ndarray:
    """The raw numpy array behind ``value`` (path, PIL image, SDImage or array)."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (str, os.PathLike)):
        return _pil_to_array(_open(value, name), kind)
    if isinstance(value, Image.Image):
        if value.width == 0 or value.height == 0:
            raise InvalidInputError(f"{name} is an empty image: size {value.size}")
        return _pil_to_array(value, kind)
    from ._gouache import SDImage

    if isinstance(value, SDImage):
        return value.to_numpy()
    raise InvalidInputError(
        f"{name} must be a file path, PIL image, SDImage or numpy array; got {type(value).__name__}"
    )


def _open(path: str | os.PathLike[str], name: str) -> Image.Image:
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"{name} file not found: {str(p)!r}")
    try:
        with Image.open(p) as im:
            im.load()
            return im.copy()
    except (OSError, Image.DecompressionBombError) as exc:
        raise InvalidInputError(f"{name} file {str(p)!r} is not a readable image: {exc}") from None


def _pil_to_array(im: Image.Image, kind: str) -> np.ndarray:
    """A PIL image as an array of its native depth (bool, uint8, uint16, int32 or float32)."""
    mode = im.mode
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)
    if mode == "I":
        arr = np.asarray(im, dtype=np.int64)
        if kind != "depth" and arr.size and arr.min() >= 0 and arr.max() <= 65535:
            return arr.astype(np.uint16)  # 16-bit files some Pillow versions open as "I"
        return arr.astype(np.float64) if kind == "depth" else arr
    if mode == "F":
        return np.asarray(im, dtype=np.float32)
    if mode == "1":
        return np.asarray(im, dtype=bool)
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(im, dtype=np.uint8)
    if mode in ("PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info):
        return np.asarray(im.convert("RGBA"), dtype=np.uint8)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _channels_last(arr: np.ndarray, name: str, *, allowed: tuple[int, ...]) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in allowed:
        shapes = ", ".join(["(H, W)"] + [f"(H, W, {c})" for c in allowed])
        raise InvalidInputError(f"{name} must have shape {shapes}; got an array of shape {arr.shape}")
    _check_not_empty(arr, name)
    return arr


def _check_not_empty(arr: np.ndarray, name: str) -> None:
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInputError(f"{name} is empty: shape {arr.shape}")


def _unit_range(arr: np.ndarray, name: str) -> np.ndarray:
    """``arr`` as float32 in ``[0, 1]``: integers scaled by their type's range, floats checked."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / np.float32(65535.0)
    if np.issubdtype(arr.dtype, np.floating):
        data = arr.astype(np.float32)
        if not np.all(np.isfinite(data)):
            raise InvalidInputError(f"{name} contains NaN or infinite values; floats must lie in [0, 1]")
        lo, hi = float(data.min()), float(data.max())
        if lo < -_TOLERANCE or hi > 1.0 + _TOLERANCE:
            raise InvalidInputError(f"{name} float values must lie in [0, 1]; got values in [{lo:g}, {hi:g}]")
        return np.clip(data, 0.0, 1.0)
    raise InvalidInputError(f"{name} dtype must be uint8, uint16, bool or floating point in [0, 1]; got {arr.dtype}")


def _gray_from_equal_channels(arr: np.ndarray, name: str) -> np.ndarray:
    color = arr[:, :, :3]
    if not (np.array_equal(color[:, :, 0], color[:, :, 1]) and np.array_equal(color[:, :, 0], color[:, :, 2])):
        raise InvalidInputError(
            f"{name} must be a single-channel depth map (H, W); got a colour array of shape {arr.shape}"
            " whose channels differ"
        )
    return color[:, :, 0]
