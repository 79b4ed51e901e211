"""Run events between processes, at the store: a store that listens hears of changes that
another store (another process) commits, on SQLite and PostgreSQL, and a PostgreSQL
listener that lost its connection catches up on what it missed."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.integration.test_store import new_run
from vidgate.events.pg_feed import APPLICATION_NAME
from vidgate.runs.status import Status
from vidgate.store.sql import SQLStore


@pytest.fixture
async def stores(database_url: str):  # type: ignore[no-untyped-def]
    listening, other = await SQLStore.open(database_url), await SQLStore.open(database_url)
    await listening.listen()
    yield listening, other
    await listening.close()
    await other.close()


async def test_a_listening_store_hears_another_stores_changes(
    stores: tuple[SQLStore, SQLStore],
) -> None:
    listening, other = stores
    woken: list[object] = []
    listening.events.add_listener(woken.append)
    run, _ = await other.submit(new_run(), idempotency_ttl_s=60)
    with listening.events.watch(run.id) as watch:
        current = await listening.get(run.id)
        await other.cancel(run.id, "key_a")
        assert await watch.wait_past(current.seq, timeout_s=10)
    assert (await listening.get(run.id)).status is Status.CANCELLED
    # Listeners (the worker's wake-up) heard of the run too. A feed may fold several
    # changes into the newest (a SQLite watcher reads current rows), never skip the last.
    assert any(getattr(c, "run_id", None) == run.id for c in woken)


async def test_a_postgres_listener_catches_up_after_losing_its_connection(
    postgres_url: str,
) -> None:
    listening, other = await SQLStore.open(postgres_url), await SQLStore.open(postgres_url)
    await listening.listen()
    url = make_url(postgres_url)
    admin = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    try:
        run, _ = await other.submit(new_run(), idempotency_ttl_s=60)
        resynced = asyncio.Event()
        listening.events.add_listener(lambda change: resynced.set() if change is None else None)
        with listening.events.watch(run.id) as watch:
            current = await listening.get(run.id)
            # This test's database only: other tests' listeners (in parallel workers, on
            # their own databases of the same server) carry the same application name.
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1 AND datname = current_database()",
                APPLICATION_NAME,
            )
            assert killed == 1
            await other.cancel(run.id, "key_a")  # its NOTIFY reaches nobody
            assert await watch.wait_past(current.seq, timeout_s=30)
        await asyncio.wait_for(resynced.wait(), 5)  # listeners were told to look again
    finally:
        await admin.close()
        await listening.close()
        await other.close()


def test_a_change_echoed_before_it_is_published_still_hands_over_its_delivery() -> None:
    """The feed may echo a change made here before the change itself is published (threads
    race): waiters are told once, and the sender still gets the delivery it queued."""
    from vidgate.events import RunChange, RunEvents
    from vidgate.store.records import DeliveryRecord

    events = RunEvents()
    heard: list[RunChange | None] = []
    events.add_listener(heard.append)
    delivery = DeliveryRecord(
        "msg_1", "vid_1", "key", "video.completed", "u", 3, 0.0, "pending", 0, []
    )
    echo = RunChange("vid_1", 3, Status.COMPLETED, "fal", webhook=True)
    events.publish(echo)
    events.publish(RunChange("vid_1", 3, Status.COMPLETED, "fal", webhook=True, delivery=delivery))
    events.publish(echo)  # and a late echo is dropped
    assert [c.delivery for c in heard if c] == [None, delivery]
    # Even when a newer change of the run was told first, the delivery is handed over.
    heard.clear()
    events.publish(RunChange("vid_1", 5, Status.COMPLETED, "fal", webhook=True))
    events.publish(
        RunChange("vid_1", 4, Status.IN_PROGRESS, "fal", webhook=True, delivery=delivery)
    )
    assert [(c.seq, c.delivery) for c in heard if c] == [(5, None), (4, delivery)]
