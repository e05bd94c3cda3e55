"""The forge's cache and writer: deterministic random tensors streamed into cached safetensors files."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import NormalDist
from typing import Any, BinaryIO

import numpy as np

from ..._files import cache_root
from ..._modelfiles.headers import read_header
from ..._modelfiles.writer import write_safetensors

#: Bumped whenever the produced bytes of any model change; part of every cache key.
#: 2: normal values drawn as quantiles of a 65536-level table (4x faster than 1's Ziggurat draw).
FORGE_VERSION = 2

_STD = 0.02
_ONES = "ones"

# A tensor description: (name, shape, init).  ``init`` is a float standard deviation
# (normal, mean 0), ``"ones"``, ``("fill", value)`` or ``("normal", mean, std)``.
_Init = float | str | tuple[Any, ...]
_Tensor = tuple[str, tuple[int, ...], _Init]

_DTYPES = {
    "f16": (np.dtype("<f2"), "F16"),  # safetensors data is little-endian
    "f32": (np.dtype("<f4"), "F32"),
}


# --------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """Directory holding forged models: ``$GOUACHE_FORGE_CACHE``, else ``forge`` in gouache's cache
    root (``$GOUACHE_CACHE``, by default ``~/.cache/gouache``)."""
    env = os.environ.get("GOUACHE_FORGE_CACHE")
    path = Path(env).expanduser() if env else cache_root() / "forge"
    path.mkdir(parents=True, exist_ok=True)
    return path


def spec_of(path: str | os.PathLike) -> dict:
    """Return the spec a forged file was made from (read from its safetensors or GGUF metadata).

    Raises ``ValueError`` if the file was not written by the forge.
    """
    meta = _read_metadata(Path(path))
    if "gouache.forge.spec" not in meta:
        raise ValueError(f"{path} is not a gouache forge model")
    return json.loads(meta["gouache.forge.spec"])


def _read_metadata(path: Path) -> dict:
    return read_header(path).metadata


def _canonical(kind: str, spec: dict) -> str:
    """The cache key text of a model: its spec with the kind and the forge version."""
    return json.dumps({**spec, "kind": kind, "forge_version": FORGE_VERSION}, sort_keys=True, separators=(",", ":"))


def _quantized(spec: dict) -> bool:
    """Whether the spec asks for a directly quantized GGUF (``"wtype": "q8_0"`` / ``"q4_0"``)."""
    return spec.get("wtype") is not None


def _spec_path(kind: str, spec: dict) -> Path:
    """Where :func:`_forge` puts (or has put) the model of ``kind``/``spec``, without writing it."""
    digest = hashlib.sha256(_canonical(kind, spec).encode()).hexdigest()[:12]
    return cache_dir() / f"{kind}-{digest}{'.gguf' if _quantized(spec) else '.safetensors'}"


def _forge(kind: str, spec: dict, tensors: Callable[[], Iterable[_Tensor]]) -> Path:
    """Write the model described by ``tensors()`` unless the cached file already exists."""
    if int(spec.get("seed", 0)) < 0:
        raise ValueError("seed must be >= 0")
    path = _spec_path(kind, spec)
    if path.exists():
        return path
    metadata = {"gouache.forge": kind, "gouache.forge.spec": _canonical(kind, spec)}
    seed = int(spec.get("seed", 0))
    if _quantized(spec):
        from .quant import write_gguf

        return write_gguf(path, tensors(), wtype=spec["wtype"], seed=seed, metadata=metadata)
    _write_safetensors(path, list(tensors()), dtype=spec.get("dtype", "f32"), seed=seed, metadata=metadata)
    return path


# --------------------------------------------------------------------------- writer


def _tensor_rng(seed: int, name: str) -> np.random.Generator:
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, key])


_CHUNK = 1 << 22
_LEVELS = 1 << 16


@functools.cache
def _normal_quantiles() -> np.ndarray:
    """The standard normal's quantiles at (i + 0.5) / 65536: a uniform 16-bit draw indexes it.

    Drawing 16 random bits per value and looking up its quantile is 4x faster than numpy's
    float32 normal draw plus the cast to f16, and every f16 weight has no more than 16 bits
    anyway; the tails stop at 4.3 standard deviations."""
    inv = NormalDist().inv_cdf
    return np.array([inv((i + 0.5) / _LEVELS) for i in range(_LEVELS)], dtype=np.float32)


def _materialize(t: _Tensor, seed: int, np_dtype) -> np.ndarray:
    name, shape, init = t
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if init == _ONES:
        return np.ones(shape, dtype=np_dtype)
    mean = None
    if isinstance(init, tuple):
        if init[0] == "fill":
            return np.full(shape, init[1], dtype=np_dtype)
        mean, init = np.float32(init[1]), init[2]
    values = _normal_quantiles() * np.float32(init)
    if mean is not None:
        values += mean
    values = values.astype(np_dtype)  # the 65536 values this tensor can hold, in its dtype
    rng = _tensor_rng(seed, name)
    out = np.empty(size, dtype=np_dtype)
    for start in range(0, size, _CHUNK):
        stop = min(size, start + _CHUNK)
        out[start:stop] = values[rng.integers(0, _LEVELS, stop - start, dtype=np.uint16)]
    return out.reshape(shape)


def _write_safetensors(path: Path, tensors: list[_Tensor], *, dtype: str, seed: int, metadata: dict) -> None:
    """Stream tensors into a safetensors file through gouache's one safetensors writer (atomic;
    a file another process finished first is replaced by the same bytes).

    Tensors are materialized by a few threads, written in order: memory stays bounded (a
    full SD1 in f32 is >4 GB).
    """
    np_dtype, st_dtype = _DTYPES[dtype]
    itemsize = np.dtype(np_dtype).itemsize
    entries = [
        (name, st_dtype, shape, (int(np.prod(shape, dtype=np.int64)) if shape else 1) * itemsize)
        for name, shape, _ in tensors
    ]

    def write_data(f: BinaryIO) -> None:
        workers = max(1, min(4, os.cpu_count() or 1))
        with ThreadPoolExecutor(workers) as pool:
            pending: deque = deque()
            for t in tensors:
                pending.append(pool.submit(_materialize, t, seed, np_dtype))
                if len(pending) > 2 * workers:
                    f.write(pending.popleft().result().reshape(-1).view(np.uint8))
            while pending:
                f.write(pending.popleft().result().reshape(-1).view(np.uint8))

    write_safetensors(path, entries, write_data, metadata, overwrite=True)


def _check_dtype(dtype: str) -> str:
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return dtype


#: Weight types of the directly quantized GGUF files (``None``: f16/f32 safetensors).
WTYPES = (None, "q8_0", "q4_0")


def _check_wtype(wtype: str | None) -> str | None:
    if wtype not in WTYPES:
        raise ValueError(f"wtype must be one of {WTYPES}, got {wtype!r}")
    return wtype


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def make(builders: dict, kind: str, spec: dict) -> Path:
    """The cached file of ``kind``/``spec``, written from ``builders[kind](spec)`` if missing."""
    return _forge(kind, spec, lambda: builders[kind](spec))


# --------------------------------------------------------------------------- GGUF through the engine


def gguf_target(base: str, wtype: str, spec: dict) -> tuple[Path, str]:
    """``(cache path, engine weight type name)`` of a GGUF made from ``base`` with ``spec``."""
    from ..._sdcpp.native import SDType

    engine_type = SDType.parse(wtype).engine_name
    full = {**spec, "base": base, "wtype": engine_type, "forge_version": FORGE_VERSION}
    digest = hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / f"gguf_{base}_{engine_type}-{digest}.gguf", engine_type


def convert_cached(src: Path, path: Path, engine_type: str) -> Path:
    """``src`` converted by the engine's own converter into the cache file ``path``."""
    from ..._sdcpp.functions import convert_model

    try:
        convert_model(src, path, output_type=engine_type)
    except Exception:
        if path.exists():  # another process finished the same file first
            return path
        raise
    return path
