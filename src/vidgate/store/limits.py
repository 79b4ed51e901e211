"""Token buckets in the database, shared by every API process (PostgreSQL only).

A take is one statement: an upsert that refills the key's bucket by the time since it was
last touched, capped at its capacity, and spends a token only if a whole one is there (a
refusal then reads what the bucket holds, to tell how long until a token is there). Two
processes taking at once queue on the row's lock, so a key never gets more than its limit
whatever the number of processes. Each statement commits by itself (autocommit), so the
lock is held while the upsert runs, not until the process's event loop gets round to a
COMMIT: every submit of a key takes that one row. Elapsed time is read from the
database's clock (``clock_timestamp()``, read after the row is locked), so the processes'
clocks do not matter. A refused take spends nothing and changes nothing. A take whose
answer is lost with its connection (the submit then answers 503) may have spent its token:
at most one per such failure, never two.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Executable,
    Float,
    String,
    bindparam,
    extract,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert

from vidgate.store.base import StoreBase
from vidgate.store.schema import rate_buckets

_NOW = extract("epoch", func.clock_timestamp())
"""The database's clock, in epoch seconds (the unit of every time in the schema)."""


def _refilled(tokens: Any, updated: Any, capacity: float, rate_per_s: float) -> ColumnElement[Any]:
    """What a bucket holds now: its tokens plus the refill since ``updated``, capped."""
    elapsed = func.greatest(0, _NOW - updated)
    return func.least(literal(capacity, Float), tokens + elapsed * literal(rate_per_s, Float))


@functools.lru_cache(maxsize=16)
def _statements(capacity: float, rate_per_s: float) -> tuple[Executable, Executable]:
    """The take and the read after a refusal, for buckets of this capacity and rate, with
    the key as their parameter: built once, so that SQLAlchemy finds them compiled (every
    submit takes a token; building them took a fifth of a submit's time)."""
    bucket = rate_buckets.c
    key = bindparam("key", type_=String)
    stored = insert(rate_buckets).values(key=key, tokens=literal(capacity, Float) - 1, updated=_NOW)
    now_held = _refilled(bucket.tokens, bucket.updated, capacity, rate_per_s)
    take = stored.on_conflict_do_update(
        index_elements=[bucket.key],
        set_={"tokens": now_held - 1, "updated": func.greatest(bucket.updated, _NOW)},
        where=now_held >= 1,
    ).returning(bucket.key)
    return take, select(now_held).where(bucket.key == key)


class LimitVerbs(StoreBase):
    def _postgres_only(self) -> None:
        if self.dialect != "postgresql":
            raise NotImplementedError(
                "token buckets in the database need PostgreSQL; on SQLite they are in memory"
            )

    async def take_token(self, key: str, *, capacity: float, rate_per_s: float) -> float | None:
        """Spend one of ``key``'s tokens. Returns None if spent, else the seconds until a
        token is there (nothing is spent then). A bucket seen first starts full."""
        self._postgres_only()
        take, held = _statements(capacity, rate_per_s)
        if await self._one_statement(take, {"key": key}):
            return None
        # A refusal changed nothing. Read right after it: what the bucket holds is what the
        # take saw, but for what other takes and refunds did in that moment.
        tokens = float((await self._one_statement(held, {"key": key}))[0][0])
        return max(1.0 - tokens, 0.0) / rate_per_s

    async def refund_token(self, key: str, *, capacity: float) -> None:
        """Give ``key`` back a token it spent (never past ``capacity``)."""
        self._postgres_only()
        statement = (
            update(rate_buckets)
            .where(rate_buckets.c.key == key)
            .values(tokens=func.least(literal(capacity, Float), rate_buckets.c.tokens + 1))
        )
        await self._one_statement(statement)
