"""The Ray Data path: units become rows, an actor class loads the model once per actor
(``map_batches`` with an actor pool), results stream back to the driver row by row.

Each actor reserves ``cpus_per_actor`` / ``gpus_per_actor``; an actor that dies is
restarted by Ray and its unit retried on it (Ray Data's actor fault tolerance); the
worker skips outputs already complete, so a retry never writes an item twice.  A unit
that keeps killing its actor (an input that crashes the engine) is tried at most
``1 + max_retries`` times: attempts are counted in files under the job's state folder
(actors may be on other machines; the output folder is shared by all of them), and
past the limit the unit's items come back as failed without running again.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gouache import MissingDependencyError

from ._job import RayOptions, WorkSpec
from ._plan import Unit

log = logging.getLogger("gouache.batch")

MAX_BLOCKS = 4096


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingDependencyError('Ray is not installed: pip install "gouache[ray]"') from None
    return ray


class RayWorker:
    """The actor class handed to ``map_batches``: one :class:`Worker` per actor."""

    def __init__(self, spec: WorkSpec, attempts_dir: str, max_retries: int) -> None:
        import ray

        from ._work import Worker

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        self.worker = Worker(spec, threads=max(1, int(cpus)) if cpus else None)
        self.attempts = Path(attempts_dir)
        self.max_attempts = 1 + max_retries

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        out: list[str] = []
        for text in batch["unit"]:
            unit = Unit.from_json(str(text))
            attempt = self._count_attempt(str(text))
            if attempt > self.max_attempts:
                out.extend(r.to_json() for r in gave_up(unit, self.max_attempts, self.worker.name))
            else:
                out.extend(r.to_json() for r in self.worker.run(unit))
        return {"result": out}

    def _count_attempt(self, text: str) -> int:
        """This unit's attempt number (1 the first time; more after its actor died)."""
        self.attempts.mkdir(parents=True, exist_ok=True)
        counter = self.attempts / hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]
        with open(counter, "a", encoding="utf-8") as fh:  # one line per attempt: appends do not race
            fh.write(f"{self.worker.name}\n")
            fh.flush()
            os.fsync(fh.fileno())
        return len(counter.read_text(encoding="utf-8").splitlines())


def gave_up(unit: Unit, attempts: int, worker: str):
    """Results for a unit not run again: its complete outputs count as skipped, the rest failed."""
    from ._results import ItemResult, is_complete

    error = (
        f"WorkerDied: the worker process died {attempts} times on this "
        f"{'scene' if unit.scene else 'item'} (an input that crashes the engine?); not tried again"
    )
    return [
        ItemResult(t.key, "skipped", t.output, t.seed, getattr(t.item, "scene", None), worker=worker)
        if is_complete(t.output)
        else ItemResult(t.key, "failed", None, t.seed, getattr(t.item, "scene", None), error=error, worker=worker)
        for t in unit.tasks
    ]


class RaySession:
    """``ray.init`` when this process has no Ray yet (and ``ray.shutdown`` at the end);
    an already initialised Ray (a test, a notebook, a Ray job) is used as it is."""

    def __init__(self, options: RayOptions) -> None:
        self.ray = import_ray()
        self.started = False
        if not self.ray.is_initialized():
            kwargs = {"include_dashboard": False, "logging_level": logging.WARNING, **options.init_kwargs}
            self.ray.init(address=options.address, **kwargs)
            self.started = True
        elif options.address is not None:
            log.info("Ray is already initialised in this process: address=%r is not used", options.address)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False

    def __enter__(self) -> RaySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_units(
    units: list[Unit], spec: WorkSpec, options: RayOptions, *, attempts_dir: Path, progress_bars: bool
) -> Iterator[str]:
    """Yield result records (JSON text) as the actors finish units."""
    ray = import_ray()
    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars, ctx.print_on_execution_start
    ctx.enable_progress_bars = ctx.print_on_execution_start = progress_bars
    try:
        # one unit per block (a retry redoes one unit) up to MAX_BLOCKS, then a few per block
        ds = ray.data.from_items(
            [{"unit": u.to_json()} for u in units], override_num_blocks=min(len(units), MAX_BLOCKS)
        )
        ds = ds.map_batches(
            RayWorker,
            fn_constructor_kwargs={"spec": spec, "attempts_dir": str(attempts_dir), "max_retries": options.max_retries},
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=options.actors, max_tasks_in_flight_per_actor=1),
            num_cpus=options.cpus_per_actor,
            num_gpus=options.gpus_per_actor or None,
        )
        for row in ds.iter_rows():
            yield str(row["result"])
    finally:
        ctx.enable_progress_bars, ctx.print_on_execution_start = saved
