"""The local worker's verbs: claim a run with a lease, renew leases, report progress, give
runs back. A claim is one conditional UPDATE, so two workers never hold the same run."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import func, or_, select, update

from vidgate.runs.status import Status
from vidgate.store.base import CHANGE_COLUMNS, StoreBase
from vidgate.store.records import RunRecord
from vidgate.store.schema import runs


class ClaimVerbs(StoreBase):
    async def claim_next(
        self,
        owner: str,
        backends: Iterable[str],
        lease_s: float,
        *,
        running: Collection[str] = (),
        models: Collection[str] | None = None,
    ) -> RunRecord | None:
        """Take the oldest claimable run of these backends: queued and due, or in progress
        with an expired lease (its worker died). Increments ``attempts``. Never one of
        ``running``, which the caller renders still (their leases may have run out while
        the database was away). ``models``: only runs of these models (None: any)."""
        now = time.time()
        claimable = or_(
            (runs.c.status == Status.IN_QUEUE.value) & (runs.c.available_at <= now),
            (runs.c.status == Status.IN_PROGRESS.value) & (runs.c.lease_expires_at < now),
        )
        if running:
            claimable = claimable & runs.c.id.not_in(list(running))
        if models is not None:
            claimable = claimable & runs.c.model.in_(list(models))
        candidate = (
            select(runs.c.id)
            .where(runs.c.backend.in_(list(backends)), claimable)
            .order_by(runs.c.created_at, runs.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        statement = (
            update(runs)
            .where(runs.c.id == candidate, claimable)
            .values(
                status=Status.IN_PROGRESS.value,
                lease_owner=owner,
                lease_expires_at=now + lease_s,
                attempts=runs.c.attempts + 1,
                started_at=func.coalesce(runs.c.started_at, now),
                updated_at=now,
                **self._bump(),
            )
            .returning(*runs.c)
        )
        row = await self._write(lambda tx: self._change_one(tx, statement, now))
        return RunRecord.from_row(row._mapping) if row is not None else None

    async def heartbeat(self, owner: str, run_ids: Collection[str], lease_s: float) -> set[str]:
        """Renew this owner's leases; returns the ids it still holds (a run cancelled or
        taken over meanwhile is missing, and its work should stop)."""
        if not run_ids:
            return set()
        statement = (
            update(runs)
            .where(
                runs.c.id.in_(list(run_ids)),
                runs.c.lease_owner == owner,
                runs.c.status == Status.IN_PROGRESS.value,
            )
            .values(lease_expires_at=time.time() + lease_s)
            .returning(runs.c.id)
        )
        rows = await self._write(lambda tx: tx.conn.execute(statement).all())
        return {r.id for r in rows}

    async def renew(self, owner: str, run_ids: Collection[str], lease_s: float) -> None:
        """Extend this owner's leases whatever the runs' status (remote operations)."""
        if not run_ids:
            return
        statement = (
            update(runs)
            .where(runs.c.id.in_(list(run_ids)), runs.c.lease_owner == owner)
            .values(lease_expires_at=time.time() + lease_s)
        )
        await self._write(lambda tx: tx.conn.execute(statement))

    async def release(self, owner: str, run_ids: Collection[str]) -> None:
        """Give runs back (graceful shutdown): their leases expire now, so any worker may
        take them at once."""
        if not run_ids:
            return
        statement = (
            update(runs)
            .where(
                runs.c.id.in_(list(run_ids)),
                runs.c.lease_owner == owner,
                runs.c.status == Status.IN_PROGRESS.value,
            )
            .values(lease_expires_at=0.0, attempts=runs.c.attempts - 1)
        )
        await self._write(lambda tx: tx.conn.execute(statement))

    async def update_running(self, run_id: str, owner: str, **values: Any) -> bool:
        """Change fields of a run this owner holds (progress, provider job...): a change
        that clients are told of."""
        now = time.time()
        statement = (
            update(runs)
            .where(
                runs.c.id == run_id,
                runs.c.lease_owner == owner,
                runs.c.status == Status.IN_PROGRESS.value,
            )
            .values(updated_at=now, **self._bump(), **values)
            .returning(*CHANGE_COLUMNS)
        )
        return await self._write(lambda tx: self._change_one(tx, statement, now)) is not None
