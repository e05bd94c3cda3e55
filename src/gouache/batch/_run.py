"""run_batch: plan, skip what is done, run the rest in-process or on Ray, record everything."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from gouache import InvalidInputError

from ._job import BatchJob, RayOptions, WorkSpec
from ._plan import Unit, plan_units
from ._results import BatchSummary, ItemResult, ResultsLog, is_complete, remove_stale_temporaries

log = logging.getLogger("gouache.batch")

STATE_DIR = ".gouache-batch"
Progress = Callable[[ItemResult, int, int], object]


def run_batch(
    job: BatchJob,
    *,
    ray: RayOptions | bool | None = None,
    progress: Progress | None = None,
    progress_bars: bool = False,
) -> BatchSummary:
    """Run ``job``: in this process (``ray=None``, the default: nothing extra needed) or on
    Ray Data (``ray=True`` or a :class:`RayOptions`); the same files for the same seeds.

    Resumable: items whose output already exists and is complete are skipped (re-running
    a finished job does nothing and loads no model).  An item that fails is recorded with
    its error and the others go on.  ``progress(result, finished, total)`` is called on
    this process for every item as its result arrives.  ``progress_bars``: let Ray Data
    show its own progress bars.  Two runs must not share an output folder at once (a lock
    file refuses the second).
    """
    spec = job.check()
    options = RayOptions() if ray is True else (ray or None)
    if options is not None:
        if not isinstance(options, RayOptions):
            raise InvalidInputError(f"ray must be None, True or a RayOptions; got {type(options).__name__}")
        options.check()
    out = Path(job.output_dir)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"output_dir is not a folder: {str(out)!r}")
    scene_seed = spec.enhance.seed if spec.kind == "enhance" else 0
    units = plan_units(list(job.items), out, fmt=job.image_format, seed=job.seed, scene_seed=scene_seed)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with _Lock(out):
        results = _run_locked(units, spec, options, out, progress, progress_bars)
    seconds = time.perf_counter() - started
    return _summary(results, out, seconds, options)


def _run_locked(
    units: list[Unit],
    spec: WorkSpec,
    options: RayOptions | None,
    out: Path,
    progress: Progress | None,
    progress_bars: bool,
) -> dict[str, ItemResult]:
    order = [t.key for u in units for t in u.tasks]
    total = len(order)
    log_file = ResultsLog(out)
    results: dict[str, ItemResult] = {}

    def record(r: ItemResult) -> None:
        log_file.add(r)
        results[r.id] = r
        if progress is not None:
            progress(r, len(results), total)

    try:
        pending = []
        for u in units:
            if all(is_complete(t.output) for t in u.tasks):
                for t in u.tasks:
                    record(ItemResult(t.key, "skipped", t.output, t.seed, getattr(t.item, "scene", None)))
            else:
                pending.append(u)
        if pending:
            for r in _execute(pending, spec, options, out, progress_bars):
                if r.id in results and r.status == "skipped":
                    continue  # a retried unit reporting what its first attempt made
                record(r)
        for u in pending:  # units that never reported (Ray gave up on them)
            for t in u.tasks:
                if t.key not in results:
                    record(
                        ItemResult(
                            t.key,
                            "failed",
                            None,
                            t.seed,
                            getattr(t.item, "scene", None),
                            error="WorkerDied: no result came back for this item",
                        )
                    )
    finally:
        for u in units:
            for t in u.tasks:
                remove_stale_temporaries(t.output)
        log_file.finalize(order)
    return results


def _execute(
    units: list[Unit], spec: WorkSpec, options: RayOptions | None, out: Path, progress_bars: bool
) -> Iterator[ItemResult]:
    if options is None:
        from ._work import Worker

        with Worker(spec) as worker:
            for u in units:
                yield from worker.run(u)
        return
    from ._ray import RaySession, run_units

    attempts = out / STATE_DIR / f"attempts-{uuid.uuid4().hex[:12]}"
    try:
        with RaySession(options):
            for text in run_units(units, spec, options, attempts_dir=attempts, progress_bars=progress_bars):
                yield ItemResult.from_dict(json.loads(text))
    finally:
        shutil.rmtree(attempts, ignore_errors=True)
        _remove_if_empty(out / STATE_DIR)


def _remove_if_empty(p: Path) -> None:
    try:
        p.rmdir()
    except OSError:
        pass


def _summary(results: dict[str, ItemResult], out: Path, seconds: float, options: RayOptions | None) -> BatchSummary:
    counts = {s: sum(1 for r in results.values() if r.status == s) for s in ("done", "skipped", "failed")}
    return BatchSummary(
        total=len(results),
        done=counts["done"],
        skipped=counts["skipped"],
        failed=counts["failed"],
        seconds=seconds,
        items_per_second=counts["done"] / seconds if seconds > 0 else 0.0,
        output_dir=str(out),
        results_path=str(out / "results.jsonl"),
        runner="ray" if options is not None else "local",
        actors=options.actors if options is not None else 1,
        results=list(results.values()),
    )


class _Lock:
    """One run per output folder: ``.gouache-batch.lock`` holds ``host pid``; a lock left by a
    dead process on this host is taken over."""

    def __init__(self, out: Path) -> None:
        self.path = out / ".gouache-batch.lock"
        self.held = False

    def __enter__(self) -> _Lock:
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._stale():
                    self.path.unlink(missing_ok=True)
                    continue
                owner = self.path.read_text(encoding="utf-8", errors="replace").strip()
                raise InvalidInputError(
                    f"another batch run ({owner}) is writing to {str(self.path.parent)!r}; wait for it,"
                    f" or delete {str(self.path)!r} if that run is gone"
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(me + "\n")
            self.held = True
            return self
        raise InvalidInputError(f"could not take the lock {str(self.path)!r}")

    def _stale(self) -> bool:
        try:
            host, pid = self.path.read_text(encoding="utf-8").split()
            if host != socket.gethostname():
                return False
            os.kill(int(pid), 0)
            return False
        except ProcessLookupError:
            return True
        except (OSError, ValueError):
            return False

    def __exit__(self, *exc: object) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
