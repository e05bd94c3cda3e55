"""Random quantized models written straight into GGUF (q8_0 / q4_0): no f16 source file.

The DiTs and LLM text encoders of today's families have widths the engine hard-codes
(Z-Image 6e9 parameters, Qwen-Image's 3584-wide text path, Wan 2.2 TI2V 5e9), so their
forged files are large.  Writing them through an f16 safetensors file and the engine's
converter would cost twice the disk and minutes of conversion; here each quantized tensor
is drawn directly as ggml blocks (a constant f16 scale and uniformly random integers, the
same standard deviation as the f16 forge) and every other tensor as F16/F32 values, in a
GGUF v3 file the engine reads like any other.

Which tensors are quantized follows the engine's own converter
(``ModelLoader::tensor_should_be_converted``: not biases, ``.scale``, embeddings, the
Flux/MMDiT/UNet input and output projections, nor rows that are not whole blocks), further
limited to 2-D weights with a plain normal initialisation (norms and 1-D tensors stay F32).
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..._files import write_atomic
from .io import _materialize, _Tensor, _tensor_rng

__all__ = ["QUANT_TYPES", "write_gguf"]

_ALIGN = 32
_BLOCK = 32

# ggml type ids and block sizes in bytes (ggml.h / ggml-common.h)
_F32, _F16, _Q4_0, _Q8_0 = 0, 1, 2, 8
_BLOCK_BYTES = {_Q4_0: 2 + _BLOCK // 2, _Q8_0: 2 + _BLOCK}
#: Weight types the forge writes directly: name -> ggml type id.
QUANT_TYPES = {"q8_0": _Q8_0, "q4_0": _Q4_0}

# Standard deviation of the integer levels: q4_0 stores q - 8 with q uniform on 0..15,
# q8_0 stores q uniform on -127..127.
_LEVEL_STD = {_Q4_0: math.sqrt((16**2 - 1) / 12), _Q8_0: math.sqrt((255**2 - 1) / 12)}

# Names the engine's converter never quantizes (substrings), model.cpp tensor_should_be_converted.
_KEEP = (
    "img_in.",
    "txt_in.",
    "time_in.",
    "vector_in.",
    "guidance_in.",
    "final_layer.",
    "x_embedder.",
    "t_embedder.",
    "y_embedder.",
    "pos_embed",
    "context_embedder.",
    "time_embed.",
    "label_emb.",
    "embedding",
)


def _quantizable(name: str, shape: tuple[int, ...], init: object) -> bool:
    return (
        len(shape) == 2
        and name.endswith(".weight")
        and shape[-1] % _BLOCK == 0
        and isinstance(init, float)
        and not any(k in name for k in _KEEP)
    )


def _type_of(t: _Tensor, wtype: int) -> int:
    name, shape, init = t
    if _quantizable(name, shape, init):
        return wtype
    return _F32 if len(shape) <= 1 else _F16


def _nbytes(shape: tuple[int, ...], ggml_type: int) -> int:
    n = math.prod(shape) if shape else 1
    if ggml_type in _BLOCK_BYTES:
        return n // _BLOCK * _BLOCK_BYTES[ggml_type]
    return n * (4 if ggml_type == _F32 else 2)


def _quantized(t: _Tensor, seed: int, ggml_type: int) -> np.ndarray:
    """The blocks of a quantized tensor: constant scale, random levels (N(0, std)-like)."""
    name, shape, std = t
    blocks = math.prod(shape) // _BLOCK
    scale = np.float16(float(std) / _LEVEL_STD[ggml_type]).tobytes()
    rng = _tensor_rng(seed, name)
    payload = _BLOCK_BYTES[ggml_type] - 2
    levels = rng.integers(0, 256, size=(blocks, payload), dtype=np.uint8)
    if ggml_type == _Q8_0:
        levels[levels == 0x80] = 0x81  # int8 -128 is outside q8_0's symmetric range
    out = np.empty((blocks, _BLOCK_BYTES[ggml_type]), dtype=np.uint8)
    out[:, :2] = np.frombuffer(scale, dtype=np.uint8)
    out[:, 2:] = levels
    return out


def _data(t: _Tensor, seed: int, ggml_type: int) -> np.ndarray:
    if ggml_type in _BLOCK_BYTES:
        return _quantized(t, seed, ggml_type)
    np_dtype = np.dtype("<f4") if ggml_type == _F32 else np.dtype("<f2")
    return _materialize(t, seed, np_dtype)


def _string(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("<Q", len(raw)) + raw


def _header(entries: list[tuple[str, tuple[int, ...], int]], metadata: dict[str, str]) -> bytes:
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(entries), len(metadata) + 1))
    out += _string("general.alignment") + struct.pack("<II", 4, _ALIGN)  # uint32
    for key, value in metadata.items():
        out += _string(key) + struct.pack("<I", 8) + _string(value)
    offset = 0
    for name, shape, ggml_type in entries:
        dims = tuple(reversed(shape)) or (1,)  # ggml order: innermost first
        out += _string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ggml_type, offset)
        offset += _nbytes(shape, ggml_type)
        offset += -offset % _ALIGN
    out += b"\0" * (-len(out) % _ALIGN)
    return bytes(out)


def write_gguf(path: Path, tensors: Iterable[_Tensor], *, wtype: str, seed: int, metadata: dict[str, str]) -> Path:
    """Write ``tensors`` into a GGUF file at ``path`` (atomically, replacing it), 2-D weights
    quantized to ``wtype`` ("q8_0" or "q4_0")."""
    quant = QUANT_TYPES[wtype]
    items = list(tensors)
    types = [_type_of(t, quant) for t in items]
    header = _header([(name, tuple(shape), ty) for (name, shape, _), ty in zip(items, types)], metadata)

    def write_data(f: BinaryIO) -> None:
        for t, ty in zip(items, types):
            data = _data(t, seed, ty)
            f.write(data.reshape(-1).view(np.uint8))
            f.write(b"\0" * (-data.nbytes % _ALIGN))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(header)
            write_data(f)
            f.flush()
            os.fsync(f.fileno())

    return write_atomic(path, write, overwrite=True)
