"""Submitting a run to its provider, exactly once.

Before a submit, ``submit_started_at`` is committed; the provider's request id is committed
in the step right after the submit returns. A run found with the marker but no id (the
process died inside that window), or whose submit answer was lost, is failed with an
explanation instead of being submitted again, so a provider job is never paid for twice.
Once the id is recorded, a restart only ever resumes polling.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from vidgate.backends.base import (
    GenerationFailed,
    ProviderUnavailable,
    RemoteBackend,
    SubmitOutcomeUnknown,
)
from vidgate.logs import event
from vidgate.runs.catalog import ModelSpec
from vidgate.store.records import RemoteRun
from vidgate.worker.remote.outcomes import Outcomes, backoff_s, best_effort_cancel, failures, log

SUBMIT_ATTEMPTS = 5  # refused submits (429, 5xx, no connection) before the run fails


class Submits(Outcomes):
    _submitting: set[asyncio.Task[Any]]
    """Operations waiting for a provider's answer to a submit: a stop gives them time."""

    async def _submit(self, run: RemoteRun, spec: ModelSpec, backend: RemoteBackend) -> None:
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

    async def _submit_once(self, run: RemoteRun, spec: ModelSpec, backend: RemoteBackend) -> None:
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
            attempts = failures(run, "submit_failures") + 1
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
        recorded = await self.store.remote_update(
            run.id,
            self.owner,
            provider_request_id=job.request_id,
            provider_state={"job": job.state},
            next_poll_at=time.time() + self._interval(spec),
        )
        if not recorded:  # cancelled while the submit was in flight
            event(log, "provider.cancel_after_submit", run_id=run.id, request_id=job.request_id)
            await best_effort_cancel(backend, job)
            return
        event(log, "provider.submitted", run_id=run.id, request_id=job.request_id)
