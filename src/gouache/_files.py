"""Writing results: atomic writes, numbered names, never overwriting what a user made."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ._errors import InvalidInputError


def numbered_paths(path: str | os.PathLike[str], count: int) -> list[Path]:
    """``out.png`` for one image; ``out-1.png`` ... ``out-N.png`` for a batch."""
    p = Path(path)
    if count == 1:
        return [p]
    width = max(1, len(str(count)))
    return [p.with_name(f"{p.stem}-{i + 1:0{width}d}{p.suffix}") for i in range(count)]


def check_writable(paths: list[Path], *, overwrite: bool) -> None:
    """Refuse (before any work) to overwrite existing files unless ``overwrite``."""
    for p in paths:
        if p.exists() and not overwrite:
            raise InvalidInputError(f"output file exists: {str(p)!r} (pass overwrite=True / --overwrite to replace it)")
        if not p.parent.exists():
            raise InvalidInputError(f"output directory does not exist: {str(p.parent)!r}")


def write_atomic(path: str | os.PathLike[str], write: Callable[[str], None], *, overwrite: bool = False) -> Path:
    """Call ``write(tmp_path)`` then rename into place; no partial file is ever left behind."""
    p = Path(path)
    check_writable([p], overwrite=overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=p.suffix or ".tmp", dir=p.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        if not overwrite and p.exists():
            raise InvalidInputError(f"output file appeared while writing: {str(p)!r}")
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def save_image(image, path: str | os.PathLike[str], *, infotext: str | None = None, overwrite: bool = False) -> Path:
    """Save a PIL image atomically; PNG files get the A1111 ``parameters`` text chunk."""
    p = Path(path)

    def write(tmp: str) -> None:
        fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(p.suffix.lower())
        if fmt is None:
            raise InvalidInputError(f"unsupported image extension {p.suffix!r}; allowed: .png, .jpg, .jpeg, .webp")
        if fmt == "PNG" and infotext:
            from PIL.PngImagePlugin import PngInfo

            info = PngInfo()
            info.add_text("parameters", infotext)
            image.save(tmp, format="PNG", pnginfo=info)
        else:
            image.save(tmp, format=fmt)

    return write_atomic(p, write, overwrite=overwrite)
