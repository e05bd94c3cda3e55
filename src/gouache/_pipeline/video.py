"""Write frame sequences as animated GIF/WebP (Pillow) or H.264 MP4 (PyAV or imageio-ffmpeg).

Every writer goes through gouache's one atomic writer (:func:`gouache._files.write_atomic`):
a temporary file next to the target is moved into place only after the encoder finished,
so a failed or interrupted save never leaves a partial video (nor the temporary file) behind.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._errors import GouacheError, InvalidInputError, MissingDependencyError
from .._files import check_writable, write_atomic
from .._image import SDImage

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = ["VIDEO_FORMATS", "MissingDependencyError", "load_video_frames", "save_video"]

log = logging.getLogger("gouache.video")

#: Extensions :func:`save_video` writes, in the order error messages list them.
VIDEO_FORMATS: tuple[str, ...] = (".mp4", ".webp", ".gif")

_INSTALL_HINT = 'install one with: pip install "gouache[video]"'
_DEFAULT_CRF = 23  # libx264's own default
_GIF_MAX_FPS = 50  # GIF delays are centiseconds; players slow down delays below 20 ms


# -- public API ---------------------------------------------------------------------------


def save_video(
    frames: Iterable[Any],
    path: str | os.PathLike[str],
    fps: float = 16,
    *,
    overwrite: bool = False,
    quality: int | None = None,
    loop: int = 0,
) -> Path:
    """Write ``frames`` as a video and return its path; the format follows the extension.

    * ``.gif`` / ``.webp``: animated images written by Pillow.  Each frame shows for
      ``1000 / fps`` ms (GIF stores centiseconds; per-frame delays are rounded so the
      total duration stays ``len(frames) / fps``).  ``loop`` is the number of repeats,
      ``0`` (default) loops forever.  Identical consecutive frames may be merged by the
      encoder, their durations adding up.
    * ``.mp4``: H.264 (yuv420p, ``+faststart``) through PyAV when it is installed, else
      through imageio-ffmpeg's bundled ffmpeg (``pip install "gouache[video]"``).
      yuv420p needs an even width and height: an odd dimension is padded by one pixel
      on the right/bottom edge, replicating the edge pixels.  ``loop`` does not apply.

    ``frames`` are PIL images, numpy arrays (``uint8``, or float in ``[0, 1]``, shaped
    ``(H, W)``/``(H, W, 1|3|4)``) or :class:`gouache.SDImage`; all must share one size.
    They are written as RGB (alpha is dropped, grayscale expanded).  ``quality`` is
    ``None`` (encoder default) or ``0..100`` (higher is better): WebP's quality, or for
    MP4 a CRF from 51 (0) to 1 (100); GIF ignores it.

    An existing file is only replaced with ``overwrite=True``.  The video is encoded to a
    temporary file in the same directory and moved into place at the end; on any error
    the temporary file is removed and nothing is written at ``path``.

    Raises :class:`gouache.InvalidInputError` for an unknown extension, no frames,
    frames of different sizes, bad ``fps``/``quality``/``loop`` or an existing ``path``.
    """
    target = Path(path)
    writer = _writer_for(target)
    fps = _check_fps(fps)
    quality = _check_quality(quality)
    loop = _check_loop(loop)
    check_writable([target], overwrite=overwrite)
    if target.suffix.lower() == ".mp4":
        _mp4_backend()  # fail before any work when no backend is installed
    images = _normalize_frames(frames)
    if target.suffix.lower() == ".gif" and fps > _GIF_MAX_FPS:
        log.warning(
            "GIF at %g fps: many players slow down frame delays below 20 ms; use .webp or .mp4 for more than %d fps",
            fps,
            _GIF_MAX_FPS,
        )
    write_atomic(target, lambda tmp: writer(images, Path(tmp), fps, quality, loop), overwrite=overwrite)
    log.debug("wrote %d frames (%dx%d) to %s", len(images), images[0].width, images[0].height, target)
    return target


def load_video_frames(path: str | os.PathLike[str]) -> list[Image.Image]:
    """Read every frame of a ``.gif``, ``.webp`` or ``.mp4`` file as an RGB PIL image.

    MP4 is decoded with the same backend :func:`save_video` uses (PyAV, else
    imageio-ffmpeg).  Meant for round trips and tests; it holds all frames in memory.
    """
    source = Path(path)
    suffix = source.suffix.lower()
    if suffix not in VIDEO_FORMATS:
        raise InvalidInputError(_bad_extension_message(source))
    if not source.is_file():
        raise InvalidInputError(f"video file not found: {str(source)!r}")
    if suffix == ".mp4":
        return _read_mp4(source)
    return _read_animated_image(source)


# -- validation ---------------------------------------------------------------------------


def _bad_extension_message(path: Path) -> str:
    return (
        f"unsupported video extension {path.suffix or '(none)'!r} in {str(path)!r}; allowed: {', '.join(VIDEO_FORMATS)}"
    )


def _writer_for(path: Path) -> Callable[..., None]:
    writer = _WRITERS.get(path.suffix.lower())
    if writer is None:
        raise InvalidInputError(_bad_extension_message(path))
    return writer


def _check_fps(fps: Any) -> float:
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)):
        raise InvalidInputError(f"fps must be a positive number, got {fps!r}")
    value = float(fps)
    if not math.isfinite(value) or value <= 0 or value > 1000:
        raise InvalidInputError(f"fps must be in (0, 1000], got {fps!r}")
    return value


def _check_quality(quality: Any) -> int | None:
    if quality is None:
        return None
    if isinstance(quality, bool) or not isinstance(quality, int) or not 0 <= quality <= 100:
        raise InvalidInputError(f"quality must be None or an int in 0..100, got {quality!r}")
    return quality


def _check_loop(loop: Any) -> int:
    if isinstance(loop, bool) or not isinstance(loop, int) or not 0 <= loop <= 65535:
        raise InvalidInputError(f"loop must be an int in 0..65535 (0 = forever), got {loop!r}")
    return loop


def _normalize_frames(frames: Iterable[Any]) -> list[Image.Image]:
    """Every frame as an RGB PIL image, all of frame 0's size."""
    if isinstance(frames, (str, bytes, os.PathLike, np.ndarray)) or not isinstance(frames, Iterable):
        raise InvalidInputError(f"frames must be a list of images (PIL, numpy or SDImage), got {type(frames).__name__}")
    images = [_frame_to_rgb(frame, i) for i, frame in enumerate(frames)]
    if not images:
        raise InvalidInputError("frames is empty; a video needs at least one frame")
    first = images[0].size
    for i, image in enumerate(images):
        if image.size != first:
            raise InvalidInputError(
                f"frame {i} is {image.width}x{image.height} but frame 0 is {first[0]}x{first[1]}; "
                "all frames must have the same size"
            )
    return images


def _frame_to_rgb(frame: Any, index: int) -> Image.Image:
    try:
        image = SDImage.coerce(frame)
    except InvalidInputError as exc:
        raise InvalidInputError(f"frame {index}: {exc}") from None
    return image.to_pil().convert("RGB")


# -- GIF / WebP (Pillow) ------------------------------------------------------------------


def _frame_durations(count: int, fps: float, unit_ms: int) -> list[int]:
    """Per-frame delays in ms, multiples of ``unit_ms`` and at least one unit each, whose
    running sum tracks ``i * 1000 / fps`` (so rounding errors do not accumulate)."""
    step = 1000.0 / fps / unit_ms
    stamps = [round(i * step) for i in range(count + 1)]
    return [max(1, b - a) * unit_ms for a, b in zip(stamps, stamps[1:])]


def _write_gif(images: Sequence[Image.Image], tmp: Path, fps: float, quality: int | None, loop: int) -> None:
    durations = _frame_durations(len(images), fps, unit_ms=10)
    images[0].save(
        tmp,
        format="GIF",
        save_all=True,
        append_images=list(images[1:]),
        duration=durations,
        loop=loop,
        optimize=False,
        disposal=1,
    )


def _write_webp(images: Sequence[Image.Image], tmp: Path, fps: float, quality: int | None, loop: int) -> None:
    durations = _frame_durations(len(images), fps, unit_ms=1)
    options: dict[str, Any] = {"quality": 80 if quality is None else quality}
    images[0].save(
        tmp, format="WEBP", save_all=True, append_images=list(images[1:]), duration=durations, loop=loop, **options
    )


def _read_animated_image(path: Path) -> list[Image.Image]:
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        return [frame.convert("RGB") for frame in ImageSequence.Iterator(im)]


# -- MP4 ----------------------------------------------------------------------------------


def _mp4_backend() -> str:
    """``"av"`` (PyAV) if importable, else ``"imageio-ffmpeg"``; neither raises MissingDependencyError."""
    try:
        import av  # noqa: F401

        return "av"
    except ImportError:
        pass
    try:
        import imageio_ffmpeg  # noqa: F401

        return "imageio-ffmpeg"
    except ImportError:
        pass
    raise MissingDependencyError(
        f".mp4 needs PyAV or imageio-ffmpeg, and neither is installed; {_INSTALL_HINT}", name="av"
    )


def _crf(quality: int | None) -> int:
    return _DEFAULT_CRF if quality is None else round(51 - 50 * quality / 100)


def _even_rgb(image: Image.Image) -> np.ndarray:
    """``image`` as an ``(H, W, 3)`` uint8 array padded to even dimensions by edge replication."""
    arr = np.asarray(image, dtype=np.uint8)
    pad_h, pad_w = arr.shape[0] % 2, arr.shape[1] % 2
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(arr)


def _write_mp4(images: Sequence[Image.Image], tmp: Path, fps: float, quality: int | None, loop: int) -> None:
    backend = _mp4_backend()
    if images[0].width % 2 or images[0].height % 2:
        log.info("padding %dx%d frames to even size for yuv420p", images[0].width, images[0].height)
    if backend == "av":
        _write_mp4_av(images, tmp, fps, _crf(quality))
    else:
        _write_mp4_ffmpeg(images, tmp, fps, _crf(quality))


def _write_mp4_av(images: Sequence[Image.Image], tmp: Path, fps: float, crf: int) -> None:
    import av

    first = _even_rgb(images[0])
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = first.shape[1], first.shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        for image in images:
            frame = av.VideoFrame.from_ndarray(_even_rgb(image), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _write_mp4_ffmpeg(images: Sequence[Image.Image], tmp: Path, fps: float, crf: int) -> None:
    import imageio_ffmpeg

    first = _even_rgb(images[0])
    rate = Fraction(fps).limit_denominator(1001)
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-nostdin",
        "-y",
        "-v",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{first.shape[1]}x{first.shape[0]}",
        "-r",
        str(rate),
        "-i",
        "-",
        "-an",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-crf",
        str(crf),
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        str(tmp),
    ]
    with tempfile.TemporaryFile() as errlog:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errlog)
        broken = _feed_ffmpeg(proc, images)
        code = proc.wait()
        if code != 0 or broken:
            errlog.seek(0)
            detail = errlog.read().decode(errors="replace").strip().splitlines()[-5:]
            raise GouacheError(
                f"ffmpeg failed to encode {str(tmp)!r} (exit {code}): " + (" | ".join(detail) or "no error output")
            )


def _feed_ffmpeg(proc: subprocess.Popen, images: Sequence[Image.Image]) -> bool:
    """Write every frame to ffmpeg's stdin; True when ffmpeg quit early (broken pipe).

    On any other error (or an interrupt) ffmpeg is killed before the error propagates.
    """
    assert proc.stdin is not None
    try:
        for image in images:
            proc.stdin.write(_even_rgb(image).tobytes())
        proc.stdin.close()
    except BrokenPipeError:
        _close_quietly(proc.stdin)
        return True
    except BaseException:
        proc.kill()
        proc.wait()
        _close_quietly(proc.stdin)
        raise
    return False


def _close_quietly(stream: Any) -> None:
    try:
        stream.close()
    except OSError:
        pass


def _read_mp4(path: Path) -> list[Image.Image]:
    if _mp4_backend() == "av":
        import av

        with av.open(str(path)) as container:
            return [frame.to_image() for frame in container.decode(video=0)]
    import imageio_ffmpeg
    from PIL import Image

    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        size = next(reader)["size"]
        return [Image.frombytes("RGB", size, bytes(data)) for data in reader]
    finally:
        reader.close()


_WRITERS: dict[str, Callable[..., None]] = {".mp4": _write_mp4, ".webp": _write_webp, ".gif": _write_gif}
