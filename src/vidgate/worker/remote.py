"""The poller for remote providers: one loop schedules every in-flight provider job.

Remote runs are leased one operation at a time. Each round, the loop leases the runs whose
next operation is due (a submit, a poll, a provider-side cancel), runs those operations
concurrently (bounded), and records the outcome with the run's next due time. Nothing
sleeps per run, so one process follows tens of thousands of provider jobs; a process that
dies mid-operation loses only its short leases.

Exactly-once toward the provider: before a submit, ``submit_started_at`` is committed; the
provider's request id is committed in the step right after the submit returns. A run found
with the marker but no id (the process died inside that window), or whose submit answer was
lost, is failed with an explanation instead of being submitted again, so a provider job is
never paid for twice. Once the id is recorded, a restart only ever resumes polling.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from typing import Any

from vidgate.backends.base import (
    FAILED_FRIENDLY,
    GenerationFailed,
    ProviderJob,
    ProviderUnavailable,
    ProviderUpdate,
    RemoteBackend,
    SubmitOutcomeUnknown,
)
from vidgate.config import WorkerSettings
from vidgate.logs import event
from vidgate.runs.catalog import Catalog, ModelSpec
from vidgate.runs.status import Status
from vidgate.storage.local import LocalStorage
from vidgate.store.records import RunRecord
from vidgate.store.sql import SQLStore
from vidgate.worker.local import attempt_name
from vidgate.worker.wakeup import sleep_until

log = logging.getLogger("vidgate.poller")

MAX_BACKOFF_S = 300.0
CLAIM_BATCH = 500
SUBMIT_GRACE_S = 30.0
SUBMIT_ATTEMPTS = 5  # refused submits (429, 5xx, no connection) before the run fails
CANCEL_ATTEMPTS = 5  # failed provider cancels before giving up on telling the provider


def _failures(run: RunRecord, counter: str) -> int:
    """How many times in a row the operation named by ``counter`` has failed for this run."""
    return int((run.provider_state or {}).get(counter, 0))


def backoff_s(failures: int, base_s: float, retry_after_s: float | None = None) -> float:
    """Exponential backoff with jitter, never sooner than the provider's Retry-After."""
    delay: float = min(MAX_BACKOFF_S, base_s * 2.0 ** min(failures, 10))
    return max(delay * random.uniform(0.8, 1.2), retry_after_s or 0.0)


class RemotePoller:
    def __init__(
        self,
        store: SQLStore,
        storage: LocalStorage,
        catalog: Catalog,
        backends: Mapping[str, RemoteBackend],
        poll_intervals: Mapping[str, float],
        settings: WorkerSettings,
        owner: str,
        *,
        copy_attempts: int = 5,
    ) -> None:
        self.store = store
        self.storage = storage
        self.catalog = catalog
        self.backends = dict(backends)  # by provider name
        # The cadence per provider: as configured, never below what the adapter allows.
        self._intervals = {
            name: max(poll_intervals[name], backend.min_poll_interval_s)
            for name, backend in self.backends.items()
        }
        self.settings = settings
        self.owner = owner
        self.copy_attempts = copy_attempts
        self.kinds = sorted({spec.backend for spec in catalog if spec.provider in self.backends})
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: dict[asyncio.Task[None], str] = {}  # operation -> run id
        self._submitting: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for due operations now (a remote run was submitted or cancelled)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        if not self.kinds:
            return
        event(log, "poller.started", owner=self.owner, backends=",".join(self.kinds))
        renewer = asyncio.create_task(self._renew_leases(stop))
        try:
            while not stop.is_set():
                free = self.settings.remote_concurrency - len(self._tasks)
                if free <= 0:  # every slot busy: wait for one to free up
                    await asyncio.wait(
                        set(self._tasks),
                        timeout=self.settings.idle_poll_s,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    continue
                wanted = min(free, CLAIM_BATCH)
                self._wake.clear()  # before the claim: a wake-up during it is not lost
                batch: list[RunRecord] = []
                try:
                    batch = await self.store.claim_remote(
                        self.owner, self.kinds, wanted, self.settings.lease_s
                    )
                except Exception:
                    log.exception("poller.claim_failed")
                for run in batch:
                    task = asyncio.create_task(self._operate(run))
                    self._tasks.add(task)
                    self._held[task] = run.id
                    task.add_done_callback(self._forget)
                if len(batch) < wanted:  # nothing more is due yet
                    await sleep_until(self.settings.idle_poll_s, stop, self._wake)
        finally:
            # Polls and copies are simply redone later. A submit waiting for the provider's
            # answer is given time to record the provider's id: cut off now, its run could
            # only be failed as "outcome unknown" after the restart.
            for task in list(self._tasks):
                if task not in self._submitting:
                    task.cancel()
            submitting = set(self._submitting)
            if submitting:
                event(log, "poller.waiting_for_submits", count=len(submitting))
                await asyncio.wait(submitting, timeout=SUBMIT_GRACE_S)
            renewer.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(renewer, *self._tasks, return_exceptions=True)
            event(log, "poller.stopped", owner=self.owner)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._held.pop(task, None)

    async def _renew_leases(self, stop: asyncio.Event) -> None:
        """Keep the leases of operations that run long (a large video copy) from expiring."""
        while not stop.is_set():
            await asyncio.sleep(self.settings.lease_s / 3)
            try:
                await self.store.renew(self.owner, set(self._held.values()), self.settings.lease_s)
            except Exception:
                log.exception("poller.renew_failed")

    async def _operate(self, run: RunRecord) -> None:
        try:
            spec = self.catalog.models.get(run.model)
            backend = self.backends.get(spec.provider or "") if spec else None
            if spec is None or backend is None:
                await self._fail(run, f"model {run.model!r} is no longer configured here")
            elif run.status is Status.CANCELLED:
                await self._cancel_at_provider(run, backend)
            elif run.provider_request_id is None:
                await self._submit(run, spec, backend)
            else:
                await self._poll(run, spec, backend)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("poller.operation_crashed run_id=%s", run.id)
            await self._retry_later(run, f"internal error: {type(exc).__name__}")

    # ---- submit --------------------------------------------------------------------

    async def _submit(self, run: RunRecord, spec: ModelSpec, backend: RemoteBackend) -> None:
        if run.submit_started_at is not None:
            await self._fail(
                run,
                "vidgate stopped while submitting this run to the provider, so it cannot "
                "tell whether the provider started a job; it was not submitted again to "
                "avoid paying twice",
            )
            return
        current = asyncio.current_task()
        if current is not None:
            self._submitting.add(current)
        try:
            await self._submit_once(run, spec, backend)
        finally:
            if current is not None:
                self._submitting.discard(current)

    async def _submit_once(self, run: RunRecord, spec: ModelSpec, backend: RemoteBackend) -> None:
        marked = await self.store.remote_update(
            run.id, self.owner, release=False, submit_started_at=time.time()
        )
        if not marked:
            return
        request = run.generation_request
        try:
            job = await backend.submit(request, spec.provider_model or spec.slug, spec.options)
        except SubmitOutcomeUnknown as exc:
            await self._fail(
                run,
                f"the provider's answer to the submit was lost ({exc}); the "
                "job may exist upstream, so it was not submitted again",
            )
            return
        except ProviderUnavailable as exc:
            attempts = _failures(run, "submit_failures") + 1
            if attempts >= SUBMIT_ATTEMPTS:
                await self._fail(run, f"the provider kept refusing the submit: {exc}")
                return
            delay = backoff_s(attempts, 1.0, exc.retry_after_s)
            event(
                log, "provider.submit_retry", run_id=run.id, error=str(exc), delay_s=round(delay, 1)
            )
            await self.store.remote_update(
                run.id,
                self.owner,
                submit_started_at=None,
                available_at=time.time() + delay,
                provider_state={"submit_failures": attempts},
            )
            return
        except GenerationFailed as exc:
            await self._fail_from(run, exc)
            return
        interval = self._interval(spec)
        recorded = await self.store.remote_update(
            run.id,
            self.owner,
            provider_request_id=job.request_id,
            provider_state={"job": job.state},
            next_poll_at=time.time() + interval,
        )
        if not recorded:  # cancelled while the submit was in flight
            event(log, "provider.cancel_after_submit", run_id=run.id, request_id=job.request_id)
            await _best_effort_cancel(backend, job)
            return
        event(log, "provider.submitted", run_id=run.id, request_id=job.request_id)

    # ---- poll ------------------------------------------------------------------------

    async def _poll(self, run: RunRecord, spec: ModelSpec, backend: RemoteBackend) -> None:
        job = _job(run)
        if run.deadline_at is not None and time.time() > run.deadline_at:
            await _best_effort_cancel(backend, job)
            await self._fail(
                run,
                f"the provider did not finish within {spec.deadline_s:g} s (last provider "
                f"status: {run.provider_status or 'none'})",
            )
            return
        try:
            update = await backend.poll(job)
        except ProviderUnavailable as exc:
            failures = _failures(run, "poll_failures") + 1
            delay = backoff_s(failures, self._interval(spec), exc.retry_after_s)
            event(
                log, "provider.poll_failed", run_id=run.id, error=str(exc), delay_s=round(delay, 1)
            )
            await self.store.remote_update(
                run.id,
                self.owner,
                provider_state={**(run.provider_state or {}), "poll_failures": failures},
                next_poll_at=time.time() + delay,
            )
            return
        except GenerationFailed as exc:
            await self._fail_from(run, exc)
            return
        await self._apply(run, spec, backend, job, update)

    async def _apply(
        self,
        run: RunRecord,
        spec: ModelSpec,
        backend: RemoteBackend,
        job: ProviderJob,
        update: ProviderUpdate,
    ) -> None:
        state: dict[str, Any] = {"job": job.state}
        if update.queue_position is not None:
            state["queue_position"] = update.queue_position
        common: dict[str, Any] = {
            "provider_status": update.provider_status[:100],
            "provider_state": state,
        }
        interval = max(self._interval(spec), update.retry_after_s or 0.0)
        if update.status in (Status.IN_QUEUE, Status.IN_PROGRESS):
            target = update.status if run.status is Status.IN_QUEUE else Status.IN_PROGRESS
            progress = None if update.progress is None else min(99.0, update.progress)
            seen = (run.status, run.progress, run.provider_status, _queue_position(run))
            now = (target, progress, common["provider_status"], update.queue_position)
            await self.store.remote_update(
                run.id,
                self.owner,
                to=target,
                publish=seen != now,  # a poll that learned nothing new is no event
                progress=progress,
                next_poll_at=time.time() + interval,
                **common,
            )
        elif update.status is Status.COMPLETED:
            await self._copy_output(run, backend, job, update, common)
        elif update.status is Status.FAILED:
            await self._fail(
                run,
                update.error or "the provider reported a failure",
                user_friendly=update.user_friendly_error,
                is_nsfw=update.is_nsfw,
                provider_status=update.provider_status,
            )
        else:
            done = await self.store.remote_update(
                run.id,
                self.owner,
                to=Status.CANCELLED,
                next_poll_at=None,
                error=update.error or "cancelled at the provider",
                **common,
            )
            if done:
                event(log, "run.cancelled", run_id=run.id, by="provider")

    async def _copy_output(
        self,
        run: RunRecord,
        backend: RemoteBackend,
        job: ProviderJob,
        update: ProviderUpdate,
        common: dict[str, Any],
    ) -> None:
        if not update.output_urls:
            await self._fail(run, "the provider reported success but returned no video")
            return
        key = f"{run.id}/{attempt_name(run)}.mp4"  # never another operation's file
        try:
            stored = await self.storage.put_stream(
                key, backend.open_output(job, update.output_urls[0]), "video/mp4"
            )
        except (ProviderUnavailable, GenerationFailed, OSError) as exc:
            failures = _failures(run, "copy_failures") + 1
            if failures >= self.copy_attempts:
                await self._fail(
                    run,
                    f"the finished video could not be copied from the "
                    f"provider after {failures} attempts: {exc}",
                )
                return
            retry_after = exc.retry_after_s if isinstance(exc, ProviderUnavailable) else None
            delay = backoff_s(failures, 1.0, retry_after)
            event(
                log, "provider.copy_failed", run_id=run.id, error=str(exc), delay_s=round(delay, 1)
            )
            await self.store.remote_update(
                run.id,
                self.owner,
                next_poll_at=time.time() + delay,
                provider_state={**common["provider_state"], "copy_failures": failures},
            )
            return
        if run.status is Status.IN_QUEUE:
            await self.store.remote_update(run.id, self.owner, to=Status.IN_PROGRESS, release=False)
        done = await self.store.remote_update(
            run.id,
            self.owner,
            to=Status.COMPLETED,
            progress=100.0,
            next_poll_at=None,
            output_key=stored.key,
            output_content_type=stored.content_type,
            output_size=stored.size,
            **common,
        )
        if not done:
            await self.storage.delete(key)
            return
        event(
            log,
            "run.completed",
            run_id=run.id,
            request_id=run.provider_request_id,
            bytes=stored.size,
        )

    # ---- cancel and failure -------------------------------------------------------------

    async def _cancel_at_provider(self, run: RunRecord, backend: RemoteBackend) -> None:
        try:
            await backend.cancel(_job(run))
        except ProviderUnavailable as exc:
            failures = _failures(run, "cancel_failures") + 1
            if failures < CANCEL_ATTEMPTS:
                await self.store.remote_update(
                    run.id,
                    self.owner,
                    expect=(Status.CANCELLED,),
                    next_poll_at=time.time() + backoff_s(failures, 1.0, exc.retry_after_s),
                    provider_state={**(run.provider_state or {}), "cancel_failures": failures},
                )
                return
        except GenerationFailed:
            pass
        await self.store.remote_update(
            run.id, self.owner, expect=(Status.CANCELLED,), next_poll_at=None
        )
        event(log, "provider.cancelled", run_id=run.id, request_id=run.provider_request_id)

    async def _fail(
        self,
        run: RunRecord,
        error: str,
        *,
        user_friendly: str | None = None,
        is_nsfw: bool = False,
        provider_status: str | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "error": error[:4000],
            "is_nsfw": is_nsfw,
            "user_friendly_error": user_friendly or (None if is_nsfw else FAILED_FRIENDLY),
            "next_poll_at": None,
        }
        if provider_status is not None:
            values["provider_status"] = provider_status[:100]
        done = await self.store.remote_update(run.id, self.owner, to=Status.FAILED, **values)
        if done:
            event(log, "run.failed", run_id=run.id, error=error, nsfw=is_nsfw or None)

    async def _fail_from(self, run: RunRecord, exc: GenerationFailed) -> None:
        await self._fail(
            run,
            str(exc),
            user_friendly=exc.user_friendly,
            is_nsfw=exc.is_nsfw,
            provider_status=exc.provider_status,
        )

    async def _retry_later(self, run: RunRecord, error: str) -> None:
        due = time.time() + backoff_s(3, 1.0)
        await self.store.remote_update(
            run.id,
            self.owner,
            expect=(Status.IN_QUEUE, Status.IN_PROGRESS, Status.CANCELLED),
            next_poll_at=due if run.provider_request_id else None,
            available_at=due,
        )
        event(log, "poller.retry_later", run_id=run.id, error=error)

    def _interval(self, spec: ModelSpec) -> float:
        return self._intervals[spec.provider or ""]


def _queue_position(run: RunRecord) -> int | None:
    position = (run.provider_state or {}).get("queue_position")
    return position if isinstance(position, int) else None


def _job(run: RunRecord) -> ProviderJob:
    state = (run.provider_state or {}).get("job") or {}
    return ProviderJob(request_id=run.provider_request_id or "", state=dict(state))


async def _best_effort_cancel(backend: RemoteBackend, job: ProviderJob) -> None:
    try:
        await backend.cancel(job)
    except Exception as exc:  # cancel is advisory; the run's outcome is already decided
        event(log, "provider.cancel_failed", request_id=job.request_id, error=str(exc))
