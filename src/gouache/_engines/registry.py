"""The one registry of engines: names, lazy loading, and the choice ``engine="auto"`` makes.

Engine modules are imported by name only when an engine is used, so importing gouache
never imports PyTorch, and nothing above this layer imports an engine's module.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType

from .._errors import InvalidInputError
from .base import Engine
from .requests import EngineOptions, ModelFiles, ProgressFn

__all__ = ["AUTO_ORDER", "ENGINES", "engine_class", "explain_all", "load_engine", "select_engine"]

#: Engine name -> module whose ``ENGINE`` is the engine class.
ENGINES: MappingProxyType[str, str] = MappingProxyType(
    {
        "sdcpp": "gouache._engines.sdcpp",
        "torch": "gouache._engines.torch.engine",
    }
)
#: The order in which ``engine="auto"`` asks the engines; the first that can run the model wins.
AUTO_ORDER: tuple[str, ...] = ("torch", "sdcpp")


def engine_class(name: str) -> type[Engine]:
    """The engine class registered as ``name``; unknown names raise with the list of engines."""
    module_name = ENGINES.get(name) if isinstance(name, str) else None
    if module_name is None:
        raise InvalidInputError(f"unknown engine {name!r}; allowed: auto, {', '.join(sorted(ENGINES))}")
    return importlib.import_module(module_name).ENGINE


def select_engine(requested: str, family: str, files: ModelFiles) -> tuple[str, str]:
    """``(engine name, reason)``: "auto" takes the first engine of :data:`AUTO_ORDER` that can
    run this model family from these files; other names are taken as they are."""
    if requested != "auto":
        engine_class(requested)  # validates the name
        return requested, f"engine={requested} requested"
    declined = []
    for name in AUTO_ORDER:
        verdict = engine_class(name).explain(family, files)
        if verdict.usable:
            why = f"{name}: {verdict.reason}"
            return name, why + (f" ({'; '.join(declined)})" if declined else "")
        declined.append(f"{name}: {verdict.reason}")
    raise InvalidInputError(f"no engine can run this {family} model: {'; '.join(declined)}")


def explain_all(family: str | None = None, files: ModelFiles | None = None) -> dict[str, str]:
    """Each engine's own explanation (for ``gouache info``), usable or not."""
    return {name: engine_class(name).explain(family, files).reason for name in sorted(ENGINES)}


def load_engine(
    name: str,
    files: ModelFiles,
    *,
    options: EngineOptions,
    threads: int | None,
    weight_type: str | None,
    on_load_progress: ProgressFn | None = None,
) -> Engine:
    """Create engine ``name`` for ``files``."""
    return engine_class(name).create(
        files, options=options, threads=threads, weight_type=weight_type, on_load_progress=on_load_progress
    )
