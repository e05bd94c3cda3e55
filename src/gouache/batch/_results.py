"""Results: one record per item, the results manifest (``results.jsonl``) and the run summary.

The results manifest is written by the driver alone: each record is appended (and
flushed) as it arrives, so a driver that dies keeps what it learned; at the end the file
is rewritten atomically with one line per item, in manifest order, the newest record of
each item winning.  Re-running a job therefore never duplicates a line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

from PIL import Image

from ._gouache import write_atomic

log = logging.getLogger("gouache.batch")

RESULTS_NAME = "results.jsonl"
STATUSES = ("done", "skipped", "failed")


@dataclasses.dataclass
class ItemResult:
    """What happened to one item.

    ``status``: "done" (made by this run), "skipped" (its output already existed and was
    complete: the record is the earlier run's where one exists) or "failed" (``error``
    says why; the job went on).  ``id`` is ``scene/view`` for views of a scene.
    ``parameters``: every value used; ``timings``: seconds (``item`` = the whole item on
    its worker); ``worker``: ``host:pid`` of the process that made it; ``finished_at``:
    when it finished there (seconds since the epoch).
    """

    id: str
    status: str
    output: str | None = None
    seed: int | None = None
    scene: str | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    error: str | None = None
    worker: str | None = None
    finished_at: float | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), default=str, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ItemResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclasses.dataclass
class BatchSummary:
    """What :func:`run_batch` returns.  ``items_per_second`` counts the items made by this run."""

    total: int
    done: int
    skipped: int
    failed: int
    seconds: float
    items_per_second: float
    output_dir: str
    results_path: str
    runner: str
    actors: int
    results: list[ItemResult]

    @property
    def ok(self) -> bool:
        return self.failed == 0

    @property
    def failures(self) -> list[ItemResult]:
        return [r for r in self.results if r.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "results"}
        d["failures"] = [{"id": r.id, "error": r.error} for r in self.failures]
        return d


def is_complete(path: str | os.PathLike[str]) -> bool:
    """An output counts as done when it exists and decodes as an image.  Outputs are renamed
    into place whole, so a partial file only appears if something else wrote it."""
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return False
    try:
        with Image.open(p) as im:
            im.verify()
        return True
    except Exception:  # noqa: BLE001 - any decoding failure means "not complete"
        return False


def remove_stale_temporaries(output: str | os.PathLike[str]) -> int:
    """Delete temporary files that a worker killed while writing ``output`` left behind (the
    atomic writer's ``.<stem>.*<suffix>`` files next to it).  Call when no worker runs."""
    p = Path(output)
    if not p.parent.is_dir():
        return 0
    removed = 0
    for tmp in p.parent.glob(f".{p.stem}.*{p.suffix}"):
        try:
            tmp.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def _parameters_in(output: str | None) -> dict[str, Any]:
    """The A1111 parameters a generated PNG/JPEG/WebP carries (empty for enhanced views)."""
    import gouache

    if output is None:
        return {}
    try:
        return dict(gouache.read_parameters(output))
    except gouache.InvalidInputError:
        return {}


class ResultsLog:
    """The results manifest of one output folder (see the module docstring)."""

    def __init__(self, output_dir: Path) -> None:
        self.path = output_dir / RESULTS_NAME
        self.records: dict[str, dict[str, Any]] = self._read()
        self._fh = open(self.path, "a", encoding="utf-8")

    def _read(self) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return records
        with open(self.path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                try:
                    d = json.loads(line)
                    records[str(d["id"])] = d
                except (json.JSONDecodeError, KeyError, TypeError):
                    if line.strip():
                        log.warning("%s line %d is not a result record (a write cut short?): ignored", self.path, n)
        return records

    def previous(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def add(self, result: ItemResult) -> None:
        """Record ``result``.  A skipped item keeps its earlier record; without one (outputs made
        elsewhere, or a lost results file) it is recorded as done with what the plan knows."""
        if result.status == "skipped":
            if result.id in self.records:
                return
            result = dataclasses.replace(result, status="done", parameters=_parameters_in(result.output))
        line = result.to_json()
        self._fh.write(line + "\n")
        self._fh.flush()
        self.records[result.id] = json.loads(line)

    def finalize(self, order: list[str]) -> Path:
        """Rewrite the file: one line per item in ``order``, then any older records of items no
        longer in the job (kept, never dropped)."""
        self.close()
        keys = [k for k in order if k in self.records] + [k for k in self.records if k not in set(order)]
        text = "".join(json.dumps(self.records[k], default=str, sort_keys=True) + "\n" for k in keys)

        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)

        return write_atomic(self.path, write, overwrite=True)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
