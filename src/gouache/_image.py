"""Images: SDImage (H, W, C uint8 pixels owned by Python) and the API edge's one conversion.

:class:`SDImage` is the engine's pixel layout without any native memory: the binding turns
it into the C struct (:mod:`gouache._sdcpp.image`).  :func:`as_pil` is how the pipeline
takes an image argument (path, PIL image, numpy array or SDImage): one conversion, to the
PIL mode the pipeline works in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import InvalidInputError

#: Channel counts an SDImage may have (grayscale, RGB, RGBA).
CHANNELS = (1, 3, 4)


class SDImage:
    """An 8-bit image the engine can read, stored as a C-contiguous ``(H, W, C)`` array.

    Build one with :meth:`from_numpy`, :meth:`from_pil` or :meth:`open`; read it back
    with :meth:`to_numpy` (a copy) or :meth:`to_pil`.  Images returned by the engine are
    copied into Python and the engine's buffer is freed at once, so an ``SDImage``
    never points into native memory.
    """

    __slots__ = ("_array",)

    def __init__(self, array: np.ndarray) -> None:
        # Private: use the from_* constructors.  ``array`` is already validated uint8 HWC.
        self._array = array

    # -- constructors -------------------------------------------------------------

    @classmethod
    def from_numpy(cls, array: Any) -> SDImage:
        """From a ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` array.

        ``uint8`` is taken as is; floating-point arrays must lie in ``[0, 1]`` and are
        scaled by 255 and rounded; ``bool`` arrays become 0/255.  Anything else raises
        :class:`ValueError` naming what was given.
        """
        if not isinstance(array, np.ndarray):
            raise InvalidInputError(f"expected a numpy array, got {type(array).__name__}")
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3 or array.shape[2] not in CHANNELS:
            raise InvalidInputError(
                f"image array must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {array.shape}"
            )
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise InvalidInputError(f"image array is empty: shape {array.shape}")
        if array.dtype == np.uint8:
            out = np.ascontiguousarray(array).copy()
        elif array.dtype == np.bool_:
            out = np.ascontiguousarray(array, dtype=np.uint8) * np.uint8(255)
        elif np.issubdtype(array.dtype, np.floating):
            if not np.all(np.isfinite(array)):
                raise InvalidInputError("float image array contains NaN or infinite values")
            lo, hi = float(array.min()), float(array.max())
            if lo < 0.0 or hi > 1.0:
                raise InvalidInputError(f"float image array must lie in [0, 1]; got values in [{lo:g}, {hi:g}]")
            out = np.ascontiguousarray(np.rint(array.astype(np.float32) * 255.0), dtype=np.uint8)
        else:
            raise InvalidInputError(
                f"image array dtype must be uint8, bool or floating point in [0, 1]; got {array.dtype}"
            )
        return cls(out)

    @classmethod
    def from_pil(cls, image: Any) -> SDImage:
        """From a PIL image.  L, RGB and RGBA are kept; LA/P-with-transparency become RGBA,
        16-bit and float grayscale are scaled to 8 bits, every other mode becomes RGB."""
        from PIL import Image

        if not isinstance(image, Image.Image):
            raise InvalidInputError(f"expected a PIL.Image.Image, got {type(image).__name__}")
        if image.width == 0 or image.height == 0:
            raise InvalidInputError(f"image is empty: size {image.size}")
        mode = image.mode
        if mode in ("L", "RGB", "RGBA"):
            pass
        elif mode == "LA" or (mode == "P" and "transparency" in image.info) or mode == "PA":
            image = image.convert("RGBA")
        elif mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            arr = np.asarray(image, dtype=np.float64)
            top = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
            if mode == "F":
                top = 1.0 if arr.max() <= 1.0 else float(arr.max())
            return cls(np.ascontiguousarray(np.clip(np.rint(arr / top * 255.0), 0, 255), dtype=np.uint8)[:, :, None])
        elif mode == "1":
            image = image.convert("L")
        else:
            image = image.convert("RGB")
        arr = np.asarray(image, dtype=np.uint8)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        return cls(np.ascontiguousarray(arr).copy())

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> SDImage:
        """Read an image file (anything Pillow reads)."""
        from PIL import Image

        p = Path(path)
        if not p.is_file():
            raise InvalidInputError(f"image file not found: {str(p)!r}")
        with Image.open(p) as im:
            im.load()
            return cls.from_pil(im)

    @classmethod
    def coerce(cls, value: ImageLike) -> SDImage:
        """An SDImage from an SDImage, numpy array, PIL image or image file path."""
        if isinstance(value, SDImage):
            return value
        if isinstance(value, np.ndarray):
            return cls.from_numpy(value)
        if isinstance(value, (str, os.PathLike)):
            return cls.open(value)
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - pillow is a dependency
            Image = None  # type: ignore[assignment]
        if Image is not None and isinstance(value, Image.Image):
            return cls.from_pil(value)
        raise InvalidInputError(
            f"expected an image (SDImage, numpy array, PIL image or file path), got {type(value).__name__}"
        )

    # -- accessors ----------------------------------------------------------------

    @property
    def width(self) -> int:
        return int(self._array.shape[1])

    @property
    def height(self) -> int:
        return int(self._array.shape[0])

    @property
    def channels(self) -> int:
        return int(self._array.shape[2])

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``, as PIL spells it."""
        return (self.width, self.height)

    def to_numpy(self) -> np.ndarray:
        """A ``(H, W, C)`` uint8 copy."""
        return self._array.copy()

    def to_pil(self):
        """A PIL image (mode L, RGB or RGBA)."""
        from PIL import Image

        arr = self._array
        if arr.shape[2] == 1:
            return Image.fromarray(arr[:, :, 0])
        return Image.fromarray(arr)

    def with_channels(self, channels: int) -> SDImage:
        """This image converted to 1 (luma), 3 (RGB) or 4 (RGBA) channels."""
        if channels == self.channels:
            return self
        if channels not in CHANNELS:
            raise InvalidInputError(f"channels must be 1, 3 or 4; got {channels}")
        pil = self.to_pil()
        return SDImage.from_pil(pil.convert({1: "L", 3: "RGB", 4: "RGBA"}[channels]))

    def __repr__(self) -> str:
        return f"SDImage(width={self.width}, height={self.height}, channels={self.channels})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SDImage):
            return NotImplemented
        return self._array.shape == other._array.shape and bool(np.array_equal(self._array, other._array))

    __hash__ = None  # type: ignore[assignment]


ImageLike = SDImage | np.ndarray | str | os.PathLike | Any


def as_pil(value: ImageLike, mode: str, what: str):
    """A PIL image in ``mode`` ("RGB" or "L") from a path, PIL image, numpy array or SDImage.

    The pipeline's one conversion of an image argument.  RGBA becomes RGB over white;
    refusals name ``what``.
    """
    from PIL import Image

    try:
        if isinstance(value, Image.Image):
            if value.width == 0 or value.height == 0:
                raise InvalidInputError(f"image is empty: size {value.size}")
            image = value
        else:
            image = SDImage.coerce(value).to_pil()
    except InvalidInputError as exc:
        raise InvalidInputError(f"{what}: {exc}") from None
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if mode == "RGB" and has_alpha:
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, (255, 255, 255))
        image.paste(rgba, mask=rgba.getchannel("A"))
    return image if image.mode == mode else image.convert(mode)
