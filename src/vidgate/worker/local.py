"""The worker for local backends (testcard, diffusers).

One loop claims due runs while fewer than ``concurrency`` are active, of the backends below
their own ``max_active`` (one GPU renders one run at a time), and of ``models`` only when
set (``[worker] models``, ``vidgate worker --models``); each claimed run is a task. A
second loop renews the leases of all active runs every ``heartbeat_s`` in one query; a run
missing from the answer was cancelled (or taken over), and its task is cancelled, which kills
the render. A run whose worker died is claimed again once its lease has expired; after
``max_attempts`` claims it is failed instead of retried forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import shutil
import socket
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vidgate import logs
from vidgate.backends.base import (
    FAILED_FRIENDLY,
    GenerationCancelled,
    GenerationFailed,
    LocalBackend,
    LocalOutput,
)
from vidgate.config import WorkerSettings
from vidgate.logs import event
from vidgate.runs.catalog import Catalog
from vidgate.runs.status import Status
from vidgate.storage.base import Storage, StorageError
from vidgate.store.errors import StoreUnavailable
from vidgate.store.records import RemoteRun, RunRecord
from vidgate.store.sql import SQLStore
from vidgate.worker.outage import despite_outage
from vidgate.worker.thumbnails import store_thumbnail
from vidgate.worker.wakeup import sleep_until

log = logging.getLogger("vidgate.worker")


def attempt_name(run: RunRecord | RemoteRun) -> str:
    """A name unique to this claim of the run: for its working folder and output key."""
    return f"{run.attempts}-{secrets.token_hex(4)}"


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


KEEP_GRACE_S = 10.0
"""On a stop, how long a finished render may still take to be stored and recorded (it
waits for a database that is away); then it is abandoned and the run is redone later."""


async def _outlast(task: asyncio.Future[None], run_id: str) -> None:
    """Wait until ``task`` is done, however often the wait is cancelled, for at most
    ``KEEP_GRACE_S``; then cancel it. Log its failure."""
    deadline = asyncio.get_running_loop().time() + KEEP_GRACE_S
    while not task.done():
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            event(log, "run.keep_abandoned", logging.WARNING, run_id=run_id, grace_s=KEEP_GRACE_S)
            task.cancel()
            await asyncio.wait([task])
            return
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([task], timeout=left)
    if not task.cancelled() and task.exception() is not None:
        log.error("run.keep_failed run_id=%s", run_id, exc_info=task.exception())


class LocalWorker:
    def __init__(
        self,
        store: SQLStore,
        storage: Storage,
        catalog: Catalog,
        backends: Mapping[str, LocalBackend],
        settings: WorkerSettings,
        workdir: Path,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.storage = storage
        self.catalog = catalog
        self.backends = dict(backends)
        self.settings = settings
        self.workdir = workdir
        self.owner = owner or new_owner_id()
        self.models = None if settings.models is None else frozenset(settings.models)
        """The models this worker renders (None: every model of its backends)."""
        self._active: dict[str, asyncio.Task[None]] = {}
        self._backend_of: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._progress: dict[str, float] = {}

    def wake(self) -> None:
        """Look for work now (a run was submitted, or a slot came free)."""
        self._wake.set()

    def stop_run(self, run_id: str) -> None:
        """Stop a run this worker renders at once (it was cancelled); the heartbeat would
        notice too, within ``heartbeat_s``."""
        task = self._active.get(run_id)
        if task is not None and not task.done() and task is not asyncio.current_task():
            event(log, "run.stopping", run_id=run_id, reason="cancelled")
            task.cancel()

    async def run(self, stop: asyncio.Event) -> None:
        event(log, "worker.started", owner=self.owner, backends=",".join(self.backends))
        heartbeat = asyncio.create_task(self._heartbeat_loop(stop))
        try:
            await self._claim_loop(stop)
        finally:
            heartbeat.cancel()
            held = list(self._active)  # the done-callbacks empty _active as tasks end
            tasks = list(self._active.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(heartbeat, *tasks, return_exceptions=True)
            try:
                await self.store.release(self.owner, held)
            except StoreUnavailable as exc:  # their leases run out instead
                event(log, "worker.release_failed", logging.WARNING, error=str(exc))
                held = []
            event(log, "worker.stopped", owner=self.owner, released=len(held))

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            claimed = None
            self._wake.clear()  # before the claim: a wake-up during it is not lost
            with_room = self._backends_with_room()
            if len(self._active) < self.settings.concurrency and with_room:
                try:
                    claimed = await self.store.claim_next(
                        self.owner,
                        with_room,
                        self.settings.lease_s,
                        running=self._active,
                        models=self.models,
                    )
                except StoreUnavailable as exc:  # looked for again after idle_poll_s
                    event(log, "worker.claim_failed", logging.WARNING, error=str(exc))
                except Exception:
                    log.exception("worker.claim_failed")
            if claimed is not None:
                self._start(claimed)
                continue
            await sleep_until(self.settings.idle_poll_s, stop, self._wake)

    def _backends_with_room(self) -> list[str]:
        """The backends that may take one more run now (below their ``max_active``)."""
        busy = Counter(self._backend_of.values())
        return [
            name
            for name, backend in self.backends.items()
            if backend.max_active is None or busy[name] < backend.max_active
        ]

    def _start(self, run: RunRecord) -> None:
        if run.id in self._active:
            # Our own lease lapsed (a stalled heartbeat) and we took the run again: it is
            # still being rendered here, under the lease the claim just renewed.
            event(log, "run.reclaimed_while_running", run_id=run.id)
            return
        task = asyncio.create_task(self._execute(run), name=f"run-{run.id}")
        self._active[run.id] = task
        self._backend_of[run.id] = run.backend
        task.add_done_callback(functools.partial(self._finished, run.id))

    def _finished(self, run_id: str, _task: asyncio.Task[None]) -> None:
        self._active.pop(run_id, None)
        self._backend_of.pop(run_id, None)
        self._progress.pop(run_id, None)
        self._wake.set()

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.settings.heartbeat_s)
            ids = list(self._active)
            if not ids:
                continue
            try:
                held = await self.store.heartbeat(self.owner, ids, self.settings.lease_s)
            except StoreUnavailable as exc:
                event(log, "worker.heartbeat_failed", logging.WARNING, error=str(exc))
                continue
            except Exception:
                log.exception("worker.heartbeat_failed")
                continue
            for run_id in ids:
                task = self._active.get(run_id)
                if run_id not in held and task is not None and not task.done():
                    event(log, "run.stopping", run_id=run_id, reason="no longer held")
                    task.cancel()

    async def _execute(self, run: RunRecord) -> None:
        logs.run_id.set(run.id)  # this task's lines, its libraries' too, name the run
        event(log, "run.claimed", run_id=run.id, backend=run.backend, attempt=run.attempts)
        if run.attempts > self.settings.max_attempts:
            await self._finish(
                run,
                Status.FAILED,
                error=f"the run was interrupted {run.attempts - 1} times (worker restarts or "
                "crashes); giving up",
                user_friendly_error=FAILED_FRIENDLY,
            )
            return
        # Each attempt has its own folder and output key: a worker that lost its lease
        # (and finishes late) can never touch what the worker that took over produced.
        attempt = attempt_name(run)
        workdir = self.workdir / run.id / attempt
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            spec = self.catalog.models.get(run.model)
            backend = self.backends[run.backend]
            options = spec.options if spec else {}
            output = await backend.generate(
                run.generation_request,
                options,
                workdir,
                lambda percent: self._report_progress(run.id, percent),
            )
            # A cancel from here on waits for the video to be kept or deleted: cut off, the
            # move into storage would go on in its thread and leave an orphaned file.
            keeping = asyncio.ensure_future(self._keep(run, f"{run.id}/{attempt}.mp4", output))
            try:
                await asyncio.shield(keeping)
            except asyncio.CancelledError:
                await _outlast(keeping, run.id)
                raise
        except StorageError as exc:
            event(log, "storage.write_failed", logging.ERROR, run_id=run.id, error=str(exc))
            await self._finish(
                run, Status.FAILED, error=str(exc), user_friendly_error=FAILED_FRIENDLY
            )
        except GenerationFailed as exc:
            await self._finish(
                run,
                Status.FAILED,
                error=str(exc),
                user_friendly_error=exc.user_friendly,
                is_nsfw=exc.is_nsfw,
                provider_status=exc.provider_status,
            )
        except GenerationCancelled as exc:
            await self._finish(run, Status.CANCELLED, error=str(exc))
        except asyncio.CancelledError:
            event(log, "run.stopped", run_id=run.id)
            raise
        except Exception as exc:
            log.exception("run.crashed run_id=%s", run.id)
            await self._finish(
                run,
                Status.FAILED,
                error=f"internal error: {type(exc).__name__}: {exc}",
                user_friendly_error=FAILED_FRIENDLY,
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            with contextlib.suppress(OSError):
                workdir.parent.rmdir()  # only once no other attempt uses it

    async def _keep(self, run: RunRecord, key: str, output: LocalOutput) -> None:
        """Store the video and complete the run; if the run can no longer complete here
        (cancelled, or taken over), delete the video again. Abandoned while the database
        is away (a stop), the video is left where it is: a commit whose answer was lost
        may point the run at it."""
        # The poster is made from the render before the render moves into storage.
        thumb = await store_thumbnail(self.storage, output.path, key, run.id)
        try:
            stored = await self.storage.put_file(key, output.path, output.content_type)
        except Exception:
            if thumb is not None:
                await self.storage.delete(thumb)
            raise
        spec = self.catalog.models.get(run.model)
        settled: dict[str, float] = {}
        if output.duration_s is not None and spec is not None:  # the final cost, as made
            cost = spec.cost(output.duration_s, run.generation_request)
            settled = {"video_s": output.duration_s, "cost": cost}
        try:
            done = await self._finish(
                run,
                Status.COMPLETED,
                **settled,
                progress=100.0,
                output_key=stored.key,
                output_content_type=stored.content_type,
                output_size=stored.size,
                thumbnail_key=thumb,
            )
        except asyncio.CancelledError:
            event(log, "run.output_unrecorded", logging.WARNING, run_id=run.id, key=stored.key)
            raise
        if done is None and (await self._current(run)).output_key != key:
            await self.storage.delete(key)  # never a video the run points at
            if thumb is not None:
                await self.storage.delete(thumb)

    async def _report_progress(self, run_id: str, percent: float) -> None:
        if self.store.writes_failing:
            # Progress is only news: while the database is away it is not sent (each try
            # could wait out SQLite's busy timeout); heartbeats find the database back.
            return
        percent = max(0.0, min(99.0, round(percent, 1)))
        if self._progress.get(run_id) == percent:
            return
        self._progress[run_id] = percent
        try:
            await self.store.update_running(run_id, self.owner, progress=percent)
        except StoreUnavailable:
            self._progress.pop(run_id, None)  # the next report tells it
        except Exception:
            log.exception("run.progress_failed run_id=%s", run_id)

    async def _finish(self, run: RunRecord, status: Status, **values: Any) -> RunRecord | None:
        """The run, moved to ``status``; None if it changed meanwhile (cancelled, or taken
        over). Waits for the database if it is unavailable: the outcome is never lost."""
        done = await despite_outage(
            lambda: self.store.transition(run.id, status, owner=self.owner, **values),
            run_id=run.id,
        )
        if done is None:
            current = await self._current(run)
            event(log, "run.finish_lost", run_id=run.id, wanted=status, now=current.status)
        else:
            elapsed = (done.completed_at or time.time()) - (done.started_at or done.created_at)
            event(
                log,
                f"run.{status.value.lower()}",
                run_id=run.id,
                seconds=round(elapsed, 2),
                error=values.get("error"),
            )
        return done

    async def _current(self, run: RunRecord) -> RunRecord:
        return await despite_outage(lambda: self.store.get(run.id), run_id=run.id)
