"""The model a generation command uses when ``-m`` names no file.

In order: ``--forge`` (a small random-weight model, no download: the image is noise);
``-m NAME`` with a catalog name; ``$GOUACHE_MODEL`` (a path or a catalog name); the first
checkpoint in ``$GOUACHE_MODEL_DIRS`` (folders separated by ``os.pathsep``, each a plain
folder of checkpoints or a ComfyUI/AUTOMATIC1111 tree); else the default few-step model
:data:`DEFAULT_MODEL`, taken from the Hugging Face cache or fetched once (with the hub's
progress bar).  Offline, one line says how to get a model.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .._errors import GouacheError, InvalidInputError, MissingDependencyError
from .._modelfiles.catalog import MODEL_EXTENSIONS, RECIPES, find_models, pull
from .._modelfiles.families import GENERATORS
from .._modelfiles.inspect import inspect

__all__ = ["DEFAULT_MODEL", "FORGE_NOTICE", "FORGE_SIZE", "MODEL_DIRS_ENV", "MODEL_ENV", "choose_model"]

#: The few-step model fetched when no model is configured: SD-Turbo (one 512x512 image in 1-4
#: steps without CFG, run by both engines, one file).
DEFAULT_MODEL = "sd-turbo"
MODEL_ENV = "GOUACHE_MODEL"
MODEL_DIRS_ENV = "GOUACHE_MODEL_DIRS"
#: ``--forge`` generates at this size unless -W/-H say otherwise.
FORGE_SIZE = 256
FORGE_NOTICE = (
    "gouache: --forge uses a random-weight model (no download): the image is noise, not your prompt;"
    " give -m MODEL for real images"
)


def _hint() -> str:
    return (
        f"give -m PATH (a checkpoint file or diffusers folder), set {MODEL_ENV} or {MODEL_DIRS_ENV},"
        f" run `gouache pull {DEFAULT_MODEL}` where there is network, or try --forge (no download)"
    )


def _catalog(name: str, origin: str) -> Path:
    """A catalog model: from the Hugging Face cache, else fetched once."""
    try:
        return pull(name, local_files_only=True)
    except MissingDependencyError:
        raise InvalidInputError(
            f'{origin} {name!r} needs huggingface_hub: pip install "gouache[hub]"; or {_hint()}'
        ) from None
    except GouacheError:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        raise InvalidInputError(f"no model given and {origin} {name!r} is not on this machine (offline); {_hint()}")
    print(f"gouache: fetching {origin} {name!r} ({'/'.join(RECIPES[name])}) once", file=sys.stderr)
    try:
        return pull(name)
    except GouacheError as exc:
        why = str(exc).split(";")[0]
        raise InvalidInputError(
            f"no model given and {origin} {name!r} could not be fetched ({why}); {_hint()}"
        ) from None


def _named(value: str, origin: str) -> Path:
    path = Path(value).expanduser()
    if path.exists():
        return path
    if value in RECIPES:
        return _catalog(value, origin)
    raise InvalidInputError(
        f"{origin} {value!r} not found: it is neither a file, a folder nor a catalog name;"
        f" catalog: {', '.join(sorted(RECIPES))}"
    )


def _is_generator(path: Path) -> bool:
    try:
        return inspect(path).family in GENERATORS
    except GouacheError:
        return False


def _first_checkpoint(root: Path) -> Path | None:
    try:
        candidates = [e.path for e in find_models(root) if e.kind == "checkpoint"]
    except InvalidInputError:  # a plain folder of model files
        candidates = sorted(p for p in root.iterdir() if p.suffix.lower() in MODEL_EXTENSIONS and p.is_file())
    return next((p for p in candidates if _is_generator(p)), None)


def _configured() -> Path | None:
    env = os.environ.get(MODEL_ENV, "").strip()
    if env:
        return _named(env, f"${MODEL_ENV}")
    for folder in os.environ.get(MODEL_DIRS_ENV, "").split(os.pathsep):
        root = Path(folder).expanduser() if folder else None
        if root is not None and root.is_dir() and (found := _first_checkpoint(root)) is not None:
            return found
    return None


def _forge(a: argparse.Namespace) -> list[str]:
    if a.model or a.diffusion_model:
        raise InvalidInputError("--forge replaces -m/--model and --diffusion-model; give one of them")
    if a.command == "video":
        raise InvalidInputError("--forge makes an image model; video needs a Wan model (--diffusion-model)")
    from ..testing import forge

    print(FORGE_NOTICE, file=sys.stderr)
    extra = ["-m", str(forge.sdxs())]
    for flag, value in (("-W", a.width), ("-H", a.height)):
        if value is None:
            extra += [flag, str(FORGE_SIZE)]
    return extra


def choose_model(a: argparse.Namespace) -> list[str]:
    """Arguments to add to the command line so that it names a model file (see the module
    docstring); ``a`` is updated to match."""
    if a.forge:
        extra = _forge(a)
    elif a.diffusion_model or (a.model and Path(a.model).exists()):
        return []
    elif a.model:
        extra = ["-m", str(_named(a.model, "model"))]
    else:
        extra = ["-m", str(_configured() or _catalog(DEFAULT_MODEL, "the default model"))]
    parsed = argparse.ArgumentParser(add_help=False)
    parsed.add_argument("-m", dest="model")
    parsed.add_argument("-W", dest="width", type=int)
    parsed.add_argument("-H", dest="height", type=int)
    for key, value in vars(parsed.parse_args(extra)).items():
        if value is not None:
            setattr(a, key, value)
    return extra
