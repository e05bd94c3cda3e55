"""Reading batch inputs: JSONL/CSV manifests and folder trees of scenes and views."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from gouache import InvalidInputError

from ._items import ALIASES, EnhanceItem, GenerateItem, check_id, make_item

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
DEPTH_SUFFIXES = (".npy", ".png", ".tif", ".tiff", ".exr")
MANIFEST_SUFFIXES = (".jsonl", ".ndjson", ".csv")
SCENE_FILE = "scene.json"
_SCENE_KEYS = ("color_reference", "intrinsics", "negative_prompt", "poses", "prompt", "seed", "strength", "subject")

Item = GenerateItem | EnhanceItem


def read_items(source: str | os.PathLike[str], kind: str | None = None) -> list[Item]:
    """Items from a manifest file (``.jsonl``/``.ndjson``/``.csv``) or a folder of scenes.

    ``kind``: "generate" or "enhance"; ``None`` infers it (a folder is enhancement; a
    manifest whose rows have an ``image``/``view`` column is enhancement, else generation).
    """
    p = Path(source)
    if p.is_dir():
        if kind not in (None, "enhance"):
            raise InvalidInputError(f"a folder of scenes is an enhance job; got kind={kind!r}")
        return scan_scenes(p)
    return read_manifest(p, kind)


def read_manifest(path: str | os.PathLike[str], kind: str | None = None) -> list[Item]:
    """Items of a JSONL (one JSON object per line) or CSV (header row) manifest.

    Relative file paths in it are relative to the manifest's folder.  Rows without an
    ``id`` get their row number (``000001`` ...; enhancement views: the image's file
    name without extension).  Unknown columns are refused with the allowed ones named.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"manifest not found: {str(p)!r}")
    suffix = p.suffix.lower()
    if suffix not in MANIFEST_SUFFIXES:
        raise InvalidInputError(
            f"unsupported manifest {str(p)!r}; allowed: {', '.join(MANIFEST_SUFFIXES)} files or a folder of scenes"
        )
    rows = _jsonl_rows(p) if suffix in (".jsonl", ".ndjson") else _csv_rows(p)
    if not rows:
        raise InvalidInputError(f"manifest {str(p)!r} has no items")
    kind = kind or _infer_kind(rows)
    base = p.parent

    def resolve(value: str) -> str:
        q = Path(value).expanduser()
        return str(q if q.is_absolute() else base / q)

    items = []
    for where, row in rows:
        row = dict(row)
        if "id" not in row or row["id"] in (None, ""):
            image = row.get("image") or row.get("view")
            row["id"] = Path(str(image)).stem if kind == "enhance" and image else f"{len(items) + 1:06d}"
        items.append(make_item(kind, row, where=f"{p.name} {where}", resolve_path=resolve))
    return items


def _jsonl_rows(p: Path) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    with open(p, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(
                    f"{p.name} line {n}: not valid JSON ({exc.msg} at column {exc.colno})"
                ) from None
            if not isinstance(obj, dict):
                raise InvalidInputError(f"{p.name} line {n}: each line must be a JSON object; got {type(obj).__name__}")
            rows.append((f"line {n}", obj))
    return rows


def _csv_rows(p: Path) -> list[tuple[str, dict[str, Any]]]:
    with open(p, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise InvalidInputError(f"{p.name}: a CSV manifest needs a header row")
        rows = []
        for n, row in enumerate(reader, 2):
            if None in row:
                raise InvalidInputError(f"{p.name} row {n}: more cells than header columns")
            rows.append((f"row {n}", {k.strip(): (v if v != "" else None) for k, v in row.items()}))
    return rows


def _infer_kind(rows: list[tuple[str, dict[str, Any]]]) -> str:
    keys = {ALIASES.get(k, k) for _, row in rows for k in row}
    return "enhance" if "image" in keys else "generate"


# --------------------------------------------------------------------------- folder trees


def scan_scenes(root: str | os.PathLike[str]) -> list[EnhanceItem]:
    """Enhancement items from a folder tree: ``root/<scene>/<view>.png`` (or views directly
    in ``root``: one scene named after it).

    In each scene folder, optional: ``depth/<view>.npy|.png|.tif`` (depth map of that view),
    ``masks/<view>.png``, and ``scene.json`` with ``prompt``, ``negative_prompt``,
    ``subject``, ``seed``, ``strength``, ``intrinsics`` (3x3), ``poses``
    (``{"<view>": 4x4 camera-to-world}``) and ``color_reference`` (an image path relative
    to the scene folder; not a view).
    """
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError(f"scene folder not found: {str(root)!r}")
    scene_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and _views_in(d))
    if _views_in(root):
        scene_dirs = [root] + scene_dirs
    if not scene_dirs:
        raise InvalidInputError(
            f"no views found under {str(root)!r}: expected <scene>/<view>{'|'.join(IMAGE_SUFFIXES)}"
        )
    items: list[EnhanceItem] = []
    for d in scene_dirs:
        items.extend(_scene_items(d, check_id(d.name, "scene folder name")))
    return items


def _views_in(folder: Path) -> list[Path]:
    return sorted(
        f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
    )


def _scene_items(folder: Path, scene: str) -> list[EnhanceItem]:
    meta = _scene_meta(folder)
    poses = meta.pop("poses", None) or {}
    reference = meta.get("color_reference")
    if reference is not None:
        meta["color_reference"] = str(folder / reference)
    views = [v for v in _views_in(folder) if reference is None or v.resolve() != (folder / reference).resolve()]
    unknown = sorted(set(poses) - {v.stem for v in views})
    if unknown:
        raise InvalidInputError(f"{folder / SCENE_FILE}: poses for views that do not exist: {', '.join(unknown)}")
    items = []
    for v in views:
        row: dict[str, Any] = {"id": v.stem, "scene": scene, "image": str(v), **meta}
        depth = _sibling(folder / "depth", v.stem, DEPTH_SUFFIXES)
        mask = _sibling(folder / "masks", v.stem, IMAGE_SUFFIXES)
        if depth is not None:
            row["depth"] = str(depth)
        if mask is not None:
            row["mask"] = str(mask)
        if v.stem in poses:
            row["pose"] = poses[v.stem]
        items.append(make_item("enhance", row, where=f"{folder.name}/{v.name}"))
    return items


def _scene_meta(folder: Path) -> dict[str, Any]:
    f = folder / SCENE_FILE
    if not f.is_file():
        return {}
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{f}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(meta, dict):
        raise InvalidInputError(f"{f}: must be a JSON object")
    unknown = sorted(set(meta) - set(_SCENE_KEYS))
    if unknown:
        raise InvalidInputError(f"{f}: unknown keys {', '.join(unknown)}; allowed: {', '.join(_SCENE_KEYS)}")
    if "poses" in meta and not isinstance(meta["poses"], dict):
        raise InvalidInputError(f"{f}: 'poses' must map view names to 4x4 matrices")
    return meta


def _sibling(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    if not folder.is_dir():
        return None
    for suffix in suffixes:
        for candidate in (folder / (stem + suffix), folder / (stem + suffix.upper())):
            if candidate.is_file():
                return candidate
    return None
