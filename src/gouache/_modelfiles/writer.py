"""The one safetensors writer: a header (names, dtypes, shapes, offsets) and the tensor bytes
streamed after it, written atomically (``gouache._files.write_atomic``)."""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from .._errors import InvalidInputError
from .._files import write_atomic

#: One tensor of the header: (name, safetensors dtype such as "F16", shape, size in bytes).
TensorEntry = tuple[str, str, Sequence[int], int]
#: A tensor copied from another file: (name, header entry as stored, source file, its data start).
CopiedTensor = tuple[str, dict, Path, int]

_CHUNK = 1 << 24


def encode_header(tensors: Iterable[TensorEntry], metadata: dict[str, str]) -> bytes:
    """The length prefix and JSON header (padded to 8 bytes) of a file holding ``tensors`` in order."""
    header: dict[str, dict] = {"__metadata__": metadata}
    offset = 0
    for name, dtype, shape, nbytes in tensors:
        if name in header:
            raise InvalidInputError(f"tensor {name!r} appears twice")
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def write_safetensors(
    dst: str | os.PathLike[str],
    tensors: Sequence[TensorEntry],
    write_data: Callable[[BinaryIO], None],
    metadata: dict[str, str],
    *,
    overwrite: bool,
) -> Path:
    """Write ``dst`` atomically: the header of ``tensors``, then ``write_data(file)`` writes their
    bytes in the same order.  Returns ``dst``."""
    header = encode_header(tensors, metadata)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(header)
            write_data(f)
            f.flush()
            os.fsync(f.fileno())

    return write_atomic(dst, write, overwrite=overwrite)


def copy_tensors(dst: Path, entries: Sequence[CopiedTensor], metadata: dict[str, str], *, overwrite: bool) -> Path:
    """Write ``dst`` from tensors of other safetensors files: each tensor's bytes are copied
    from its source in chunks (memory stays small), in entry order; dtypes and bytes unchanged."""
    sizes = [
        (name, info["dtype"], info["shape"], info["data_offsets"][1] - info["data_offsets"][0])
        for name, info, _src, _start in entries
    ]

    def write_data(f: BinaryIO) -> None:
        with contextlib.ExitStack() as stack:
            sources: dict[Path, BinaryIO] = {}
            for _name, info, src, start in entries:
                if src not in sources:
                    sources[src] = stack.enter_context(open(src, "rb"))
                begin, end = info["data_offsets"]
                sources[src].seek(start + begin)
                left = end - begin
                while left:
                    chunk = sources[src].read(min(left, _CHUNK))
                    if not chunk:
                        raise InvalidInputError(f"{str(src)!r} is truncated")
                    f.write(chunk)
                    left -= len(chunk)

    dst.parent.mkdir(parents=True, exist_ok=True)
    return write_safetensors(dst, sizes, write_data, metadata, overwrite=overwrite)
