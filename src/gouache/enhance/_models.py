"""Finding the files of the enhancement models: a path, or a catalog name.

A name is looked up, in order, in the local model folders (``GOUACHE_MODEL_DIRS``:
folders separated by ``os.pathsep``, each a plain folder or a ComfyUI/AUTOMATIC1111
``models`` tree; depth models also in ``GOUACHE_DEPTH_MODELS`` and ``$GOUACHE_CACHE/depth``,
by default ``~/.cache/gouache/depth``), then in the Hugging Face cache, then fetched from
the Hub (with huggingface_hub's progress bar) when the Hub answers (checked with a 3 s
connection first, so an offline machine fails at once); otherwise a one-line
:class:`DownloadError` names the ``gouache pull`` command and the environment variable
that points at a file instead.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .._errors import InvalidInputError, MissingDependencyError
from .._files import cache_root
from ._config import env_name
from ._gouache import MODEL_FOLDERS, RECIPES, DownloadError, hf_cache_dir, inspect_model, pull

log = logging.getLogger("gouache.enhance")

MODEL_DIRS_ENV = "GOUACHE_MODEL_DIRS"
DEPTH_DIRS_ENV = "GOUACHE_DEPTH_MODELS"
_PROBE_TIMEOUT = 3.0

#: The catalog's depth ControlNet for each model family (``controlnet="auto"``).
DEPTH_CONTROLNETS = {"sdxl": "controlnet-depth-sdxl", "sd1": "controlnet-depth-sd15"}


@dataclasses.dataclass(frozen=True)
class DepthModelName:
    """A depth model by name: local file names tried first, then a Hub file and its family."""

    files: tuple[str, ...]
    repo: str | None
    filename: str | None
    family: str | None


_SMALL = DepthModelName(
    ("midas_small.onnx", "MiDaS_small.onnx", "midas_v21_small_256.onnx"),
    "onnx-community/depth-anything-v2-small",
    "onnx/model.onnx",
    "depth_anything",
)
_LARGE = DepthModelName(
    ("dpt.onnx", "dpt_large.onnx", "DPT_Large.onnx", "dpt_large_384.onnx"), "Xenova/dpt-large", "onnx/model.onnx", "dpt"
)
_HYBRID = DepthModelName(("dpt_hybrid.onnx", "DPT_Hybrid.onnx", "dpt_hybrid_384.onnx"), None, None, None)
_ANYTHING = DepthModelName(
    ("depth_anything.onnx", "depth_anything_v2_vits.onnx"),
    "onnx-community/depth-anything-v2-small",
    "onnx/model.onnx",
    "depth_anything",
)

#: Depth model names (Glimpse3D's ``MiDaS_small``/``DPT_Large``/``DPT_Hybrid`` and gouache's
#: family names).  Without a local file, the small class is fetched as Depth Anything V2
#: Small (ONNX, Apache-2.0: the same size class as MiDaS v2.1 small, which the Hub does not
#: carry as ONNX) and the large class as DPT-Large.
DEPTH_MODEL_NAMES: dict[str, DepthModelName] = {
    "MiDaS_small": _SMALL,
    "midas_small": _SMALL,
    "DPT_Large": _LARGE,
    "dpt_large": _LARGE,
    "dpt": _LARGE,
    "DPT_Hybrid": _HYBRID,
    "dpt_hybrid": _HYBRID,
    "depth_anything": _ANYTHING,
    "depth-anything-v2-small": _ANYTHING,
}


def resolve_model(value: Any, field: str, kind: str) -> Path:
    """The file for an :class:`EnhanceConfig` model field (``kind``: a catalog kind,
    "checkpoint" or "controlnet")."""
    path = Path(value).expanduser()
    if path.is_file():
        return path
    name = str(value)
    if name not in RECIPES:
        raise InvalidInputError(
            f"{field} {name!r} is neither a file nor a catalog name;"
            f" give a path, or one of: {', '.join(sorted(RECIPES))}"
        )
    repo, filename = RECIPES[name]
    local = _in_model_dirs(filename, kind)
    if local is not None:
        return local
    looked = f"{base} in {MODEL_DIRS_ENV} folders {_shown(model_dirs())}" if (base := Path(filename).name) else ""
    return _from_hub(name, repo, filename, field, f"gouache pull {name}", looked)


def auto_controlnet(model_file: Path) -> str:
    """The catalog name of the depth ControlNet for ``model_file``'s family."""
    family = inspect_model(model_file).family.value
    base = "sdxl" if family.startswith("sdxl") else "sd1" if family.startswith("sd1") else None
    if base is None:
        raise InvalidInputError(
            f"no depth ControlNet in the catalog for {family} models like {model_file.name!r};"
            " set controlnet= (GOUACHE_ENHANCE_CONTROLNET) or use_controlnet=False"
        )
    return DEPTH_CONTROLNETS[base]


def resolve_depth_model(value: Any) -> tuple[Path, str | None]:
    """``(file, family)`` of a depth model given as a path or a name (``family`` None: tell
    it from the file)."""
    path = Path(value).expanduser()
    if path.is_file():
        return path, None
    name = str(value)
    entry = DEPTH_MODEL_NAMES.get(name)
    if entry is None:
        raise InvalidInputError(
            f"depth model {name!r} is neither an .onnx file nor a depth model name; names:"
            f" {', '.join(DEPTH_MODEL_NAMES)}"
        )
    tried = []
    folders = depth_model_dirs()
    for folder in folders:
        for file in entry.files:
            candidate = folder / file
            tried.append(candidate)
            if candidate.is_file():
                return candidate, None
    if entry.repo is None or entry.filename is None:
        raise InvalidInputError(
            f"depth model {name!r} not found (looked for {', '.join(str(t) for t in tried)}); put an ONNX export"
            f" there, or set {env_name('depth_model')} to its path"
        )
    command = f"gouache pull {entry.repo} {entry.filename}"
    looked = f"{', '.join(entry.files)} in {_shown(folders)}"
    return _from_hub(name, entry.repo, entry.filename, "depth model", command, looked), entry.family


def model_dirs() -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get(MODEL_DIRS_ENV, "").split(os.pathsep) if p]


def depth_model_dirs() -> list[Path]:
    dirs = [Path(p).expanduser() for p in os.environ.get(DEPTH_DIRS_ENV, "").split(os.pathsep) if p]
    cache = cache_root()
    return dirs + [d / sub for d in model_dirs() for sub in ("", "depth")] + [cache / "depth"]


def _in_model_dirs(filename: str, kind: str) -> Path | None:
    base = Path(filename).name
    folders = [name for name, k in MODEL_FOLDERS.items() if k == kind]
    for root in model_dirs():
        for sub in ["", *folders, *(f"models/{f}" for f in folders)]:
            candidate = root / sub / base
            if candidate.is_file():
                return candidate
    return None


def _shown(folders: list[Path]) -> str:
    return ", ".join(str(f) for f in folders) if folders else "(none set)"


def _from_hub(name: str, repo: str, filename: str, field: str, command: str, looked: str) -> Path:
    """The Hugging Face cache's copy, else a download where the Hub answers, else a one-line error."""
    env = env_name({"model": "model", "controlnet": "controlnet", "depth model": "depth_model"}.get(field, "model"))
    fix = f"run `{command}` where there is network (and copy the Hugging Face cache here), or set {env} to a file"
    try:
        return pull(repo, filename, local_files_only=True)
    except MissingDependencyError:
        raise MissingDependencyError(
            f"{field} {name!r} is not on this machine and fetching it needs huggingface_hub:"
            f' pip install "gouache[hub]"; or {fix}',
            name="huggingface_hub",
        ) from None
    except DownloadError:
        pass
    reason = _hub_unreachable()
    if reason is not None:
        raise DownloadError(
            f"{field} {name!r} ({filename} from {repo}) is not on this machine (looked for {looked},"
            f" and in the Hugging Face cache {hf_cache_dir()}) and {reason}; {fix}"
        )
    log.warning(
        "%s %r is not on this machine: downloading %s from %s (once; kept in the Hugging Face cache)",
        field,
        name,
        filename,
        repo,
    )
    try:
        return pull(repo, filename)
    except DownloadError as exc:
        raise DownloadError(f"{field} {name!r}: {exc}; or {fix}") from exc


def _hub_unreachable() -> str | None:
    """Why the Hugging Face Hub cannot be used now (offline mode, no connection), or None."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return "HF_HUB_OFFLINE=1 forbids fetching it"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT):
            return None
    except OSError as exc:
        return f"the Hugging Face Hub ({host}:{port}) cannot be reached ({type(exc).__name__})"
