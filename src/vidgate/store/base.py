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
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Executable, String, bindparam, func, insert, select
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgate.events.hub import RunChange, RunEvents
from vidgate.events.pg_feed import CHANNEL, payload
from vidgate.logs import event
from vidgate.runs import webhooks
from vidgate.runs.ids import new_message_id
from vidgate.runs.status import Status
from vidgate.store.errors import StoreUnavailable
from vidgate.store.group_commit import GroupCommit
from vidgate.store.outage import outage_of
from vidgate.store.records import DeliveryRecord, RunRecord
from vidgate.store.schema import runs, webhook_deliveries

CHANGE_COLUMNS = tuple(column for column in runs.c if column.name != "request")
"""What an UPDATE that changes a run returns: the run as clients see it (all but the
request, which can be megabytes of image), to publish it and fill the outbox."""

_NOTIFY = select(func.pg_notify(CHANNEL, bindparam("payload", type_=String)))
"""One statement for every change (built once: SQLAlchemy finds it compiled)."""
log = logging.getLogger("vidgate.store")
_other = runs.alias("other")
T = TypeVar("T")
READERS = 4
"""Threads that read a SQLite database at once, per process."""


def _bind(conn: Connection, work: Callable[[Tx], T], tx: Tx) -> T:
    tx.conn = conn
    tx.changes = []  # a write run again (see group_commit) records its changes afresh
    return work(tx)


@dataclass
class Tx:
    """A write transaction and the changes it made, published once it has committed."""

    conn: Connection
    changes: list[RunChange] = field(default_factory=list)


class StoreBase:
    """Runs each transaction as one step, written once as a plain function of a
    connection: on SQLite in a thread with its own connection (one thread writes, so this
    process's writers take turns without SQLite's sleeping busy wait, and writes waiting
    together commit together: see :mod:`~vidgate.store.group_commit`; a few threads read),
    on PostgreSQL through the async engine's ``run_sync``. A transaction is then one hand-
    off between threads however many statements it runs, where an async SQLite driver
    pays several per statement."""

    def __init__(
        self,
        *,
        async_engine: AsyncEngine | None = None,
        sync_engine: Engine | None = None,
        events: RunEvents | None = None,
    ) -> None:
        if (async_engine is None) == (sync_engine is None):
            raise ValueError("a store needs exactly one engine")
        self.events = events or RunEvents()
        self.sender: tuple[str, float] | None = None
        """(owner, lease) of the webhook sender in this process, if one runs here."""
        self._async = async_engine
        self._sync = sync_engine
        self.dialect = (async_engine or sync_engine).dialect.name  # type: ignore[union-attr]
        self._down_since: dict[str, float] = {}
        """Since when reads or writes find the database unavailable (see :meth:`_outage`)."""
        self._writer: GroupCommit | None = None
        self._read_threads: ThreadPoolExecutor | None = None
        if sync_engine is not None:
            self._writer = GroupCommit(sync_engine)
            self._read_threads = ThreadPoolExecutor(READERS, thread_name_prefix="vidgate-db-read")

    async def _write(self, work: Callable[[Tx], T]) -> T:
        """Run ``work`` in one write transaction; publish its changes once committed. The
        transaction and the publishing go on if the caller is cancelled meanwhile (a
        render stopped mid-update): a committed change is always told."""
        return await asyncio.shield(self._write_and_publish(work))

    async def _write_and_publish(self, work: Callable[[Tx], T]) -> T:
        tx = Tx(None)  # type: ignore[arg-type]  # the connection is set where it runs
        with self._watched("writes"):
            if self._writer is not None:
                result = await self._writer.run(lambda conn: _bind(conn, work, tx))
            else:
                assert self._async is not None
                async with self._async.begin() as conn:
                    result = await conn.run_sync(_bind, work, tx)
        self.events.committed(tx.changes)
        return result

    async def _one_statement(
        self, statement: Executable, parameters: dict[str, Any] | None = None
    ) -> list[Row[Any]]:
        """PostgreSQL: run ``statement`` committed by itself (autocommit), and return its
        rows. No BEGIN or COMMIT goes back and forth around it, so a row lock it takes is
        held only while it runs, not while this process's event loop gets round to
        committing (under load, several milliseconds that every other taker of the lock
        would wait). For a statement that publishes no change of a run."""
        assert self._async is not None
        with self._watched("writes"):
            async with self._async.connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                result = await auto.execute(statement, parameters)
                return list(result.all()) if result.returns_rows else []

    async def _read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work``, one read statement (on SQLite, outside any transaction)."""
        with self._watched("reads"):
            if self._sync is not None:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._read_threads, self._read_sync, work)
            assert self._async is not None
            async with self._async.connect() as conn:
                return await conn.run_sync(work)

    @contextlib.contextmanager
    def _watched(self, kind: str) -> Iterator[None]:
        """Around a store verb's database work: an error that tells of an outage is raised
        as :class:`StoreUnavailable` (see :meth:`_outage`); success after an outage of
        ``kind`` (reads, writes) is logged as its end."""
        try:
            yield
        except Exception as exc:
            outage = self._outage(exc, kind)
            if outage is None:
                raise
            raise outage from exc
        if self._down_since:
            self._back(kind)

    @property
    def writes_failing(self) -> bool:
        """Whether the last write found the database unavailable (and none has gone
        through since)."""
        return "writes" in self._down_since

    def _outage(self, error: Exception, kind: str) -> StoreUnavailable | None:
        """The outage ``error`` tells of, if it is one, raised in its place. Logged when
        ``kind`` (reads, writes) begins to fail and when it works again: a SQLite file
        locked by another process stops writes while reads go on."""
        if isinstance(error, StoreUnavailable):
            return None
        outage = outage_of(error)
        if outage is None:
            return None
        if kind not in self._down_since:
            self._down_since[kind] = time.monotonic()
            event(log, "store.unavailable", logging.WARNING, failing=kind, error=str(outage))
        return outage

    def _back(self, kind: str) -> None:
        since = self._down_since.pop(kind, None)
        if since is not None:
            down_s = round(time.monotonic() - since, 1)
            event(log, "store.available_again", logging.WARNING, working=kind, down_s=down_s)

    def _read_sync(self, work: Callable[[Connection], T]) -> T:
        assert self._sync is not None
        with self._sync.execution_options(vidgate_read=True).connect() as conn:
            return work(conn)

    async def _dispose(self) -> None:
        if self._async is not None:
            await self._async.dispose()
        if self._sync is not None:
            if self._writer is not None:
                self._writer.shutdown()
            if self._read_threads is not None:
                self._read_threads.shutdown(wait=True)
            self._sync.dispose()

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

    def _change_one(
        self, tx: Tx, statement: Executable, now: float, *, webhook: bool = True
    ) -> Row[Any] | None:
        """Run an UPDATE of one run that returns :data:`CHANGE_COLUMNS`; record the change
        if it applied. Returns the row, or None if no run matched."""
        row = tx.conn.execute(statement).first()
        if row is not None:
            self._changed(tx, row, now, webhook=webhook)
        return row

    def _changed(
        self,
        tx: Tx,
        row: Row[Any] | RunRecord,
        now: float,
        snapshot: RunRecord | None = None,
        *,
        webhook: bool = True,
    ) -> None:
        """Record a change of a run that ``row`` (:data:`CHANGE_COLUMNS`) describes
        (or the record of a run just made; ``snapshot``: the run as a record, if the
        caller made one already). ``webhook``
        False: a change no webhook event tells (the run's status stays as it was)."""
        status = Status(row.status)
        wanted = webhook and row.webhook_url
        delivery = self._queue_webhook(tx.conn, row, status, now) if wanted else None
        if snapshot is None:
            assert not isinstance(row, RunRecord)
            snapshot = RunRecord.from_row({**row._mapping, "request": {}})
        change = RunChange(
            row.id,
            row.seq,
            status,
            row.backend,
            webhook=delivery is not None,
            run=snapshot,
            delivery=delivery,
        )
        if self.dialect == "postgresql":
            tx.conn.execute(_NOTIFY, {"payload": payload(change)})
        tx.changes.append(change)

    def _queue_webhook(
        self, conn: Connection, row: Row[Any] | RunRecord, status: Status, now: float
    ) -> DeliveryRecord | None:
        """Write the delivery this change calls for, if any. Where this process sends
        webhooks (:attr:`sender`), the delivery is leased to it from the start: it goes out
        at once, without a claim; should the process die, the lease runs out and any
        sender takes it."""
        kind = webhooks.event_type(status, started_now=row.started_at == now)
        if kind is None or kind not in webhooks.decode_events(row.webhook_events):
            return None
        if kind == webhooks.PROGRESS:
            last = (
                conn.execute(
                    select(func.max(webhook_deliveries.c.created_at)).where(
                        webhook_deliveries.c.run_id == row.id,
                        webhook_deliveries.c.type == webhooks.PROGRESS,
                    )
                )
            ).scalar()
            if last is not None and now - last < webhooks.PROGRESS_EVERY_S:
                return None
        owner, lease_s = self.sender or (None, 0.0)
        values: dict[str, Any] = {
            "id": new_message_id(),
            "run_id": row.id,
            "api_key_id": row.api_key_id,
            "type": kind,
            "url": row.webhook_url,
            "seq": row.seq,
            "created_at": now,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "log": [],
            "lease_owner": owner,
            "lease_expires_at": now + lease_s if owner else None,
        }
        conn.execute(insert(webhook_deliveries).values(**values))
        return DeliveryRecord.from_row(values)
