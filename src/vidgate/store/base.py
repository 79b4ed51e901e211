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

import asyncio
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
from vidgate.store.records import RunRecord
from vidgate.store.schema import runs, webhook_deliveries

CHANGE_COLUMNS = tuple(column for column in runs.c if column.name != "request")
"""What an UPDATE that changes a run returns: the run as clients see it (all but the
request, which can be megabytes of image), to publish it and fill the outbox."""

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
        self._reader = engine.execution_options(vidgate_read=True)
        self.dialect = engine.dialect.name
        self.events = events or RunEvents()
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[Tx]:
        async with self._write_turn(), self._writer.begin() as conn:
            tx = Tx(conn)
            yield tx
        self.events.publish_many(tx.changes)

    @asynccontextmanager
    async def _write_turn(self) -> AsyncIterator[None]:
        """On SQLite, this process's writers take turns here. SQLite lets one writer in at
        a time anyway, and one that finds the lock taken sleeps in growing steps (up to
        100 ms) before it looks again; queued here, the next one starts the moment the
        last one commits. Writers in other processes still meet SQLite's busy wait."""
        if self._write_lock is None:
            yield
            return
        async with self._write_lock:
            yield

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one read statement (on SQLite, outside any transaction)."""
        async with self._reader.connect() as conn:
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
        status = Status(row.status)
        queued = bool(row.webhook_url) and await self._queue_webhook(tx.conn, row, status, now)
        snapshot = RunRecord.from_row({**row._mapping, "request": {}})
        change = RunChange(row.id, row.seq, status, row.backend, webhook=queued, run=snapshot)
        if self.dialect == "postgresql":
            await tx.conn.execute(select(func.pg_notify(CHANNEL, payload(change))))
        tx.changes.append(change)

    async def _queue_webhook(
        self, conn: AsyncConnection, row: Row[Any], status: Status, now: float
    ) -> bool:
        """Write the delivery this change calls for, if any; True if one was written."""
        kind = webhooks.event_type(status, started_now=row.started_at == now)
        if kind is None or kind not in webhooks.decode_events(row.webhook_events):
            return False
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
                return False
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
        return True
