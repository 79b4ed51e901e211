"""Changes made by other processes on PostgreSQL: ``LISTEN`` on one dedicated connection.

Every change of a run sends ``NOTIFY vidgate_runs`` in the transaction that makes it, so the
notification goes out exactly when the change commits. The payload is small
(``run_id seq status webhook backend``); a process re-reads a run only if somebody there waits on
it. When the connection drops, the feed reconnects with backoff and then re-reads every run
that someone in this process waits on, so nothing that committed meanwhile is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

import asyncpg

from vidgate.events.hub import RunChange, RunEvents
from vidgate.runs.status import Status

log = logging.getLogger("vidgate.events")
CHANNEL = "vidgate_runs"
CHECK_EVERY_S = 5.0
APPLICATION_NAME = "vidgate-events"
"""How the listening connection shows in ``pg_stat_activity``."""


def payload(change: RunChange) -> str:
    webhook = "w" if change.webhook else "-"
    return f"{change.run_id} {change.seq} {change.status.value} {webhook} {change.backend}"


def parse_payload(text: str) -> RunChange:
    run_id, seq, status, webhook, backend = text.split(" ", 4)
    return RunChange(run_id, int(seq), Status(status), backend, webhook=webhook == "w")


Reread = Callable[[set[str]], Awaitable[list[RunChange]]]


class PostgresFeed:
    def __init__(self, dsn: str, events: RunEvents, reread: Reread) -> None:
        self.dsn = dsn
        self.events = events
        self.reread = reread
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self, timeout_s: float = 10.0) -> None:
        """Start listening; returns once the first connection listens (or after
        ``timeout_s``, the feed then keeps trying in the background)."""
        self._task = asyncio.create_task(self._run(), name="vidgate-pg-feed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                connection = await asyncpg.connect(
                    self.dsn, server_settings={"application_name": APPLICATION_NAME}
                )
            except Exception as exc:  # never give up: this process would stop hearing
                failures += 1
                delay = min(10.0, 0.2 * 2**failures) * random.uniform(0.8, 1.2)
                log.warning("events.pg_connect_failed error=%r retry_s=%.1f", exc, delay)
                await asyncio.sleep(delay)
                continue
            try:
                await connection.add_listener(CHANNEL, self._on_notify)
                # Whatever committed while nobody listened (before the first connection
                # too: waiters may have subscribed meanwhile) is read once now.
                await self._catch_up()
                failures = 0
                self._ready.set()
                await self._hold(connection)
            except Exception as exc:
                log.warning("events.pg_listen_lost error=%r", exc)
                await asyncio.sleep(min(10.0, 0.2 * 2**failures) * random.uniform(0.8, 1.2))
                failures += 1
            finally:
                with contextlib.suppress(Exception):
                    await connection.close(timeout=2)

    async def _hold(self, connection: asyncpg.Connection) -> None:
        """Wait while the connection lives: until the server closes it, or a periodic
        query finds it silently gone."""
        closed = asyncio.Event()
        connection.add_termination_listener(lambda _connection: closed.set())
        while not connection.is_closed():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), CHECK_EVERY_S)
            if closed.is_set():
                return
            await asyncio.wait_for(connection.execute("SELECT 1"), CHECK_EVERY_S)

    async def _catch_up(self) -> None:
        watched = self.events.watched()
        if watched:
            self.events.publish_many(await self.reread(watched))
        self.events.resync()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, text: str) -> None:
        try:
            change = parse_payload(text)
        except ValueError:
            log.warning("events.bad_notify payload=%r", text[:200])
            return
        self.events.publish(change)
