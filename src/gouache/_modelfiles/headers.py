"""The one reader of model file headers (safetensors, GGUF, PyTorch checkpoints); no weights are loaded.

:func:`read_header` gives a file's kind, its tensors (names, dtypes, shapes) and its
metadata; every part of gouache that needs to know what a model file holds asks here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from pathlib import Path
from typing import BinaryIO

from .._errors import InvalidInputError

__all__ = ["Header", "TensorInfo", "check_file", "read_header", "read_tensors", "safetensors_header", "sniff"]

#: The largest safetensors header accepted (real ones are a few MB).
_MAX_HEADER = 100 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header describes it (dtype in the file's spelling: "F16", "Q8_0", ...)."""

    dtype: str
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Header:
    """What a model file's header says: its ``kind`` ("safetensors", "gguf" or "ckpt"),
    its tensors (``None`` for pickled checkpoints, which are never unpickled) and its
    metadata (the safetensors ``__metadata__``, or GGUF's scalar and string key/values)."""

    kind: str
    tensors: dict[str, TensorInfo] | None
    metadata: dict[str, str]


def check_file(path: str | os.PathLike[str], what: str) -> Path:
    """A readable, non-empty regular file, or :class:`InvalidInputError` naming ``what``."""
    if isinstance(path, str) and not path.strip():
        raise InvalidInputError(f"{what} is an empty path")
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"{what} not found: {str(p)!r}")
    if not p.is_file():
        raise InvalidInputError(f"{what} is not a file: {str(p)!r}")
    if not os.access(p, os.R_OK):
        raise InvalidInputError(f"{what} is not readable (permissions): {str(p)!r}")
    if p.stat().st_size == 0:
        raise InvalidInputError(f"{what} is an empty file: {str(p)!r}")
    return p


def sniff(path: str | os.PathLike[str], what: str = "model file") -> str:
    """The file's kind from its first bytes: ``safetensors``, ``gguf`` or ``ckpt``."""
    p = check_file(path, what)
    with open(p, "rb") as f:
        head = f.read(16)
    if head[:4] == b"GGUF":
        return "gguf"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= _MAX_HEADER and head[8:9] == b"{":
            return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "ckpt"
    raise InvalidInputError(
        f"{what} {str(p)!r} is not a model file the engine reads (unknown file type);"
        " allowed: .safetensors, .gguf, or a PyTorch .ckpt/.pt/.pth checkpoint"
    )


def read_header(path: str | os.PathLike[str], what: str = "model file") -> Header:
    """The header of a model file (see :class:`Header`)."""
    kind = sniff(path, what)
    p = Path(path)
    if kind == "safetensors":
        header, _ = safetensors_header(p)
        return Header(kind, _safetensors_tensors(header), _safetensors_metadata(header))
    if kind == "gguf":
        with open(p, "rb") as f:
            metadata, tensors = _GGUFReader(f, p).read()
        return Header(kind, tensors, metadata)
    return Header(kind, None, {})


def read_tensors(path: str | os.PathLike[str], what: str = "model file") -> dict[str, TensorInfo] | None:
    """Tensor names, dtypes and shapes from the header; ``None`` for pickled checkpoints."""
    return read_header(path, what).tensors


# --------------------------------------------------------------------------- safetensors


def safetensors_header(path: str | os.PathLike[str]) -> tuple[dict, int]:
    """``(header, data start)`` of a safetensors file: the header dict as stored (with
    ``__metadata__`` if present) and the byte offset its ``data_offsets`` count from."""
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise InvalidInputError(f"{str(p)!r} is not a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER:
            raise InvalidInputError(f"{str(p)!r} is not a safetensors file (header size {n})")
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"corrupt safetensors header in {str(p)!r}: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidInputError(f"{str(p)!r} is not a safetensors file")
    return header, 8 + n


def _safetensors_tensors(header: dict) -> dict[str, TensorInfo]:
    return {
        k: TensorInfo(str(v.get("dtype", "?")), tuple(int(x) for x in v.get("shape", ())))
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict)
    }


def _safetensors_metadata(header: dict) -> dict[str, str]:
    meta = header.get("__metadata__")
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


# --------------------------------------------------------------------------- GGUF

# GGUF value types -> struct formats; 8 is a string, 9 an array.
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_GGML_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    6: "Q5_0",
    7: "Q5_1",
    8: "Q8_0",
    9: "Q8_1",
    10: "Q2_K",
    11: "Q3_K",
    12: "Q4_K",
    13: "Q5_K",
    14: "Q6_K",
    15: "Q8_K",
    24: "I8",
    25: "I16",
    26: "I32",
    27: "I64",
    28: "F64",
    30: "BF16",
}


class _GGUFReader:
    """Reads a GGUF header from a file, streaming (arrays of scalars are skipped by seeking)."""

    def __init__(self, f: BinaryIO, path: Path) -> None:
        self.f, self.path = f, path

    def _take(self, fmt: str):
        size = struct.calcsize(fmt)
        data = self.f.read(size)
        if len(data) != size:
            raise InvalidInputError(f"truncated GGUF header in {str(self.path)!r}")
        return struct.unpack(fmt, data)[0]

    def _string(self) -> str:
        n = self._take("<Q")
        data = self.f.read(n)
        if len(data) != n:
            raise InvalidInputError(f"truncated GGUF header in {str(self.path)!r}")
        return data.decode("utf-8", errors="replace")

    def _value(self, vtype: int) -> object:
        """A key's value; arrays are skipped (``None``)."""
        if vtype in _GGUF_SCALARS:
            return self._take(_GGUF_SCALARS[vtype])
        if vtype == _GGUF_STRING:
            return self._string()
        if vtype == _GGUF_ARRAY:
            inner, count = self._take("<I"), self._take("<Q")
            if inner in _GGUF_SCALARS:
                self.f.seek(count * struct.calcsize(_GGUF_SCALARS[inner]), os.SEEK_CUR)
            else:
                for _ in range(count):
                    self._value(inner)
            return None
        raise InvalidInputError(f"unknown GGUF value type {vtype} in {str(self.path)!r}")

    def read(self) -> tuple[dict[str, str], dict[str, TensorInfo]]:
        """``(metadata, tensors)``: scalar and string key/values (``tokenizer.*`` left out) and
        every tensor's type and shape (in ggml order reversed, as safetensors writes shapes)."""
        self.f.seek(4)  # magic
        version = self._take("<I")
        if version < 2:
            raise InvalidInputError(f"unsupported GGUF version {version} in {str(self.path)!r}")
        n_tensors, n_kv = self._take("<Q"), self._take("<Q")
        metadata: dict[str, str] = {}
        for _ in range(n_kv):
            key = self._string()
            value = self._value(self._take("<I"))
            if value is not None and not key.startswith("tokenizer."):
                metadata[key] = str(value)
        tensors: dict[str, TensorInfo] = {}
        for _ in range(n_tensors):
            name = self._string()
            dims = [self._take("<Q") for _ in range(self._take("<I"))]
            ggml_type = self._take("<I")
            self._take("<Q")  # offset
            tensors[name] = TensorInfo(_GGML_TYPES.get(ggml_type, f"type{ggml_type}"), tuple(reversed(dims)))
        return metadata, tensors
