"""The store port over SQLAlchemy 2 async: one implementation for SQLite and PostgreSQL.

Every change of a run is one conditional ``UPDATE ... RETURNING``: a transition applies only
from an allowed status (and, for workers, only while they hold the lease), so racing writers
(a cancel and a completion, two workers) end with exactly one winner. Each change is also a
run event (see :mod:`vidgate.store.base`).

On SQLite, write transactions start with ``BEGIN IMMEDIATE`` so that a transaction that reads
before it writes waits for the lock instead of failing with "database is locked"; WAL lets
readers go on meanwhile. On PostgreSQL the claim query uses ``FOR UPDATE SKIP LOCKED``.

The verbs live by story: :mod:`~vidgate.store.keys`, :mod:`~vidgate.store.runs`,
:mod:`~vidgate.store.claims` (local workers), :mod:`~vidgate.store.remote` (the poller),
:mod:`~vidgate.store.webhooks` (the delivery outbox), :mod:`~vidgate.store.dashboard` (the
operators' reads), :mod:`~vidgate.store.secrets` (secrets the processes share) and
:mod:`~vidgate.store.retention`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from vidgate.config import Durability
from vidgate.events.pg_feed import PostgresFeed
from vidgate.events.sqlite_feed import SQLiteFeed
from vidgate.store.base import READERS
from vidgate.store.budgets import BudgetVerbs
from vidgate.store.checkpoint import LOG_LIMIT_BYTES, Checkpointer
from vidgate.store.claims import ClaimVerbs
from vidgate.store.dashboard import DashboardVerbs
from vidgate.store.keys import KEY_PREFIX, KeyVerbs, hash_key
from vidgate.store.limits import LimitVerbs
from vidgate.store.migrate import upgrade
from vidgate.store.polls import PollVerbs
from vidgate.store.remote import RemoteVerbs
from vidgate.store.retention import RetentionVerbs
from vidgate.store.runs import RunVerbs
from vidgate.store.secrets import SecretVerbs
from vidgate.store.webhooks import WebhookVerbs

__all__ = ["KEY_PREFIX", "SQLStore", "hash_key"]
BUSY_TIMEOUT_S = 30.0


SQLITE_SYNCHRONOUS: dict[Durability, str] = {"normal": "NORMAL", "full": "FULL"}
"""In WAL mode, NORMAL syncs the log at checkpoints only: a commit survives a crash of the
process but not always a power loss or an OS crash. FULL syncs the log at every commit."""


def _sqlite_engine(url: str, busy_timeout_s: float, durability: Durability) -> Engine:
    """A plain (synchronous) engine: the store runs SQLite transactions in threads of its
    own, each in one go (see :class:`~vidgate.store.base.StoreBase`). ``sqlite+aiosqlite``
    URLs are accepted and mean the same database. A statement waits up to
    ``busy_timeout_s`` for another process's lock, then fails (the API answers 503)."""
    parsed = make_url(url).set(drivername="sqlite")
    if not parsed.database or parsed.database == ":memory:":
        raise ValueError(
            "vidgate needs a SQLite database file (its threads and processes share it); "
            "an in-memory database cannot be shared: use sqlite:///path/to/vidgate.db"
        )
    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # Connections go back to the pool without a ROLLBACK: writes always end in COMMIT or
    # ROLLBACK, and reads run outside any transaction (below).
    engine = create_engine(
        parsed,
        connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
        pool_size=READERS + 2,
        pool_reset_on_return=None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook below issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={round(busy_timeout_s * 1000)}")
        _ensure_wal(cursor)
        cursor.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS[durability]}")
        cursor.execute("PRAGMA wal_autocheckpoint=0")  # a Checkpointer thread does it
        cursor.execute(f"PRAGMA journal_size_limit={LOG_LIMIT_BYTES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("vidgate_read", False):
            return  # a single-statement read is consistent by itself: no BEGIN/ROLLBACK
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("vidgate_write") else "BEGIN")

    return engine


def _postgres_durability(url: str, durability: Durability) -> dict[str, Any]:
    """Connection arguments that set ``synchronous_commit`` for every session."""
    if durability == "normal":
        return {}
    if make_url(url).get_driver_name() == "asyncpg":
        return {"server_settings": {"synchronous_commit": "on"}}
    return {"options": "-c synchronous_commit=on"}  # libpq drivers


def _ensure_wal(cursor: Any) -> None:
    """Switch the database to WAL (a persistent setting). Switching needs an exclusive lock
    and SQLite does not wait for it, so processes that open a new database at the same time
    retry for a while instead of failing with "database is locked"."""
    deadline = time.monotonic() + 30
    while True:
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class SQLStore(
    KeyVerbs,
    LimitVerbs,
    RunVerbs,
    PollVerbs,
    ClaimVerbs,
    RemoteVerbs,
    WebhookVerbs,
    BudgetVerbs,
    DashboardVerbs,
    SecretVerbs,
    RetentionVerbs,
):
    """Runs, API keys and webhook deliveries in a SQL database."""

    _feed: SQLiteFeed | PostgresFeed | None = None
    _checkpointer: Checkpointer | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        migrate: bool = True,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
        durability: Durability = "normal",
    ) -> SQLStore:
        """The store of the database at ``url``. ``busy_timeout_s``: how long a SQLite
        statement waits for another process's lock before it fails. ``durability``
        ``"full"`` makes every commit reach the disk before it returns (SQLite
        ``synchronous=FULL``; PostgreSQL ``synchronous_commit=on`` whatever the server's
        default); ``"normal"`` leaves SQLite's log to be synced at checkpoints and
        PostgreSQL at its server's setting."""
        if url.startswith("sqlite"):
            store = cls(sync_engine=_sqlite_engine(url, busy_timeout_s, durability))
            assert store.url.database is not None
            store._checkpointer = Checkpointer(store.url.database)
            store._checkpointer.start()
        else:
            connect_args = _postgres_durability(url, durability)
            engine = create_async_engine(
                url,
                # Kept open once used: a pool smaller than a busy API's concurrent requests
                # opened and closed a connection (TLS attempt included) per request beyond it.
                pool_size=20,
                max_overflow=10,
                pool_pre_ping=True,
                connect_args=connect_args,
            )
            store = cls(async_engine=engine)
        if migrate:
            await store._write(lambda tx: upgrade(tx.conn))
        return store

    @property
    def url(self) -> URL:
        engine = self._sync if self._sync is not None else self._async
        assert engine is not None
        return engine.url

    async def listen(self) -> None:
        """Hear of changes that other processes make, from now on (a long-running process
        calls this once; a CLI command need not)."""
        if self._feed is not None:
            return
        url = self.url
        if self.dialect == "sqlite":
            assert url.database is not None  # a file: see _sqlite_engine
            self._feed = SQLiteFeed(url.database, self.events)
        else:
            dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._feed = PostgresFeed(dsn, self.events, self.changes_of)
        await self._feed.start()
        await self._index_queue()  # this process now hears every change

    async def close(self) -> None:
        if self._queue is not None:
            await self._queue.close()
        if self._feed is not None:
            await self._feed.close()
        self._close_inline()
        await self._dispose()
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.close)
