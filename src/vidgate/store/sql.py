"""The store port over SQLAlchemy 2 async: one implementation for SQLite and PostgreSQL.

Every change of a run is one conditional ``UPDATE ... RETURNING``: a transition applies only
from an allowed status (and, for workers, only while they hold the lease), so racing writers
(a cancel and a completion, two workers) end with exactly one winner.

On SQLite, write transactions start with ``BEGIN IMMEDIATE`` so that a transaction that reads
before it writes waits for the lock instead of failing with "database is locked"; WAL lets
readers go on meanwhile. On PostgreSQL the claim query uses ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Collection, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import case, event, func, insert, or_, select, update
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from vidgate.runs.status import TERMINAL, Status, sources_of
from vidgate.store.errors import (
    IdempotencyConflict,
    KeyNameTaken,
    KeyNotFound,
    NotFound,
)
from vidgate.store.migrate import upgrade
from vidgate.store.records import KeyRecord, NewRun, RunRecord
from vidgate.store.schema import api_keys, runs

KEY_PREFIX = "vg_"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _sqlite_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook below issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        _ensure_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("vidgate_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


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


class SQLStore:
    """Runs and API keys in a SQL database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(vidgate_write=True)
        self.dialect = engine.dialect.name

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> SQLStore:
        engine = (
            _sqlite_engine(url)
            if url.startswith("sqlite")
            else create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
        )
        store = cls(engine)
        if migrate:
            async with store._writer.begin() as conn:
                await conn.run_sync(upgrade)
        return store

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self._writer.begin() as conn:
            yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    # ---- API keys -------------------------------------------------------------------

    async def create_key(self, name: str) -> tuple[KeyRecord, str]:
        """Create a key; returns its record and the secret, which is never stored."""
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        row = {
            "id": "key_" + secrets.token_hex(8),
            "name": name,
            "key_hash": hash_key(secret),
            "prefix": secret[:10],
            "webhook_secret": "whsec_" + secrets.token_urlsafe(32),
            "created_at": time.time(),
            "revoked_at": None,
        }
        try:
            async with self._write() as conn:
                await conn.execute(insert(api_keys).values(**row))
        except IntegrityError:
            raise KeyNameTaken(f"an API key named {name!r} exists already") from None
        return KeyRecord.from_row(row), secret

    async def list_keys(self) -> list[KeyRecord]:
        async with self._read() as conn:
            rows = await conn.execute(select(api_keys).order_by(api_keys.c.created_at))
            return [KeyRecord.from_row(r._mapping) for r in rows]

    async def revoke_key(self, name_or_id: str) -> KeyRecord:
        async with self._write() as conn:
            result = await conn.execute(
                update(api_keys)
                .where(or_(api_keys.c.name == name_or_id, api_keys.c.id == name_or_id))
                .values(revoked_at=func.coalesce(api_keys.c.revoked_at, time.time()))
                .returning(*api_keys.c)
            )
            row = result.first()
        if row is None:
            raise KeyNotFound(f"no API key named {name_or_id!r}")
        return KeyRecord.from_row(row._mapping)

    async def authenticate(self, secret: str) -> KeyRecord | None:
        """The live key whose secret this is, or None. The lookup is by hash; the final
        comparison is constant-time."""
        digest = hash_key(secret)
        async with self._read() as conn:
            row = (
                await conn.execute(select(api_keys).where(api_keys.c.key_hash == digest))
            ).first()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.key_hash, digest):
            return None
        return KeyRecord.from_row(row._mapping)

    # ---- runs: submit and read ----------------------------------------------------

    async def submit(self, new: NewRun, *, idempotency_ttl_s: float) -> tuple[RunRecord, bool]:
        """Persist a new run. With an idempotency key seen within the TTL, returns the first
        run instead (``created`` is False), or raises IdempotencyConflict if the body differs."""
        now = time.time()
        for _ in range(3):
            try:
                async with self._write() as conn:
                    if new.idempotency_key is not None:
                        existing = await self._by_idempotency_key(conn, new)
                        if existing is not None:
                            if existing.created_at >= now - idempotency_ttl_s:
                                if existing.request_hash != new.request_hash:
                                    raise IdempotencyConflict(
                                        "this Idempotency-Key was already used with a different "
                                        "request body; use a new key for a new request"
                                    )
                                return existing, False
                            await conn.execute(
                                update(runs)
                                .where(runs.c.id == existing.id)
                                .values(idempotency_key=None)
                            )
                    row = {
                        **new.__dict__,
                        "status": Status.IN_QUEUE.value,
                        "created_at": now,
                        "updated_at": now,
                        "attempts": 0,
                        "is_nsfw": False,
                    }
                    result = await conn.execute(insert(runs).values(**row).returning(*runs.c))
                    return RunRecord.from_row(result.one()._mapping), True
            except IntegrityError:
                # A concurrent submit with the same idempotency key won; read its run.
                if new.idempotency_key is None:
                    raise
        raise IdempotencyConflict("this Idempotency-Key is being used concurrently; retry")

    async def _by_idempotency_key(self, conn: AsyncConnection, new: NewRun) -> RunRecord | None:
        row = (
            await conn.execute(
                select(runs).where(
                    runs.c.api_key_id == new.api_key_id,
                    runs.c.idempotency_key == new.idempotency_key,
                )
            )
        ).first()
        return RunRecord.from_row(row._mapping) if row else None

    async def get(self, run_id: str, api_key_id: str | None = None) -> RunRecord:
        """The run; NotFound if it does not exist or belongs to another key."""
        query = select(runs).where(runs.c.id == run_id)
        if api_key_id is not None:
            query = query.where(runs.c.api_key_id == api_key_id)
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"no run {run_id!r}")
        return RunRecord.from_row(row._mapping)

    async def status_of(self, run_id: str) -> Status:
        """Only the run's status: cheap to ask often (a full row may carry a large request)."""
        async with self._read() as conn:
            status = (await conn.execute(select(runs.c.status).where(runs.c.id == run_id))).scalar()
        if status is None:
            raise NotFound(f"no run {run_id!r}")
        return Status(status)

    async def queue_position(self, run: RunRecord) -> int:
        """How many queued runs of the same backend are ahead of this one (0 = next)."""
        async with self._read() as conn:
            count = (
                await conn.execute(
                    select(func.count())
                    .select_from(runs)
                    .where(
                        runs.c.status == Status.IN_QUEUE.value,
                        runs.c.backend == run.backend,
                        runs.c.created_at < run.created_at,
                    )
                )
            ).scalar_one()
        return int(count)

    # ---- runs: the worker's verbs ---------------------------------------------------

    async def claim_next(
        self, owner: str, backends: Iterable[str], lease_s: float
    ) -> RunRecord | None:
        """Take the oldest claimable run of these backends: queued and due, or in progress
        with an expired lease (its worker died). Increments ``attempts``."""
        now = time.time()
        claimable = or_(
            (runs.c.status == Status.IN_QUEUE.value) & (runs.c.available_at <= now),
            (runs.c.status == Status.IN_PROGRESS.value) & (runs.c.lease_expires_at < now),
        )
        candidate = (
            select(runs.c.id)
            .where(runs.c.backend.in_(list(backends)), claimable)
            .order_by(runs.c.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        async with self._write() as conn:
            result = await conn.execute(
                update(runs)
                .where(runs.c.id == candidate, claimable)
                .values(
                    status=Status.IN_PROGRESS.value,
                    lease_owner=owner,
                    lease_expires_at=now + lease_s,
                    attempts=runs.c.attempts + 1,
                    started_at=func.coalesce(runs.c.started_at, now),
                    updated_at=now,
                )
                .returning(*runs.c)
            )
            row = result.first()
        return RunRecord.from_row(row._mapping) if row else None

    async def heartbeat(self, owner: str, run_ids: Collection[str], lease_s: float) -> set[str]:
        """Renew this owner's leases; returns the ids it still holds (a run cancelled or
        taken over meanwhile is missing, and its work should stop)."""
        if not run_ids:
            return set()
        now = time.time()
        async with self._write() as conn:
            result = await conn.execute(
                update(runs)
                .where(
                    runs.c.id.in_(list(run_ids)),
                    runs.c.lease_owner == owner,
                    runs.c.status == Status.IN_PROGRESS.value,
                )
                .values(lease_expires_at=now + lease_s)
                .returning(runs.c.id)
            )
            return {r.id for r in result}

    async def renew(self, owner: str, run_ids: Collection[str], lease_s: float) -> None:
        """Extend this owner's leases whatever the runs' status (remote operations)."""
        if not run_ids:
            return
        async with self._write() as conn:
            await conn.execute(
                update(runs)
                .where(runs.c.id.in_(list(run_ids)), runs.c.lease_owner == owner)
                .values(lease_expires_at=time.time() + lease_s)
            )

    async def release(self, owner: str, run_ids: Collection[str]) -> None:
        """Give runs back (graceful shutdown): their leases expire now, so any worker may
        take them at once."""
        if not run_ids:
            return
        async with self._write() as conn:
            await conn.execute(
                update(runs)
                .where(
                    runs.c.id.in_(list(run_ids)),
                    runs.c.lease_owner == owner,
                    runs.c.status == Status.IN_PROGRESS.value,
                )
                .values(lease_expires_at=0.0, attempts=runs.c.attempts - 1)
            )

    async def update_running(self, run_id: str, owner: str, **values: Any) -> bool:
        """Change fields of a run this owner holds (progress, provider job...)."""
        async with self._write() as conn:
            result = await conn.execute(
                update(runs)
                .where(
                    runs.c.id == run_id,
                    runs.c.lease_owner == owner,
                    runs.c.status == Status.IN_PROGRESS.value,
                )
                .values(updated_at=time.time(), **values)
            )
            return bool(result.rowcount)

    async def transition(
        self,
        run_id: str,
        to: Status,
        *,
        owner: str | None = None,
        api_key_id: str | None = None,
        **values: Any,
    ) -> RunRecord | None:
        """Move a run to ``to`` if the state machine allows it from its current status (and
        ``owner`` still holds it, when given). Returns the updated run, or None if the
        transition did not apply (someone else changed the run first)."""
        now = time.time()
        conditions = [runs.c.id == run_id, runs.c.status.in_([s.value for s in sources_of(to)])]
        if owner is not None:
            conditions.append(runs.c.lease_owner == owner)
        if api_key_id is not None:
            conditions.append(runs.c.api_key_id == api_key_id)
        changes: dict[str, Any] = {"status": to.value, "updated_at": now, **values}
        if to in TERMINAL:
            changes.update(completed_at=now, lease_owner=None, lease_expires_at=None)
        async with self._write() as conn:
            result = await conn.execute(
                update(runs).where(*conditions).values(**changes).returning(*runs.c)
            )
            row = result.first()
        return RunRecord.from_row(row._mapping) if row else None

    async def cancel(self, run_id: str, api_key_id: str) -> RunRecord:
        """Cancel a queued or running run; a terminal run is returned as it is. A run with
        a provider job becomes due at once, so the poller cancels that job without waiting
        for its next scheduled poll."""
        now = time.time()
        due_now = case((runs.c.provider_request_id.is_not(None), now), else_=None)
        run = await self.transition(
            run_id, Status.CANCELLED, api_key_id=api_key_id, next_poll_at=due_now
        )
        return run if run is not None else await self.get(run_id, api_key_id)

    # ---- runs: the remote poller's verbs ---------------------------------------------

    async def claim_remote(
        self, owner: str, backends: Iterable[str], limit: int, lease_s: float
    ) -> list[RunRecord]:
        """Lease up to ``limit`` remote runs that need an operation now, most overdue first:
        a submit (queued, no provider job yet), a poll (``next_poll_at`` has come) or a
        provider-side cancel (cancelled here while the provider job may still run). The lease
        covers one operation; :meth:`remote_update` ends it."""
        if limit <= 0:
            return []
        now = time.time()
        live = [Status.IN_QUEUE.value, Status.IN_PROGRESS.value]
        due = or_(
            (runs.c.status == Status.IN_QUEUE.value)
            & runs.c.provider_request_id.is_(None)
            & (runs.c.available_at <= now),
            runs.c.status.in_(live)
            & runs.c.provider_request_id.is_not(None)
            & (runs.c.next_poll_at <= now),
            (runs.c.status == Status.CANCELLED.value)
            & runs.c.provider_request_id.is_not(None)
            & (runs.c.next_poll_at <= now),
        )
        free = or_(runs.c.lease_expires_at.is_(None), runs.c.lease_expires_at < now)
        candidates = (
            select(runs.c.id)
            .where(runs.c.backend.in_(list(backends)), free, due)
            .order_by(func.coalesce(runs.c.next_poll_at, runs.c.available_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self._write() as conn:
            result = await conn.execute(
                update(runs)
                .where(runs.c.id.in_(candidates.scalar_subquery()), free)
                .values(lease_owner=owner, lease_expires_at=now + lease_s)
                .returning(*runs.c)
            )
            return [RunRecord.from_row(r._mapping) for r in result]

    async def remote_update(
        self,
        run_id: str,
        owner: str,
        *,
        to: Status | None = None,
        release: bool = True,
        expect: Collection[Status] = (Status.IN_QUEUE, Status.IN_PROGRESS),
        **values: Any,
    ) -> bool:
        """Record what one remote operation learned, while ``owner`` holds the run's lease.

        ``to`` moves the status (staying in a non-terminal status is allowed); without it the
        run must be in one of ``expect``. ``release`` ends the lease. Returns False if the run
        changed meanwhile (cancelled, or the lease was lost). Runs once per poll, so it
        reads nothing back: a row may carry a large request."""
        now = time.time()
        if to is None:
            allowed = {s.value for s in expect}
        else:
            allowed = {s.value for s in sources_of(to)}
            if not to.is_terminal:
                allowed.add(to.value)
        changes: dict[str, Any] = {"updated_at": now, **values}
        if to is not None:
            changes["status"] = to.value
            if to is Status.IN_PROGRESS:
                changes["started_at"] = func.coalesce(runs.c.started_at, now)
            if to.is_terminal:
                changes["completed_at"] = now
        if release:
            changes.update(lease_owner=None, lease_expires_at=None)
        async with self._write() as conn:
            result = await conn.execute(
                update(runs)
                .where(runs.c.id == run_id, runs.c.lease_owner == owner, runs.c.status.in_(allowed))
                .values(**changes)
            )
            return bool(result.rowcount)

    async def count_by_status(self) -> dict[str, int]:
        async with self._read() as conn:
            rows = await conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status))
            return {r[0]: int(r[1]) for r in rows}
