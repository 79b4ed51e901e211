"""A database outage, at the store: PostgreSQL restarted, a SQLite file locked by another
process past the busy timeout, a full disk. The store says ``StoreUnavailable`` (not a
driver's error) while it lasts, and works again once it is over, by itself."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace
from pathlib import Path

import pytest

from tests.faults import PrivatePostgres, fill, small_filesystem, sqlite_locked
from tests.integration.test_store import new_run
from vidgate.runs.status import Status
from vidgate.store.errors import StoreUnavailable
from vidgate.store.sql import SQLStore


async def test_a_sqlite_file_locked_past_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = await SQLStore.open(f"sqlite:///{path}", busy_timeout_s=0.2)
    try:
        run, _ = await store.submit(new_run(), idempotency_ttl_s=60)
        with sqlite_locked(path):
            with pytest.raises(StoreUnavailable, match="locked by another process"):
                await store.submit(new_run(), idempotency_ttl_s=60)
            seen = await store.poll_run(run.id)  # readers go on (WAL)
            assert seen is not None and seen.status is Status.IN_QUEUE
        await store.submit(new_run(), idempotency_ttl_s=60)
        assert (await store.count_in_flight())[Status.IN_QUEUE.value] == 2
    finally:
        await store.close()


async def test_a_full_disk_under_sqlite(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "small", "4m") as small:
        store = await SQLStore.open(f"sqlite:///{small / 'store.db'}")
        try:
            await store.submit(new_run(), idempotency_ttl_s=60)
            filler = fill(small)
            # A large request needs pages the full disk cannot give.
            image = "data:image/png;base64," + base64.b64encode(b"\x89PNG" * 100_000).decode()
            big = replace(new_run(), request={"model": "m", "prompt": "p", "image": image})
            with pytest.raises(StoreUnavailable, match="disk that holds it is full"):
                await store.submit(big, idempotency_ttl_s=60)
            filler.unlink()
            await store.submit(big, idempotency_ttl_s=60)
            assert (await store.count_in_flight())[Status.IN_QUEUE.value] == 2
        finally:
            await store.close()


async def test_postgres_restarted(private_postgres: PrivatePostgres) -> None:
    url = await private_postgres.fresh_database()
    store, listening = await SQLStore.open(url), await SQLStore.open(url)
    await listening.listen()
    try:
        run, _ = await store.submit(new_run(), idempotency_ttl_s=60)
        assert await listening.poll_run(run.id) is not None  # a pooled connection exists
        with private_postgres.down():
            with pytest.raises(StoreUnavailable, match="the database is unavailable"):
                await store.submit(new_run(), idempotency_ttl_s=60)
            with pytest.raises(StoreUnavailable):
                await listening.poll_run(run.id)
        # Back: pools reconnect, and the listener hears changes committed from now on.
        with listening.events.watch(run.id) as watch:
            await store.cancel(run.id, "key_a")
            assert await watch.wait_past(run.seq, timeout_s=20), "the event feed is deaf"
        after = await listening.poll_run(run.id)
        assert after is not None and after.status is Status.CANCELLED
        assert (await listening.count_in_flight()) == {}
    finally:
        await listening.close()
        await store.close()


async def test_a_write_waiting_for_the_lock_goes_through_when_it_is_released(
    tmp_path: Path,
) -> None:
    """Within the busy timeout nothing fails: the write waits for the lock."""
    path = tmp_path / "store.db"
    store = await SQLStore.open(f"sqlite:///{path}", busy_timeout_s=5)
    try:
        with sqlite_locked(path):
            pending = asyncio.ensure_future(store.submit(new_run(), idempotency_ttl_s=60))
            await asyncio.sleep(0.3)
            assert not pending.done()
        run, created = await asyncio.wait_for(pending, 5)
        assert created and run.status is Status.IN_QUEUE
    finally:
        await store.close()
