"""The poller's loop: lease what is due, run it concurrently (bounded), and hand back.

Each round, the loop leases the runs whose next operation is due (a submit, a poll, a
provider-side cancel), in one claim of many, and runs those operations as tasks, at most
``remote_concurrency`` at once. The schedule is the database's (see
:mod:`vidgate.store.remote`): this process keeps nothing per run in flight but the
operations it is running and the quiet polls it has yet to hand back, so its memory does
not grow with the number of provider jobs it follows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from typing import Any

from vidgate import logs
from vidgate.backends.base import RemoteBackend
from vidgate.config import WorkerSettings
from vidgate.logs import event
from vidgate.metrics import Metrics
from vidgate.runs.catalog import Catalog
from vidgate.runs.status import Status
from vidgate.storage.base import Storage
from vidgate.store.errors import StoreUnavailable
from vidgate.store.records import RemoteRun
from vidgate.store.sql import SQLStore
from vidgate.worker.remote.breaker import RouteBreakers
from vidgate.worker.remote.follow import Follows
from vidgate.worker.remote.outcomes import log
from vidgate.worker.remote.routes import Routing
from vidgate.worker.remote.submit import RECORD_DELAYS_S
from vidgate.worker.wakeup import sleep_until

CLAIM_BATCH = 500
SUBMIT_GRACE_S = 30.0
REFILL = 4
"""Claim again once a quarter of the slots are free (or nothing is running): one claim
per few dozen operations, not one per operation."""


class RemotePoller(Routing, Follows):
    def __init__(
        self,
        store: SQLStore,
        storage: Storage,
        catalog: Catalog,
        backends: Mapping[str, RemoteBackend],
        poll_intervals: Mapping[str, float],
        settings: WorkerSettings,
        owner: str,
        *,
        copy_attempts: int = 5,
        retry_ambiguous: Collection[str] = (),
        record_delays_s: tuple[float, ...] = RECORD_DELAYS_S,
        submit_backoff_s: float = 2.0,
        breakers: RouteBreakers | None = None,
        metrics: Metrics | None = None,
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
        self.retry_ambiguous = frozenset(retry_ambiguous)
        self.record_delays_s = record_delays_s
        self.submit_backoff_s = submit_backoff_s
        self.breakers = breakers or RouteBreakers(metrics=metrics)
        self.metrics = metrics
        self.kinds = sorted(
            {
                route.backend
                for spec in catalog
                for route in spec.all_routes
                if route.provider in self.backends
            }
        )
        self._held: dict[asyncio.Task[None], str] = {}  # operation -> run id
        self._submitting: set[asyncio.Task[Any]] = set()
        self._quiet: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._slots_free = asyncio.Event()
        self._refill = max(1, settings.remote_concurrency // REFILL)

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
                free = self.settings.remote_concurrency - len(self._held)
                if free < self._refill and self._held:  # wait for slots to free up
                    self._slots_free.clear()
                    await sleep_until(self.settings.idle_poll_s, stop, self._slots_free)
                    continue
                wanted = min(free, CLAIM_BATCH)
                self._wake.clear()  # before the claim: a wake-up during it is not lost
                batch = await self._claim(wanted)
                running = set(self._held.values())
                for run in batch:
                    if run.id in running:
                        # Its lease ran out while the database was away (it could not be
                        # renewed), and the operation still goes on here.
                        event(log, "poller.reclaimed_while_running", run_id=run.id)
                        continue
                    task = asyncio.create_task(self._operate(run))
                    self._held[task] = run.id
                    task.add_done_callback(self._forget)
                if len(batch) < wanted:  # nothing more is due yet
                    await sleep_until(self.settings.idle_poll_s, stop, self._wake)
        finally:
            await self._stop(renewer)

    async def _claim(self, wanted: int) -> list[RemoteRun]:
        quiet, self._quiet = self._quiet, {}
        try:
            return await self.store.claim_remote(
                self.owner,
                self.kinds,
                wanted,
                self.settings.lease_s,
                reschedule=quiet,
                models=self.settings.models,
            )
        except Exception as exc:
            if isinstance(exc, StoreUnavailable):
                event(log, "poller.claim_failed", logging.WARNING, error=exc)
            else:
                log.exception("poller.claim_failed")
            self._quiet = quiet | self._quiet  # handed back with the next claim
            return []

    async def _stop(self, renewer: asyncio.Task[None]) -> None:
        # Polls and copies are simply redone later. A submit waiting for the provider's
        # answer is given time to record the provider's id: cut off now, its run could
        # only be failed as "outcome unknown" after the restart.
        for task in list(self._held):
            if task not in self._submitting:
                task.cancel()
        submitting = set(self._submitting)
        if submitting:
            event(log, "poller.waiting_for_submits", count=len(submitting))
            await asyncio.wait(submitting, timeout=SUBMIT_GRACE_S)
        renewer.cancel()
        for task in list(self._held):
            task.cancel()
        await asyncio.gather(renewer, *self._held, return_exceptions=True)
        try:
            await self.store.reschedule(self.owner, self._quiet)
        except Exception:  # their leases run out instead
            log.exception("poller.reschedule_failed")
        self._quiet.clear()
        event(log, "poller.stopped", owner=self.owner)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._held.pop(task, None)
        if self.settings.remote_concurrency - len(self._held) >= self._refill:
            self._slots_free.set()

    async def _renew_leases(self, stop: asyncio.Event) -> None:
        """Keep the leases of operations that run long (a large video copy) from expiring."""
        while not stop.is_set():
            await asyncio.sleep(self.settings.lease_s / 3)
            try:
                await self.store.renew(self.owner, set(self._held.values()), self.settings.lease_s)
            except StoreUnavailable as exc:
                event(log, "poller.renew_failed", logging.WARNING, error=exc)
            except Exception:
                log.exception("poller.renew_failed")

    async def _operate(self, run: RemoteRun) -> None:
        logs.run_id.set(run.id)  # this task's lines, its libraries' too, name the run
        try:
            spec = self.catalog.models.get(run.model)
            if spec is not None and run.provider_request_id is None:
                await self._submit(run, spec)  # it chooses the route
                return
            route = spec.route_named(run.provider) if spec is not None else None
            backend = self.backends.get(route.provider) if route is not None else None
            if spec is None or route is None or backend is None:
                where = f" (provider {run.provider!r})" if run.provider else ""
                await self._fail(run, f"model {run.model!r}{where} is no longer configured here")
            elif run.status is Status.CANCELLED:
                await self._cancel_at_provider(run, backend)
            else:
                await self._poll(run, spec.on_route(route), backend)
        except asyncio.CancelledError:
            raise
        except StoreUnavailable as exc:  # its lease runs out, and the operation is redone
            event(log, "poller.operation_interrupted", logging.WARNING, run_id=run.id, error=exc)
        except Exception as exc:
            log.exception("poller.operation_crashed run_id=%s", run.id)
            try:
                await self._retry_later(run, f"internal error: {type(exc).__name__}")
            except StoreUnavailable as outage:
                event(
                    log, "poller.retry_later_failed", logging.WARNING, run_id=run.id, error=outage
                )
