"""Saving depth maps: exact (``.npy``, float TIFF), 16-bit PNG that restores its values, 8-bit previews.

Every writer is atomic and refuses to replace an existing file unless ``overwrite=True``
(Glimpse3D's helpers overwrote silently).  :func:`gouache.enhance.load_depth` reads all of
these back: ``.npy`` and TIFF exactly, gouache's 16-bit PNGs in their original units
(the value range is stored in the PNG), other PNGs as their raw integer values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ..._errors import InvalidInputError
from .._gouache import write_atomic
from .._inputs import DEPTH_RANGE_KEY, load_depth

__all__ = [
    "load_depth_raw",
    "save_depth",
    "save_depth_grayscale",
    "save_depth_raw",
]

_FORMATS = (".npy", ".png", ".tif", ".tiff")


def save_depth(depth: Any, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Save a depth (or inverse-depth) map; the format follows the extension.

    * ``.npy``: float32, exact.
    * ``.tif`` / ``.tiff``: 32-bit float TIFF, exact.
    * ``.png``: 16-bit grayscale spanning the map's range, with the range in the PNG's
      ``gouache:depth_range`` text field, so :func:`~gouache.enhance.load_depth` restores
      the values to within 1/65535 of the range; other tools see an ordinary 16-bit PNG.
    """
    d = load_depth(depth, name="depth")
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in _FORMATS:
        raise InvalidInputError(f"depth file extension must be one of {', '.join(_FORMATS)}; got {p.name!r}")
    if suffix == ".npy":
        return write_atomic(p, lambda tmp: _save_npy(tmp, d), overwrite=overwrite)
    if suffix == ".png":
        return write_atomic(p, lambda tmp: _save_png16(tmp, d), overwrite=overwrite)
    return write_atomic(
        p, lambda tmp: Image.fromarray(d.astype(np.float32), mode="F").save(tmp, format="TIFF"), overwrite=overwrite
    )


def save_depth_raw(depth: Any, output_path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Glimpse3D's name: save as ``.npy`` (float32, exact); see :func:`save_depth`."""
    if Path(output_path).suffix.lower() != ".npy":
        raise InvalidInputError(f"save_depth_raw writes .npy files; got {str(output_path)!r}")
    return save_depth(depth, output_path, overwrite=overwrite)


def load_depth_raw(input_path: str | os.PathLike[str]) -> np.ndarray:
    """Glimpse3D's name: a depth map saved as ``.npy`` (float32 ``(H, W)``)."""
    if Path(input_path).suffix.lower() != ".npy":
        raise InvalidInputError(f"load_depth_raw reads .npy files; got {str(input_path)!r}")
    return load_depth(input_path, name="input_path")


def save_depth_grayscale(depth: Any, output_path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """An 8-bit grayscale preview of a map in ``[0, 1]`` (values outside are clipped), as
    Glimpse3D wrote it; use :func:`save_depth` to keep the values."""
    d = load_depth(depth, name="depth")
    g = np.clip(np.rint(np.clip(d, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)
    p = Path(output_path)
    if p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise InvalidInputError(f"save_depth_grayscale writes .png, .jpg or .webp; got {p.name!r}")
    return write_atomic(
        p, lambda tmp: Image.fromarray(g, mode="L").save(tmp, format=_pil_format(p)), overwrite=overwrite
    )


def _pil_format(p: Path) -> str:
    return {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}[p.suffix.lower()]


def _save_npy(tmp: str, d: np.ndarray) -> None:
    with open(tmp, "wb") as fh:  # a file object: np.save would append .npy to a path
        np.save(fh, d.astype(np.float32))


def _save_png16(tmp: str, d: np.ndarray) -> None:
    lo, hi = float(d.min()), float(d.max())
    scaled = np.zeros(d.shape) if hi <= lo else (d - lo) / (hi - lo)
    q = np.clip(np.rint(scaled * 65535.0), 0, 65535).astype(np.uint16)
    info = PngInfo()
    info.add_text(DEPTH_RANGE_KEY, f"{lo!r},{hi!r}")
    Image.fromarray(q).save(tmp, format="PNG", pnginfo=info)
