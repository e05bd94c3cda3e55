"""Writing files: the one atomic writer, numbered names, never overwriting what a user made.

Everything gouache writes (images, videos, converted or assembled models, forged test
models, config folders) goes through :func:`write_atomic` or :func:`publish_dir`: the
content is written next to its target under a hidden temporary name and moved into
place only when complete, so no partial file is ever visible, and an existing file is
only replaced when the caller says so.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ._errors import InvalidInputError

__all__ = ["cache_root", "check_writable", "numbered_paths", "publish_dir", "write_atomic"]

log = logging.getLogger("gouache")


def cache_root() -> Path:
    """The one folder gouache keeps rebuildable things in (torch configs, depth models, forged
    test models): ``$GOUACHE_CACHE``, by default ``~/.cache/gouache``.  Not created here."""
    env = os.environ.get("GOUACHE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gouache"


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
        if p.is_dir():
            raise InvalidInputError(f"output path is a directory: {str(p)!r}")
        if p.exists() and not overwrite:
            raise InvalidInputError(f"output file exists: {str(p)!r} (pass overwrite=True / --overwrite to replace it)")
        if not p.parent.is_dir():
            raise InvalidInputError(f"output directory does not exist: {str(p.parent)!r}")


def _temp_file(target: Path) -> Path:
    """An empty hidden file next to ``target`` with its suffix, created with mode 0o666 so
    the final file gets the usual umask permissions."""
    while True:
        candidate = target.with_name(f".{target.stem}.{secrets.token_hex(6)}.tmp{target.suffix}")
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        os.close(fd)
        return candidate


def _appeared(target: Path) -> str:
    return f"output file already exists (it appeared while writing): {str(target)!r}; pass overwrite=True to replace it"


def _publish(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move ``tmp`` to ``target``; without ``overwrite`` never clobber a file that appeared meanwhile."""
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # atomic "create only if absent"
    except FileExistsError:
        raise InvalidInputError(_appeared(target)) from None
    except OSError:  # no hard links on this file system: best effort
        if target.exists():
            raise InvalidInputError(_appeared(target)) from None
        os.replace(tmp, target)
        return
    tmp.unlink()


def write_atomic(path: str | os.PathLike[str], write: Callable[[str], None], *, overwrite: bool = False) -> Path:
    """Call ``write(tmp_path)`` then move the file into place at ``path``; no partial file is
    ever left behind, and an existing ``path`` is refused unless ``overwrite``.  Returns ``path``."""
    p = Path(path)
    check_writable([p], overwrite=overwrite)
    tmp = _temp_file(p)
    try:
        write(str(tmp))
        _publish(tmp, p, overwrite)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def publish_dir(target: Path, fill: Callable[[Path], None]) -> Path:
    """Create the directory ``target`` once: ``fill(tmp_dir)`` writes its files into a hidden
    directory beside it, which is renamed into place; when another process won the race,
    its directory is kept.  Returns ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fill(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        if not target.is_dir():
            raise
        log.debug("%s was created by another process (%s)", target, exc)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
