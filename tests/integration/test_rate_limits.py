"""Submit token buckets in real PostgreSQL, shared by stores that stand for API processes
(each its own engine and connections); on SQLite the buckets stay in memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faults import PrivatePostgres
from vidgate.server.ratelimit import StoreLimiter, TokenBucketLimiter, limiter_for
from vidgate.store.errors import StoreUnavailable
from vidgate.store.sql import SQLStore


@pytest.fixture
async def stores(postgres_url: str) -> AsyncIterator[tuple[SQLStore, SQLStore]]:
    first = await SQLStore.open(postgres_url)
    second = await SQLStore.open(postgres_url)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def test_a_bucket_spends_refuses_and_refunds(stores: tuple[SQLStore, SQLStore]) -> None:
    limiter = limiter_for(stores[0], per_minute=60, burst=3)
    assert isinstance(limiter, StoreLimiter)
    assert [await limiter.take("k") for _ in range(3)] == [None, None, None]
    first = await limiter.take("k")
    assert first is not None and 0.5 < first <= 1.0  # 1 token a second, nearly none held
    again = await limiter.take("k")
    assert again is not None and again <= first  # a refusal spent nothing
    assert await limiter.take("other key") is None  # a bucket per key
    await asyncio.sleep(max(first, again) + 0.05)
    assert await limiter.take("k") is None  # refilled by the database's clock
    assert await limiter.take("k") is not None
    await limiter.refund("k")
    assert await limiter.take("k") is None
    assert await limiter.take("k") is not None


async def test_refunds_stop_at_the_capacity(stores: tuple[SQLStore, SQLStore]) -> None:
    limiter = limiter_for(stores[0], per_minute=1, burst=3)
    assert await limiter.take("k") is None
    for _ in range(3):
        await limiter.refund("k")
    assert [await limiter.take("k") is None for _ in range(4)] == [True, True, True, False]


async def test_processes_share_each_bucket(stores: tuple[SQLStore, SQLStore]) -> None:
    """Takes at once through two stores: the bucket's capacity in all, not twice it."""
    limiters = [limiter_for(store, per_minute=1, burst=10) for store in stores]
    waits = await asyncio.gather(*(limiters[i % 2].take("shared") for i in range(40)))
    assert sum(wait is None for wait in waits) == 10
    refused = [wait for wait in waits if wait is not None]
    assert all(50 < wait <= 60 for wait in refused), refused  # a token a minute


async def test_sqlite_keeps_buckets_in_memory(tmp_path: Path) -> None:
    store = await SQLStore.open(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        limiter = limiter_for(store, per_minute=60, burst=1)
        assert isinstance(limiter, TokenBucketLimiter)
        assert await limiter.take("k") is None
        assert await limiter.take("k") is not None
        with pytest.raises(NotImplementedError, match="PostgreSQL"):
            await store.take_token("k", capacity=1, rate_per_s=1)
    finally:
        await store.close()


async def test_an_outage_is_store_unavailable(private_postgres: PrivatePostgres) -> None:
    """As for every store verb: the API answers 503 with Retry-After."""
    store = await SQLStore.open(await private_postgres.fresh_database())
    try:
        limiter = limiter_for(store, per_minute=60, burst=5)
        assert await limiter.take("k") is None
        with private_postgres.down():
            with pytest.raises(StoreUnavailable):
                await limiter.take("k")
            with pytest.raises(StoreUnavailable):
                await limiter.refund("k")
        assert await limiter.take("k") is None  # back by itself
    finally:
        await store.close()
