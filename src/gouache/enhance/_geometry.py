"""Working-size geometry shared by an image, its depth map and its mask, and alpha compositing.

A :class:`Letterbox` scales an input of ``width x height`` so that its long side is
``target`` pixels (aspect kept), then centres it on a canvas whose sides are multiples
of ``multiple`` (the diffusion engine works on multiples of 64).  The same geometry is
applied to the image, the depth map and the mask, so the control map lines up with the
image pixel for pixel, and :meth:`Letterbox.restore` brings a result back to exactly
``width x height``.

Resampling: images are enlarged bicubically and shrunk by area averaging; depth maps
are resampled bilinearly and padded with their edge values (no artificial depth step);
masks are resampled bilinearly/by area and padded with 0.  When the scale factor is an
integer ``k``, enlarging is *mean preserving*: every ``k x k`` block of the result
averages exactly to the source pixel, so ``restore(apply(x)) == x`` (to float precision,
exactly for uint8).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from .._errors import InvalidInputError
from ._inputs import load_depth, load_image, load_mask

Fill = float | Sequence[float] | str

_KINDS = ("image", "depth", "mask")
_ASPECT_TOLERANCE = 0.01
_R = Image.Resampling


@dataclasses.dataclass(frozen=True)
class Letterbox:
    """An input of ``width x height`` scaled to ``content_width x content_height`` and centred
    on a ``canvas_width x canvas_height`` canvas.  Build one with :meth:`fit`."""

    width: int
    height: int
    content_width: int
    content_height: int
    canvas_width: int
    canvas_height: int

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise InvalidInputError(f"Letterbox.{field.name} must be a positive integer; got {value!r}")
        if self.content_width > self.canvas_width or self.content_height > self.canvas_height:
            raise InvalidInputError(
                f"Letterbox content {self.content_width}x{self.content_height} does not fit the canvas"
                f" {self.canvas_width}x{self.canvas_height}"
            )

    @classmethod
    def fit(cls, width: int, height: int, target: int = 1024, multiple: int = 64) -> Letterbox:
        """The geometry for a ``width x height`` input: long side scaled to ``target`` (aspect
        kept), canvas padded up to multiples of ``multiple`` with the content centred."""
        for label, value in (("width", width), ("height", height), ("target", target), ("multiple", multiple)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise InvalidInputError(f"Letterbox.fit {label} must be a positive integer; got {value!r}")
        scale = target / max(width, height)
        content_w = max(1, round(width * scale))
        content_h = max(1, round(height * scale))
        return cls(
            int(width),
            int(height),
            content_w,
            content_h,
            math.ceil(content_w / multiple) * multiple,
            math.ceil(content_h / multiple) * multiple,
        )

    # -- derived geometry ------------------------------------------------------------

    @property
    def size(self) -> tuple[int, int]:
        """The input size ``(width, height)``."""
        return (self.width, self.height)

    @property
    def canvas_size(self) -> tuple[int, int]:
        """The working canvas size ``(canvas_width, canvas_height)``."""
        return (self.canvas_width, self.canvas_height)

    @property
    def offset(self) -> tuple[int, int]:
        """Top-left corner ``(x, y)`` of the content on the canvas."""
        return ((self.canvas_width - self.content_width) // 2, (self.canvas_height - self.content_height) // 2)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """The content's ``(left, top, right, bottom)`` on the canvas."""
        x, y = self.offset
        return (x, y, x + self.content_width, y + self.content_height)

    @property
    def scale(self) -> float:
        """Content pixels per input pixel (along the long side)."""
        if self.width >= self.height:
            return self.content_width / self.width
        return self.content_height / self.height

    @property
    def padded(self) -> bool:
        """Whether the canvas is larger than the content."""
        return (self.canvas_width, self.canvas_height) != (self.content_width, self.content_height)

    # -- forward -------------------------------------------------------------------

    def apply_image(self, arr: Any, fill: Fill = 0.0) -> np.ndarray:
        """``arr`` (``(H, W)`` or ``(H, W, C)`` of the input size) on the canvas.

        uint8 arrays come back uint8, float arrays (in ``[0, 1]``) float32; anything else
        (a path, a PIL image) is loaded with :func:`load_image` first.  ``fill`` is the
        padding: a value in ``[0, 1]``, one such value per channel, or ``"edge"`` to repeat
        the border pixels.  Enlarged bicubically, shrunk by area averaging.
        """
        data, dtype, squeeze = _image_array(arr)
        self._check_size(data, "image")
        placed = self._place(data, kind="image", fill=_fill_values(fill, data.shape[2]))
        return _finish(placed, dtype, squeeze)

    def apply_depth(self, arr: Any) -> np.ndarray:
        """A depth map on the canvas, resampled bilinearly and padded with its edge values.

        A map of another size than the input (same aspect ratio) is first resampled onto
        the input's size.  Returns float32 ``(canvas_height, canvas_width)``.
        """
        depth = load_depth(arr)
        depth = self._onto_input_size(depth, "depth", kind="depth")
        return self._place(depth[:, :, None], kind="depth", fill="edge")[:, :, 0].astype(np.float32)

    def apply_mask(self, arr: Any) -> np.ndarray:
        """A mask on the canvas in ``[0, 1]``, padded with 0 (nothing selected in the padding).

        A mask of another size than the input (same aspect ratio) is first resampled
        onto the input's size.  Returns float32 ``(canvas_height, canvas_width)``.
        """
        mask = load_mask(arr)
        mask = self._onto_input_size(mask, "mask", kind="mask")
        return self._place(mask[:, :, None], kind="mask", fill=[0.0])[:, :, 0].astype(np.float32)

    # -- backward ------------------------------------------------------------------

    def restore(self, arr: Any, *, kind: str = "image") -> np.ndarray:
        """A canvas-sized result cropped to the content and resized back to exactly the input size.

        ``arr``: ``(H, W)`` or ``(H, W, C)``, uint8 (returned uint8) or float (returned
        float32).  An array of another size with the canvas's aspect ratio (e.g. a result
        upscaled 2x) is accepted: the crop box is scaled to it.  ``kind``: ``"image"``
        (bicubic up / area down, clipped to the value range), ``"depth"`` (bilinear, no
        clipping) or ``"mask"`` (clipped to ``[0, 1]``).
        """
        _check_kind(kind)
        data, dtype, squeeze = _image_array(arr, allow_any_float=kind == "depth")
        crop = data[self._scaled_box(data)]
        out = _resample(crop, (self.width, self.height), kind=kind, clip=_clip_range(kind, dtype))
        return _finish(out, dtype, squeeze)

    # -- internals -----------------------------------------------------------------

    def _place(self, data: np.ndarray, *, kind: str, fill: list[float] | str) -> np.ndarray:
        content = _resample(
            data, (self.content_width, self.content_height), kind=kind, clip=None if kind == "depth" else (0.0, 1.0)
        )
        return _pad(content, self.canvas_size, self.offset, fill)

    def _check_size(self, data: np.ndarray, what: str) -> None:
        h, w = data.shape[:2]
        if (w, h) != self.size:
            raise InvalidInputError(f"{what} is {w}x{h}; this Letterbox was made for {self.width}x{self.height} inputs")

    def _onto_input_size(self, plane: np.ndarray, what: str, *, kind: str) -> np.ndarray:
        h, w = plane.shape
        if (w, h) == self.size:
            return plane
        if abs((w / h) / (self.width / self.height) - 1.0) > _ASPECT_TOLERANCE:
            raise InvalidInputError(
                f"{what} is {w}x{h} but the image is {self.width}x{self.height}: the aspect ratios differ,"
                f" so the {what} cannot line up with the image; give a {what} of the image's aspect ratio"
            )
        clip = None if kind == "depth" else (0.0, 1.0)
        return _resample(plane[:, :, None], self.size, kind=kind, clip=clip)[:, :, 0]

    def _scaled_box(self, data: np.ndarray) -> tuple[slice, slice]:
        h, w = data.shape[:2]
        if (w, h) == self.canvas_size:
            x0, y0, x1, y1 = self.box
            return (slice(y0, y1), slice(x0, x1))
        sx, sy = w / self.canvas_width, h / self.canvas_height
        if abs(sx / sy - 1.0) > _ASPECT_TOLERANCE:
            raise InvalidInputError(
                f"result is {w}x{h}; expected the canvas size {self.canvas_width}x{self.canvas_height}"
                " or a multiple of it with the same aspect ratio"
            )
        x0, y0, x1, y1 = self.box
        return (slice(round(y0 * sy), round(y1 * sy)), slice(round(x0 * sx), round(x1 * sx)))


def composite_alpha(enhanced_rgb: Any, original_rgb: Any, alpha: Any) -> np.ndarray:
    """``enhanced * alpha + original * (1 - alpha)``: the enhanced object over the original background.

    All three must have the same ``H x W``; images are loaded with :func:`load_image`
    (their own alpha channels are ignored), ``alpha`` with :func:`load_mask`.  Returns
    float32 ``(H, W, 3)`` in ``[0, 1]``; the alpha itself is left for the caller to keep.
    """
    fg, _ = load_image(enhanced_rgb, name="enhanced_rgb")
    bg, _ = load_image(original_rgb, name="original_rgb")
    a = load_mask(alpha, name="alpha")
    if fg.shape != bg.shape or a.shape != fg.shape[:2]:
        raise InvalidInputError(
            f"enhanced_rgb {fg.shape[1]}x{fg.shape[0]}, original_rgb {bg.shape[1]}x{bg.shape[0]} and alpha"
            f" {a.shape[1]}x{a.shape[0]} must all have the same size"
        )
    a3 = a[:, :, None]
    return np.clip(fg * a3 + bg * (1.0 - a3), 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- array helpers


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise InvalidInputError(f"kind must be one of {', '.join(_KINDS)}; got {kind!r}")


def _image_array(arr: Any, *, allow_any_float: bool = False) -> tuple[np.ndarray, str, bool]:
    """``(float64 HxWxC data in [0, 1], "uint8" | "float", was_2d)`` for an image-like value."""
    if not isinstance(arr, np.ndarray):
        rgb, alpha = load_image(arr)
        data = rgb if alpha is None else np.concatenate([rgb, alpha[:, :, None]], axis=2)
        return data.astype(np.float64), "float", False
    if arr.ndim not in (2, 3) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInputError(f"image array must have shape (H, W) or (H, W, C); got {arr.shape}")
    squeeze = arr.ndim == 2
    data = arr[:, :, None] if squeeze else arr
    if data.dtype == np.uint8:
        return data.astype(np.float64) / 255.0, "uint8", squeeze
    if not np.issubdtype(data.dtype, np.floating):
        raise InvalidInputError(f"image array dtype must be uint8 or floating point; got {arr.dtype}")
    if not np.all(np.isfinite(data)):
        raise InvalidInputError("image array contains NaN or infinite values")
    if not allow_any_float and (data.min() < -1e-5 or data.max() > 1 + 1e-5):
        raise InvalidInputError(
            f"float image array must lie in [0, 1]; got values in [{float(data.min()):g}, {float(data.max()):g}]"
        )
    return data.astype(np.float64), "float", squeeze


def _finish(data: np.ndarray, dtype: str, squeeze: bool) -> np.ndarray:
    if dtype == "uint8":
        out = np.clip(np.rint(data * 255.0), 0, 255).astype(np.uint8)
    else:
        out = data.astype(np.float32)
    return np.ascontiguousarray(out[:, :, 0] if squeeze else out)


def _clip_range(kind: str, dtype: str) -> tuple[float, float] | None:
    return None if kind == "depth" and dtype == "float" else (0.0, 1.0)


def _fill_values(fill: Fill, channels: int) -> list[float] | str:
    if isinstance(fill, str):
        if fill != "edge":
            raise InvalidInputError(f"fill must be a number in [0, 1], one per channel, or 'edge'; got {fill!r}")
        return fill
    values = [float(fill)] * channels if np.isscalar(fill) else [float(v) for v in fill]
    if len(values) != channels or any(not (0.0 <= v <= 1.0) for v in values):
        raise InvalidInputError(f"fill must be a number in [0, 1], {channels} such numbers, or 'edge'; got {fill!r}")
    return values


def _pad(data: np.ndarray, canvas: tuple[int, int], offset: tuple[int, int], fill: list[float] | str) -> np.ndarray:
    h, w = data.shape[:2]
    x, y = offset
    pad = [(y, canvas[1] - h - y), (x, canvas[0] - w - x), (0, 0)]
    if fill == "edge":
        return np.pad(data, pad, mode="edge")
    out = np.empty((canvas[1], canvas[0], data.shape[2]), dtype=data.dtype)
    out[...] = np.asarray(fill, dtype=data.dtype)
    out[y : y + h, x : x + w] = data
    return out


# --------------------------------------------------------------------------- resampling


def _filter(kind: str, enlarge: bool) -> Image.Resampling:
    if kind == "depth":
        return _R.BILINEAR
    if kind == "mask":
        return _R.BILINEAR if enlarge else _R.BOX
    return _R.BICUBIC if enlarge else _R.BOX


def _resample(data: np.ndarray, size: tuple[int, int], *, kind: str, clip: tuple[float, float] | None) -> np.ndarray:
    """``data`` (HxWxC float) resized to ``size`` (w, h) the way ``kind`` wants."""
    h, w = data.shape[:2]
    if (w, h) == tuple(size):
        return data
    down = _integer_factor(size, (w, h))
    if down is not None:
        return _block_mean(data, down)  # exact area reduction
    enlarge = size[0] * size[1] > w * h
    out = np.stack([_resize_plane(data[:, :, c], size, _filter(kind, enlarge)) for c in range(data.shape[2])], axis=2)
    if clip is not None:
        out = np.clip(out, *clip)
    k = _integer_factor((w, h), size)
    if k is not None:
        out = _preserve_block_means(out, data, k, clip)
    return out


def _integer_factor(small: tuple[int, int], big: tuple[int, int]) -> int | None:
    """``k`` when ``big == k * small`` on both axes with an integer ``k > 1``."""
    if big[0] % small[0] or big[1] % small[1]:
        return None
    k = big[0] // small[0]
    return k if k > 1 and big[1] // small[1] == k else None


def _resize_plane(plane: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    im = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))
    return np.asarray(im.resize(tuple(size), resample), dtype=np.float64)


def _block_mean(data: np.ndarray, k: int) -> np.ndarray:
    h, w, c = data.shape
    return data.reshape(h // k, k, w // k, k, c).mean(axis=(1, 3))


def _preserve_block_means(up: np.ndarray, src: np.ndarray, k: int, clip: tuple[float, float] | None) -> np.ndarray:
    """Shift each ``k x k`` block of ``up`` so that it averages to the ``src`` pixel.

    The correction is spread over the block's pixels that are not at a clip bound, so
    the result stays in range; blocks still off after a pass (some pixel hit a bound)
    are corrected again, at most ``k * k`` passes.
    """
    h, w, c = src.shape
    n = k * k
    blocks = up.reshape(h, k, w, k, c).transpose(0, 2, 4, 1, 3).reshape(-1, n)  # one row per block
    target = src.reshape(-1) * n  # the sum each block must have
    tol = 1e-9 * n * max(1.0, float(np.abs(target).max(initial=0.0)) / n)
    rows = np.arange(blocks.shape[0])
    for _ in range(n + 1):
        sub = blocks[rows]
        need = target[rows] - sub.sum(axis=1)
        active = np.abs(need) > tol
        if not active.any():
            break
        rows, sub, need = rows[active], sub[active], need[active]
        if clip is None:
            blocks[rows] = sub + (need / n)[:, None]
            continue
        free = np.where(need[:, None] > 0, sub < clip[1], sub > clip[0])
        share = need / np.maximum(free.sum(axis=1), 1)
        blocks[rows] = np.clip(sub + share[:, None] * free, *clip)
    return blocks.reshape(h, w, c, k, k).transpose(0, 3, 1, 4, 2).reshape(h * k, w * k, c)
