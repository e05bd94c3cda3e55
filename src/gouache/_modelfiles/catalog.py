"""Model directories (ComfyUI and AUTOMATIC1111 layouts), LoRA name lookup, Hugging Face downloads."""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import GouacheError, InvalidInputError, MissingDependencyError
from .folders import is_diffusers_folder

__all__ = [
    "MODEL_EXTENSIONS",
    "MODEL_KINDS",
    "MODEL_RECIPES",
    "RECIPES",
    "DownloadError",
    "ModelEntry",
    "find_models",
    "pull",
    "pull_model",
    "resolve_lora",
]

log = logging.getLogger("gouache.catalog")

#: File extensions counted as model weights, in the order :func:`resolve_lora` prefers them.
MODEL_EXTENSIONS: tuple[str, ...] = (".safetensors", ".gguf", ".ckpt", ".pt", ".pth", ".bin")

#: Kinds a :class:`ModelEntry` can have.
MODEL_KINDS: tuple[str, ...] = (
    "checkpoint",
    "diffusion_model",
    "vae",
    "taesd",
    "lora",
    "controlnet",
    "upscaler",
    "text_encoder",
    "embedding",
    "photomaker",
)

# Folder (relative to the ``models`` directory) -> kind.  ComfyUI first, then AUTOMATIC1111.
_MODEL_FOLDERS: dict[str, str] = {
    "checkpoints": "checkpoint",
    "diffusers": "checkpoint",
    "diffusion_models": "diffusion_model",
    "unet": "diffusion_model",
    "vae": "vae",
    "vae_approx": "taesd",
    "loras": "lora",
    "controlnet": "controlnet",
    "upscale_models": "upscaler",
    "text_encoders": "text_encoder",
    "clip": "text_encoder",
    "embeddings": "embedding",
    "photomaker": "photomaker",
    "Stable-diffusion": "checkpoint",
    "Lora": "lora",
    "LyCORIS": "lora",
    "VAE": "vae",
    "VAE-approx": "taesd",
    "ControlNet": "controlnet",
    "ESRGAN": "upscaler",
    "RealESRGAN": "upscaler",
}
# Folders next to ``models`` (AUTOMATIC1111 keeps textual inversions in ``<webui>/embeddings``).
_ROOT_FOLDERS: dict[str, str] = {"embeddings": "embedding"}

#: Well-known single-file models :func:`pull` accepts by name: ``name -> (repo_id, filename)``.
RECIPES: dict[str, tuple[str, str]] = {
    "sd15": ("stable-diffusion-v1-5/stable-diffusion-v1-5", "v1-5-pruned-emaonly.safetensors"),
    "sd-turbo": ("stabilityai/sd-turbo", "sd_turbo.safetensors"),
    "sdxl": ("stabilityai/stable-diffusion-xl-base-1.0", "sd_xl_base_1.0.safetensors"),
    "sdxl-turbo": ("stabilityai/sdxl-turbo", "sd_xl_turbo_1.0_fp16.safetensors"),
    "sdxl-vae": ("madebyollin/sdxl-vae-fp16-fix", "sdxl_vae.safetensors"),
    "taesd": ("madebyollin/taesd", "diffusion_pytorch_model.safetensors"),
    "taesdxl": ("madebyollin/taesdxl", "diffusion_pytorch_model.safetensors"),
    "lcm-lora-sd15": ("latent-consistency/lcm-lora-sdv1-5", "pytorch_lora_weights.safetensors"),
    "controlnet-canny-sd15": (
        "comfyanonymous/ControlNet-v1-1_fp16_safetensors",
        "control_v11p_sd15_canny_fp16.safetensors",
    ),
    "realesrgan-x4": ("lllyasviel/Annotators", "RealESRGAN_x4plus.pth"),
    "instruct-pix2pix": ("timbrooks/instruct-pix2pix", "instruct-pix2pix-00-22000.safetensors"),
    # gouache.enhance: few-step SDXL (full checkpoint, or base SDXL + LoRA) and a depth ControlNet
    "sdxl-lightning-4step": ("ByteDance/SDXL-Lightning", "sdxl_lightning_4step.safetensors"),
    "sdxl-lightning-4step-lora": ("ByteDance/SDXL-Lightning", "sdxl_lightning_4step_lora.safetensors"),
    # UNet only (diffusers layout): gouache.assemble_checkpoint(sdxl base, this, out) makes one file
    "sdxl-lightning-4step-unet": ("ByteDance/SDXL-Lightning", "sdxl_lightning_4step_unet.safetensors"),
    "controlnet-depth-sdxl": ("diffusers/controlnet-depth-sdxl-1.0", "diffusion_pytorch_model.fp16.safetensors"),
    "controlnet-depth-sd15": (
        "comfyanonymous/ControlNet-v1-1_fp16_safetensors",
        "control_v11f1p_sd15_depth_fp16.safetensors",
    ),
    # Parts of the families that ship in parts (see MODEL_RECIPES), from stable-diffusion.cpp's
    # docs (docs/<family>.md) and the Comfy-Org repackagings they point to.
    "flux-ae": ("black-forest-labs/FLUX.1-schnell", "ae.safetensors"),
    "clip-l": ("comfyanonymous/flux_text_encoders", "clip_l.safetensors"),
    "t5xxl": ("comfyanonymous/flux_text_encoders", "t5xxl_fp16.safetensors"),
    "sd3-clip-l": ("Comfy-Org/stable-diffusion-3.5-fp8", "text_encoders/clip_l.safetensors"),
    "sd3-clip-g": ("Comfy-Org/stable-diffusion-3.5-fp8", "text_encoders/clip_g.safetensors"),
    "sd3-t5xxl": ("Comfy-Org/stable-diffusion-3.5-fp8", "text_encoders/t5xxl_fp16.safetensors"),
    "sd3.5-medium-dm": ("stabilityai/stable-diffusion-3.5-medium", "sd3.5_medium.safetensors"),  # gated
    "sd3.5-large-dm": ("stabilityai/stable-diffusion-3.5-large", "sd3.5_large.safetensors"),  # gated
    "flux-kontext-dm": ("black-forest-labs/FLUX.1-Kontext-dev", "flux1-kontext-dev.safetensors"),  # gated
    "chroma-dm": ("lodestones/Chroma1-HD", "Chroma1-HD.safetensors"),
    "z-image-turbo-dm": ("Comfy-Org/z_image_turbo", "split_files/diffusion_models/z_image_turbo_bf16.safetensors"),
    "qwen3-4b": ("Comfy-Org/z_image_turbo", "split_files/text_encoders/qwen_3_4b.safetensors"),
    "qwen-image-dm": ("Comfy-Org/Qwen-Image_ComfyUI", "split_files/diffusion_models/qwen_image_fp8_e4m3fn.safetensors"),
    "qwen-image-edit-dm": (
        "Comfy-Org/Qwen-Image-Edit_ComfyUI",
        "split_files/diffusion_models/qwen_image_edit_2509_fp8_e4m3fn.safetensors",
    ),
    "qwen-image-vae": ("Comfy-Org/Qwen-Image_ComfyUI", "split_files/vae/qwen_image_vae.safetensors"),
    "qwen2.5-vl-7b": ("Comfy-Org/Qwen-Image_ComfyUI", "split_files/text_encoders/qwen_2.5_vl_7b.safetensors"),
    "flux2-klein-4b-dm": ("black-forest-labs/FLUX.2-klein-4B", "flux-2-klein-4b.safetensors"),
    "flux2-klein-qwen3-4b": ("Comfy-Org/flux2-klein-4B", "split_files/text_encoders/qwen_3_4b.safetensors"),
    "flux2-vae": ("Comfy-Org/flux2-dev", "split_files/vae/flux2-vae.safetensors"),
    "wan2.2-ti2v-5b-dm": (
        "Comfy-Org/Wan_2.2_ComfyUI_Repackaged",
        "split_files/diffusion_models/wan2.2_ti2v_5B_fp16.safetensors",
    ),
    "wan2.2-vae": ("Comfy-Org/Wan_2.2_ComfyUI_Repackaged", "split_files/vae/wan2.2_vae.safetensors"),
    "umt5-xxl": ("Comfy-Org/Wan_2.1_ComfyUI_repackaged", "split_files/text_encoders/umt5_xxl_fp16.safetensors"),
}

#: Models that ship in parts: ``name -> {SDModel keyword: recipe}``;
#: ``SDModel(**pull_model("z-image-turbo"))`` / ``gouache pull z-image-turbo`` fetch every part.
MODEL_RECIPES: dict[str, dict[str, str]] = {
    "sd3.5-medium": {
        "diffusion_model": "sd3.5-medium-dm",
        "clip_l": "sd3-clip-l",
        "clip_g": "sd3-clip-g",
        "t5xxl": "sd3-t5xxl",
    },
    "sd3.5-large": {
        "diffusion_model": "sd3.5-large-dm",
        "clip_l": "sd3-clip-l",
        "clip_g": "sd3-clip-g",
        "t5xxl": "sd3-t5xxl",
    },
    "flux-kontext": {"diffusion_model": "flux-kontext-dm", "vae": "flux-ae", "clip_l": "clip-l", "t5xxl": "t5xxl"},
    "chroma": {"diffusion_model": "chroma-dm", "vae": "flux-ae", "t5xxl": "t5xxl"},
    "z-image-turbo": {"diffusion_model": "z-image-turbo-dm", "vae": "flux-ae", "llm": "qwen3-4b"},
    "qwen-image": {"diffusion_model": "qwen-image-dm", "vae": "qwen-image-vae", "llm": "qwen2.5-vl-7b"},
    "qwen-image-edit": {"diffusion_model": "qwen-image-edit-dm", "vae": "qwen-image-vae", "llm": "qwen2.5-vl-7b"},
    "flux2-klein-4b": {"diffusion_model": "flux2-klein-4b-dm", "vae": "flux2-vae", "llm": "flux2-klein-qwen3-4b"},
    "wan2.2-ti2v-5b": {"diffusion_model": "wan2.2-ti2v-5b-dm", "vae": "wan2.2-vae", "t5xxl": "umt5-xxl"},
}


class DownloadError(GouacheError):
    """A model file could not be downloaded (offline, unreachable hub, missing repo or file)."""


@dataclass(frozen=True)
class ModelEntry:
    """One model file found by :func:`find_models`.

    ``name`` is the path relative to its kind's folder, without extension and with
    forward slashes (``"styles/ink"``): the name ``<lora:styles/ink:0.8>`` refers to.
    """

    kind: str
    name: str
    path: Path
    size_bytes: int


# -- find_models ---------------------------------------------------------------------------


def find_models(root: str | os.PathLike[str]) -> list[ModelEntry]:
    """Every model file under a ComfyUI or AUTOMATIC1111 installation, sorted by ``(kind, name)``.

    ``root`` is the installation folder or its ``models/`` folder.  Known folders:
    ComfyUI ``checkpoints``, ``diffusion_models``, ``unet``, ``vae``, ``vae_approx``
    (TAESD), ``loras``, ``controlnet``, ``upscale_models``, ``text_encoders``, ``clip``,
    ``embeddings``, ``photomaker``; AUTOMATIC1111 ``Stable-diffusion``, ``Lora``,
    ``LyCORIS``, ``VAE``, ``VAE-approx``, ``ControlNet``, ``ESRGAN``, ``RealESRGAN`` and
    ``<webui>/embeddings``; diffusers folders (``model_index.json`` inside) in the checkpoint
    folders and ComfyUI's ``diffusers`` are listed as checkpoints.  Files count when their extension is one of
    :data:`MODEL_EXTENSIONS`; hidden files and folders are skipped and a file reached
    twice (symlinks, case-insensitive file systems) is listed once.

    Raises :class:`gouache.InvalidInputError` when ``root`` is not a directory or holds
    none of those folders.
    """
    folders = _kind_folders(Path(root).expanduser())
    entries: list[ModelEntry] = []
    seen: set[tuple[int, int]] = set()
    for folder, kind in folders:
        for path, rel in _walk_models(folder, folders=kind == "checkpoint"):
            key = _file_key(path)
            if key is None or key in seen:
                continue
            seen.add(key)
            entries.append(ModelEntry(kind, _model_name(rel), path, _size(path)))
    entries.sort(key=lambda e: (e.kind, e.name, str(e.path)))
    return entries


def _kind_folders(root: Path) -> list[tuple[Path, str]]:
    """The ``(folder, kind)`` pairs present under an installation or ``models`` folder."""
    if not root.is_dir():
        raise InvalidInputError(f"model root {str(root)!r} is not a directory")
    models = root / "models"
    outer: Path | None
    if models.is_dir() and _present(models, _MODEL_FOLDERS):
        base, outer = models, root
    elif _present(root, _MODEL_FOLDERS):
        base, outer = root, (root.parent if root.name.lower() == "models" else None)
    else:
        expected = ", ".join(sorted(_MODEL_FOLDERS, key=str.lower))
        raise InvalidInputError(
            f"{str(root)!r} is neither a ComfyUI/AUTOMATIC1111 folder nor its models/ folder: "
            f"found none of the model folders ({expected}) in it or in its models/ subfolder"
        )
    found = _present(base, _MODEL_FOLDERS)
    if outer is not None:
        found += _present(outer, _ROOT_FOLDERS)
    return found


def _present(base: Path, table: dict[str, str]) -> list[tuple[Path, str]]:
    return [(base / name, kind) for name, kind in table.items() if (base / name).is_dir()]


def _size(path: Path) -> int:
    if path.is_dir():  # a diffusers folder
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _walk_models(folder: Path, *, folders: bool = False) -> Iterator[tuple[Path, str]]:
    """``(path, relative path with forward slashes)`` for every model file under ``folder``
    (with ``folders``, also each diffusers folder, as one model).

    Follows symlinked folders (each real folder once), skips hidden entries, sorted.
    """
    visited: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        key = _file_key(Path(dirpath))
        if key is None or key in visited:
            dirnames[:] = []
            continue
        visited.add(key)
        if folders and is_diffusers_folder(dirpath) and Path(dirpath) != folder:
            dirnames[:] = []
            yield Path(dirpath), Path(dirpath).relative_to(folder).as_posix()
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not name.lower().endswith(MODEL_EXTENSIONS):
                continue
            path = Path(dirpath) / name
            if path.is_file():
                yield path, path.relative_to(folder).as_posix()


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _strip_extension(name: str) -> str:
    lower = name.lower()
    for ext in MODEL_EXTENSIONS:
        if lower.endswith(ext):
            return name[: -len(ext)]
    return name


def _model_name(rel: str) -> str:
    return _strip_extension(rel)


# -- resolve_lora ---------------------------------------------------------------------------


def resolve_lora(name: str, lora_dir: str | os.PathLike[str]) -> Path:
    """The file a LoRA name (as in ``<lora:name:0.8>``) refers to inside ``lora_dir``.

    Tried in order: the exact relative path (``"styles/ink"`` or ``"styles/ink.safetensors"``)
    with each extension of :data:`MODEL_EXTENSIONS` (``.safetensors`` first); the relative
    path ignoring case; then the base name ignoring case anywhere below ``lora_dir``, which
    must be unique.  Names that would leave ``lora_dir`` (``..``, absolute paths) are refused.

    Raises :class:`gouache.InvalidInputError` when nothing or several files match, listing
    the closest candidates.
    """
    key = _check_lora_name(name)
    folder = Path(lora_dir).expanduser()
    if not folder.is_dir():
        raise InvalidInputError(f"LoRA directory {str(folder)!r} is not a directory")
    exact = _exact_lora(folder, key)
    if exact is not None:
        return exact
    by_name = _lora_index(folder)
    matches = [n for n in by_name if n.lower() == key.lower()]
    if not matches:
        base = key.rsplit("/", 1)[-1].lower()
        matches = [n for n in by_name if n.rsplit("/", 1)[-1].lower() == base]
    if len(matches) == 1:
        return by_name[matches[0]]
    if matches:
        raise InvalidInputError(
            f"LoRA name {name!r} is ambiguous in {str(folder)!r}: it matches "
            f"{', '.join(sorted(matches))}; use the relative path"
        )
    raise InvalidInputError(_missing_lora_message(name, key, folder, list(by_name)))


def _check_lora_name(name: Any) -> str:
    """``name`` with forward slashes and without a model extension; refuses escapes."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"LoRA name must be a non-empty string, got {name!r}")
    key = name.strip().replace("\\", "/")
    parts = key.split("/")
    if key.startswith("/") or ".." in parts or (len(parts[0]) == 2 and parts[0][1] == ":"):
        raise InvalidInputError(f"LoRA name {name!r} must be a path relative to the LoRA directory, without '..'")
    return _strip_extension(key)


def _exact_lora(folder: Path, key: str) -> Path | None:
    for ext in MODEL_EXTENSIONS:
        candidate = folder / (key + ext)
        if candidate.is_file():
            return candidate
    return None


def _lora_index(folder: Path) -> dict[str, Path]:
    """Model name -> file, keeping the preferred extension when a name has several."""
    index: dict[str, Path] = {}
    rank = {ext: i for i, ext in enumerate(MODEL_EXTENSIONS)}
    for path, rel in _walk_models(folder):
        name = _model_name(rel)
        old = index.get(name)
        if old is None or rank[path.suffix.lower()] < rank[old.suffix.lower()]:
            index[name] = path
    return index


def _missing_lora_message(name: str, key: str, folder: Path, names: list[str]) -> str:
    lowered = {n.lower(): n for n in names}
    lowered.update({n.rsplit("/", 1)[-1].lower(): n for n in names})
    close = difflib.get_close_matches(key.lower(), list(lowered), n=5, cutoff=0.5)
    hint = f"; closest: {', '.join(dict.fromkeys(lowered[c] for c in close))}" if close else ""
    if not names:
        hint = "; the directory holds no LoRA files"
    return f"no LoRA named {name!r} in {str(folder)!r} (looked for {', '.join(MODEL_EXTENSIONS)} files){hint}"


# -- pull -------------------------------------------------------------------------------------


def pull(
    repo_id: str,
    filename: str | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> Path:
    """Download one file from the Hugging Face Hub (or find it in the local cache) and return its path.

    ``repo_id`` is ``"owner/name"`` or a name from :data:`RECIPES` (``pull("sd15")``); with
    a recipe, ``filename`` overrides the recipe's file.  Without ``filename`` the repo's
    files are listed and its weight file is taken when that choice is unique (top-level
    files first); otherwise :class:`gouache.InvalidInputError` lists the candidates.

    Uses ``huggingface_hub`` (``pip install "gouache[hub]"``) and its cache
    (``cache_dir``, else ``HF_HUB_CACHE`` / ``HF_HOME``).  With ``HF_HUB_OFFLINE=1`` or
    ``local_files_only=True`` only the cache is consulted and no connection is attempted.

    Raises :class:`DownloadError` when the file is neither cached nor downloadable
    (offline machine, unreachable hub, unknown repo, file or revision, gated repo).
    """
    repo, fname = _resolve_target(repo_id, filename)
    hub = _import_hub()
    cache = _cache_dir(hub, cache_dir)
    offline = _offline(hub) or local_files_only
    if fname is None:
        fname = _pick_weight_file(repo, _list_repo_files(hub, repo, revision, cache, token, offline))
    try:
        local = hub.hf_hub_download(
            repo, fname, revision=revision, cache_dir=str(cache), token=token, local_files_only=offline
        )
    except Exception as exc:
        raise _download_error(exc, repo, fname, revision, cache, offline) from exc
    log.debug("pulled %s/%s -> %s", repo, fname, local)
    return Path(local)


def pull_model(
    name: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
) -> dict[str, Path]:
    """Download every part of a model that ships in parts (a name from :data:`MODEL_RECIPES`)
    and return them as :class:`gouache.SDModel` keywords: ``SDModel(**pull_model("chroma"))``.
    Parts already cached are not downloaded again; the first part that fails raises
    :class:`DownloadError` (parts downloaded before it stay in the cache)."""
    if name not in MODEL_RECIPES:
        close = difflib.get_close_matches(str(name), list(MODEL_RECIPES), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise InvalidInputError(
            f"unknown model recipe {name!r}{hint}; models in parts: {', '.join(sorted(MODEL_RECIPES))}"
        )
    return {
        keyword: pull(recipe, revision=revision, cache_dir=cache_dir, token=token)
        for keyword, recipe in MODEL_RECIPES[name].items()
    }


def _resolve_target(repo_id: Any, filename: Any) -> tuple[str, str | None]:
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise InvalidInputError(f"repo_id must be 'owner/name' or a recipe name, got {repo_id!r}")
    if filename is not None and (not isinstance(filename, str) or not filename.strip()):
        raise InvalidInputError(f"filename must be a non-empty string or None, got {filename!r}")
    if repo_id in RECIPES:
        repo, recipe_file = RECIPES[repo_id]
        return repo, filename or recipe_file
    if "/" not in repo_id:
        close = difflib.get_close_matches(repo_id, [*RECIPES, *MODEL_RECIPES], n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise InvalidInputError(
            f"unknown recipe {repo_id!r}{hint}; recipes: {', '.join(sorted(RECIPES))}; models in parts:"
            f" {', '.join(sorted(MODEL_RECIPES))}; "
            "or pass a Hugging Face repo id 'owner/name'"
        )
    return repo_id, filename


def _import_hub() -> Any:
    try:
        import huggingface_hub
        import huggingface_hub.constants  # noqa: F401 - not an attribute of the package until imported (hub 1.x)
    except ImportError:
        raise MissingDependencyError(
            'downloading models needs huggingface_hub; install it with: pip install "gouache[hub]"',
            name="huggingface_hub",
        ) from None
    return huggingface_hub


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _offline(hub: Any) -> bool:
    """Offline mode, read at call time (huggingface_hub reads ``HF_HUB_OFFLINE`` once, at import)."""
    constants = getattr(hub, "constants", None)
    return _env_true("HF_HUB_OFFLINE") or bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _cache_dir(hub: Any, cache_dir: str | os.PathLike[str] | None) -> Path:
    """``cache_dir``, else ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else huggingface_hub's default."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(hub.constants.HF_HUB_CACHE)


def _list_repo_files(
    hub: Any, repo: str, revision: str | None, cache: Path, token: str | bool | None, offline: bool
) -> list[str]:
    if offline:
        files = _cached_repo_files(cache, repo, revision)
        if files is None:
            raise DownloadError(
                f"cannot list the files of {repo}: this machine is offline (HF_HUB_OFFLINE=1) and the "
                f"repo is not in the Hugging Face cache {str(cache)!r}; pass filename=, or download it "
                "where there is network and copy that cache folder here"
            )
        return files
    try:
        return list(hub.HfApi().list_repo_files(repo, revision=revision, token=token))
    except Exception as exc:
        raise _download_error(exc, repo, None, revision, cache, offline) from exc


def _cached_repo_files(cache: Path, repo: str, revision: str | None) -> list[str] | None:
    """Files of a cached snapshot (``models--owner--name/snapshots/<commit>``), or None."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    ref = repo_dir / "refs" / (revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else (revision or "")
    snapshot = repo_dir / "snapshots" / commit
    if not commit or not snapshot.is_dir():
        return None
    return sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())


def _pick_weight_file(repo: str, files: list[str]) -> str:
    weights = [f for f in files if f.lower().endswith(MODEL_EXTENSIONS)]
    top = [f for f in weights if "/" not in f]
    for group in (top, weights):
        if len(group) == 1:
            return group[0]
    if not weights:
        raise InvalidInputError(
            f"repo {repo} has no weight file ({', '.join(MODEL_EXTENSIONS)}); files: {', '.join(files) or 'none'}"
        )
    shown = ", ".join((top or weights)[:20]) + (" ..." if len(top or weights) > 20 else "")
    raise InvalidInputError(f"repo {repo} has several weight files; pass filename= one of: {shown}")


def _download_error(
    exc: BaseException, repo: str, fname: str | None, revision: str | None, cache: Path, offline: bool
) -> GouacheError:
    """A one-line :class:`DownloadError` (or InvalidInputError for a malformed repo id) for ``exc``."""
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    what = f"{fname} from {repo}" if fname else repo
    fix = (
        f"download it where there is network (gouache.pull, or `hf download {repo}"
        f"{' ' + fname if fname else ''}`) and copy the cache folder {str(cache)!r} here, "
        "or copy the file itself and pass its path"
    )
    if "HFValidationError" in kinds:
        return InvalidInputError(f"invalid Hugging Face repo id or revision for {what}: {exc}")
    if "GatedRepoError" in kinds:
        return DownloadError(f"{repo} is gated: accept its terms on huggingface.co and pass token= (or log in)")
    if "RepositoryNotFoundError" in kinds:
        return DownloadError(f"repository {repo} not found on the Hugging Face Hub (or private: pass token=)")
    if "RevisionNotFoundError" in kinds:
        return DownloadError(f"revision {revision!r} not found in {repo} on the Hugging Face Hub")
    remote_missing = "EntryNotFoundError" in kinds and "LocalEntryNotFoundError" not in kinds
    if "RemoteEntryNotFoundError" in kinds or remote_missing:
        return DownloadError(f"file {fname!r} not found in {repo} on the Hugging Face Hub")
    if offline or "OfflineModeIsEnabled" in kinds:
        return DownloadError(
            f"cannot get {what}: this machine is offline (HF_HUB_OFFLINE=1) and it is not in the "
            f"Hugging Face cache {str(cache)!r}; {fix}"
        )
    return DownloadError(
        f"cannot get {what}: the Hugging Face Hub could not be reached ({type(exc).__name__}) and it is "
        f"not in the cache {str(cache)!r}; check the network, or {fix} and set HF_HUB_OFFLINE=1"
    )
