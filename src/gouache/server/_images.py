"""Images in requests and responses: base64 decoding with checks, A1111's resize modes and
mask options (plain PIL work, no engine)."""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

import numpy as np
from PIL import Image, ImageFilter, UnidentifiedImageError

from ._config import Limits
from ._errors import ApiError, bad

_DATA_URL = re.compile(r"^data:[\w/+.-]+(;[\w=.-]+)*;base64,", re.IGNORECASE)


def decode_bytes(value: object, field: str) -> bytes:
    """Raw bytes of a base64 string (a ``data:...;base64,`` prefix is allowed)."""
    if not isinstance(value, str) or not value.strip():
        raise bad(field, "must be a base64-encoded image (a string)")
    text = _DATA_URL.sub("", value.strip(), count=1)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:  # URL-safe alphabet and missing padding are common in the wild
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise bad(field, "is not valid base64") from None


def open_image(data: bytes, field: str, limits: Limits) -> Image.Image:
    """A loaded PIL image from file bytes; refuses non-images and images over the pixel limit
    (checked from the header, before decoding)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            check_pixels(w, h, field, limits)
            im.load()
    except ApiError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise bad(
            field, f"is not a readable image ({type(exc).__name__}); allowed: PNG, JPEG, WebP, BMP, GIF"
        ) from None
    return im


def decode_image(value: object, field: str, limits: Limits) -> Image.Image:
    return open_image(decode_bytes(value, field), field, limits)


def check_pixels(width: int, height: int, field: str, limits: Limits) -> None:
    if width < 1 or height < 1:
        raise bad(field, f"image is empty ({width}x{height})")
    if max(width, height) > limits.max_side:
        raise bad(field, f"{width}x{height} exceeds the server limit max_side={limits.max_side}")
    if width * height > limits.max_pixels:
        raise bad(
            field, f"{width}x{height} = {width * height} pixels exceeds the server limit max_pixels={limits.max_pixels}"
        )


def b64_file(path) -> str:
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def b64_png(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparent pixels over white."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return image.convert("RGB") if image.mode != "RGB" else image


def mask_l(image: Image.Image) -> Image.Image:
    """A grayscale mask, white = repaint.  An RGBA mask whose colour is flat uses its alpha
    (opaque = repaint), as A1111 does for masks drawn on a transparent layer."""
    if image.mode in ("RGBA", "LA"):
        alpha = image.getchannel("A")
        lo, hi = alpha.getextrema()
        gray = image.convert("L")
        if lo < hi and gray.getextrema()[0] == gray.getextrema()[1]:
            return alpha
        return gray
    return image.convert("L") if image.mode != "L" else image


# --------------------------------------------------------------------------- A1111 resize modes

#: A1111 ``resize_mode``: 0 just resize, 1 crop and resize, 2 resize and fill, 3 just resize (latent upscale).
RESIZE_MODES = {0: "just resize", 1: "crop and resize", 2: "resize and fill", 3: "just resize (latent upscale)"}
_CN_RESIZE = {
    "just resize": 0,
    "inner fit (scale to fit)": 1,
    "crop and resize": 1,
    "outer fit (shrink to fit)": 2,
    "resize and fill": 2,
    "envelope (outer fit)": 2,
}


def resize_mode(value: object, field: str) -> int:
    """A1111 resize mode from an int or the ControlNet extension's names."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int) and value in RESIZE_MODES:
        return value
    if isinstance(value, str) and value.strip().lower() in _CN_RESIZE:
        return _CN_RESIZE[value.strip().lower()]
    allowed = ", ".join(f"{k} ({v})" for k, v in RESIZE_MODES.items())
    raise bad(
        field,
        f"unknown resize mode {value!r}; allowed: {allowed}, or 'Just Resize', 'Crop and Resize', 'Resize and Fill'",
    )


def resize(image: Image.Image, width: int, height: int, mode: int) -> Image.Image:
    """``image`` at ``width`` x ``height`` the way A1111's ``images.resize_image`` does it."""
    if image.size == (width, height):
        return image
    lanczos = Image.Resampling.LANCZOS
    if mode in (0, 3):
        return image.resize((width, height), lanczos)
    ratio, src_ratio = width / height, image.width / image.height
    if mode == 1:  # crop and resize: cover, centre crop
        w = width if ratio > src_ratio else image.width * height // image.height
        h = height if ratio <= src_ratio else image.height * width // image.width
        big = image.resize((max(1, w), max(1, h)), lanczos)
        out = Image.new(image.mode, (width, height))
        out.paste(big, (width // 2 - w // 2, height // 2 - h // 2))
        return out
    # resize and fill: fit inside, stretch the edges into the bands
    w = width if ratio < src_ratio else image.width * height // image.height
    h = height if ratio >= src_ratio else image.height * width // image.width
    small = image.resize((max(1, w), max(1, h)), lanczos)
    out = Image.new(image.mode, (width, height))
    out.paste(small, (width // 2 - w // 2, height // 2 - h // 2))
    if ratio < src_ratio and h < height:
        fill = height // 2 - h // 2
        out.paste(small.resize((width, fill), box=(0, 0, width, 0)), (0, 0))
        out.paste(small.resize((width, height - fill - h), box=(0, h, width, h)), (0, fill + h))
    elif ratio > src_ratio and w < width:
        fill = width // 2 - w // 2
        out.paste(small.resize((fill, height), box=(0, 0, 0, height)), (0, 0))
        out.paste(small.resize((width - fill - w, height), box=(w, 0, w, height)), (fill + w, 0))
    return out


# --------------------------------------------------------------------------- inpainting options

#: A1111 ``inpainting_fill``: what the masked area starts from.
INPAINTING_FILL = {0: "fill", 1: "original", 2: "latent noise", 3: "latent nothing"}


def prepare_inpaint(
    image: Image.Image, mask: Image.Image, *, fill: int, blur: int, invert: bool, seed: int
) -> tuple[Image.Image, Image.Image]:
    """``(init image, mask)`` after A1111's mask options: invert, blur, and the masked area's
    starting content (``fill``: 0 the image blurred out, 1 the original, 2 noise, 3 flat grey).
    "Latent noise" and "latent nothing" are done in pixel space (noise / mid-grey), which the
    encoder turns into the same kind of start."""
    if invert:
        mask = Image.eval(mask, lambda v: 255 - v)
    if blur > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    if fill == 1:
        return image, mask
    arr = np.asarray(image, dtype=np.float32)
    m = (np.asarray(mask, dtype=np.float32) / 255.0)[..., None]
    if fill == 0:
        start = np.asarray(image.filter(ImageFilter.GaussianBlur(max(8, min(image.size) // 8))), dtype=np.float32)
    elif fill == 2:
        start = np.random.default_rng(seed).integers(0, 256, arr.shape).astype(np.float32)
    else:
        start = np.full_like(arr, 127.0)
    out = arr * (1 - m) + start * m
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8)), mask
