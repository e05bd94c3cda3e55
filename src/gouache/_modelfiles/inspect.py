"""``inspect``: what a model file is (family, few-step, tensors, dtypes, defaults), from its header."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from .architecture import Tensors
from .defaults import FamilyDefaults, defaults_for
from .families import GENERATORS, Family, detect_family, is_few_step
from .folders import folder_family, folder_weight_files, is_diffusers_folder
from .headers import check_file, read_header

__all__ = ["ModelInfo", "inspect"]


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
    A diffusers folder (``model_index.json`` beside ``unet/``, ``vae/`` ...) is inspected from
    its configs and the headers of its weight files (``file_kind`` ``"diffusers"``).
    Raises :class:`InvalidInputError` for a missing, empty or non-model file.
    """
    if is_diffusers_folder(path):
        return _inspect_folder(Path(path))
    p = check_file(path, "model file")
    header = read_header(p)
    kind, tensors, metadata = header.kind, header.tensors, header.metadata
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


def _inspect_folder(folder: Path) -> ModelInfo:
    family, variant = folder_family(folder)
    files = folder_weight_files(folder)
    headers = [read_header(f) for f in files]
    tensors = [t for h in headers if h.tensors for t in h.tensors.values()]
    few = family in GENERATORS and is_few_step(folder, None, {})
    return ModelInfo(
        path=folder,
        file_kind="diffusers",
        family=family,
        few_step=few,
        tensor_count=len(tensors) if tensors else None,
        dtypes=dict(Counter(t.dtype for t in tensors)),
        parameters=sum(math.prod(t.shape) for t in tensors) if tensors else None,
        size_bytes=sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()),
        metadata={},
        defaults=defaults_for(family, few, variant=variant),
        variant=variant,
    )
