"""Following a provider job: poll it, record what changed, copy the video once it is done.

Most polls learn nothing new (the job is still queued or running, as it was). Such a quiet
poll writes nothing itself: its run's next due time goes into :attr:`Follows._quiet`, which
the poller hands to the store with its next claim, many polls in one transaction.
"""

from __future__ import annotations

import time
from typing import Any

from vidgate.backends.base import (
    GenerationFailed,
    ProviderJob,
    ProviderUnavailable,
    ProviderUpdate,
    RemoteBackend,
)
from vidgate.logs import event
from vidgate.runs.catalog import ModelSpec
from vidgate.runs.status import Status
from vidgate.storage.base import StorageError
from vidgate.store.records import RemoteRun
from vidgate.worker.local import attempt_name
from vidgate.worker.outage import despite_outage
from vidgate.worker.remote.outcomes import (
    Outcomes,
    backoff_s,
    best_effort_cancel,
    failures,
    job_of,
    log,
)
from vidgate.worker.thumbnails import spool, store_thumbnail, tee


class Follows(Outcomes):
    copy_attempts: int
    _quiet: dict[str, float]
    """Quiet polls not yet recorded: run id -> when it is due again."""

    async def _poll(self, run: RemoteRun, spec: ModelSpec, backend: RemoteBackend) -> None:
        job = job_of(run)
        if run.deadline_at is not None and time.time() > run.deadline_at:
            await best_effort_cancel(backend, job)
            await self._fail(
                run,
                f"the provider did not finish within {spec.deadline_s:g} s (last provider "
                f"status: {run.provider_status or 'none'})",
            )
            return
        try:
            update = await backend.poll(job)
        except ProviderUnavailable as exc:
            failed = failures(run, "poll_failures") + 1
            delay = backoff_s(failed, self._interval(spec), exc.retry_after_s)
            event(
                log, "provider.poll_failed", run_id=run.id, error=str(exc), delay_s=round(delay, 1)
            )
            await self.store.remote_update(
                run.id,
                self.owner,
                provider_state={**(run.provider_state or {}), "poll_failures": failed},
                next_poll_at=time.time() + delay,
            )
            return
        except GenerationFailed as exc:
            await self._fail_from(run, exc)
            return
        await self._apply(run, spec, backend, job, update)

    async def _apply(
        self,
        run: RemoteRun,
        spec: ModelSpec,
        backend: RemoteBackend,
        job: ProviderJob,
        update: ProviderUpdate,
    ) -> None:
        state: dict[str, Any] = {"job": job.state}
        if update.queue_position is not None:
            state["queue_position"] = update.queue_position
        if update.provider_cost_usd is not None:
            state["provider_cost_usd"] = update.provider_cost_usd
        common: dict[str, Any] = {
            "provider_status": update.provider_status[:100],
            "provider_state": state,
        }
        interval = max(self._interval(spec), update.retry_after_s or 0.0)
        if update.status in (Status.IN_QUEUE, Status.IN_PROGRESS):
            target = update.status if run.status is Status.IN_QUEUE else Status.IN_PROGRESS
            progress = None if update.progress is None else min(99.0, update.progress)
            seen = (run.status, run.progress, run.provider_status)
            now = (target, progress, common["provider_status"])
            if seen == now and state == run.provider_state:
                self._quiet[run.id] = time.time() + interval  # nothing to write
                return
            await self.store.remote_update(
                run.id,
                self.owner,
                to=target,
                publish=seen != now or _queue_position(run) != update.queue_position,
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
        run: RemoteRun,
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
            with spool(run.id) as copy:  # a copy on the way, for the poster
                chunks = tee(backend.open_output(job, update.output_urls[0]), copy, run.id)
                stored = await self.storage.put_stream(key, chunks, "video/mp4")
                thumb = None
                if copy is not None and copy.exists():  # else its failure was logged
                    thumb = await store_thumbnail(self.storage, copy, key, run.id)
        except (ProviderUnavailable, GenerationFailed, StorageError, OSError) as exc:
            failed = failures(run, "copy_failures") + 1
            if failed >= self.copy_attempts:
                await self._fail(
                    run,
                    f"the finished video could not be copied from the "
                    f"provider after {failed} attempts: {exc}",
                )
                return
            retry_after = exc.retry_after_s if isinstance(exc, ProviderUnavailable) else None
            delay = backoff_s(failed, 1.0, retry_after)
            event(
                log, "provider.copy_failed", run_id=run.id, error=str(exc), delay_s=round(delay, 1)
            )
            await self.store.remote_update(
                run.id,
                self.owner,
                next_poll_at=time.time() + delay,
                provider_state={**common["provider_state"], "copy_failures": failed},
            )
            return
        if run.status is Status.IN_QUEUE:
            await self.store.remote_update(run.id, self.owner, to=Status.IN_PROGRESS, release=False)
        done = await despite_outage(
            lambda: self.store.remote_update(
                run.id,
                self.owner,
                to=Status.COMPLETED,
                progress=100.0,
                next_poll_at=None,
                output_key=stored.key,
                output_content_type=stored.content_type,
                output_size=stored.size,
                thumbnail_key=thumb,
                **common,
            ),
            run_id=run.id,
        )
        if not done:
            current = await despite_outage(lambda: self.store.get(run.id), run_id=run.id)
            if current.output_key != key:  # never a video the run points at
                await self.storage.delete(key)
                if thumb is not None:
                    await self.storage.delete(thumb)
            return
        event(
            log,
            "run.completed",
            run_id=run.id,
            request_id=run.provider_request_id,
            bytes=stored.size,
        )


def _queue_position(run: RemoteRun) -> int | None:
    position = (run.provider_state or {}).get("queue_position")
    return position if isinstance(position, int) else None
