"""Per-key token buckets for submits. Polling is never limited.

A bucket holds up to its capacity (``submit_burst``, by default ``submits_per_minute``
rounded up) and refills at ``submits_per_minute``. Where it lives depends on the database:

* PostgreSQL: in the database (:class:`StoreLimiter`), so that API processes on several
  machines share each key's bucket and a key gets its limit, not its limit times the number
  of processes;
* SQLite: in the API process's memory (:class:`TokenBucketLimiter`). A SQLite database
  lives on one machine, where one ``vidgate serve`` answers the API, and a take there costs
  no write (one would queue with the submits on SQLite's single writer). Several API
  processes on one SQLite file would each count their own share of a key's submits.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

from vidgate.store.sql import SQLStore


class Limiter(Protocol):
    async def take(self, key: str) -> float | None:
        """Spend one token. Returns None if allowed, else seconds until one is available
        (nothing is spent then)."""

    async def refund(self, key: str) -> None:
        """Give back the token of a submit that was refused: only accepted runs count."""


def limiter_for(store: SQLStore, per_minute: float, burst: int | None = None) -> Limiter:
    """The limiter that fits the store's database (see the module's docstring)."""
    if store.dialect == "postgresql":
        return StoreLimiter(store, per_minute, burst)
    return TokenBucketLimiter(per_minute, burst)


def _capacity(per_minute: float, burst: int | None) -> float:
    return float(burst if burst is not None else math.ceil(per_minute))


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    """Buckets in this process's memory (SQLite: one machine, one API process)."""

    def __init__(self, per_minute: float, burst: int | None = None) -> None:
        self.rate_per_s = per_minute / 60.0
        self.capacity = _capacity(per_minute, burst)
        self._buckets: dict[str, _Bucket] = {}

    async def take(self, key: str, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate_per_s)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.rate_per_s

    async def refund(self, key: str) -> None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(self.capacity, bucket.tokens + 1.0)


class StoreLimiter:
    """Buckets in the database, shared by every API process (PostgreSQL). A database
    outage raises :class:`~vidgate.store.errors.StoreUnavailable`, as any store verb does."""

    def __init__(self, store: SQLStore, per_minute: float, burst: int | None = None) -> None:
        self.store = store
        self.rate_per_s = per_minute / 60.0
        self.capacity = _capacity(per_minute, burst)

    async def take(self, key: str) -> float | None:
        return await self.store.take_token(key, capacity=self.capacity, rate_per_s=self.rate_per_s)

    async def refund(self, key: str) -> None:
        await self.store.refund_token(key, capacity=self.capacity)
