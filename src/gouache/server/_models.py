"""The names a server offers: checkpoints, LoRAs, ControlNets, upscalers, VAEs.

Clients name models only by these names.  A name is looked up in the tables built from the
configured model directories; anything else (paths, ``..``, absolute names, names not
listed) is refused before any work, so a client can never make the server open a file
outside the configured directories.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Iterable
from pathlib import Path

import gouache as g

from ._config import ModelSpec, ServerConfig
from ._errors import ApiError
from ._gouache import MODEL_EXTENSIONS, InvalidInputError, engine_class, find_models

#: Upscalers that need no model file (A1111's names).
BUILTIN_UPSCALERS = {"None": "none", "Lanczos": "lanczos", "Nearest": "nearest"}
#: ControlNet preprocessors (sd-webui-controlnet "module" names) the server runs.
CONTROLNET_MODULES = ("none", "canny")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One named file: ``name`` as clients write it, ``path`` where it is."""

    name: str
    path: Path
    kind: str

    @property
    def filename(self) -> str:
        """The name with the file's extension (A1111's ``model_name.safetensors``)."""
        return self.name + self.path.suffix


@dataclasses.dataclass
class ModelMeta:
    """What the server knows about a checkpoint before and after loading it."""

    family: str
    engine: str | None  # None until known ("auto" is decided when the worker loads the model)
    defaults: object
    variant: str | None = None


def check_name(value: object, field: str) -> str:
    """``value`` if it can be a listed name; refuses paths, ``..`` and absolute names (400)."""
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{field}: a model name is required (one of the names the server lists)", field=field)
    text = value.strip()
    parts = text.replace("\\", "/").split("/")
    if (
        text.startswith(("/", "\\", "~"))
        or ".." in parts
        or "\0" in text
        or (len(text) > 1 and text[1] == ":")
        or len(text) > 512
    ):
        raise ApiError(
            400,
            f"{field}: {value!r} is not a model name: clients name models only by the names the"
            " server lists (GET /v1/models, /sdapi/v1/sd-models); paths, '..' and absolute names"
            " are refused",
            field=field,
        )
    return text


def legacy_hash(path: Path) -> str:
    """AUTOMATIC1111's short model hash: sha256 of 64 KiB at offset 1 MiB, first 8 hex digits."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(0x100000)
        h.update(f.read(0x10000))
    return h.hexdigest()[:8]


class Catalog:
    """Name -> file tables for one server, built from its configuration (``refresh()`` rescans)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._meta: dict[str, ModelMeta] = {}
        self._hashes: dict[Path, str] = {}
        self.checkpoints: dict[str, ModelSpec] = {}
        self.tables: dict[str, dict[str, Entry]] = {}
        self.default: str | None = None
        self.refresh()

    # -- scanning -------------------------------------------------------------------------

    def refresh(self) -> None:
        found: list[Entry] = []
        for folder in self.config.models_dirs:
            found.extend(_scan(Path(folder)))
        tables: dict[str, dict[str, Entry]] = {
            k: {} for k in ("checkpoint", "lora", "controlnet", "upscaler", "vae", "taesd", "embedding")
        }
        for e in found:
            if e.kind in tables:
                tables[e.kind].setdefault(e.name, e)
        checkpoints = {name: ModelSpec(model=e.path) for name, e in sorted(tables["checkpoint"].items())}
        checkpoints.update(self.config.models)
        default = self._default_name(checkpoints, tables)
        with self._lock:
            self.tables, self.checkpoints, self.default = tables, checkpoints, default

    def _default_name(self, checkpoints: dict[str, ModelSpec], tables: dict[str, dict[str, Entry]]) -> str | None:
        chosen = self.config.model
        if chosen is None:
            return next(iter(checkpoints), None)
        text = str(chosen)
        if text in checkpoints:
            return text
        path = Path(text).expanduser()
        if not path.is_file():
            raise InvalidInputError(
                f"--model {text!r} is neither a model file nor a name found in the models"
                f" directories; names: {', '.join(checkpoints) or 'none'}"
            )
        for name, spec in checkpoints.items():
            if spec.model is not None and Path(spec.model).resolve() == path.resolve():
                return name
        name = path.stem
        while name in checkpoints:
            name += "_"
        checkpoints[name] = ModelSpec(model=path)
        tables["checkpoint"][name] = Entry(name, path, "checkpoint")
        return name

    # -- lookups --------------------------------------------------------------------------

    def model_name(self, value: object, field: str = "model") -> str:
        """The listed checkpoint ``value`` names: its name, ``name.ext``, or A1111's title
        ``name.ext [hash]``; ``None``/empty means the default model."""
        if value is None or (isinstance(value, str) and not value.strip()):
            if self.default is None:
                raise ApiError(
                    400, f"{field}: no model is configured (start the server with --model or --models-dir)", field=field
                )
            return self.default
        text = check_name(value, field)
        if text in self.checkpoints:
            return text
        bare = text.rsplit(" [", 1)[0] if text.endswith("]") else text
        for name, spec in self.checkpoints.items():
            if bare in (name, name + spec.main_file.suffix):
                return name
        raise ApiError(400, f"{field}: unknown model {text!r}; allowed: {_listing(self.checkpoints)}", field=field)

    def spec(self, name: str) -> ModelSpec:
        return self.checkpoints[name]

    def title(self, name: str) -> str:
        spec = self.checkpoints[name]
        return f"{name}{spec.main_file.suffix} [{self.short_hash(name)}]"

    def short_hash(self, name: str) -> str:
        path = self.checkpoints[name].main_file
        if path not in self._hashes:
            self._hashes[path] = legacy_hash(path)
        return self._hashes[path]

    def entry(self, kind: str, value: object, field: str) -> Entry:
        """A listed LoRA/ControlNet/upscaler/VAE by name, ``name.ext``, basename (when unique)
        or A1111 title (``name [hash]``)."""
        text = check_name(value, field)
        table = self.tables.get(kind, {})
        bare = text.rsplit(" [", 1)[0].strip() if text.endswith("]") else text
        for candidate in (text, bare):
            if candidate in table:
                return table[candidate]
        for e in table.values():
            if bare == e.filename:
                return e
        base = [e for e in table.values() if e.name.rsplit("/", 1)[-1].lower() == bare.lower()]
        if len(base) == 1:
            return base[0]
        what = {"lora": "LoRA", "controlnet": "ControlNet model", "upscaler": "upscaler", "vae": "VAE"}.get(kind, kind)
        raise ApiError(400, f"{field}: unknown {what} {text!r}; allowed: {_listing(table)}", field=field)

    def names(self, kind: str) -> list[str]:
        return sorted(self.tables.get(kind, {}))

    # -- model facts ----------------------------------------------------------------------

    def meta(self, name: str) -> ModelMeta:
        with self._lock:
            if name in self._meta:
                return self._meta[name]
        spec = self.checkpoints[name]
        info = g.inspect(spec.main_file)
        engine = spec.engine or self.config.engine
        meta = ModelMeta(info.family.value, None if engine == "auto" else engine, info.defaults, info.variant)
        with self._lock:
            return self._meta.setdefault(name, meta)

    def learned_engine(self, name: str, engine: str) -> None:
        """The engine a worker chose when it loaded ``name`` (for "auto")."""
        self.meta(name).engine = engine

    def samplers(self, name: str | None) -> list[str]:
        """Engine sampler names valid for ``name`` (every engine's, until its engine is known)."""
        return _vocabulary(self._engines(name), "samplers")

    def schedulers(self, name: str | None) -> list[str]:
        return _vocabulary(self._engines(name), "schedulers")

    def _engines(self, name: str | None) -> list[str]:
        engine = self.meta(name).engine if name is not None else None
        return [engine] if engine else ["sdcpp", "torch"]

    def load_kwargs(self, name: str, controlnet: str | None) -> dict:
        """Keyword arguments of :class:`gouache.SDModel` for the worker that holds ``name``."""
        spec = self.checkpoints[name]
        kwargs: dict = {f: getattr(spec, f) for f in ModelSpec.FILE_FIELDS if getattr(spec, f) is not None}
        for f in ("vae", "taesd"):
            if f not in kwargs and getattr(self.config, f) is not None:
                kwargs[f] = getattr(self.config, f)
        if controlnet is not None:
            kwargs["control_net"] = self.tables["controlnet"][controlnet].path
        kwargs["engine"] = spec.engine or self.config.engine
        kwargs["threads"] = self.config.threads
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in kwargs.items()}


def _vocabulary(engines: Iterable[str], what: str) -> list[str]:
    names: list[str] = []
    for engine in engines:
        for n in getattr(engine_class(engine), what)():
            if n not in names:
                names.append(n)
    return names


def _listing(table: dict) -> str:
    names = sorted(table)
    if not names:
        return "none are configured"
    shown = ", ".join(names[:30])
    return shown + (f" ... ({len(names)} in all)" if len(names) > 30 else "")


def _scan(folder: Path) -> list[Entry]:
    """Entries under a ComfyUI/A1111 folder, or a plain folder of checkpoints."""
    try:
        return [Entry(e.name, e.path, e.kind) for e in find_models(folder)]
    except InvalidInputError:
        pass
    out = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in MODEL_EXTENSIONS and not path.name.startswith("."):
            rel = path.relative_to(folder).as_posix()
            out.append(Entry(rel[: -len(path.suffix)], path, "checkpoint"))
    return out
