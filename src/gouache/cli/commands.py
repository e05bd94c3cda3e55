"""The subcommands that run in the command's own process: upscale, convert, assemble, info,
models, pull, enhance."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .._engines.registry import ENGINES, engine_class, explain_all, select_engine
from .._engines.requests import ModelFiles
from .._errors import InvalidInputError
from .._files import check_writable
from .._modelfiles.inspect import inspect
from .._pipeline.infotext import save_image
from .._version import __version__
from .arguments import lora_args, threads_arg
from .output import EXIT_OK, EXIT_RUNTIME, Progress, emit


def run_upscale(a: argparse.Namespace) -> int:
    from .._pipeline.oneshot import upscale

    image = upscale(a.image, a.model, factor=a.factor, tile_size=a.tile_size, threads=threads_arg(a.threads))
    path = save_image(image, a.output, overwrite=a.overwrite)
    emit(a, {"path": str(path), "width": image.width, "height": image.height})
    return EXIT_OK


def run_convert(a: argparse.Namespace) -> int:
    from .._sdcpp.functions import convert_model

    out = convert_model(
        a.input,
        a.output,
        output_type=a.type,
        vae_path=a.vae,
        tensor_type_rules=a.tensor_type_rules,
        overwrite=a.overwrite,
    )
    emit(a, {"path": str(out), "type": a.type, "bytes": out.stat().st_size})
    return EXIT_OK


def run_assemble(a: argparse.Namespace) -> int:
    from .._modelfiles.assemble import assemble_checkpoint

    out = assemble_checkpoint(a.base, a.unet, a.output, overwrite=a.overwrite)
    emit(a, {"path": str(out), "bytes": out.stat().st_size})
    return EXIT_OK


def _model_info(path: str) -> dict[str, Any]:
    info = inspect(path)
    data: dict[str, Any] = {
        "path": str(info.path),
        "family": info.family.value,
        "few_step": info.few_step,
        "file_kind": info.file_kind,
        "tensors": info.tensor_count,
        "parameters": info.parameters,
        "dtypes": info.dtypes,
        "size_bytes": info.size_bytes,
        "defaults": vars(info.defaults),
    }
    data["engine"], data["engine_reason"] = select_engine("auto", info.family.value, ModelFiles(model=Path(path)))
    return data


def _engine_version() -> str:
    """stable-diffusion.cpp's version for people: its own, else the carrier package's."""
    from importlib import metadata

    from .. import version

    v = version()
    own = " ".join(
        x for x in (v.get("version"), v.get("commit") and f"(commit {v['commit']})") if x and "unknown" not in x
    )
    try:
        carrier = f"stable-diffusion-cpp-python {metadata.version('stable-diffusion-cpp-python')}"
    except metadata.PackageNotFoundError:
        carrier = ""
    if own and carrier:
        return f"{own}, from {carrier}"
    return own or (f"the library of {carrier}" if carrier else "unknown")


def _system_info() -> dict[str, Any]:
    from .. import physical_cores, system_info
    from .._sdcpp.library import library_path

    reasons = explain_all()
    usable = [name for name in sorted(ENGINES) if engine_class(name).explain().usable]
    return {
        "gouache": __version__,
        "engines": ", ".join(usable),
        "torch_engine": reasons["torch"],
        "stable_diffusion_cpp": _engine_version(),
        "library": library_path(),
        "physical_cores": physical_cores(),
        "system_info": " ".join(system_info().split()),
    }


def run_info(a: argparse.Namespace) -> int:
    emit(a, _model_info(a.model) if a.model else _system_info())
    return EXIT_OK


def run_models(a: argparse.Namespace) -> int:
    from .._modelfiles.catalog import find_models

    entries = find_models(a.root)
    if a.json:
        print(
            json.dumps(
                [{"kind": e.kind, "name": e.name, "path": str(e.path), "size_bytes": e.size_bytes} for e in entries]
            )
        )
    else:
        for e in entries:
            print(f"{e.kind:<16} {e.name:<50} {e.size_bytes / 2**20:>10.1f} MB")
    return EXIT_OK


def run_pull(a: argparse.Namespace) -> int:
    from .._modelfiles.catalog import MODEL_RECIPES, pull, pull_model

    if a.name in MODEL_RECIPES and a.filename is None:
        parts = pull_model(a.name, revision=a.revision, cache_dir=a.dir)
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in parts.items())
        emit(a, {"parts": {k: str(v) for k, v in parts.items()}, "options": flags})
        return EXIT_OK
    path = pull(a.name, a.filename, revision=a.revision, cache_dir=a.dir)
    emit(a, {"path": str(path)})
    return EXIT_OK


def _enhance_config(a: argparse.Namespace):
    from ..enhance import EnhanceConfig

    preset = {
        "t4_gpu": EnhanceConfig.for_t4_gpu,
        "quality": EnhanceConfig.for_quality,
        "speed": EnhanceConfig.for_speed,
        "cpu": EnhanceConfig.for_cpu,
    }[a.preset]
    given = (
        ("lightning_steps", a.steps),
        ("strength", a.strength),
        ("controlnet_scale", a.controlnet_scale),
        ("working_size", a.working_size),
        ("seed", a.seed),
        ("model", a.model),
        ("controlnet", a.controlnet),
        ("engine", a.engine),
        ("device", a.device),
        ("depth_model", a.depth_model),
        ("use_controlnet", False if a.no_controlnet else None),
        ("loras", tuple(lora_args(a.lora)) or None),
    )
    overrides = {k: v for k, v in given if v is not None}
    return preset(prompt_template=a.template, default_subject=a.subject, **overrides)


def _depth_file(folder: str, view: Path) -> Any:
    for ext in (".png", ".npy", ".tif", ".tiff"):
        p = Path(folder) / (view.stem + ext)
        if p.is_file():
            if ext == ".npy":
                import numpy as np

                return np.load(p)
            return p
    return None


def run_enhance(a: argparse.Namespace) -> int:
    from ..enhance import EnhanceService

    config = _enhance_config(a)
    views = [Path(v) for v in a.views]
    missing = [str(v) for v in views if not v.is_file()]
    if missing:
        raise InvalidInputError(f"view files not found: {', '.join(missing)}")
    a.out.mkdir(parents=True, exist_ok=True)
    outputs = [a.out / (v.stem + ".png") for v in views]
    check_writable(outputs, overwrite=a.overwrite)
    depths = [_depth_file(a.depth, v) for v in views] if a.depth else None
    bars = Progress(not (a.quiet or a.json))
    results: list[dict[str, Any]] = []
    with EnhanceService(config) as service:
        for i, (view, out) in enumerate(zip(views, outputs)):
            bars.update("views", i, len(views))
            try:
                image = service.enhance(view, prompt=a.prompt, depth_map=None if depths is None else depths[i])
                save_image(image, out, overwrite=a.overwrite)
                results.append({"view": str(view), "output": str(out)})
            except Exception as exc:  # noqa: BLE001 - reported per view, the others go on
                results.append({"view": str(view), "error": f"{type(exc).__name__}: {exc}".splitlines()[0]})
        bars.update("views", len(views), len(views))
    bars.close()
    failed = [r for r in results if "error" in r]
    if a.json:
        print(json.dumps({"views": results, "failed": len(failed)}))
    else:
        for r in results:
            print(r.get("output") or f"{r['view']}: {r['error']}", file=sys.stdout if "output" in r else sys.stderr)
    return EXIT_RUNTIME if failed else EXIT_OK
