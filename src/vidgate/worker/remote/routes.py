"""Choosing the route a run is submitted to: the model's providers in order, the next one
only when the last clearly created nothing.

A run may use the routes its model lists, narrowed and ordered at submit by the request's
preferences and its key's providers (``runs.routes``). Each is tried in turn:

* a clear refusal (429, 503 with ``Retry-After``, no connection, a refused key) created
  nothing: the next route is tried at once; a content-policy refusal too, where the model's
  ``fallback_on_content_policy`` allows it;
* a route whose circuit is open (:mod:`~vidgate.worker.remote.breaker`) or that is over its
  ``max_in_flight`` is passed over;
* an answer that may have created a job (:class:`SubmitOutcomeUnknown`, or a stop while
  submitting) ends the choice: the run fails with the explanation, or, where sending it
  again is safe, it is sent again to the same route only (``provider_state.pinned``).

When every route refused, the whole list is tried again later with backoff; when every
route was passed over, the run waits for one to take it, until its deadline.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from vidgate.backends.base import BackendError, GenerationFailed, ProviderUnavailable, RemoteBackend
from vidgate.logs import event
from vidgate.runs.catalog import ModelSpec
from vidgate.runs.routing import Route, decode_routes
from vidgate.store.records import RemoteRun
from vidgate.worker.outage import despite_outage
from vidgate.worker.remote.outcomes import failures, log
from vidgate.worker.remote.submit import SUBMIT_ATTEMPTS, Submits

ROUTE_BUSY_WAIT_S = 1.0
"""How soon a run whose routes were all over their limits looks for room again."""


class Routing(Submits):
    async def _submit(self, run: RemoteRun, spec: ModelSpec) -> None:
        attempts = failures(run, "submit_failures")
        pinned = (run.provider_state or {}).get("pinned")
        if run.submit_started_at is not None or pinned:
            # The last submit never finished (or its outcome was unknown, and sending it
            # again is safe): it may have made a job, so only its own route may take it.
            route = spec.route_named(run.provider or pinned)
            backend = self.backends.get(route.provider) if route is not None else None
            if route is None or backend is None:
                await self._fail(
                    run,
                    f"the provider {run.provider or pinned!r} this run was being submitted "
                    "to is no longer configured here; the job may exist there, so it was not "
                    "sent to another provider",
                )
                return
            routes, pinned = [route], route.provider
            if run.submit_started_at is not None:
                if not self._resubmit_safe(spec.on_route(route), backend):
                    await self._fail(
                        run,
                        "vidgate stopped while submitting this run to the provider, so it "
                        "cannot tell whether the provider started a job; it was not submitted "
                        "again to avoid paying twice",
                    )
                    return
                attempts += 1
                if attempts >= SUBMIT_ATTEMPTS:
                    await self._fail(run, "vidgate kept stopping while submitting this run")
                    return
                event(log, "provider.resubmit_after_stop", run_id=run.id, attempt=attempts)
        else:
            routes = decode_routes(run.routes, spec.all_routes)
            if not routes:
                await self._fail(
                    run,
                    f"none of the providers this run may use ({run.routes}) is a route of "
                    f"model {spec.slug!r} any more",
                )
                return
        current = asyncio.current_task()
        if current is not None:
            self._submitting.add(current)
        try:
            await self._submit_routes(run, spec, routes, attempts, pinned)
        finally:
            if current is not None:
                self._submitting.discard(current)

    async def _submit_routes(
        self,
        run: RemoteRun,
        spec: ModelSpec,
        routes: list[Route],
        attempts: int,
        pinned: str | None,
    ) -> None:
        """Try the routes in order; the next only after a clear refusal (nothing created),
        or when a route is skipped (its circuit is open, it is over its limit). ``pinned``:
        the one route a job may already exist at, which every later submit stays on."""
        passed: list[str] = []
        refusal: BackendError | None = None
        passing: ProviderUnavailable | None = None  # a refusal that may not last
        wait_s: float | None = None
        for route in routes:
            backend = self.backends.get(route.provider)
            skipped = await self._skip(run, spec, route, backend)
            if skipped is not None:
                why, wait = skipped
                passed.append(f"{route.provider}: {why}")
                wait_s = wait if wait_s is None else min(wait_s, wait)
                continue
            assert backend is not None
            routed = spec.on_route(route)
            refusal = await self._submit_once(run, routed, route, backend, attempts, pinned)
            if refusal is None:
                return  # accepted, failed or rescheduled
            passed.append(f"{route.provider}: {refusal}")
            if isinstance(refusal, ProviderUnavailable):
                passing = refusal
            if route is not routes[-1]:
                reason = "refused" if isinstance(refusal, ProviderUnavailable) else "rejected"
                self._count_failover(spec, route, reason)
                event(
                    log,
                    "provider.failover",
                    run_id=run.id,
                    provider=route.provider,
                    error=str(refusal),
                )
        summary = "; ".join(passed)
        if refusal is None:  # no route could be tried now
            await self._wait_for_routes(
                run, wait_s or self.submit_backoff_s, summary, pinned, attempts
            )
        elif isinstance(refusal, GenerationFailed) and passing is not None:
            # The last route refused for good, an earlier one only for now: try again later.
            await self._submit_again(run, passing, attempts + 1, summary=summary, pinned=pinned)
        elif isinstance(refusal, GenerationFailed) and wait_s is not None:
            # The last route refused for good, an earlier one was only passed over: wait.
            await self._wait_for_routes(run, wait_s, summary, pinned, attempts)
        elif isinstance(refusal, GenerationFailed):
            if len(passed) > 1:
                refusal = GenerationFailed(
                    f"every provider refused the run: {summary}",
                    user_friendly=refusal.user_friendly,
                    is_nsfw=refusal.is_nsfw,
                    provider_status=refusal.provider_status,
                )
            await self._fail_from(run, refusal)
        else:
            assert isinstance(refusal, ProviderUnavailable)
            await self._submit_again(
                run,
                refusal,
                attempts + 1,
                summary=summary if len(passed) > 1 else None,
                pinned=pinned,
            )

    async def _skip(
        self, run: RemoteRun, spec: ModelSpec, route: Route, backend: RemoteBackend | None
    ) -> tuple[str, float] | None:
        """Why the route is passed over now, and when to look again; None: try it."""
        if backend is None:
            return "not configured in this worker", ROUTE_BUSY_WAIT_S
        if route.max_in_flight is not None:
            busy = await self.store.count_on_route(spec.slug, route.provider, but=run.id)
            if busy >= route.max_in_flight:
                self._count_failover(spec, route, "over_limit")
                return f"over its limit of {route.max_in_flight} runs in flight", ROUTE_BUSY_WAIT_S
        wait = self.breakers.admit(spec.slug, route)
        if wait is not None:
            self._count_failover(spec, route, "circuit_open")
            return f"skipped for {wait:.0f} s more: its circuit is open (recent failures)", wait
        return None

    def _count_failover(self, spec: ModelSpec, route: Route, reason: str) -> None:
        if self.metrics is not None and len(spec.all_routes) > 1:
            self.metrics.failover(spec.slug, route.provider, reason)

    async def _wait_for_routes(
        self,
        run: RemoteRun,
        wait_s: float,
        summary: str,
        pinned: str | None = None,
        attempts: int = 0,
    ) -> None:
        """Every route was passed over without a submit: look again when one may take it
        (this counts as no failed submit), unless the run's deadline has passed. A run
        ``pinned`` to a route (a job may exist there) stays pinned while it waits."""
        if run.deadline_at is not None and time.time() > run.deadline_at:
            await self._fail(run, f"no provider could take the run before its deadline: {summary}")
            return
        event(log, "provider.routes_unavailable", run_id=run.id, why=summary)
        kept: dict[str, Any] = {"provider": None}
        if pinned is not None:
            state = {**(run.provider_state or {}), "pinned": pinned, "submit_failures": attempts}
            kept = {"provider": pinned, "provider_state": state}
        await despite_outage(
            lambda: self.store.remote_update(
                run.id,
                self.owner,
                submit_started_at=None,
                available_at=time.time() + max(wait_s, 0.05),
                **kept,
            ),
            run_id=run.id,
        )
