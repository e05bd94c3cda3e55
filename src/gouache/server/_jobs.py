"""Jobs: what was asked, where it stands, what it produced; the store that keeps them for a TTL.

Worker runner threads change jobs; HTTP handlers (on the event loop) read them, wait for
them and stream their events.  Every change goes through :class:`JobStore` under one lock;
events reach the event loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import enum
import itertools
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ._protocol import Task


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)

#: HTTP status for each failure kind (see ``_protocol.FAILURE_KINDS``).
FAILURE_STATUS = {"invalid": 422, "engine": 500, "crashed": 500, "cancelled": 409, "internal": 500, "unavailable": 503}


@dataclasses.dataclass(frozen=True)
class WorkerKey:
    """Which worker runs a job: ``kind`` "model" (a checkpoint, with an optional ControlNet)
    or "upscale" (ESRGAN, no checkpoint)."""

    kind: str
    model: str | None = None
    controlnet: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "upscale":
            return "upscaler"
        return self.model + (f" + ControlNet {self.controlnet}" if self.controlnet else "")


@dataclasses.dataclass
class Result:
    index: int
    path: Path
    media_type: str
    width: int
    height: int
    seed: int | None = None
    infotext: str | None = None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self, job_id: str) -> dict[str, Any]:
        return {
            "index": self.index,
            "url": f"/v1/jobs/{job_id}/results/{self.index}",
            "media_type": self.media_type,
            "width": self.width,
            "height": self.height,
            "seed": self.seed,
            "infotext": self.infotext,
            "parameters": self.parameters,
        }


@dataclasses.dataclass
class JobError:
    kind: str
    message: str

    @property
    def status(self) -> int:
        return FAILURE_STATUS.get(self.kind, 500)


_ids = itertools.count()


def new_id() -> str:
    """Sortable by creation time, unguessable."""
    return f"{time.time_ns() // 1_000_000:012x}{next(_ids) % 4096:03x}{secrets.token_hex(6)}"


@dataclasses.dataclass(eq=False)
class Job:
    """One request's work: ``tasks`` run in order on the worker named by ``worker``."""

    api: str
    kind: str
    worker: WorkerKey
    tasks: list[Task]
    summary: dict[str, Any]
    id: str = dataclasses.field(default_factory=new_id)
    state: JobState = JobState.QUEUED
    phase: str = "queued"
    created: float = dataclasses.field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    unit: int = 0
    step: int = 0
    total: int = 0
    results: list[Result] = dataclasses.field(default_factory=list)
    preview: bytes | None = None
    preview_step: int = 0
    error: JobError | None = None
    skipped: int = 0
    timings: list[dict[str, float]] = dataclasses.field(default_factory=list)
    cancel_requested: bool = False
    skip_requested: bool = False
    order: int = 0
    event_seq: int = 0
    future: Any = None  # asyncio.Future resolved when the job ends
    listeners: list = dataclasses.field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def units(self) -> int:
        return max(1, len(self.tasks))

    def progress(self) -> float:
        if self.state == JobState.DONE:
            return 1.0
        if self.state != JobState.RUNNING:
            return 0.0
        within = self.step / self.total if self.total else 0.0
        return min(1.0, (self.unit + within) / self.units)

    def eta(self) -> float | None:
        """Seconds left, from the time per unit of progress so far."""
        p = self.progress()
        if self.state != JobState.RUNNING or self.started is None or p <= 0:
            return None
        elapsed = time.time() - self.started
        return max(0.0, elapsed * (1 - p) / p)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "api": self.api,
            "kind": self.kind,
            "model": self.worker.model,
            "controlnet": self.worker.controlnet,
            "state": self.state.value,
            "phase": self.phase,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "unit": self.unit,
            "units": len(self.tasks),
            "step": self.step,
            "total": self.total,
            "progress": round(self.progress(), 4),
            "eta_seconds": self.eta(),
            "error": None if self.error is None else {"kind": self.error.kind, "message": self.error.message},
            "results": [r.as_dict(self.id) for r in self.results],
            "parameters": self.summary,
            "timings": self.timings,
        }

    def progress_event(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "phase": self.phase,
            "unit": self.unit,
            "units": len(self.tasks),
            "step": self.step,
            "total": self.total,
            "progress": round(self.progress(), 4),
            "eta_seconds": self.eta(),
        }

    def preview_data_url(self) -> str | None:
        if self.preview is None:
            return None
        return "data:image/jpeg;base64," + base64.b64encode(self.preview).decode()


class JobStore:
    """Every job of this server, by id; finished jobs are kept ``ttl`` seconds.

    Results live in ``results_dir``: a temporary folder removed at :meth:`close` (files are
    deleted with their job), or the user's ``output_dir``, where files are kept for good.
    """

    def __init__(self, *, ttl: float, output_dir: str | os.PathLike[str] | None) -> None:
        self.ttl = ttl
        self.keep_files = output_dir is not None
        self.results_dir = (
            Path(output_dir) if output_dir is not None else Path(tempfile.mkdtemp(prefix="gouache-serve-"))
        )
        self.lock = threading.RLock()
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.files: dict[str, tuple[Path, str, float]] = {}  # token -> (path, media type, expiry)

    # -- life cycle -------------------------------------------------------------------------

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def close(self) -> None:
        if not self.keep_files:
            shutil.rmtree(self.results_dir, ignore_errors=True)

    # -- jobs -------------------------------------------------------------------------------

    def add(self, job: Job) -> None:
        """Register ``job`` (call on the event loop)."""
        job.future = asyncio.get_running_loop().create_future()
        with self.lock:
            self.jobs[job.id] = job

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def list(self) -> list[Job]:
        with self.lock:
            return list(self.jobs.values())

    def output_stem(self, job: Job, index: int) -> str:
        return str(self.results_dir / f"{job.id}-{index:02d}")

    def remove_partial(self, job: Job, index: int) -> None:
        """Delete temporary files a killed worker left while writing this output."""
        stem = Path(self.output_stem(job, index)).name
        for p in self.results_dir.glob(f".{stem}.*"):
            p.unlink(missing_ok=True)

    # -- changes (any thread) ---------------------------------------------------------------

    def publish(self, job: Job, event: str, data: dict[str, Any] | None = None) -> None:
        with self.lock:
            job.event_seq += 1
            item = (job.event_seq, event, data if data is not None else job.progress_event())
        self._call(self._fanout, job, item)

    def start(self, job: Job) -> None:
        with self.lock:
            job.state = JobState.RUNNING
            job.phase = "starting"
            job.started = time.time()
        self.publish(job, "state")

    def finish(self, job: Job, state: JobState, error: JobError | None = None) -> None:
        with self.lock:
            if job.terminal:
                return
            job.state = state
            job.phase = state.value
            job.error = error
            job.finished = time.time()
            if job.started is None:
                job.started = job.finished
        self.publish(job, state.value, job.as_dict())
        self._call(_resolve, job.future)

    def _call(self, fn, *args) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop closed meanwhile (shutdown)
            pass

    @staticmethod
    def _fanout(job: Job, item: tuple) -> None:
        for queue in list(job.listeners):
            queue.put_nowait(item)

    # -- readers (event loop) ---------------------------------------------------------------

    def subscribe(self, job: Job) -> tuple[list[tuple], asyncio.Queue, int]:
        """``(snapshot events, queue of later events, last seq in the snapshot)``."""
        queue: asyncio.Queue = asyncio.Queue()
        with self.lock:
            snapshot: list[tuple] = [(job.event_seq, "state", job.progress_event())]
            snapshot += [(job.event_seq, "result", r.as_dict(job.id)) for r in job.results]
            if job.preview is not None:
                snapshot.append((job.event_seq, "preview", {"step": job.preview_step, "image": job.preview_data_url()}))
            if job.terminal:
                snapshot.append((job.event_seq, job.state.value, job.as_dict()))
            job.listeners.append(queue)
            return snapshot, queue, job.event_seq

    def unsubscribe(self, job: Job, queue: asyncio.Queue) -> None:
        with self.lock:
            if queue in job.listeners:
                job.listeners.remove(queue)

    async def wait(self, job: Job) -> Job:
        await asyncio.shield(job.future)
        return job

    # -- files by token (OpenAI "url" results) ----------------------------------------------

    def share(self, path: Path, media_type: str, ttl: float) -> str:
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.files[token] = (path, media_type, time.time() + ttl)
        return token

    def shared(self, token: str) -> tuple[Path, str] | None:
        with self.lock:
            item = self.files.get(token)
        if item is None or item[2] < time.time() or not item[0].is_file():
            return None
        return item[0], item[1]

    # -- expiry -----------------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> int:
        """Forget jobs finished more than ``ttl`` seconds ago (and delete their files unless
        they live in the user's ``output_dir``); drop expired shared links.  Returns how many
        jobs were removed."""
        now = time.time() if now is None else now
        with self.lock:
            expired = [
                j for j in self.jobs.values() if j.terminal and j.finished is not None and j.finished + self.ttl <= now
            ]
            for j in expired:
                del self.jobs[j.id]
            for token in [t for t, (_, _, exp) in self.files.items() if exp < now]:
                del self.files[token]
            live = {str(p) for p, _, _ in self.files.values()}
        if not self.keep_files:
            for j in expired:
                for r in j.results:
                    if str(r.path) not in live:
                        r.path.unlink(missing_ok=True)
        return len(expired)


def _resolve(future) -> None:
    if future is not None and not future.done():
        future.set_result(None)
