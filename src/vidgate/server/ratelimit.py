"""Per-key token buckets for submits. Polling is never limited.

Buckets live in this process's memory: with several API processes each enforces the limit
on its own share of the traffic.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    def __init__(self, per_minute: float, burst: int | None = None) -> None:
        self.rate_per_s = per_minute / 60.0
        self.capacity = float(burst if burst is not None else math.ceil(per_minute))
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, now: float | None = None) -> float | None:
        """Spend one token. Returns None if allowed, else seconds until one is available."""
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

    def refund(self, key: str) -> None:
        """Give back the token of a submit that was refused: only accepted runs count."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(self.capacity, bucket.tokens + 1.0)
