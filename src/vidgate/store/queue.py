"""Queue positions without a ``COUNT`` per poll.

The queued runs of each backend are kept in memory, sorted by run id (ids sort by
creation time), and kept up to date by run events: every change of every run reaches
this process's hub, from here or through the feed. A run's position is then a binary
search. The index is read again from the database when a feed reconnects (changes may
have been missed) and every :data:`RELOAD_S`, which bounds the effect of a change
that crossed the first read.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import Awaitable, Callable

from vidgate.events.hub import RunChange, RunEvents
from vidgate.runs.status import Status

log = logging.getLogger("vidgate.store")
RELOAD_S = 60.0


class QueueIndex:
    def __init__(
        self, events: RunEvents, read: Callable[[], Awaitable[list[tuple[str, str]]]]
    ) -> None:
        self._events = events
        self._read = read
        self._ids: dict[str, list[str]] = {}
        """Queued run ids per backend, sorted."""
        self._backend: dict[str, str] = {}
        """The backend of each queued run."""
        self._task: asyncio.Task[None] | None = None
        self._stale = asyncio.Event()
        self._during: list[RunChange] | None = None
        """Changes heard while a reload reads, applied again on top of what it read."""
        self.ready = False

    async def start(self) -> None:
        self._events.add_listener(self._on_change)
        await self._reload()
        self._task = asyncio.create_task(self._keep())

    async def close(self) -> None:
        self._events.remove_listener(self._on_change)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def position(self, run_id: str, backend: str) -> int:
        return bisect.bisect_left(self._ids.get(backend) or [], run_id)

    def _on_change(self, change: RunChange | None) -> None:
        if change is None:  # a feed reconnected
            self._stale.set()
            return
        if self._during is not None:
            self._during.append(change)
        if change.status is Status.IN_QUEUE:
            self._add(change.run_id, change.backend)
        else:
            self._remove(change.run_id)

    def _add(self, run_id: str, backend: str) -> None:
        if run_id in self._backend:
            return
        self._backend[run_id] = backend
        bisect.insort(self._ids.setdefault(backend, []), run_id)

    def _remove(self, run_id: str) -> None:
        backend = self._backend.pop(run_id, None)
        if backend is None:
            return
        ids = self._ids[backend]
        at = bisect.bisect_left(ids, run_id)
        if at < len(ids) and ids[at] == run_id:
            del ids[at]

    async def _reload(self) -> None:
        self._during = []
        try:
            queued = await self._read()
        except BaseException:
            self._during = None
            raise
        ids: dict[str, list[str]] = {}
        for run_id, backend in queued:
            ids.setdefault(backend, []).append(run_id)
        for backend_ids in ids.values():
            backend_ids.sort()
        self._ids = ids
        self._backend = {run_id: backend for run_id, backend in queued}
        during, self._during = self._during, None
        for change in during:
            self._on_change(change)
        self.ready = True

    async def _keep(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stale.wait(), RELOAD_S)
            self._stale.clear()
            try:
                await self._reload()
            except Exception:  # the database is away: positions stay as they are
                log.warning("queue_index.reload_failed", exc_info=True)
