"""``inspect``: what a model file is (family, few-step, tensors, dtypes, defaults), from its header."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import struct
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from .defaults import FamilyDefaults, defaults_for
from .families import GENERATORS, Family, Tensors, detect_family, is_few_step
from .headers import check_file, read_tensors, sniff

__all__ = ["ModelInfo", "inspect"]


def _safetensors_metadata(p: Path) -> dict[str, str]:
    with open(p, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError):
            return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def _gguf_read(f: BinaryIO, fmt: str):
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise EOFError
    return struct.unpack(fmt, data)[0]


def _gguf_str(f: BinaryIO) -> str:
    return f.read(_gguf_read(f, "<Q")).decode("utf-8", errors="replace")


def _gguf_value(f: BinaryIO, vtype: int) -> object:
    """A GGUF value; arrays are skipped (returned as ``None``)."""
    if vtype in _GGUF_SCALARS:
        return _gguf_read(f, _GGUF_SCALARS[vtype])
    if vtype == 8:
        return _gguf_str(f)
    if vtype == 9:
        inner, count = _gguf_read(f, "<I"), _gguf_read(f, "<Q")
        if inner in _GGUF_SCALARS:
            f.seek(count * struct.calcsize(_GGUF_SCALARS[inner]), os.SEEK_CUR)
        else:
            for _ in range(count):
                _gguf_value(f, inner)
        return None
    raise ValueError(f"unknown GGUF value type {vtype}")


def _gguf_metadata(p: Path) -> dict[str, str]:
    """The GGUF key/values that are scalars or strings (``general.architecture``, ...);
    arrays and ``tokenizer.*`` are left out."""
    out: dict[str, str] = {}
    try:
        with open(p, "rb") as f:
            f.seek(8)  # magic, version
            _gguf_read(f, "<Q")  # tensor count
            for _ in range(_gguf_read(f, "<Q")):
                key = _gguf_str(f)
                value = _gguf_value(f, _gguf_read(f, "<I"))
                if value is not None and not key.startswith("tokenizer."):
                    out[key] = str(value)
    except (EOFError, ValueError, struct.error):
        pass  # a truncated/odd header: keep what was read (read_tensors reports real corruption)
    return out


def _metadata(p: Path, kind: str) -> dict[str, str]:
    if kind == "safetensors":
        return _safetensors_metadata(p)
    if kind == "gguf":
        return _gguf_metadata(p)
    return {}


def _is_v_prediction(p: Path, tensors: Tensors | None, metadata: Mapping[str, str]) -> bool:
    if tensors is not None and "v_pred" in tensors:
        return True
    if metadata.get("modelspec.prediction_type", "").lower() in ("v", "v_prediction", "v-prediction"):
        return True
    return re.search(r"768[-_]?v(?![a-z])|v[-_]?pred", p.name.lower()) is not None


# --------------------------------------------------------------------------- inspect


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What :func:`inspect` learned from a model file's header.

    ``file_kind``: ``"safetensors"``, ``"gguf"`` or ``"ckpt"``.  ``tensor_count``,
    ``parameters`` (total element count) and ``dtypes`` (dtype -> tensor count) are ``None``
    / empty for pickled checkpoints.  ``metadata``: the safetensors ``__metadata__``, or the
    scalar/string GGUF key/values.  ``variant``: the sub-model (see :func:`detect_family`).
    ``defaults``: the settings :func:`defaults_for` suggests for it.
    """

    path: Path
    file_kind: str
    family: Family
    few_step: bool
    tensor_count: int | None
    dtypes: dict[str, int]
    parameters: int | None
    size_bytes: int
    metadata: dict[str, str]
    defaults: FamilyDefaults
    variant: str | None = None


def inspect(path: str | os.PathLike[str]) -> ModelInfo:
    """Inspect a model file (safetensors, GGUF or PyTorch checkpoint) without loading weights.

    The family comes from tensor names and shapes, as the engine decides it; components
    (ControlNet, LoRA, VAE, TAESD, ESRGAN, text encoders) are recognised too.  Pickled
    ``.ckpt``/``.pt``/``.pth`` files are never unpickled: their family is ``unknown`` unless
    the file name says otherwise (``RealESRGAN_x4plus.pth`` -> esrgan, ``v1-5-...ckpt`` ->
    sd1, ``sd_xl_base...`` -> sdxl, ...), and their tensor count/dtypes are not known.
    Raises :class:`InvalidInputError` for a missing, empty or non-model file.
    """
    p = check_file(path, "model file")
    kind = sniff(p)
    tensors = read_tensors(p)
    metadata = _metadata(p, kind)
    family, variant = detect_family(tensors, p)
    if family is Family.SD2 and variant is None and _is_v_prediction(p, tensors, metadata):
        variant = "768-v"
    few = (family in GENERATORS or family is Family.LORA) and is_few_step(p, tensors, metadata)
    return ModelInfo(
        path=p,
        file_kind=kind,
        family=family,
        few_step=few,
        tensor_count=None if tensors is None else len(tensors),
        dtypes=dict(Counter(t.dtype for t in tensors.values())) if tensors else {},
        parameters=None if tensors is None else sum(math.prod(t.shape) for t in tensors.values()),
        size_bytes=p.stat().st_size,
        metadata=metadata,
        defaults=defaults_for(family, few, variant=variant),
        variant=variant,
    )
