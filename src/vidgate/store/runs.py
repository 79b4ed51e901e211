"""Runs: submit, read, and the status changes any process may make (transition, cancel)."""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from typing import Any

from sqlalchemy import JSON, Insert, case, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from vidgate.events.hub import RunChange
from vidgate.runs.status import TERMINAL, Status, sources_of
from vidgate.store.base import StoreBase, Tx
from vidgate.store.budgets import final_cost, lock_limits, refusal
from vidgate.store.errors import IdempotencyConflict, NotFound, StoreError
from vidgate.store.records import NewRun, RunRecord
from vidgate.store.schema import runs


class RunVerbs(StoreBase):
    @functools.cached_property
    def _insert_run(self) -> Insert:
        """One statement object for every submit, so SQLAlchemy finds it compiled. It
        returns nothing: the new run is what was inserted (every other column is NULL or
        its default), so it is made from the values, without a row to read back."""
        return insert(runs).values(rev=self._next_rev())

    @functools.cached_property
    def _insert_run_sqlite(self) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        """SQLite: :attr:`_insert_run` as its driver takes it, and the keys of a submit's
        row in the order of its parameters. SQLite's one writer runs every submit: handing
        it the values (JSON as SQLAlchemy writes it) skips SQLAlchemy's per-statement work
        (about a third of the writer's time), while errors still come wrapped as usual."""
        assert self._sync is not None
        compiled = self._insert_run.compile(dialect=self._sync.dialect, column_keys=_ROW_KEYS)
        assert compiled.positiontup is not None
        constants = {k: v for k, v in compiled.params.items() if k not in _ROW_KEYS}
        return str(compiled), tuple(compiled.positiontup), constants

    def _insert_new(self, conn: Connection, row: dict[str, Any]) -> None:
        if self.dialect != "sqlite":
            conn.execute(self._insert_run, row)
            return
        sql, keys, constants = self._insert_run_sqlite  # constants: the next rev's 0 and 1
        values = tuple(
            json.dumps(row[k]) if k in _JSON_KEYS else row[k] if k in row else constants[k]
            for k in keys
        )
        conn.exec_driver_sql(sql, values)

    async def submit(
        self, new: NewRun, *, idempotency_ttl_s: float, limited: bool = False
    ) -> tuple[RunRecord, bool]:
        """Persist a new run. With an idempotency key seen within the TTL, returns the first
        run instead (``created`` is False), or raises IdempotencyConflict if the body differs.
        ``limited``: the key's budget and in-flight limit are checked in the same transaction
        (see :mod:`~vidgate.store.budgets`); OverBudget or TooManyInFlight if it is refused."""
        now = time.time()

        def write(tx: Tx) -> tuple[RunRecord, bool] | StoreError:
            limits = lock_limits(tx.conn, self.dialect, new.api_key_id) if limited else None
            if new.idempotency_key is not None:
                existing = _by_idempotency_key(tx.conn, new)
                if existing is not None:
                    if existing.created_at >= now - idempotency_ttl_s:
                        if existing.request_hash != new.request_hash:
                            raise IdempotencyConflict(
                                "this Idempotency-Key was already used with a different "
                                "request body; use a new key for a new request"
                            )
                        return existing, False
                    tx.conn.execute(
                        update(runs).where(runs.c.id == existing.id).values(idempotency_key=None)
                    )
            if limits is not None:
                refused = refusal(tx.conn, limits, new, now)
                if refused is not None:
                    return refused
            row = {
                **new.__dict__,
                "status": Status.IN_QUEUE.value,
                "cost": float(new.cost),
                "created_at": new.created_at if new.created_at is not None else now,
                "updated_at": now,
                "attempts": 0,
                "is_nsfw": False,
                "seq": 1,
            }
            self._insert_new(tx.conn, row)
            run = RunRecord(**{**row, "status": Status.IN_QUEUE})
            self._changed(tx, run, now, run)  # an event (and NOTIFY): workers wake for it
            return run, True

        for _ in range(3):
            try:
                result = await self._write(write)
            except IntegrityError:
                # A concurrent submit with the same idempotency key won; read its run.
                if new.idempotency_key is None:
                    raise
                continue
            if isinstance(result, StoreError):
                raise result
            return result
        raise IdempotencyConflict("this Idempotency-Key is being used concurrently; retry")

    async def get(self, run_id: str, api_key_id: str | None = None) -> RunRecord:
        """The run; NotFound if it does not exist or belongs to another key."""
        query = select(runs).where(runs.c.id == run_id)
        if api_key_id is not None:
            query = query.where(runs.c.api_key_id == api_key_id)
        row = await self._read(lambda conn: conn.execute(query).first())
        if row is None:
            raise NotFound(f"no run {run_id!r}")
        return RunRecord.from_row(row._mapping)

    async def changes_of(self, run_ids: set[str]) -> list[RunChange]:
        """The current sequence number and status of these runs (a feed catching up)."""
        query = select(runs.c.id, runs.c.seq, runs.c.status, runs.c.backend).where(
            runs.c.id.in_(list(run_ids))
        )
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [RunChange(r.id, r.seq, Status(r.status), r.backend) for r in rows]

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
        changes: dict[str, Any] = {"status": to.value, "updated_at": now, **self._bump(), **values}
        if to in TERMINAL:
            changes.update(completed_at=now, lease_owner=None, lease_expires_at=None)
            changes.update({**final_cost(to), **values})
        statement = update(runs).where(*conditions).values(**changes).returning(*runs.c)
        row = await self._write(lambda tx: self._change_one(tx, statement, now))
        return RunRecord.from_row(row._mapping) if row is not None else None

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


_ROW_KEYS = [f.name for f in dataclasses.fields(NewRun)]
_ROW_KEYS += ["status", "updated_at", "attempts", "is_nsfw", "seq"]
"""The columns a submit writes (``created_at`` is one of :class:`NewRun`'s)."""
_JSON_KEYS = frozenset(c.name for c in runs.c if isinstance(c.type, JSON))
# The INSERT compiled once takes a column's Python-side default as a constant: every
# column with one must be among the submit's own values.
assert {c.name for c in runs.c if c.default is not None} <= set(_ROW_KEYS)


def _by_idempotency_key(conn: Connection, new: NewRun) -> RunRecord | None:
    row = conn.execute(
        select(runs).where(
            runs.c.api_key_id == new.api_key_id,
            runs.c.idempotency_key == new.idempotency_key,
        )
    ).first()
    return RunRecord.from_row(row._mapping) if row else None
