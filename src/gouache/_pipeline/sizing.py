"""Size policy: generation sizes are multiples of 64; requested sizes are honoured exactly.

Policy (documented in the README): a requested ``width x height`` that is not a multiple
of 64 is generated on the next larger multiple-of-64 canvas with the requested picture
centred in it, then cropped back to exactly the requested size ("round and letterbox").
Input images (init image, mask, control image) whose aspect ratio differs from the
requested size are fitted inside it and letterboxed, never stretched.  What was done is
reported in ``GenerationResult.parameters["size_policy"]`` and logged; the aspect ratio
never changes silently.
"""

from __future__ import annotations

import dataclasses
import logging
import math

from PIL import Image, ImageOps

log = logging.getLogger("gouache")

MULTIPLE = 64


@dataclasses.dataclass(frozen=True)
class Geometry:
    """The requested picture inside the canvas the engine generates."""

    width: int
    height: int
    canvas_width: int
    canvas_height: int

    @property
    def offset(self) -> tuple[int, int]:
        return ((self.canvas_width - self.width) // 2, (self.canvas_height - self.height) // 2)

    @property
    def box(self) -> tuple[int, int, int, int]:
        x, y = self.offset
        return (x, y, x + self.width, y + self.height)

    @property
    def padded(self) -> bool:
        return (self.canvas_width, self.canvas_height) != (self.width, self.height)

    def describe(self) -> str:
        if not self.padded:
            return f"{self.width}x{self.height}"
        return (
            f"generated at {self.canvas_width}x{self.canvas_height} (multiple of {MULTIPLE}),"
            f" centred crop to {self.width}x{self.height}"
        )


def plan(width: int, height: int, multiple: int = MULTIPLE) -> Geometry:
    return Geometry(width, height, math.ceil(width / multiple) * multiple, math.ceil(height / multiple) * multiple)


def fit(
    image: Image.Image,
    width: int,
    height: int,
    *,
    what: str,
    fill: int | tuple[int, ...] = 0,
    resample: Image.Resampling = Image.Resampling.LANCZOS,
) -> tuple[Image.Image, str | None]:
    """``image`` at exactly ``width x height``: resized when the aspect matches, else fitted and
    letterboxed with ``fill``.  Returns the image and a note when it was letterboxed."""
    if image.size == (width, height):
        return image, None
    src_aspect = image.width / image.height
    dst_aspect = width / height
    if abs(src_aspect - dst_aspect) < 0.01:
        return image.resize((width, height), resample), None
    fitted = ImageOps.contain(image, (width, height), resample)
    canvas = Image.new(image.mode, (width, height), fill)
    canvas.paste(fitted, ((width - fitted.width) // 2, (height - fitted.height) // 2))
    note = (
        f"{what} {image.width}x{image.height} letterboxed into {width}x{height} (aspect ratios differ; not stretched)"
    )
    log.info("%s", note)
    return canvas, note


def to_canvas(image: Image.Image, geom: Geometry, *, fill: int | tuple[int, ...] | None = None) -> Image.Image:
    """Place a requested-size image on the generation canvas (edges replicated unless ``fill``)."""
    if not geom.padded:
        return image
    x, y = geom.offset
    if fill is not None:
        canvas = Image.new(image.mode, (geom.canvas_width, geom.canvas_height), fill)
        canvas.paste(image, (x, y))
        return canvas
    import numpy as np

    arr = np.asarray(image)
    pad = [(y, geom.canvas_height - geom.height - y), (x, geom.canvas_width - geom.width - x)]
    if arr.ndim == 3:
        pad.append((0, 0))
    return Image.fromarray(np.pad(arr, pad, mode="edge"))


def from_canvas(image: Image.Image, geom: Geometry) -> Image.Image:
    """Crop a generated canvas back to the requested picture."""
    if image.size == (geom.width, geom.height):
        return image
    if image.size != (geom.canvas_width, geom.canvas_height):  # e.g. hires fix scaled it
        sx = image.width / geom.canvas_width
        sy = image.height / geom.canvas_height
        x0, y0, x1, y1 = geom.box
        return image.crop((round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)))
    return image.crop(geom.box)
