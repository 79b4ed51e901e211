"""What every part of the store shares: connections, and how a change of a run is recorded.

A change of a run (:meth:`StoreBase._changed`), inside the transaction that makes it:

* bumps the run's sequence number ``seq`` (and, on SQLite, its change order ``rev``, which
  other processes' watchers read);
* writes the webhook delivery that the change calls for, if the run has a webhook, into
  the outbox (``webhook_deliveries``), so a crash can never separate the two;
* on PostgreSQL, sends ``NOTIFY``, delivered when the transaction commits.

After the commit, the change is published to this process's hub at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vidgate.events.hub import RunChange, RunEvents
from vidgate.events.pg_feed import CHANNEL, payload
from vidgate.runs import webhooks
from vidgate.runs.ids import new_message_id
from vidgate.runs.status import Status
from vidgate.store.schema import runs, webhook_deliveries

CHANGE_COLUMNS = (
    runs.c.id,
    runs.c.seq,
    runs.c.status,
    runs.c.backend,
    runs.c.api_key_id,
    runs.c.started_at,
    runs.c.webhook_url,
    runs.c.webhook_events,
)
"""What an UPDATE that changes a run returns: enough to publish it and fill the outbox."""

_other = runs.alias("other")


@dataclass
class Tx:
    """A write transaction and the changes it made, published once it has committed."""

    conn: AsyncConnection
    changes: list[RunChange] = field(default_factory=list)


class StoreBase:
    def __init__(self, engine: AsyncEngine, events: RunEvents | None = None) -> None:
        self.engine = engine
        self._writer = engine.execution_options(vidgate_write=True)
        self.dialect = engine.dialect.name
        self.events = events or RunEvents()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[Tx]:
        async with self._writer.begin() as conn:
            tx = Tx(conn)
            yield tx
        self.events.publish_many(tx.changes)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    def _bump(self) -> dict[str, Any]:
        """Column values that mark a row as changed: its next sequence number and, on
        SQLite (whose writers take turns), the next change order for other processes."""
        values: dict[str, Any] = {"seq": runs.c.seq + 1}
        if self.dialect == "sqlite":
            values["rev"] = self._next_rev()
        return values

    def _next_rev(self) -> Any:
        if self.dialect != "sqlite":
            return None
        return select(func.coalesce(func.max(_other.c.rev), 0) + 1).scalar_subquery()

    async def _changed(self, tx: Tx, row: Row[Any], now: float) -> None:
        """Record a change of a run that ``row`` (:data:`CHANGE_COLUMNS`) describes."""
        change = RunChange(row.id, row.seq, Status(row.status), row.backend)
        if row.webhook_url:
            await self._queue_webhook(tx.conn, row, change.status, now)
        if self.dialect == "postgresql":
            await tx.conn.execute(select(func.pg_notify(CHANNEL, payload(change))))
        tx.changes.append(change)

    async def _queue_webhook(
        self, conn: AsyncConnection, row: Row[Any], status: Status, now: float
    ) -> None:
        kind = webhooks.event_type(status, started_now=row.started_at == now)
        if kind is None or kind not in webhooks.decode_events(row.webhook_events):
            return
        if kind == webhooks.PROGRESS:
            last = (
                await conn.execute(
                    select(func.max(webhook_deliveries.c.created_at)).where(
                        webhook_deliveries.c.run_id == row.id,
                        webhook_deliveries.c.type == webhooks.PROGRESS,
                    )
                )
            ).scalar()
            if last is not None and now - last < webhooks.PROGRESS_EVERY_S:
                return
        await conn.execute(
            insert(webhook_deliveries).values(
                id=new_message_id(),
                run_id=row.id,
                api_key_id=row.api_key_id,
                type=kind,
                url=row.webhook_url,
                seq=row.seq,
                created_at=now,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                log=[],
            )
        )
