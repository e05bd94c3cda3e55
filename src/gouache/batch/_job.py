"""What a batch job is: the items, the output folder, the model, and how to run it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import gouache as g
from gouache import InvalidInputError

from ._items import EnhanceItem, GenerateItem, check_defaults
from ._plan import FORMATS, item_kind

PathLike = str | os.PathLike[str]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The generation model every worker loads once: the files and load options of
    :class:`gouache.SDModel`.  ``threads="auto"`` means the CPUs the worker was given (all
    physical cores in-process; ``cpus_per_actor`` on Ray)."""

    model: PathLike | None = None
    diffusion_model: PathLike | None = None
    vae: PathLike | None = None
    taesd: PathLike | None = None
    clip_l: PathLike | None = None
    clip_g: PathLike | None = None
    t5xxl: PathLike | None = None
    control_net: PathLike | None = None
    lora_dir: PathLike | None = None
    embeddings: PathLike | None = None
    engine: str = "auto"
    threads: int | str = "auto"
    weight_type: str | None = None
    options: g.EngineOptions = g.EngineOptions()

    def check(self) -> None:
        """What can be checked without loading (files exist); the driver calls it before any work."""
        if self.model is None and self.diffusion_model is None:
            raise InvalidInputError("ModelSpec needs model= (a checkpoint file) or diffusion_model=")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("lora_dir", "embeddings"):
                if value is not None and not Path(value).exists():
                    raise InvalidInputError(f"ModelSpec.{f.name} not found: {str(value)!r}")
            elif isinstance(value, (str, os.PathLike)) and f.name not in ("engine", "threads", "weight_type"):
                if not Path(value).is_file():
                    raise InvalidInputError(f"ModelSpec.{f.name} file not found: {str(value)!r}")

    def load(self, threads: int | None = None) -> g.SDModel:
        """Load the model; ``threads`` replaces ``"auto"`` (a Ray actor passes its CPU share)."""
        t = self.threads if self.threads != "auto" or threads is None else threads
        files = {
            name: getattr(self, name)
            for name in (
                "vae",
                "taesd",
                "clip_l",
                "clip_g",
                "t5xxl",
                "diffusion_model",
                "control_net",
                "lora_dir",
                "embeddings",
            )
        }
        return g.SDModel(
            self.model, threads=t, weight_type=self.weight_type, options=self.options, engine=self.engine, **files
        )


@dataclasses.dataclass(frozen=True)
class WorkSpec:
    """The part of a job every worker needs (the items travel separately, unit by unit)."""

    kind: str
    model: ModelSpec | None
    enhance: Any  # gouache.enhance.EnhanceConfig for enhancement jobs
    defaults: dict[str, Any]
    image_format: str


@dataclasses.dataclass
class BatchJob:
    """A batch job: ``items`` (all :class:`GenerateItem` or all :class:`EnhanceItem`, e.g. from
    :func:`read_items`) written to ``output_dir`` (``<id>.png``; views ``<scene>/<id>.png``)
    with a ``results.jsonl`` beside them.

    Generation: ``model`` (a :class:`ModelSpec`), ``defaults`` (any item field but id,
    prompt and seed, for items that leave it unset), ``seed`` (items without a seed get
    ``seed + row``; with neither, a seed derived from the item id).  Enhancement:
    ``enhance`` (a :class:`gouache.enhance.EnhanceConfig`); a scene's seed is its rows'
    ``seed``, else ``seed``, else the config's.  ``image_format``: png (default; keeps
    the A1111 parameters and alpha), jpg or webp.
    """

    items: list[GenerateItem | EnhanceItem]
    output_dir: PathLike
    model: ModelSpec | None = None
    enhance: Any = None
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int | None = None
    image_format: str = "png"

    @property
    def kind(self) -> str:
        return item_kind(list(self.items))

    def check(self) -> WorkSpec:
        """check_inputs for the whole job (no model is loaded): returns what workers need."""
        kind = self.kind
        if self.image_format not in FORMATS:
            raise InvalidInputError(f"unknown image_format {self.image_format!r}; allowed: {', '.join(FORMATS)}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise InvalidInputError(f"seed must be an integer (-1 = random); got {self.seed!r}")
        if kind == "generate":
            if not isinstance(self.model, ModelSpec):
                raise InvalidInputError("a generation job needs model=ModelSpec(...)")
            if self.enhance is not None:
                raise InvalidInputError("enhance= is for enhancement jobs; these items are generation items")
            self.model.check()
            return WorkSpec(kind, self.model, None, check_defaults(self.defaults), self.image_format)
        from gouache.enhance import EnhanceConfig

        if not isinstance(self.enhance, EnhanceConfig):
            raise InvalidInputError("an enhancement job needs enhance=gouache.enhance.EnhanceConfig(...)")
        if self.model is not None or self.defaults:
            raise InvalidInputError("model= and defaults= are for generation jobs; set the model in EnhanceConfig")
        self.enhance.check()
        return WorkSpec(kind, None, self.enhance, {}, self.image_format)


@dataclasses.dataclass(frozen=True)
class RayOptions:
    """How to run a job on Ray (``pip install "gouache[ray]"``).

    ``address``: None starts (or joins, if already running in this process) a local Ray
    instance; ``"auto"`` or ``"ray://host:10001"`` joins a cluster.  ``actors``: how many
    workers (Ray Data's actor-pool size; each loads the model once).  ``cpus_per_actor`` /
    ``gpus_per_actor``: resources reserved per actor (the sdcpp/torch thread count follows
    the CPUs).  ``max_retries``: how often a unit whose actor died is retried on a restarted
    actor before its items are recorded as failed.  ``init_kwargs``: extra ``ray.init``
    arguments (e.g. ``runtime_env``).
    """

    address: str | None = None
    actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    max_retries: int = 3
    init_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def check(self) -> None:
        if isinstance(self.actors, bool) or not isinstance(self.actors, int) or self.actors < 1:
            raise InvalidInputError(f"actors must be an integer >= 1; got {self.actors!r}")
        if not isinstance(self.cpus_per_actor, (int, float)) or self.cpus_per_actor <= 0:
            raise InvalidInputError(f"cpus_per_actor must be > 0; got {self.cpus_per_actor!r}")
        if not isinstance(self.gpus_per_actor, (int, float)) or self.gpus_per_actor < 0:
            raise InvalidInputError(f"gpus_per_actor must be >= 0 (fractions share a GPU); got {self.gpus_per_actor!r}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise InvalidInputError(f"max_retries must be an integer >= 0; got {self.max_retries!r}")
