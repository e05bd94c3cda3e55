"""Reading model file headers in Python (safetensors, GGUF, PyTorch checkpoints) without loading weights."""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from pathlib import Path

from .._errors import InvalidInputError

#: File kinds the engine reads.
KINDS = ("safetensors", "gguf", "ckpt")


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]


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
        if 2 <= n <= 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "ckpt"
    raise InvalidInputError(
        f"{what} {str(p)!r} is not a model file the engine reads (unknown file type);"
        " allowed: .safetensors, .gguf, or a PyTorch .ckpt/.pt/.pth checkpoint"
    )


def read_tensors(path: str | os.PathLike[str], what: str = "model file") -> dict[str, TensorInfo] | None:
    """Tensor names, dtypes and shapes from the header; ``None`` for pickled checkpoints."""
    kind = sniff(path, what)
    if kind == "safetensors":
        return _read_safetensors(Path(path))
    if kind == "gguf":
        return _read_gguf(Path(path))
    return None


def safetensors_header(path: str | os.PathLike[str]) -> tuple[dict, int]:
    """``(header, data start)`` of a safetensors file: the header dict as stored (with
    ``__metadata__`` if present) and the byte offset its ``data_offsets`` count from."""
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise InvalidInputError(f"{str(p)!r} is not a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > 100 * 1024 * 1024:
            raise InvalidInputError(f"{str(p)!r} is not a safetensors file (header size {n})")
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"corrupt safetensors header in {str(p)!r}: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidInputError(f"{str(p)!r} is not a safetensors file")
    return header, 8 + n


def _read_safetensors(p: Path) -> dict[str, TensorInfo]:
    header, _ = safetensors_header(p)
    return {
        k: TensorInfo(str(v.get("dtype", "?")), tuple(int(x) for x in v.get("shape", ())))
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict)
    }


# GGUF value types
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGML_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
               11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 24: "I8", 25: "I16", 26: "I32",
               27: "I64", 28: "F64", 30: "BF16"}


def _read_gguf(p: Path) -> dict[str, TensorInfo]:
    with open(p, "rb") as f:
        data = f.read(64 * 1024 * 1024)  # headers are far smaller than this
    off = 4

    def take(fmt: str):
        nonlocal off
        size = struct.calcsize(fmt)
        if off + size > len(data):
            raise InvalidInputError(f"truncated GGUF header in {str(p)!r}")
        (v,) = struct.unpack_from(fmt, data, off)
        off += size
        return v

    def take_str() -> str:
        nonlocal off
        n = take("<Q")
        s = data[off : off + n].decode("utf-8", errors="replace")
        off += n
        return s

    def skip_value(vtype: int) -> None:
        nonlocal off
        if vtype in _GGUF_SCALARS:
            off += struct.calcsize(_GGUF_SCALARS[vtype])
        elif vtype == 8:
            take_str()
        elif vtype == 9:
            inner = take("<I")
            count = take("<Q")
            for _ in range(count):
                skip_value(inner)
        else:
            raise InvalidInputError(f"unknown GGUF value type {vtype} in {str(p)!r}")

    version = take("<I")
    if version < 2:
        raise InvalidInputError(f"unsupported GGUF version {version} in {str(p)!r}")
    n_tensors = take("<Q")
    n_kv = take("<Q")
    for _ in range(n_kv):
        take_str()
        skip_value(take("<I"))
    out: dict[str, TensorInfo] = {}
    for _ in range(n_tensors):
        name = take_str()
        n_dims = take("<I")
        dims = [take("<Q") for _ in range(n_dims)]
        t = take("<I")
        take("<Q")  # offset
        out[name] = TensorInfo(_GGML_TYPES.get(t, f"type{t}"), tuple(reversed(dims)))
    return out


# --------------------------------------------------------------------------- architecture hints

_UNET = "model.diffusion_model."


def strip_prefix(names: dict[str, TensorInfo]) -> dict[str, TensorInfo]:
    """Names with a leading ``model.diffusion_model.`` removed (diffusion-model-only files lack it)."""
    return {k[len(_UNET):] if k.startswith(_UNET) else k: v for k, v in names.items()}


def is_distilled_unet(names: dict[str, TensorInfo]) -> bool:
    """A UNet without ``middle_block.1`` (tiny UNet / SDXS / SSD-1B-like distilled models)."""
    n = strip_prefix(names)
    has_unet = any(k.startswith("input_blocks.") for k in n) or any(k.startswith("unet.") for k in names)
    has_mid1 = any(k.startswith("middle_block.1.") for k in n) or any(
        "mid_block.resnets.1." in k for k in names
    )
    return has_unet and not has_mid1


def is_flux(names: dict[str, TensorInfo]) -> bool:
    n = strip_prefix(names)
    return any(k.startswith("double_blocks.") for k in n)


def has_text_encoder(names: dict[str, TensorInfo]) -> bool:
    markers = ("text_encoders.", "cond_stage_model.", "conditioner.", "te.text_model.", "text_model.")
    return any(k.startswith(markers) for k in names)


def wan_block_count(names: dict[str, TensorInfo]) -> int | None:
    """Number of transformer blocks of a Wan model, or ``None`` when the file is not Wan."""
    n = strip_prefix(names)
    if "blocks.0.cross_attn.norm_k.weight" not in n:
        return None
    idx = [int(k.split(".")[1]) for k in n if k.startswith("blocks.") and k.split(".")[1].isdigit()]
    return max(idx) + 1
