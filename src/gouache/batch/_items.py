"""What one batch item is: the fields of a generation or an enhancement row, and their checks.

The one table of item fields: each field's type (``_FIELDS``) drives reading manifests
(JSONL values, CSV text), checking rows and lowering them to :meth:`gouache.SDModel.generate`
or :meth:`gouache.enhance.EnhanceService.enhance` keywords.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from gouache import InvalidInputError

# Ids name output files: letters, digits, '.', '_', '-', and '/' between non-empty parts;
# no part starts with '.' (no hidden files, no '..').
_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")
MAX_ID = 200

# type tags: str, path, int, float, loras, matrix4, matrix3
_GENERATE_FIELDS: dict[str, str] = {
    "id": "str",
    "prompt": "str",
    "negative_prompt": "str",
    "width": "int",
    "height": "int",
    "steps": "int",
    "cfg_scale": "float",
    "sampler": "str",
    "scheduler": "str",
    "seed": "int",
    "clip_skip": "int",
    "init_image": "path",
    "mask": "path",
    "strength": "float",
    "control_image": "path",
    "control_strength": "float",
    "eta": "float",
    "loras": "loras",
}

_ENHANCE_FIELDS: dict[str, str] = {
    "id": "str",
    "scene": "str",
    "image": "path",
    "depth": "path",
    "mask": "path",
    "pose": "matrix4",
    "intrinsics": "matrix3",
    "prompt": "str",
    "negative_prompt": "str",
    "subject": "str",
    "seed": "int",
    "strength": "float",
    "controlnet_scale": "float",
    "color_reference": "path",
}

# Other spellings accepted in manifests (column -> field).
ALIASES = {
    "view": "image",
    "depth_map": "depth",
    "camera_to_world": "pose",
    "K": "intrinsics",
    "negative": "negative_prompt",
}

# Fields that belong to the whole scene: every view of a scene that sets one must agree.
SCENE_FIELDS = ("seed", "color_reference")


@dataclasses.dataclass(frozen=True)
class GenerateItem:
    """One image to generate: a prompt and any :meth:`gouache.SDModel.generate` setting that a
    manifest row can carry (``None`` = the job's default, then the model family's).

    ``id`` names the output file (``<output_dir>/<id>.png``); ``loras`` is a tuple of
    ``(path_or_name, weight)``; image fields are file paths.
    """

    id: str
    prompt: str
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    scheduler: str | None = None
    seed: int | None = None
    clip_skip: int | None = None
    init_image: str | None = None
    mask: str | None = None
    strength: float | None = None
    control_image: str | None = None
    control_strength: float | None = None
    eta: float | None = None
    loras: tuple[tuple[str, float], ...] | None = None

    kind = "generate"

    def generate_kwargs(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """Keywords for ``SDModel.generate`` (besides prompt and seed): the item's values over the job's defaults."""
        out = {k: v for k, v in defaults.items() if v is not None}
        for name in _GENERATE_FIELDS:
            if name in ("id", "prompt", "seed"):
                continue
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if "loras" in out:
            out["loras"] = [tuple(x) for x in out["loras"]]
        return out


@dataclasses.dataclass(frozen=True)
class EnhanceItem:
    """One rendered view to enhance.  ``scene`` groups views (same seed, same colour
    reference, depth maps aligned together, all on one worker); ``None`` = a scene of its
    own.  ``pose``: 4x4 camera-to-world; ``intrinsics``: 3x3 ``K``; ``depth``/``mask``/
    ``color_reference``: file paths (``.npy`` depth maps too).
    """

    id: str
    image: str
    scene: str | None = None
    depth: str | None = None
    mask: str | None = None
    pose: tuple[tuple[float, ...], ...] | None = None
    intrinsics: tuple[tuple[float, ...], ...] | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    subject: str | None = None
    seed: int | None = None
    strength: float | None = None
    controlnet_scale: float | None = None
    color_reference: str | None = None

    kind = "enhance"


def fields_of(kind: str) -> dict[str, str]:
    if kind == "generate":
        return _GENERATE_FIELDS
    if kind == "enhance":
        return _ENHANCE_FIELDS
    raise InvalidInputError(f"unknown batch kind {kind!r}; allowed: generate, enhance")


def item_class(kind: str) -> type:
    fields_of(kind)
    return GenerateItem if kind == "generate" else EnhanceItem


def check_id(value: Any, what: str) -> str:
    """An id usable as a relative file name (see ``_ID``)."""
    if not isinstance(value, str) or not _ID.match(value) or len(value) > MAX_ID:
        raise InvalidInputError(
            f"{what} {value!r} is not a valid id: use letters, digits, '.', '_', '-' and '/' between parts"
            f" (no part starting with '.', at most {MAX_ID} characters)"
        )
    return value


def convert(kind_tag: str, value: Any, what: str) -> Any:
    """A manifest value (JSON value or CSV text) as the field's type; ``None``/"" stay ``None``."""
    if value is None or (isinstance(value, str) and value.strip() == "" and kind_tag != "str"):
        return None
    try:
        return _CONVERTERS[kind_tag](value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what}: {exc}") from None


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be text; got {value!r}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError(f"must be an integer; got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise TypeError(f"must be an integer; got {value!r}")


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError(f"must be a number; got {value!r}")
    try:
        f = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise TypeError(f"must be a number; got {value!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"must be a finite number; got {value!r}")
    return f


def _loras(value: Any) -> tuple[tuple[str, float], ...]:
    """JSON: ``[["a.safetensors", 0.8], "b"]`` or ``{"a": 0.8}``; CSV: ``a.safetensors:0.8;b``."""
    if isinstance(value, dict):
        value = list(value.items())
    if isinstance(value, str):
        value = [v for v in (p.strip() for p in value.split(";")) if v]
    if not isinstance(value, list):
        raise TypeError(
            f"loras must be a list of [name, weight], a {{name: weight}} object or 'name:weight;...'; got {value!r}"
        )
    out = []
    for entry in value:
        if isinstance(entry, str):
            name, sep, weight = entry.rpartition(":")
            try:
                out.append((name, float(weight)) if sep and name else (entry, 1.0))
            except ValueError:
                out.append((entry, 1.0))
        elif isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str):
            out.append((entry[0], _float(entry[1])))
        else:
            raise TypeError(f"a LoRA entry must be 'name[:weight]' or [name, weight]; got {entry!r}")
    return tuple(out)


def _matrix(n: int):
    def convert_matrix(value: Any) -> tuple[tuple[float, ...], ...]:
        """``n x n`` numbers: nested lists, a flat list, or (CSV) text of n*n numbers or JSON."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                value = json.loads(text)
            else:
                value = text.replace(",", " ").split()
        flat: list[Any]
        if isinstance(value, (list, tuple)) and value and all(isinstance(r, (list, tuple)) for r in value):
            if len(value) != n or any(len(r) != n for r in value):
                raise ValueError(f"must be a {n}x{n} matrix; got {len(value)} rows")
            flat = [x for r in value for x in r]
        elif isinstance(value, (list, tuple)):
            flat = list(value)
        else:
            raise TypeError(f"must be a {n}x{n} matrix (nested lists or {n * n} numbers); got {value!r}")
        if len(flat) != n * n:
            raise ValueError(f"must have {n * n} numbers ({n}x{n}); got {len(flat)}")
        nums = [_float(x) for x in flat]
        return tuple(tuple(nums[r * n : (r + 1) * n]) for r in range(n))

    return convert_matrix


_CONVERTERS = {
    "str": _str,
    "path": _str,
    "int": _int,
    "float": _float,
    "loras": _loras,
    "matrix4": _matrix(4),
    "matrix3": _matrix(3),
}


def make_item(kind: str, row: dict[str, Any], *, where: str, resolve_path=None) -> GenerateItem | EnhanceItem:
    """Check one manifest row and build its item.  ``where`` names the row in errors
    ("manifest.jsonl line 3"); ``resolve_path`` makes relative file paths absolute."""
    table = fields_of(kind)
    values: dict[str, Any] = {}
    for key, raw in row.items():
        name = ALIASES.get(key, key)
        if name not in table:
            raise InvalidInputError(
                f"{where}: unknown field {key!r} for a {kind} item; allowed: {', '.join(sorted(table))}"
            )
        if name in values:
            raise InvalidInputError(f"{where}: field {name!r} is given twice (as {key!r} too)")
        value = convert(table[name], raw, f"{where}: field {key!r}")
        if value is not None and table[name] == "path" and resolve_path is not None:
            value = resolve_path(value)
        values[name] = value
    values = {k: v for k, v in values.items() if v is not None}
    if kind == "generate" and "prompt" not in values:
        raise InvalidInputError(f"{where}: a generate item needs a 'prompt'")
    if kind == "enhance" and "image" not in values:
        raise InvalidInputError(f"{where}: an enhance item needs an 'image' (the rendered view)")
    if "id" not in values:
        raise InvalidInputError(f"{where}: missing 'id'")
    check_id(values["id"], f"{where}: id")
    if values.get("scene") is not None:
        check_id(values["scene"], f"{where}: scene")
    return item_class(kind)(**values)


def check_defaults(defaults: dict[str, Any]) -> dict[str, Any]:
    """Job-wide generation defaults: any generate field but id, prompt and seed."""
    out = {}
    for key, value in defaults.items():
        if key in ("id", "prompt", "seed") or key not in _GENERATE_FIELDS:
            allowed = ", ".join(sorted(set(_GENERATE_FIELDS) - {"id", "prompt", "seed"}))
            raise InvalidInputError(f"unknown generation default {key!r}; allowed: {allowed}")
        out[key] = convert(_GENERATE_FIELDS[key], value, f"default {key!r}")
    return out


def to_json(item: GenerateItem | EnhanceItem) -> dict[str, Any]:
    """The item as JSON-able values (``None`` fields left out)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(item):
        v = getattr(item, f.name)
        if v is not None:
            out[f.name] = [list(x) for x in v] if isinstance(v, tuple) else v
    return out


def from_json(kind: str, data: dict[str, Any]) -> GenerateItem | EnhanceItem:
    return make_item(kind, data, where="item")
