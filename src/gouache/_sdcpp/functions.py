"""The engine's free functions: system info, core count, version, Canny, model conversion."""

from __future__ import annotations

import os
from pathlib import Path

from .._errors import GenerationError, InvalidInputError
from .._files import write_atomic
from .._image import SDImage
from .._limits import check
from .._modelfiles import headers
from . import native as _native
from .dispatch import ProgressCallback, dispatcher
from .image import as_c
from .native import SDType


def system_info() -> str:
    """The engine's build/CPU feature summary (AVX, AVX512, BLAS, CUDA ...)."""
    return _native.decode(dispatcher().lib.sd_get_system_info())


def physical_cores() -> int:
    """Physical CPU cores as the engine counts them (its default thread count)."""
    return int(dispatcher().lib.sd_get_num_physical_cores())


def version() -> dict[str, str]:
    """``{"version": ..., "commit": ...}`` of the loaded stable-diffusion.cpp."""
    lib = dispatcher().lib
    return {"version": _native.decode(lib.sd_version()), "commit": _native.decode(lib.sd_commit())}


def canny(
    image: SDImage,
    *,
    high_threshold: float = 0.08,
    low_threshold: float = 0.08,
    weak: float = 0.8,
    strong: float = 1.0,
    inverse: bool = False,
) -> SDImage:
    """Canny edge detection, **in place** on an RGB :class:`SDImage` (returned for chaining)."""
    if not isinstance(image, SDImage):
        raise InvalidInputError(f"canny works in place on an SDImage; got {type(image).__name__}")
    if image.channels != 3:
        raise InvalidInputError(f"canny needs an RGB image (3 channels); got {image.channels}")
    for name, v in (
        ("high_threshold", high_threshold),
        ("low_threshold", low_threshold),
        ("weak", weak),
        ("strong", strong),
    ):
        check(name, v, "fraction")
    with dispatcher().session("canny") as call:
        ok = dispatcher().lib.preprocess_canny(
            as_c(image), float(high_threshold), float(low_threshold), float(weak), float(strong), bool(inverse)
        )
        tail = list(call.log_tail)
    if not ok:
        raise GenerationError("canny preprocessing failed", engine_log=tail)
    return image


def convert_model(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    output_type: SDType | str = SDType.F16,
    vae_path: str | os.PathLike[str] | None = None,
    tensor_type_rules: str | None = None,
    convert_name: bool = False,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    """Convert a model to GGUF (or ``.safetensors`` by extension) with weight type ``output_type``.

    The engine writes a temporary file next to ``output_path`` that is moved into place
    only on success (gouache's one atomic writer); an existing ``output_path`` is refused
    unless ``overwrite=True``.
    """
    src = headers.check_file(input_path, "input model file")
    headers.sniff(src, "input model file")
    if vae_path is not None:
        headers.sniff(vae_path, "VAE file")
    wtype = SDType.parse(output_type)

    def write(tmp: str) -> None:
        d = dispatcher()
        with d.session("convert", progress=progress) as call:
            ok = d.lib.convert(
                _native.encode(src),
                _native.encode(vae_path) if vae_path is not None else None,
                _native.encode(tmp),
                int(wtype),
                # never NULL: the engine builds a std::string from it (NULL aborts the process)
                _native.encode(tensor_type_rules or ""),
                bool(convert_name),
            )
            tail = list(call.log_tail)
        if not ok or os.path.getsize(tmp) == 0:
            raise GenerationError(f"conversion of {str(src)!r} to {wtype.engine_name} failed", engine_log=tail)

    return write_atomic(output_path, write, overwrite=overwrite)
