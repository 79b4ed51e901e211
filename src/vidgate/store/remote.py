"""The remote poller's verbs: lease the runs whose next provider operation is due, and
record what each operation learned.

The database is the poller's schedule. A due poll is found by an index range scan over
``(backend, next_poll_at)``, a due submit over ``(backend, status, provider_request_id,
available_at)``: each claim costs O(log n) in the runs in flight plus the runs it takes,
never a scan of all of them. A claim takes only the columns an operation needs; the
``request`` (which can be megabytes of image) is read for a submit only.

A poll that learned nothing new writes nothing of its own: the poller hands it back with
the next claim (:meth:`RemoteVerbs.reschedule`), in the same transaction, so following
100,000 provider jobs costs a few write transactions per second, not one per poll.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import fields
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, or_, select, true, update

from vidgate.runs.status import Status, sources_of
from vidgate.store.base import CHANGE_COLUMNS, StoreBase
from vidgate.store.budgets import final_cost
from vidgate.store.records import RemoteRun
from vidgate.store.schema import runs

LIVE = (Status.IN_QUEUE.value, Status.IN_PROGRESS.value)
FOLLOWED = (*LIVE, Status.CANCELLED.value)
"""Runs whose provider job is followed: live ones, and cancelled ones until the provider has
been told."""
OPERATION_COLUMNS = tuple(runs.c[f.name] for f in fields(RemoteRun) if f.name != "request")
POLL_SHARE = 0.75
"""Of a claim's room, what due polls may take before due submits get theirs."""


class RemoteVerbs(StoreBase):
    async def claim_remote(
        self,
        owner: str,
        backends: Iterable[str],
        limit: int,
        lease_s: float,
        *,
        reschedule: Mapping[str, float] | None = None,
        models: Collection[str] | None = None,
    ) -> list[RemoteRun]:
        """Lease up to ``limit`` remote runs that need an operation now, most overdue first:
        a poll or a provider-side cancel (``next_poll_at`` has come), or a submit (queued, no
        provider job yet). The lease covers one operation; :meth:`remote_update` or
        :meth:`reschedule` ends it. A leased poll's ``next_poll_at`` moves to the lease's
        end, so should this process die, the run is polled again once its lease is over.

        ``reschedule`` (run id -> next poll) records quiet polls in the same transaction
        (see :meth:`reschedule`). ``models``: only runs of these models (None: any)."""
        kinds = list(backends)
        if not kinds:
            return []
        only = true() if models is None else runs.c.model.in_(list(models))
        now = time.time()

        def claim(tx: Any) -> list[RemoteRun]:
            if reschedule:
                _reschedule(tx.conn, owner, reschedule)
            if limit <= 0:
                return []
            polls = limit - int(limit * (1 - POLL_SHARE))
            taken = _claim_polls(tx.conn, owner, kinds, polls, now, lease_s, only)
            taken += _claim_submits(tx.conn, owner, kinds, limit - len(taken), now, lease_s, only)
            if len(taken) < limit:  # fewer submits were due than their share
                left = limit - len(taken)
                taken += _claim_polls(tx.conn, owner, kinds, left, now, lease_s, only)
            return taken

        return await self._write(claim)

    async def reschedule(self, owner: str, due: Mapping[str, float]) -> None:
        """Record quiet polls (polls that learned nothing new): each run's lease ends and
        its next poll is at the given time, if ``owner`` still holds it. A run that was
        cancelled meanwhile keeps the due time its cancel gave it."""
        if due:
            await self._write(lambda tx: _reschedule(tx.conn, owner, due))

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
        whether clients see a change (default: when ``to`` is given). Returns False if the
        run changed meanwhile (cancelled, or the lease was lost). It reads nothing back but
        what an event needs: a row may carry a large request."""
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
                changes.update({"completed_at": now, **final_cost(to), **values})
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

    async def count_on_route(self, model: str, provider: str, *, but: str | None = None) -> int:
        """Runs of ``model`` in flight on the route of ``provider`` (being submitted or
        followed there), ``but`` one."""
        query = select(func.count()).where(
            runs.c.provider == provider,
            runs.c.status.in_(LIVE),
            runs.c.model == model,
        )
        if but is not None:
            query = query.where(runs.c.id != but)
        return int(await self._read(lambda conn: conn.execute(query).scalar_one()))


def _free(now: float) -> Any:
    return or_(runs.c.lease_expires_at.is_(None), runs.c.lease_expires_at < now)


def _claim_polls(
    conn: Connection,
    owner: str,
    kinds: list[str],
    limit: int,
    now: float,
    lease_s: float,
    only: Any,
) -> list[RemoteRun]:
    """Due polls and provider-side cancels, one index range per backend."""
    taken: list[RemoteRun] = []
    for kind in kinds:
        if len(taken) >= limit:
            break
        candidates = (
            select(runs.c.id)
            .where(
                runs.c.backend == kind,
                runs.c.next_poll_at <= now,
                runs.c.status.in_(FOLLOWED),
                runs.c.provider_request_id.is_not(None),
                _free(now),
                only,
            )
            .order_by(runs.c.next_poll_at)
            .limit(limit - len(taken))
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(runs)
            .where(runs.c.id.in_(candidates.scalar_subquery()), _free(now))
            .values(lease_owner=owner, lease_expires_at=now + lease_s, next_poll_at=now + lease_s)
            .returning(*OPERATION_COLUMNS)
        )
        taken += [RemoteRun.from_row(row._mapping) for row in conn.execute(statement)]
    return taken


def _claim_submits(
    conn: Connection,
    owner: str,
    kinds: list[str],
    limit: int,
    now: float,
    lease_s: float,
    only: Any,
) -> list[RemoteRun]:
    """Due submits, with their requests: the only claim that reads ``request``."""
    taken: list[RemoteRun] = []
    for kind in kinds:
        if len(taken) >= limit:
            break
        candidates = (
            select(runs.c.id)
            .where(
                runs.c.backend == kind,
                runs.c.status == Status.IN_QUEUE.value,
                runs.c.provider_request_id.is_(None),
                runs.c.available_at <= now,
                _free(now),
                only,
            )
            .order_by(runs.c.available_at)
            .limit(limit - len(taken))
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(runs)
            .where(runs.c.id.in_(candidates.scalar_subquery()), _free(now))
            .values(lease_owner=owner, lease_expires_at=now + lease_s)
            .returning(*OPERATION_COLUMNS, runs.c.request)
        )
        taken += [RemoteRun.from_row(row._mapping) for row in conn.execute(statement)]
    return taken


_RESCHEDULE = (
    update(runs)
    .where(runs.c.id == bindparam("b_id"), runs.c.lease_owner == bindparam("b_owner"))
    .values(
        lease_owner=None,
        lease_expires_at=None,
        next_poll_at=case(
            # (spelled out: an IN list cannot be used with executemany)
            (or_(*(runs.c.status == status for status in LIVE)), bindparam("b_due")),
            else_=runs.c.next_poll_at,
        ),
    )
)


def _reschedule(conn: Connection, owner: str, due: Mapping[str, float]) -> None:
    conn.execute(
        _RESCHEDULE, [{"b_id": run_id, "b_owner": owner, "b_due": at} for run_id, at in due.items()]
    )
