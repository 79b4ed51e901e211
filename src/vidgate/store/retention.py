"""Retention: finding finished runs whose video or row has expired, and forgetting them.

Only finished runs (terminal, with ``completed_at``) are ever touched, never one in
flight. Several workers may sweep at once; every verb is idempotent, so they never fight:

* a video is deleted from storage first (deleting a missing object is no error), then
  marked deleted by a conditional ``UPDATE`` that only one sweeper wins (and logs). A
  sweeper that dies in between leaves the run to the next sweep, never an orphaned file;
* rows are deleted in one transaction each batch, claimed with ``FOR UPDATE SKIP LOCKED``
  on PostgreSQL, so two sweepers take different runs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from vidgate.runs.status import TERMINAL
from vidgate.store.base import CHANGE_COLUMNS, StoreBase, Tx
from vidgate.store.schema import runs, webhook_deliveries

_FINISHED = [status.value for status in TERMINAL]


class ExpiredVideo(NamedTuple):
    run_id: str
    output_key: str
    thumbnail_key: str | None


class RetentionVerbs(StoreBase):
    async def expired_videos(self, before: float, limit: int) -> list[ExpiredVideo]:
        """Up to ``limit`` finished runs that completed before ``before`` and still have a
        video, oldest first."""
        query = (
            select(runs.c.id, runs.c.output_key, runs.c.thumbnail_key)
            .where(
                runs.c.completed_at < before,
                runs.c.status.in_(_FINISHED),
                runs.c.output_key.is_not(None),
                runs.c.output_deleted_at.is_(None),
            )
            .order_by(runs.c.completed_at)
            .limit(limit)
        )
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [ExpiredVideo(*row) for row in rows]

    async def mark_videos_deleted(self, run_ids: list[str], now: float) -> list[str]:
        """Record that these runs' videos are gone (as of ``now``); the runs this call
        marked (a run another sweeper marked first is left out). Each is a run event, so
        status answers kept in memory are dropped; no webhook tells it."""

        def write(tx: Tx) -> list[str]:
            marked = []
            for run_id in run_ids:
                statement = (
                    update(runs)
                    .where(
                        runs.c.id == run_id,
                        runs.c.status.in_(_FINISHED),
                        runs.c.output_deleted_at.is_(None),
                    )
                    .values(output_deleted_at=now, updated_at=now, **self._bump())
                    .returning(*CHANGE_COLUMNS)
                )
                if self._change_one(tx, statement, now, webhook=False) is not None:
                    marked.append(run_id)
            return marked

        return await self._write(write)

    async def delete_expired_runs(self, before: float, limit: int) -> list[str]:
        """Delete up to ``limit`` finished runs that completed before ``before`` and have no
        video left (never had one, or retention deleted it), with their webhook
        deliveries; the ids deleted."""
        query: Any = (
            select(runs.c.id)
            .where(
                runs.c.completed_at < before,
                runs.c.status.in_(_FINISHED),
                runs.c.output_key.is_(None) | runs.c.output_deleted_at.is_not(None),
            )
            .order_by(runs.c.completed_at)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)

        def write(tx: Tx) -> list[str]:
            ids = [row.id for row in tx.conn.execute(query)]
            return _delete_runs(tx.conn, ids) if ids else []

        return await self._write(write)


def _delete_runs(conn: Connection, ids: list[str]) -> list[str]:
    conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.run_id.in_(ids)))
    deleted = conn.execute(delete(runs).where(runs.c.id.in_(ids)).returning(runs.c.id))
    return [row.id for row in deleted]
