"""Batch jobs: thousands of generations or 3D-view enhancements, in-process or on Ray.

* Inputs: :func:`read_items` reads a JSONL/CSV manifest (:func:`read_manifest`) or a
  folder tree of scenes and views (:func:`scan_scenes`) into :class:`GenerateItem` /
  :class:`EnhanceItem` rows.
* A job: :class:`BatchJob` (items, output folder, :class:`ModelSpec` or an
  :class:`~gouache.enhance.EnhanceConfig`), run by :func:`run_batch` in this process or on
  Ray Data with :class:`RayOptions` (``pip install "gouache[ray]"``): an actor class that
  loads the model once per actor, ``actors`` of them, ``cpus_per_actor`` /
  ``gpus_per_actor`` each, a local Ray by default or a cluster by ``address``.
* Output: one file per item, written atomically (``<id>.png``; views ``<scene>/<id>.png``),
  and ``results.jsonl`` (:class:`ItemResult` per item); :class:`BatchSummary` returned.
  Re-running a job skips what is complete; a failing item is recorded and the rest go on.

The command is ``gouache batch`` (``gouache batch --help``).
"""

from ._items import EnhanceItem, GenerateItem
from ._job import BatchJob, ModelSpec, RayOptions
from ._manifest import read_items, read_manifest, scan_scenes
from ._results import BatchSummary, ItemResult
from ._run import run_batch

__all__ = [
    "BatchJob",
    "BatchSummary",
    "EnhanceItem",
    "GenerateItem",
    "ItemResult",
    "ModelSpec",
    "RayOptions",
    "read_items",
    "read_manifest",
    "run_batch",
    "scan_scenes",
]
