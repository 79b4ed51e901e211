"""How a remote operation ends when it does not simply go on: the run fails, the provider
is told of a cancel, or the operation is tried again later with backoff."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from vidgate.backends.base import (
    FAILED_FRIENDLY,
    GenerationFailed,
    ProviderJob,
    ProviderUnavailable,
    RemoteBackend,
)
from vidgate.logs import event
from vidgate.runs.catalog import ModelSpec
from vidgate.runs.status import Status
from vidgate.storage.base import Storage
from vidgate.store.records import RemoteRun
from vidgate.store.sql import SQLStore

log = logging.getLogger("vidgate.poller")

MAX_BACKOFF_S = 300.0
CANCEL_ATTEMPTS = 5  # failed provider cancels before giving up on telling the provider


def failures(run: RemoteRun, counter: str) -> int:
    """How many times in a row the operation named by ``counter`` has failed for this run."""
    return int((run.provider_state or {}).get(counter, 0))


def backoff_s(
    failures: int,
    base_s: float,
    retry_after_s: float | None = None,
    *,
    jitter: float | None = None,
) -> float:
    """Exponential backoff with jitter (a factor from 0.8 to 1.2, random unless given),
    at most :data:`MAX_BACKOFF_S`, and never sooner than the provider's Retry-After."""
    factor = random.uniform(0.8, 1.2) if jitter is None else jitter
    delay: float = min(MAX_BACKOFF_S, base_s * 2.0 ** min(failures, 10) * factor)
    return max(delay, retry_after_s or 0.0)


def job_of(run: RemoteRun) -> ProviderJob:
    state = (run.provider_state or {}).get("job") or {}
    return ProviderJob(request_id=run.provider_request_id or "", state=dict(state))


async def best_effort_cancel(backend: RemoteBackend, job: ProviderJob) -> bool:
    """Ask the provider to cancel ``job``; whether it took the cancel. A failure is logged,
    not raised: the cancel is advisory, the run's outcome is already decided."""
    try:
        await backend.cancel(job)
    except Exception as exc:
        event(log, "provider.cancel_failed", request_id=job.request_id, error=str(exc))
        return False
    return True


class Outcomes:
    """What every remote operation may end with; the operations build on it."""

    store: SQLStore
    storage: Storage
    owner: str
    _intervals: dict[str, float]
    """The poll cadence per provider."""

    def _interval(self, spec: ModelSpec) -> float:
        return self._intervals[spec.provider or ""]

    async def _cancel_at_provider(self, run: RemoteRun, backend: RemoteBackend) -> None:
        try:
            await backend.cancel(job_of(run))
        except ProviderUnavailable as exc:
            failed = failures(run, "cancel_failures") + 1
            if failed < CANCEL_ATTEMPTS:
                await self.store.remote_update(
                    run.id,
                    self.owner,
                    expect=(Status.CANCELLED,),
                    next_poll_at=time.time() + backoff_s(failed, 1.0, exc.retry_after_s),
                    provider_state={**(run.provider_state or {}), "cancel_failures": failed},
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
        run: RemoteRun,
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

    async def _fail_from(self, run: RemoteRun, exc: GenerationFailed) -> None:
        await self._fail(
            run,
            str(exc),
            user_friendly=exc.user_friendly,
            is_nsfw=exc.is_nsfw,
            provider_status=exc.provider_status,
        )

    async def _retry_later(self, run: RemoteRun, error: str) -> None:
        due = time.time() + backoff_s(3, 1.0)
        await self.store.remote_update(
            run.id,
            self.owner,
            expect=(Status.IN_QUEUE, Status.IN_PROGRESS, Status.CANCELLED),
            next_poll_at=due if run.provider_request_id else None,
            available_at=due,
        )
        event(log, "poller.retry_later", run_id=run.id, error=error)
