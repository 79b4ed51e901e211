"""Submitting a run to one provider (route), exactly once (the route is chosen in
:mod:`~vidgate.worker.remote.routes`).

Before a submit, ``submit_started_at`` is committed; the provider's request id is committed
in the step right after the submit returns. Once the id is recorded, a restart only ever
resumes polling.

A submit whose outcome is unknown (its answer was lost, a gateway answered 502/504, or the
process died between the submit and recording the id) may have created a job that is paid
for. It is sent again only where that is safe: the provider honours the run's idempotency
key (:attr:`RemoteBackend.idempotent_submits`), or the operator opted in for that provider
(``retry_ambiguous_submits``). Otherwise the run is failed with an explanation instead, so
a provider job is never paid for twice. A clear refusal (429, no connection) created
nothing and is retried with backoff.

Should the database be unavailable just as the provider's id is to be recorded (an outage:
PostgreSQL restarting, a SQLite file locked past the busy timeout), the write waits for it
to come back (a worker that stops gives it a grace period). Should the write fail otherwise,
it is tried again a few times; if it still cannot be recorded, the job is cancelled at the
provider (nothing could ever poll it) and the run is failed with a message naming the
job's id, which is logged either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from typing import Any

from vidgate.backends.base import (
    BackendError,
    GenerationFailed,
    ProviderJob,
    ProviderUnavailable,
    RemoteBackend,
    SubmitOutcomeUnknown,
    SubmitRefused,
)
from vidgate.logs import event
from vidgate.metrics import Metrics
from vidgate.runs.catalog import ModelSpec
from vidgate.runs.routing import Route
from vidgate.store.records import RemoteRun
from vidgate.worker.outage import despite_outage
from vidgate.worker.remote.breaker import RouteBreakers
from vidgate.worker.remote.outcomes import (
    Outcomes,
    backoff_s,
    best_effort_cancel,
    log,
)

SUBMIT_ATTEMPTS = 5
"""Submits of one run that ended without a job (refused, or unknown where sending again is
safe) before the run fails."""
RECORD_DELAYS_S = (0.1, 0.3, 1.0, 3.0)
"""Waits between the tries to record a provider's job id while the database fails."""
CANCEL_ON_STOP_S = 5.0
"""A stop that finds a job id not yet recorded gives the provider this long to take a cancel."""


class Submits(Outcomes):
    _submitting: set[asyncio.Task[Any]]
    """Operations waiting for a provider's answer to a submit: a stop gives them time."""
    retry_ambiguous: Collection[str]
    """Providers whose operators opted in to sending again a submit of unknown outcome."""
    record_delays_s: tuple[float, ...]
    submit_backoff_s: float
    """The first wait before a submit is sent again; each later one doubles (with jitter)."""
    backends: dict[str, RemoteBackend]
    breakers: RouteBreakers
    metrics: Metrics | None

    def _resubmit_safe(self, spec: ModelSpec, backend: RemoteBackend) -> bool:
        """Whether a submit of unknown outcome may be sent again for this provider."""
        return backend.idempotent_submits or (spec.provider or "") in self.retry_ambiguous

    async def _submit_once(
        self,
        run: RemoteRun,
        spec: ModelSpec,
        route: Route,
        backend: RemoteBackend,
        attempts: int,
        pinned: str | None = None,
    ) -> BackendError | None:
        """Submit to one route. Returns the refusal when the provider clearly created
        nothing (the next route may be tried); None when the run's course is settled."""
        state: dict[str, Any] = {"submit_failures": attempts} if attempts else {}
        if pinned is not None:
            state["pinned"] = pinned
        counted: dict[str, Any] = {"provider_state": state} if state else {}
        request = run.generation_request
        marked = await self.store.remote_update(
            run.id,
            self.owner,
            release=False,
            submit_started_at=time.time(),
            provider=route.provider,
            backend=route.backend,
            cost=spec.estimate_cost(request),  # this route's price
            **counted,
        )
        if not marked:
            return None
        try:
            job = await backend.submit(
                request,
                spec.provider_model or spec.slug,
                spec.options,
                idempotency_key=f"vidgate-{run.id}",
            )
        except SubmitOutcomeUnknown as exc:
            self.breakers.unresolved(spec.slug, route)
            if not self._resubmit_safe(spec, backend):
                others = (
                    "; for the same reason it was not sent to another provider"
                    if len(spec.all_routes) > 1
                    else ""
                )
                await self._fail(
                    run,
                    f"the provider's answer to the submit was lost ({exc}); the "
                    "job may exist upstream, so it was not submitted again to avoid "
                    f"paying twice{others}",
                )
                return None
            await self._submit_again(run, exc, attempts + 1, pinned=route.provider)
            return None
        except ProviderUnavailable as exc:
            self.breakers.failed(spec.slug, route)
            return exc
        except SubmitRefused as exc:  # a refused key: nothing was created
            self.breakers.failed(spec.slug, route)
            return exc
        except GenerationFailed as exc:
            if exc.is_nsfw and spec.fallback_on_content_policy:
                return exc
            await self._fail_from(run, exc)
            return None
        self.breakers.succeeded(spec.slug, route)
        await self._record(run, spec, backend, job)
        return None

    async def _submit_again(
        self,
        run: RemoteRun,
        exc: ProviderUnavailable,
        attempts: int,
        *,
        summary: str | None = None,
        pinned: str | None = None,
    ) -> None:
        if attempts >= SUBMIT_ATTEMPTS:
            if isinstance(exc, SubmitOutcomeUnknown):
                why = f"its answer was lost ({exc}); the job may exist upstream"
            elif summary is not None:
                why = f"every provider kept refusing it: {summary}"
            else:
                why = f"the provider kept refusing it: {exc}"
            await self._fail(run, f"the submit was tried {attempts} times and {why}")
            return
        delay = backoff_s(attempts - 1, self.submit_backoff_s, exc.retry_after_s)
        event(log, "provider.submit_retry", run_id=run.id, error=str(exc), delay_s=round(delay, 1))
        state: dict[str, Any] = {"submit_failures": attempts}
        if pinned is not None:  # its outcome was unknown: no other route may take it
            state["pinned"] = pinned
        # Nothing was created: that must be written, or the run would later look as if it
        # stopped mid-submit (and fail, the job's existence unknown).
        await despite_outage(
            lambda: self.store.remote_update(
                run.id,
                self.owner,
                submit_started_at=None,
                provider=pinned,
                available_at=time.time() + delay,
                provider_state=state,
            ),
            run_id=run.id,
        )

    async def _record(
        self, run: RemoteRun, spec: ModelSpec, backend: RemoteBackend, job: ProviderJob
    ) -> None:
        """Record the provider's job id, trying again while the database fails. A stop
        that cuts this short (a database away for longer than the stop's grace) asks the
        provider to cancel the job, and logs its id, as a failure to record it does."""
        event(log, "provider.accepted", run_id=run.id, request_id=job.request_id)
        try:
            await self._record_or_cancel(run, spec, backend, job)
        except asyncio.CancelledError:
            event(
                log,
                "provider.job_unrecorded",
                logging.ERROR,
                run_id=run.id,
                request_id=job.request_id,
                error="vidgate stopped before it could record the job's id",
            )
            cancelling = asyncio.ensure_future(best_effort_cancel(backend, job))
            await asyncio.wait([cancelling], timeout=CANCEL_ON_STOP_S)
            raise

    async def _record_or_cancel(
        self, run: RemoteRun, spec: ModelSpec, backend: RemoteBackend, job: ProviderJob
    ) -> None:
        values: dict[str, Any] = {
            "provider_request_id": job.request_id,
            "provider_state": {"job": job.state},
        }
        error: Exception | None = None
        for attempt, delay in enumerate((*self.record_delays_s, None), 1):
            try:
                # While the database is away (an outage) the write waits for it to return.
                recorded = await despite_outage(
                    lambda: self.store.remote_update(
                        run.id,
                        self.owner,
                        next_poll_at=time.time() + self._interval(spec),
                        **values,
                    ),
                    run_id=run.id,
                )
                if not recorded:  # did a try whose answer was lost commit after all?
                    current = await despite_outage(lambda: self.store.get(run.id), run_id=run.id)
                    recorded = current.provider_request_id == job.request_id
            except Exception as exc:  # any other failure leaves the id unrecorded
                error = exc
                event(
                    log,
                    "provider.record_failed",
                    logging.WARNING,
                    run_id=run.id,
                    request_id=job.request_id,
                    attempt=attempt,
                    error=f"{type(exc).__name__}: {exc}",
                )
                if delay is not None:
                    await asyncio.sleep(delay)
                continue
            if not recorded:  # cancelled while the submit was in flight
                event(log, "provider.cancel_after_submit", run_id=run.id, request_id=job.request_id)
                await best_effort_cancel(backend, job)
                return
            event(log, "provider.submitted", run_id=run.id, request_id=job.request_id)
            return
        await self._unrecorded(run, backend, job, error)

    async def _unrecorded(
        self, run: RemoteRun, backend: RemoteBackend, job: ProviderJob, error: Exception | None
    ) -> None:
        """The provider's id could not be recorded: nothing would ever follow the job."""
        event(
            log,
            "provider.job_unrecorded",
            logging.ERROR,
            run_id=run.id,
            request_id=job.request_id,
            error=f"{type(error).__name__}: {error}",
        )
        cancelled = await best_effort_cancel(backend, job)
        outcome = (
            "vidgate asked the provider to cancel it"
            if cancelled
            else "asking the provider to cancel it failed too, so it may still run there"
        )
        message = (
            f"the provider accepted the submit as job {job.request_id!r}, but vidgate could "
            f"not record that id (the database failed {len(self.record_delays_s) + 1} times: "
            f"{type(error).__name__}: {error}); {outcome}"
        )
        for delay in (*self.record_delays_s, None):
            try:
                await self._fail(run, message)
                return
            except Exception as exc:
                event(log, "run.fail_unrecorded", logging.ERROR, run_id=run.id, error=str(exc))
                if delay is not None:
                    await asyncio.sleep(delay)
