"""Worker processes: one per loaded model, each fed by its own FIFO queue and runner thread.

* The engine never runs in the server process.  A worker that dies (native abort, segfault,
  SIGKILL) fails only the job it was running; the next job starts a new worker.
* Cancel: on the torch engine the worker stops at the next step (a shared value its progress
  callback checks); if that takes longer than ``cancel_grace`` - and always on sdcpp, which
  cannot stop inside a call - the worker process is ended and restarted for the next job.
* ``max_loaded_models`` workers hold a model at once.  A job for another model waits until a
  worker is idle, which is then unloaded (least recently used first); a worker whose next job
  is younger than a waiting job of another model steps aside, so models take turns in FIFO
  order.  ``idle_unload`` unloads a worker idle that long.
* The queue is bounded: :meth:`Pool.submit` answers 429 when ``max_queue`` jobs wait.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import multiprocessing as mp
import signal
import threading
import time
from pathlib import Path
from typing import Any

from . import _protocol as P
from . import _worker
from ._config import ServerConfig
from ._errors import ApiError
from ._jobs import Job, JobError, JobState, JobStore, Result, WorkerKey
from ._models import Catalog

log = logging.getLogger("gouache.server")


class _Abort(Exception):
    """The job was cancelled (or the server stops) before its worker was ready."""


class _Crashed(Exception):
    """The worker process ended."""


class Worker:
    """The server side of one worker process: its queue, its runner thread, its process."""

    def __init__(self, pool: Pool, key: WorkerKey) -> None:
        self.pool = pool
        self.key = key
        self.queue: collections.deque[Job] = collections.deque()
        self.current: Job | None = None
        self.proc: Any = None
        self.conn: Any = None
        self.cancel: Any = None
        self.pid: int | None = None
        self.engine: str | None = None
        self.family: str | None = None
        self.loaded = False
        self.holds_slot = False
        self.phase = "stopped"  # stopped, starting, loading, idle, running
        self.running_seq: int | None = None
        self.unload_requested = False
        self.waiting_order: int | None = None
        self.last_used = time.monotonic()
        self.load_seconds: float | None = None
        self.restarts = 0
        self.thread = threading.Thread(target=self._main, name=f"gouache-worker-{key.label}", daemon=True)

    @property
    def counts(self) -> bool:
        """Whether this worker takes one of the ``max_loaded_models`` slots."""
        return self.key.kind == "model"

    def status(self) -> dict[str, Any]:
        return {
            "model": self.key.model,
            "controlnet": self.key.controlnet,
            "kind": self.key.kind,
            "phase": self.phase,
            "pid": self.pid if self.proc is not None else None,
            "engine": self.engine,
            "family": self.family,
            "queued": len(self.queue),
            "current_job": self.current.id if self.current else None,
            "load_seconds": self.load_seconds,
            "restarts": self.restarts,
        }

    # -- runner thread --------------------------------------------------------------------

    def _main(self) -> None:
        try:
            while True:
                job = self._next_job()
                if job is None:
                    break
                try:
                    self._run_job(job)
                    if job.state == JobState.FAILED and job.error is not None:
                        log.warning(
                            "job %s on %s failed (%s): %s",
                            job.id,
                            self.key.label,
                            job.error.kind,
                            job.error.message.splitlines()[0],
                        )
                except Exception as exc:  # noqa: BLE001 - a bug here must not stop the worker's queue
                    log.exception("job %s: internal error", job.id)
                    self._stop_process(kill=True)
                    self.pool.store.finish(job, JobState.FAILED, JobError("internal", f"internal server error: {exc}"))
                finally:
                    if job.started is not None and job.finished is not None:
                        self.pool.record_duration(job.finished - job.started)
                    with self.pool.cond:
                        self.current = None
                        self.last_used = time.monotonic()
                        self.pool.cond.notify_all()
        finally:
            self._stop_process()

    def _next_job(self) -> Job | None:
        pool = self.pool
        with pool.cond:
            while True:
                if pool.stopping and not self.queue:
                    return None
                unload = self.unload_requested or self._idle_expired() or (self.queue and pool.should_yield(self))
                if unload and self.proc is not None:
                    self.unload_requested = False
                    pool.cond.release()
                    try:
                        self._stop_process()
                    finally:
                        pool.cond.acquire()
                    pool.cond.notify_all()
                    continue
                self.unload_requested = False
                if self.queue and not pool.should_yield(self):
                    job = self.queue.popleft()
                    self.current = job
                    return job
                pool.cond.wait(0.25 if self.queue else 1.0)

    def _idle_expired(self) -> bool:
        idle = self.pool.config.idle_unload
        return (
            idle is not None
            and self.proc is not None
            and self.current is None
            and not self.queue
            and time.monotonic() - self.last_used >= idle
        )

    def _run_job(self, job: Job) -> None:
        store = self.pool.store
        if job.cancel_requested:
            store.finish(job, JobState.CANCELLED, JobError("cancelled", "cancelled before it started"))
            return
        store.start(job)
        try:
            self._ensure_ready(job)
        except _Abort:
            store.finish(job, JobState.CANCELLED, JobError("cancelled", "cancelled before it started"))
            return
        except _Crashed as exc:
            store.finish(job, JobState.FAILED, JobError("crashed", str(exc)))
            return
        except _LoadFailed as exc:
            store.finish(job, JobState.FAILED, JobError(exc.kind, exc.message))
            return
        self._run_tasks(job)

    def _run_tasks(self, job: Job) -> None:
        store = self.pool.store
        for index, task in enumerate(job.tasks):
            if job.cancel_requested:
                break
            with store.lock:
                job.unit, job.step, job.total = index, 0, 0
                job.phase = "running"
            store.publish(job, "progress")
            outcome, error = self._run_task(job, task, index)
            if outcome == "failed":
                store.finish(job, JobState.FAILED, error)
                return
            if outcome == "cancelled":
                break
            if outcome == "crashed" and not job.skip_requested:
                store.finish(job, JobState.FAILED, error)
                return
            if outcome in ("skipped", "crashed"):
                with store.lock:
                    job.skipped += 1
                    job.skip_requested = False
        if job.cancel_requested:
            store.finish(job, JobState.CANCELLED, JobError("cancelled", _cancel_text(job)))
        else:
            with store.lock:
                job.unit = len(job.tasks)
            store.finish(job, JobState.DONE)

    def _run_task(self, job: Job, task: P.Task, index: int) -> tuple[str, JobError | None]:
        """Run one task; ``("done"|"skipped"|"cancelled"|"failed"|"crashed", error)``."""
        pool, store = self.pool, self.pool.store
        if self.proc is None:  # restarted after a skip or crash
            try:
                self._ensure_ready(job)
            except _Abort:
                return "cancelled", None
            except (_Crashed, _LoadFailed) as exc:
                return "failed", JobError(getattr(exc, "kind", "crashed"), str(getattr(exc, "message", exc)))
        seq = pool.next_seq()
        with pool.cond:
            self.running_seq = seq
            self.phase = "running"
        try:
            self.conn.send(P.Run(seq, task, store.output_stem(job, index)))
            while True:
                msg = self._recv()
                if getattr(msg, "seq", seq) != seq:
                    continue
                if isinstance(msg, P.Step):
                    with store.lock:
                        job.step, job.total = msg.step, msg.total
                    store.publish(job, "progress")
                elif isinstance(msg, P.PreviewImage):
                    with store.lock:
                        job.preview, job.preview_step = msg.jpeg, msg.step
                    store.publish(job, "preview", {"step": msg.step, "image": job.preview_data_url()})
                elif isinstance(msg, P.Output):
                    result = Result(
                        len(job.results),
                        Path(msg.path),
                        msg.media_type,
                        msg.width,
                        msg.height,
                        msg.seed,
                        msg.infotext,
                        msg.parameters,
                    )
                    with store.lock:
                        job.results.append(result)
                    store.publish(job, "result", result.as_dict(job.id))
                elif isinstance(msg, P.Done):
                    with store.lock:
                        job.timings.append({k: round(v, 4) for k, v in msg.timings.items()})
                    return "done", None
                elif isinstance(msg, P.Failed):
                    if msg.kind == "cancelled":
                        return ("skipped", None) if job.skip_requested else ("cancelled", None)
                    return "failed", JobError(msg.kind, msg.message)
        except _Crashed as exc:
            store.remove_partial(job, index)
            if job.cancel_requested:
                return "cancelled", None
            if job.skip_requested:
                return "skipped", None
            return "crashed", JobError(
                "crashed", f"{exc} while running this job; the worker is restarted for the next job"
            )
        finally:
            with pool.cond:
                self.running_seq = None
                if self.proc is not None:
                    self.phase = "idle"

    # -- process ----------------------------------------------------------------------------

    def _ensure_ready(self, job: Job) -> None:
        """A live worker process with the model loaded (waits for a slot; loads on first use)."""
        if self.proc is not None and self.proc.is_alive() and (self.loaded or self.key.kind != "model"):
            self.last_used = time.monotonic()
            return
        self._stop_process(kill=True)
        self.pool.acquire_slot(self, job)
        store = self.pool.store
        with store.lock:
            job.phase = "loading"
        store.publish(job, "progress")
        self._start_process()
        if self.key.kind != "model":
            return
        kwargs = self.pool.catalog.load_kwargs(self.key.model, self.key.controlnet)
        with self.pool.cond:
            self.phase = "loading"
        try:
            self.conn.send(P.LoadModel(kwargs))
            msg = self._recv()
        except _Crashed as exc:
            if job.cancel_requested or self.pool.stopping:
                raise _Abort() from None
            raise _Crashed(f"{exc} while loading {self.key.label}") from None
        if isinstance(msg, P.Failed):
            self._stop_process()
            raise _LoadFailed(msg.kind, f"could not load model {self.key.label}: {msg.message}")
        self.loaded = True
        self.engine, self.family, self.load_seconds = msg.engine, msg.family, msg.seconds
        self.pool.catalog.learned_engine(self.key.model, msg.engine)
        with self.pool.cond:
            self.phase = "idle"
        log.info("loaded %s on %s in %.1fs (pid %s)", self.key.label, msg.engine, msg.seconds, self.pid)

    def _start_process(self) -> None:
        ctx = self.pool.ctx
        parent, child = ctx.Pipe(duplex=True)
        cancel = ctx.Value("q", -1, lock=False)
        proc = ctx.Process(
            target=_worker.main,
            args=(child, cancel, self.pool.config.worker_setup),
            name=f"gouache-worker-{self.key.label}",
            daemon=True,
        )
        with self.pool.cond:
            self.phase = "starting"
        proc.start()
        child.close()
        with self.pool.cond:
            self.proc, self.conn, self.cancel, self.pid = proc, parent, cancel, proc.pid
            self.holds_slot = self.counts
        msg = self._recv()
        if not isinstance(msg, P.Ready):
            raise _Crashed(f"the worker process for {self.key.label} did not start (got {msg!r})")

    def _recv(self) -> Any:
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            proc = self.proc
            code = None
            if proc is not None:
                proc.join(5)
                code = proc.exitcode
            self._forget_process()
            self.restarts += 1
            raise _Crashed(f"the worker process for {self.key.label} died ({_describe_exit(code)})") from None

    def _stop_process(self, kill: bool = False) -> None:
        proc, conn = self.proc, self.conn
        if proc is None:
            return
        if not kill and proc.is_alive():
            try:
                conn.send(P.Stop())
                proc.join(10)
            except (OSError, ValueError):
                pass
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        self._forget_process()

    def _forget_process(self) -> None:
        with self.pool.cond:
            if self.conn is not None:
                try:
                    self.conn.close()
                except OSError:
                    pass
            self.proc = self.conn = self.cancel = None
            self.loaded = False
            self.holds_slot = False
            self.phase = "stopped"
            self.pool.cond.notify_all()

    # -- from other threads (under pool.cond) ----------------------------------------------

    def interrupt(self) -> None:
        """Stop what the process is doing for the current job (caller holds ``pool.cond``)."""
        seq = self.running_seq
        if self.proc is None:
            return
        if seq is not None and self.engine == "torch":
            self.cancel.value = seq
            timer = threading.Timer(self.pool.config.cancel_grace, self._kill_if_running, args=(seq,))
            timer.daemon = True
            timer.start()
        elif self.phase in ("loading", "starting", "running"):
            self._kill()

    def _kill_if_running(self, seq: int) -> None:
        with self.pool.cond:
            if self.running_seq == seq:
                log.info(
                    "worker %s did not stop within %.2fs: ending it", self.key.label, self.pool.config.cancel_grace
                )
                self._kill()

    def _kill(self) -> None:
        """End the process (SIGKILL).  A cancelled job is final at once: the process cannot run
        on after SIGKILL, and its exit (freeing gigabytes) need not delay the answer; the
        runner thread cleans up when the pipe closes."""
        proc = self.proc
        if proc is not None and proc.is_alive():
            proc.kill()
        job = self.current
        if job is not None and job.cancel_requested:
            self.pool.store.finish(job, JobState.CANCELLED, JobError("cancelled", _cancel_text(job)))


def _cancel_text(job: Job) -> str:
    return f"cancelled after {len(job.results)} of {len(job.tasks)} result(s)"


class _LoadFailed(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Pool:
    """All workers of one server (see the module docstring)."""

    def __init__(self, config: ServerConfig, catalog: Catalog, store: JobStore) -> None:
        self.config = config
        self.catalog = catalog
        self.store = store
        self.cond = threading.Condition(threading.RLock())
        self.workers: dict[WorkerKey, Worker] = {}
        self.stopping = False
        self.ctx = mp.get_context("spawn")
        self._order = itertools.count(1)
        self._seq = itertools.count(1)
        self._durations: collections.deque[float] = collections.deque(maxlen=20)

    def next_seq(self) -> int:
        return next(self._seq)

    # -- submitting -------------------------------------------------------------------------

    def submit(self, job: Job) -> Job:
        """Queue ``job`` (registered in the store); 429 when ``max_queue`` jobs wait, 503 when stopping."""
        with self.cond:
            if self.stopping:
                raise ApiError(503, "the server is shutting down", kind="server_error")
            waiting = sum(len(w.queue) for w in self.workers.values())
            if waiting >= self.config.max_queue:
                retry = self.retry_after(waiting)
                raise ApiError(
                    429,
                    f"the queue is full ({waiting} jobs wait; limit max_queue={self.config.max_queue});"
                    f" retry in about {retry} s",
                    kind="rate_limit_error",
                    code="queue_full",
                    headers={"Retry-After": str(retry)},
                )
            worker = self.workers.get(job.worker)
            if worker is None:
                worker = self.workers[job.worker] = Worker(self, job.worker)
                worker.thread.start()
            job.order = next(self._order)
            self.store.add(job)
            worker.queue.append(job)
            self.cond.notify_all()
        return job

    def retry_after(self, waiting: int) -> int:
        per_job = sum(self._durations) / len(self._durations) if self._durations else 5.0
        return max(1, math.ceil(per_job * max(1, waiting) / max(1, len(self.workers))))

    def record_duration(self, seconds: float) -> None:
        self._durations.append(seconds)

    # -- cancelling -------------------------------------------------------------------------

    def cancel(self, job: Job, *, skip: bool = False) -> bool:
        """Cancel ``job`` (or, with ``skip``, only its current image); False if it already ended."""
        with self.cond:
            if job.terminal:
                return False
            worker = self.workers.get(job.worker)
            if worker is not None and job in worker.queue:
                if skip:
                    return False
                worker.queue.remove(job)
                self.store.finish(job, JobState.CANCELLED, JobError("cancelled", "cancelled before it started"))
                self.cond.notify_all()
                return True
            if skip:
                job.skip_requested = True
            else:
                job.cancel_requested = True
            if worker is not None and worker.current is job:
                worker.interrupt()
            self.cond.notify_all()
            return True

    def running(self) -> list[Job]:
        with self.cond:
            return [w.current for w in self.workers.values() if w.current is not None and not w.current.terminal]

    # -- slots ------------------------------------------------------------------------------

    def acquire_slot(self, worker: Worker, job: Job) -> None:
        """Wait until ``worker`` may load its model (see the module docstring)."""
        if not worker.counts:
            return
        with self.cond:
            worker.waiting_order = job.order
            try:
                while True:
                    if job.cancel_requested or self.stopping:
                        raise _Abort()
                    if any(
                        w.waiting_order is not None and w.waiting_order < job.order
                        for w in self.workers.values()
                        if w is not worker
                    ):
                        self.cond.wait(0.25)  # an older job of another model goes first
                        continue
                    holders = [w for w in self.workers.values() if w is not worker and w.counts and w.holds_slot]
                    if len(holders) < self.config.max_loaded_models:
                        worker.holds_slot = True
                        return
                    idle = [w for w in holders if w.current is None and not w.queue]
                    if idle:
                        victim = min(idle, key=lambda w: w.last_used)
                        victim.unload_requested = True
                        self.cond.notify_all()
                    self.cond.wait(0.25)
            finally:
                worker.waiting_order = None

    def should_yield(self, worker: Worker) -> bool:
        """Whether ``worker`` should unload for an older job of another model (caller holds cond)."""
        if not worker.counts or not worker.holds_slot or not worker.queue:
            return False
        holders = sum(1 for w in self.workers.values() if w.counts and w.holds_slot)
        if holders < self.config.max_loaded_models:
            return False
        mine = worker.queue[0].order
        return any(
            w.waiting_order is not None and w.waiting_order < mine for w in self.workers.values() if w is not worker
        )

    # -- state ------------------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        with self.cond:
            return [w.status() for w in self.workers.values()]

    def queued(self) -> int:
        with self.cond:
            return sum(len(w.queue) for w in self.workers.values())

    # -- shutdown ---------------------------------------------------------------------------

    def shutdown(self, grace: float) -> None:
        """Refuse new jobs, cancel queued ones, give running jobs ``grace`` seconds, cancel the
        rest, stop every worker process."""
        with self.cond:
            self.stopping = True
            for w in self.workers.values():
                while w.queue:
                    self.store.finish(
                        w.queue.popleft(),
                        JobState.CANCELLED,
                        JobError("cancelled", "the server shut down before this job started"),
                    )
            self.cond.notify_all()
            deadline = time.monotonic() + grace
            while any(w.current is not None for w in self.workers.values()) and time.monotonic() < deadline:
                self.cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            for w in self.workers.values():
                if w.current is not None:
                    w.current.cancel_requested = True
                    w._kill()
            workers = list(self.workers.values())
            self.cond.notify_all()
        for w in workers:
            w.thread.join(15)
