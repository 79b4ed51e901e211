"""The remote poller's verbs: lease the runs whose next provider operation is due, and
record what each operation learned."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import func, or_, select, update

from vidgate.runs.status import Status, sources_of
from vidgate.store.base import CHANGE_COLUMNS, StoreBase
from vidgate.store.records import RunRecord
from vidgate.store.schema import runs


class RemoteVerbs(StoreBase):
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
        statement = (
            update(runs)
            .where(runs.c.id.in_(candidates.scalar_subquery()), free)
            .values(lease_owner=owner, lease_expires_at=now + lease_s)
            .returning(*runs.c)
        )
        rows = await self._write(lambda tx: tx.conn.execute(statement).all())
        return [RunRecord.from_row(r._mapping) for r in rows]

    async def remote_update(
        self,
        run_id: str,
        owner: str,
        *,
        to: Status | None = None,
        release: bool = True,
        publish: bool | None = None,
        expect: Collection[Status] = (Status.IN_QUEUE, Status.IN_PROGRESS),
        **values: Any,
    ) -> bool:
        """Record what one remote operation learned, while ``owner`` holds the run's lease.

        ``to`` moves the status (staying in a non-terminal status is allowed); without it the
        run must be in one of ``expect``. ``release`` ends the lease. ``publish`` says
        whether clients see a change (default: when ``to`` is given); a poll that learned
        nothing new is not an event. Returns False if the run changed meanwhile (cancelled,
        or the lease was lost). Runs once per poll, so it reads nothing back but what an
        event needs: a row may carry a large request."""
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
        publishing = (to is not None) if publish is None else publish
        if publishing:
            changes.update(self._bump())
        statement = (
            update(runs)
            .where(runs.c.id == run_id, runs.c.lease_owner == owner, runs.c.status.in_(allowed))
            .values(**changes)
            .returning(*CHANGE_COLUMNS)
        )
        if publishing:
            return await self._write(lambda tx: self._change_one(tx, statement, now)) is not None
        return await self._write(lambda tx: tx.conn.execute(statement).first()) is not None
