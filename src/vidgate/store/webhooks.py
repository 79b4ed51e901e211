"""The webhook outbox: deliveries are written with the run change that calls for them
(:mod:`vidgate.store.base`); the sender leases the due ones, and records each attempt."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import or_, select, update

from vidgate.store.base import StoreBase, Tx
from vidgate.store.errors import DeliveryInFlight
from vidgate.store.records import DeliveryRecord
from vidgate.store.schema import webhook_deliveries as wd

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
GONE = "gone"
LOG_KEPT = 50
"""Attempts kept in a delivery's log (the newest)."""


class WebhookVerbs(StoreBase):
    async def claim_deliveries(
        self, owner: str, limit: int, lease_s: float
    ) -> list[DeliveryRecord]:
        """Lease up to ``limit`` pending deliveries that are due, oldest due first."""
        if limit <= 0:
            return []
        now = time.time()
        free = or_(wd.c.lease_expires_at.is_(None), wd.c.lease_expires_at < now)
        candidates = (
            select(wd.c.id)
            .where(wd.c.status == PENDING, wd.c.next_attempt_at <= now, free)
            .order_by(wd.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(wd)
            .where(wd.c.id.in_(candidates.scalar_subquery()), free)
            .values(lease_owner=owner, lease_expires_at=now + lease_s)
            .returning(*wd.c)
        )
        rows = await self._write(lambda tx: tx.conn.execute(statement).all())
        return [DeliveryRecord.from_row(r._mapping) for r in rows]

    async def record_attempt(
        self,
        delivery: DeliveryRecord,
        owner: str,
        *,
        status: str,
        attempt: dict[str, Any],
        next_attempt_at: float | None,
        payload: str,
    ) -> bool:
        """Record one attempt and end the lease. False if the lease was lost meanwhile."""
        log = [*delivery.log, attempt][-LOG_KEPT:]
        values: dict[str, Any] = {
            "status": status,
            "attempts": wd.c.attempts + 1,
            "log": log,
            "payload": payload,
            "next_attempt_at": next_attempt_at if status == PENDING else None,
            "last_status_code": attempt.get("statusCode"),
            "last_error": attempt.get("error"),
            "lease_owner": None,
            "lease_expires_at": None,
        }
        if status == DELIVERED:
            values["delivered_at"] = attempt["at"]
        statement = (
            update(wd).where(wd.c.id == delivery.id, wd.c.lease_owner == owner).values(**values)
        )
        return bool(await self._write(lambda tx: tx.conn.execute(statement).rowcount))

    async def deliveries_of(self, run_id: str) -> list[DeliveryRecord]:
        query = select(wd).where(wd.c.run_id == run_id).order_by(wd.c.created_at, wd.c.id)
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [DeliveryRecord.from_row(r._mapping) for r in rows]

    async def redeliver(self, run_id: str) -> DeliveryRecord | None:
        """Send the run's newest delivery again, now, with the same ``webhook-id`` (None: the
        run has no delivery yet). Raises DeliveryInFlight while an attempt is being made:
        its outcome is about to be recorded, and a second send would overlap it."""
        now = time.time()

        def write(tx: Tx) -> DeliveryRecord | None:
            row = tx.conn.execute(
                select(wd.c.id, wd.c.lease_expires_at)
                .where(wd.c.run_id == run_id)
                .order_by(wd.c.created_at.desc(), wd.c.id.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            if row.lease_expires_at is not None and row.lease_expires_at > now:
                raise DeliveryInFlight(
                    f"an attempt to deliver {row.id} is being made right now; "
                    "look at the log and try again in a few seconds"
                )
            free = or_(wd.c.lease_expires_at.is_(None), wd.c.lease_expires_at <= now)
            updated = tx.conn.execute(
                update(wd)
                .where(wd.c.id == row.id, free)
                .values(
                    status=PENDING, next_attempt_at=now, lease_owner=None, lease_expires_at=None
                )
                .returning(*wd.c)
            ).first()
            if updated is None:  # a sender leased it between the two statements
                raise DeliveryInFlight(
                    f"an attempt to deliver {row.id} has just started; "
                    "look at the log and try again in a few seconds"
                )
            return DeliveryRecord.from_row(updated._mapping)

        return await self._write(write)

    async def release_deliveries(self, owner: str) -> None:
        """Give back this owner's leased deliveries (a sender stopping): an attempt cut off
        is made again at once by whichever sender looks next, not after its lease."""
        statement = (
            update(wd)
            .where(wd.c.lease_owner == owner, wd.c.status == PENDING)
            .values(lease_owner=None, lease_expires_at=None)
        )
        await self._write(lambda tx: tx.conn.execute(statement))
