"""A1111's short hashes of model files, cached by path, size and modification time.

AUTOMATIC1111 names the checkpoint in an infotext by ``Model hash`` (the first 10 hex digits
of the file's SHA-256) and each LoRA in ``Lora hashes`` by the first 12 hex digits of its
"addnet" hash (the SHA-256 of a ``.safetensors`` file's tensor data, after the header; of the
whole file otherwise); see A1111's ``modules/hashes.py`` and ``extensions-builtin/Lora``.
Hashing a 7 GB checkpoint takes seconds to minutes, so, as A1111 does, each full hash is kept
in a cache file (``$GOUACHE_CACHE/hashes.json``, default ``~/.cache/gouache/hashes.json``)
keyed by the file's absolute path and reused while its size and mtime are unchanged.  The
cache is rewritten through the one atomic writer; a cache that cannot be read or written only
costs a rehash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from .._files import cache_root, write_atomic
from .headers import check_file, safetensors_header, sniff

__all__ = ["addnet_hash", "cache_file", "file_sha256", "lora_short_hash", "model_short_hash"]


log = logging.getLogger("gouache")

_CHUNK = 1 << 20
MODEL_HASH_DIGITS = 10  # A1111: shorthash of a checkpoint
LORA_HASH_DIGITS = 12  # A1111: network_on_disk.shorthash


def cache_file() -> Path:
    """Where full hashes are cached: ``$GOUACHE_CACHE/hashes.json`` or ``~/.cache/gouache/hashes.json``."""
    return cache_root() / "hashes.json"


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=0, sort_keys=True)), overwrite=True)
    except OSError as exc:  # a read-only home only costs a rehash next time
        log.debug("could not write the hash cache %s: %s", path, exc)


def _digest(path: Path, start: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(start)
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _cached(path: Path, kind: str, start_of: Callable[[Path], int]) -> str:
    """The full ``kind`` hash of ``path``, from the cache while size and mtime match."""
    st = path.stat()
    key = f"{kind}:{path.resolve()}"
    stamp = {"size": st.st_size, "mtime": st.st_mtime_ns}
    cache = cache_file()
    data = _read_cache(cache)
    entry = data.get(key)
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()) and "sha256" in entry:
        return entry["sha256"]
    digest = _digest(path, start_of(path))
    data = _read_cache(cache)  # another process may have added entries meanwhile
    data[key] = {**stamp, "sha256": digest}
    _write_cache(cache, data)
    return digest


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the whole file (cached)."""
    return _cached(check_file(path, "model file"), "sha256", lambda p: 0)


def addnet_hash(path: str | os.PathLike[str]) -> str:
    """A1111's LoRA hash: SHA-256 of a ``.safetensors`` file's tensor data (header excluded),
    of the whole file for other formats (cached)."""
    p = check_file(path, "LoRA file")
    if sniff(p, "LoRA file") != "safetensors":
        return file_sha256(p)
    return _cached(p, "addnet", lambda q: safetensors_header(q)[1])


def model_short_hash(path: str | os.PathLike[str]) -> str:
    """A1111's ``Model hash``: the first 10 hex digits of the file's SHA-256."""
    return file_sha256(path)[:MODEL_HASH_DIGITS]


def lora_short_hash(path: str | os.PathLike[str]) -> str:
    """A1111's ``Lora hashes`` entry: the first 12 hex digits of :func:`addnet_hash`."""
    return addnet_hash(path)[:LORA_HASH_DIGITS]
