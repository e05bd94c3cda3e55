"""Planning a job: each item's output file and seed, and the units of work handed to workers.

A unit is one generation item, or all the views of one scene (a scene is never split:
its views share a seed and a colour reference, and its depth maps are aligned together).
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from pathlib import Path
from typing import Any

from gouache import InvalidInputError

from ._gouache import resolve_seed
from ._items import SCENE_FIELDS, EnhanceItem, GenerateItem, from_json, to_json

FORMATS = ("png", "jpg", "webp")


@dataclasses.dataclass(frozen=True)
class Task:
    """One item with its output file and its seed decided."""

    item: GenerateItem | EnhanceItem
    output: str
    seed: int

    @property
    def key(self) -> str:
        """The item's id in the results: ``scene/id`` for views of a scene, else ``id``."""
        scene = getattr(self.item, "scene", None)
        return f"{scene}/{self.item.id}" if scene else self.item.id


@dataclasses.dataclass(frozen=True)
class Unit:
    """What one worker call does: one generation item, or one scene's views."""

    kind: str
    scene: str | None
    tasks: tuple[Task, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "scene": self.scene,
                "tasks": [{"item": to_json(t.item), "output": t.output, "seed": t.seed} for t in self.tasks],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Unit:
        d = json.loads(text)
        tasks = tuple(Task(from_json(d["kind"], t["item"]), t["output"], int(t["seed"])) for t in d["tasks"])
        return cls(d["kind"], d["scene"], tasks)


def item_kind(items: list[Any]) -> str:
    if not items:
        raise InvalidInputError("a batch job needs at least one item")
    kinds = {getattr(i, "kind", None) for i in items}
    if kinds == {"generate"}:
        return "generate"
    if kinds == {"enhance"}:
        return "enhance"
    bad = [type(i).__name__ for i in items if getattr(i, "kind", None) not in ("generate", "enhance")]
    if bad:
        raise InvalidInputError(f"batch items must be GenerateItem or EnhanceItem; got {bad[0]}")
    raise InvalidInputError("a batch job is all generation items or all enhancement items, not both")


def plan_units(items: list[Any], output_dir: Path, *, fmt: str, seed: int | None, scene_seed: int) -> list[Unit]:
    """Decide output files and seeds, check ids are unique, group views by scene.

    Generation seeds: the item's (``-1`` = random, resolved here once), else
    ``seed + row index`` when the job has a seed, else one derived from the item id (the
    same on every run, so a resumed job makes what an uninterrupted one would).
    Enhancement: one seed per scene (its rows' ``seed``, else ``seed``, else ``scene_seed``).
    """
    if fmt not in FORMATS:
        raise InvalidInputError(f"unknown output format {fmt!r}; allowed: {', '.join(FORMATS)}")
    kind = item_kind(items)
    tasks = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        rel = f"{item.scene}/{item.id}" if kind == "enhance" and item.scene else item.id
        if rel.lower() in seen:
            raise InvalidInputError(
                f"item {index + 1}: id {rel!r} repeats item {seen[rel.lower()] + 1}'s (ids must be unique)"
            )
        seen[rel.lower()] = index
        output = str(output_dir / f"{rel}.{fmt}")
        tasks.append(Task(item, output, _item_seed(item, index, seed) if kind == "generate" else 0))
    if kind == "generate":
        return [Unit(kind, None, (t,)) for t in tasks]
    return _scene_units(tasks, seed, scene_seed)


def _item_seed(item: GenerateItem, index: int, seed: int | None) -> int:
    if item.seed is not None:
        return resolve_seed(item.seed)
    if seed is not None:
        return resolve_seed(seed) + index if seed >= 0 else resolve_seed(-1)
    return zlib.crc32(item.id.encode("utf-8"))


def _scene_units(tasks: list[Task], seed: int | None, scene_seed: int) -> list[Unit]:
    scenes: dict[str, list[Task]] = {}
    singles: list[Unit] = []
    order: list[str | int] = []
    for t in tasks:
        scene = t.item.scene
        if scene is None:
            order.append(len(singles))
            singles.append(Unit("enhance", None, (t,)))
        else:
            if scene not in scenes:
                scenes[scene] = []
                order.append(scene)
            scenes[scene].append(t)
    units = []
    for key in order:
        if isinstance(key, int):
            unit = singles[key]
            units.append(_with_seed(unit.tasks, None, _scene_seed([t.item for t in unit.tasks], "", seed, scene_seed)))
        else:
            views = scenes[key]
            units.append(_with_seed(tuple(views), key, _scene_seed([t.item for t in views], key, seed, scene_seed)))
    return units


def _scene_seed(items: list[EnhanceItem], scene: str, seed: int | None, default: int) -> int:
    for name in SCENE_FIELDS:
        values = {getattr(i, name) for i in items if getattr(i, name) is not None}
        if len(values) > 1:
            raise InvalidInputError(
                f"scene {scene!r}: its views disagree on {name!r} ({', '.join(map(str, sorted(values, key=str)))});"
                " a scene has one"
            )
    given = next((i.seed for i in items if i.seed is not None), None)
    if given is not None:
        return resolve_seed(given)
    return resolve_seed(seed if seed is not None else default)


def _with_seed(tasks: tuple[Task, ...], scene: str | None, seed: int) -> Unit:
    return Unit("enhance", scene, tuple(dataclasses.replace(t, seed=seed) for t in tasks))
