"""Images at the C boundary: SDImage <-> ``sd_image_t``, and image fields of the parameter structs."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._errors import InvalidInputError
from .._image import CHANNELS, ImageLike, SDImage
from .native import sd_image_t


def as_c(image: SDImage) -> sd_image_t:
    """An ``sd_image_t`` pointing into ``image``'s buffer (valid while ``image`` lives)."""
    arr = image._array
    return sd_image_t(arr.shape[1], arr.shape[0], arr.shape[2], arr.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))


def copy_from_c(c_image: sd_image_t) -> SDImage:
    """Copy an engine image into Python (does not free it)."""
    w, h, c = int(c_image.width), int(c_image.height), int(c_image.channel)
    if not c_image.data or w <= 0 or h <= 0 or c not in CHANNELS:
        raise ValueError(f"engine returned an invalid image ({w}x{h}x{c}, data={bool(c_image.data)})")
    buf = np.ctypeslib.as_array(c_image.data, shape=(h * w * c,))
    return SDImage(buf.reshape(h, w, c).copy())


def coerce_image(value: ImageLike, channels: int, name: str) -> SDImage:
    """An SDImage with ``channels`` channels for an image argument of the low-level API.

    PIL images and files are converted to the needed mode; SDImage and numpy inputs
    must already have the right number of channels.
    """
    from_array = isinstance(value, (SDImage, np.ndarray))
    img = SDImage.coerce(value)
    if img.channels != channels:
        if from_array:
            raise InvalidInputError(
                f"{name} must have {channels} channel{'s' if channels > 1 else ''}"
                f" ({'grayscale' if channels == 1 else 'RGB'}); got an image with {img.channels}"
            )
        img = img.with_channels(channels)
    return img


def c_image(value: ImageLike | None, channels: int, name: str, keep: list[Any]) -> sd_image_t:
    """The ``sd_image_t`` of an optional image field (zeros = "no image"); the pixels it
    points into are appended to ``keep``."""
    if value is None:
        return sd_image_t()
    img = coerce_image(value, channels, name)
    keep.append(img)
    return as_c(img)


def c_image_array(values: Sequence[ImageLike], channels: int, name: str, keep: list[Any]) -> tuple[Any, int]:
    """``(pointer to sd_image_t[n], n)`` for a list field, or ``(None, 0)`` when it is empty."""
    if not values:
        return None, 0
    imgs = [coerce_image(v, channels, f"{name}[{i}]") for i, v in enumerate(values)]
    keep.extend(imgs)
    arr = (sd_image_t * len(imgs))(*[as_c(i) for i in imgs])
    keep.append(arr)
    return ctypes.cast(arr, ctypes.POINTER(sd_image_t)), len(imgs)
