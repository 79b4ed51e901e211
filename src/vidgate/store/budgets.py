"""Budgets and usage: what a key's runs cost, and the limits its submits are held to.

A run's ``cost`` is its estimate from submit until it ends; then its final cost (0 when it
failed, or was cancelled before it started). A key's spend for a UTC day is the sum of the
costs of the runs it submitted that day: estimates of runs still going, final costs of
finished ones.

The limits are checked in the transaction that inserts the run (:func:`refusal`). On
PostgreSQL that transaction first locks the key's row (``SELECT ... FOR UPDATE``), so two
submits of one key, in any processes, check and insert one after the other: the second
sees the first's run. SQLite has one writer at a time, and a group commit's writes see the
earlier writes of their group.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sqlalchemy import Float, Integer, and_, case, cast, func, select
from sqlalchemy.engine import Connection, Row

from vidgate.runs.days import DAY_S
from vidgate.runs.status import Status
from vidgate.store.base import StoreBase
from vidgate.store.errors import OverBudget, StoreError, TooManyInFlight
from vidgate.store.records import Balance, KeyRecord, NewRun, RecentRun, UsageRow
from vidgate.store.schema import api_keys, runs

LIVE = (Status.IN_QUEUE.value, Status.IN_PROGRESS.value)
_EPSILON_USD = 1e-9


def day_start(now: float) -> float:
    """The start of ``now``'s UTC day (Unix seconds)."""
    return float(int(now // DAY_S) * DAY_S)


def lock_limits(conn: Connection, dialect: str, api_key_id: str) -> Row[Any, Any] | None:
    """The key's limits, its row locked until the transaction ends (on PostgreSQL; SQLite's
    writer is one at a time already): submits of one key are checked one after the other.
    Take it before anything the check depends on is read, the idempotency lookup included,
    so that a retry waiting here sees the run its first try made and is answered with it."""
    query = select(api_keys.c.budget_usd_per_day, api_keys.c.max_in_flight).where(
        api_keys.c.id == api_key_id
    )
    if dialect == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


def refusal(conn: Connection, limits: Row[Any, Any], new: NewRun, now: float) -> StoreError | None:
    """Why ``new`` may not be inserted under the key's ``limits`` (from :func:`lock_limits`)
    now, or None. Returned, not raised: a refusal must not roll back the other writes of its
    group commit."""
    if limits.max_in_flight is not None:
        count = conn.execute(
            select(func.count())
            .select_from(runs)
            .where(runs.c.api_key_id == new.api_key_id, runs.c.status.in_(LIVE))
        ).scalar_one()
        if count >= limits.max_in_flight:
            return TooManyInFlight(limit=limits.max_in_flight)
    if limits.budget_usd_per_day is not None:
        spent = _spent(conn, new.api_key_id, now)
        if spent + new.cost > limits.budget_usd_per_day + _EPSILON_USD:
            return OverBudget(
                budget_usd=limits.budget_usd_per_day, spent_usd=spent, cost_usd=new.cost
            )
    return None


def _spent(conn: Connection, api_key_id: str, now: float) -> float:
    total = conn.execute(
        select(func.coalesce(func.sum(runs.c.cost), 0.0)).where(
            runs.c.api_key_id == api_key_id, runs.c.created_at >= day_start(now)
        )
    ).scalar_one()
    return round(float(total), 6)


def final_cost(to: Status) -> dict[str, Any]:
    """The column values that settle a run's cost when it moves to ``to``: a failed run
    costs nothing, nor does one cancelled before it started; a completed run keeps what the
    worker says it cost (its estimate otherwise)."""
    if to is Status.FAILED:
        return {"cost": 0.0}
    if to is Status.CANCELLED:
        return {"cost": case((runs.c.started_at.is_(None), 0.0), else_=runs.c.cost)}
    return {}


class BudgetVerbs(StoreBase):
    async def balance(self, key: KeyRecord, now: float | None = None) -> Balance:
        """The key's budget for today and what its runs of today cost or hold."""
        at = time.time() if now is None else now
        spent = await self._read(lambda conn: _spent(conn, key.id, at))
        return Balance(key.budget_usd_per_day, spent)

    async def usage(
        self, since: float, until: float, api_key_id: str | None = None
    ) -> list[UsageRow]:
        """Runs, seconds of video and cost per UTC day, key and model, of the runs created
        in ``[since, until)`` (by one key, or all)."""
        day = self._day_number()
        completed = runs.c.status == Status.COMPLETED.value
        conditions = [runs.c.created_at >= since, runs.c.created_at < until]
        if api_key_id is not None:
            conditions.append(runs.c.api_key_id == api_key_id)
        query = (
            select(
                day.label("day"),
                runs.c.api_key_id,
                runs.c.model,
                func.count().label("runs"),
                func.coalesce(func.sum(case((completed, runs.c.video_s), else_=0.0)), 0.0),
                func.coalesce(func.sum(runs.c.cost), 0.0),
            )
            .where(and_(*conditions))
            .group_by(day, runs.c.api_key_id, runs.c.model)
            .order_by(day, runs.c.api_key_id, runs.c.model)
        )
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [
            UsageRow(
                dt.datetime.fromtimestamp(int(r[0]) * DAY_S, dt.UTC).date().isoformat(),
                r[1],
                r[2],
                int(r[3]),
                round(float(r[4]), 3),
                round(float(r[5]), 6),
            )
            for r in rows
        ]

    async def recent_runs(
        self, api_key_id: str, limit: int, model: str | None = None
    ) -> list[RecentRun]:
        """The key's latest runs, newest first."""
        query = select(runs.c.id, runs.c.model, runs.c.status, runs.c.created_at).where(
            runs.c.api_key_id == api_key_id
        )
        if model is not None:
            query = query.where(runs.c.model == model)
        query = query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [RecentRun(r.id, r.model, Status(r.status), r.created_at) for r in rows]

    def _day_number(self) -> Any:
        """The UTC day number of a run's ``created_at``, in SQL (days since 1970)."""
        if self.dialect == "postgresql":
            return cast(func.floor(runs.c.created_at / DAY_S), Integer)
        return cast(cast(runs.c.created_at, Float) / DAY_S, Integer)
