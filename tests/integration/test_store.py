"""The store port against real SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import sqlite3
import time
from typing import Any

import pytest
from sqlalchemy import insert

from vidgate.events import RunChange
from vidgate.runs.ids import new_run_id
from vidgate.runs.status import Status
from vidgate.store.base import Tx
from vidgate.store.errors import IdempotencyConflict, KeyNameTaken, KeyNotFound, NotFound
from vidgate.store.records import NewRun
from vidgate.store.runs import _ROW_KEYS
from vidgate.store.schema import runs
from vidgate.store.sql import SQLStore


@pytest.fixture
async def store(database_url: str):  # type: ignore[no-untyped-def]
    store = await SQLStore.open(database_url)
    yield store
    await store.close()


def new_run(
    key_id: str = "key_a",
    backend: str = "testcard",
    delay: float = 0.0,
    idempotency: str | None = None,
    body_hash: str | None = None,
) -> NewRun:
    return NewRun(
        id=new_run_id(),
        api_key_id=key_id,
        model="testcard-video",
        backend=backend,
        request={"model": "testcard-video", "prompt": "x"},
        cost=0.0,
        available_at=time.time() + delay,
        idempotency_key=idempotency,
        request_hash=body_hash,
    )


async def test_claims_of_a_worker_limited_to_some_models(store: SQLStore) -> None:
    """``vidgate worker --models``: local claims and remote submits skip other models."""
    cpu = (await store.submit(new_run(), idempotency_ttl_s=60))[0]
    gpu_run = dataclasses.replace(new_run(), model="wan-t2v")
    gpu = (await store.submit(gpu_run, idempotency_ttl_s=60))[0]
    remote = dataclasses.replace(new_run(backend="fal"), model="fal-kling")
    await store.submit(remote, idempotency_ttl_s=60)
    only_gpu = await store.claim_next("gpu", ["testcard"], 10, models=["wan-t2v"])
    assert only_gpu is not None and only_gpu.id == gpu.id  # the older cpu run is left
    assert await store.claim_next("gpu", ["testcard"], 10, models=["wan-t2v"]) is None
    assert await store.claim_remote("gpu", ["fal"], 10, 10, models=["wan-t2v"]) == []
    taken = await store.claim_next("cpu", ["testcard"], 10, models=["testcard-video"])
    assert taken is not None and taken.id == cpu.id
    assert len(await store.claim_remote("cpu", ["fal"], 10, 10, models=["fal-kling"])) == 1


async def test_migrations_are_idempotent_and_reopen_keeps_data(database_url: str) -> None:
    first = await SQLStore.open(database_url)
    record, secret = await first.create_key("alice")
    await first.close()
    again = await SQLStore.open(database_url)
    try:
        assert (await again.authenticate(secret)) == record
    finally:
        await again.close()


async def test_concurrent_starts_migrate_once(database_url: str) -> None:
    stores = await asyncio.gather(*(SQLStore.open(database_url) for _ in range(4)))
    try:
        assert (await stores[0].create_key("k"))[0].name == "k"
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_keys(store: SQLStore) -> None:
    record, secret = await store.create_key("alice")
    assert secret.startswith("vg_") and record.prefix == secret[:10]
    assert await store.authenticate(secret) == record
    assert await store.authenticate(secret + "x") is None
    with pytest.raises(KeyNameTaken):
        await store.create_key("alice")
    assert [k.name for k in await store.list_keys()] == ["alice"]
    revoked = await store.revoke_key("alice")
    assert revoked.revoked_at is not None
    assert await store.authenticate(secret) is None
    with pytest.raises(KeyNotFound):
        await store.revoke_key("bob")


async def test_submit_get_and_per_key_isolation(store: SQLStore) -> None:
    run, created = await store.submit(new_run(), idempotency_ttl_s=60)
    assert created and run.status is Status.IN_QUEUE and run.attempts == 0
    assert (await store.get(run.id, "key_a")).id == run.id
    with pytest.raises(NotFound):
        await store.get(run.id, "key_b")
    with pytest.raises(NotFound):
        await store.get("vid_missing")


async def test_a_submit_returns_the_run_as_stored(store: SQLStore) -> None:
    """The run a submit returns is made from the values it wrote, without reading the row
    back: it must be the stored run, field for field, whatever the submit carries."""
    plain = new_run()
    full = dataclasses.replace(
        new_run(idempotency="idem-1", body_hash="h" * 64),
        cost=0.25,
        deadline_at=time.time() + 60,
        webhook_url="https://hooks.example/x",
        webhook_events="completed,failed",
        video_s=5.0,
        routes="fal,replicate",
        adjusted={"duration": {"requested": 7, "used": 5}},
        request={"model": "testcard-video", "prompt": "é \u2603", "nested": {"a": [1, 2.5]}},
        created_at=time.time() - 5,
    )
    for new in (plain, full):
        run, created = await store.submit(new, idempotency_ttl_s=60)
        assert created
        assert await store.get(run.id) == run
        polled = await store.poll_run(run.id)
        assert polled is not None
        assert {f: getattr(run, f) for f in polled._fields} == polled._asdict()
        if store.dialect == "sqlite":
            # Stored as SQLAlchemy's own INSERT stores the same values: type and text,
            # column for column (NULL and JSON 'null', 0 and 0.0, read back alike, differ).
            twin = {k: getattr(run, k) for k in _ROW_KEYS} | {"id": new_run_id()}
            twin |= {"status": "IN_QUEUE", "idempotency_key": None}
            await store._write(functools.partial(_insert_directly, twin))
            assert _stored(store, twin["id"]) == _stored(store, run.id)
    assert run.created_at == full.created_at != run.updated_at


def _insert_directly(row: dict[str, Any], tx: Tx) -> None:
    tx.conn.execute(insert(runs), row)


def _stored(store: SQLStore, run_id: str) -> dict[str, str]:
    """Each column's SQLite type and literal, but for those that differ between runs."""
    columns = [c.name for c in runs.c if c.name not in ("id", "idempotency_key", "rev")]
    shown = ", ".join(f"typeof({c}) || ':' || quote({c})" for c in columns)
    assert store.url.database is not None
    with sqlite3.connect(store.url.database) as conn:
        row = conn.execute(f"SELECT {shown} FROM runs WHERE id = ?", (run_id,)).fetchone()
    return dict(zip(columns, row, strict=True))


async def test_every_change_is_an_event_with_the_next_sequence_number(store: SQLStore) -> None:
    seen: list[RunChange] = []
    store.events.add_listener(lambda change: seen.append(change) if change else None)
    run, _ = await store.submit(new_run(), idempotency_ttl_s=60)
    with store.events.watch(run.id) as watch:
        claimed = await store.claim_next("w1", ["testcard"], lease_s=30)
        assert claimed is not None and claimed.seq == 2
        assert await store.update_running(run.id, "w1", progress=40.0)
        await store.heartbeat("w1", [run.id], lease_s=30)  # a lease is not news
        done = await store.transition(run.id, Status.COMPLETED, owner="w1")
        assert done is not None and done.seq == 4
        assert watch.seq == 4
    assert [(c.seq, c.status) for c in seen] == [
        (1, Status.IN_QUEUE),
        (2, Status.IN_PROGRESS),
        (3, Status.IN_PROGRESS),
        (4, Status.COMPLETED),
    ]
    assert (await store.get(run.id)).seq == 4


async def test_idempotency(store: SQLStore) -> None:
    first, created = await store.submit(
        new_run(idempotency="k1", body_hash="h1"), idempotency_ttl_s=60
    )
    again, created_again = await store.submit(
        new_run(idempotency="k1", body_hash="h1"), idempotency_ttl_s=60
    )
    assert created and not created_again and again.id == first.id
    with pytest.raises(IdempotencyConflict):
        await store.submit(new_run(idempotency="k1", body_hash="h2"), idempotency_ttl_s=60)
    other_key, created_other = await store.submit(
        new_run(key_id="key_b", idempotency="k1", body_hash="h1"), idempotency_ttl_s=60
    )
    assert created_other and other_key.id != first.id


async def test_concurrent_idempotent_submits_create_one_run(store: SQLStore) -> None:
    results = await asyncio.gather(
        *(
            store.submit(new_run(idempotency="same", body_hash="h"), idempotency_ttl_s=60)
            for _ in range(8)
        )
    )
    assert len({run.id for run, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_claim_order_availability_and_backend_filter(store: SQLStore) -> None:
    later = (await store.submit(new_run(delay=60), idempotency_ttl_s=60))[0]
    a = (await store.submit(new_run(), idempotency_ttl_s=60))[0]
    remote = (await store.submit(new_run(backend="fal"), idempotency_ttl_s=60))[0]
    b = (await store.submit(new_run(), idempotency_ttl_s=60))[0]
    assert await store.queue_position(b) == 2  # later and a are ahead
    first = await store.claim_next("w1", ["testcard"], 10)
    second = await store.claim_next("w1", ["testcard"], 10)
    assert first is not None and second is not None
    assert (first.id, second.id) == (a.id, b.id)
    assert first.status is Status.IN_PROGRESS and first.attempts == 1
    assert first.lease_owner == "w1" and first.started_at is not None
    assert await store.claim_next("w1", ["testcard"], 10) is None  # `later` not due yet
    assert (await store.get(later.id)).status is Status.IN_QUEUE
    assert (await store.get(remote.id)).status is Status.IN_QUEUE


async def test_concurrent_claims_never_share_a_run(store: SQLStore) -> None:
    for _ in range(20):
        await store.submit(new_run(), idempotency_ttl_s=60)
    claims = await asyncio.gather(*(store.claim_next(f"w{i}", ["testcard"], 30) for i in range(30)))
    ids = [c.id for c in claims if c is not None]
    assert len(ids) == 20 and len(set(ids)) == 20


async def test_expired_lease_is_reclaimed_and_heartbeat_reports_loss(store: SQLStore) -> None:
    run = (await store.submit(new_run(), idempotency_ttl_s=60))[0]
    claimed = await store.claim_next("dead", ["testcard"], 0.2)
    assert claimed is not None
    assert await store.claim_next("w2", ["testcard"], 10) is None  # lease still valid
    await asyncio.sleep(0.3)
    retaken = await store.claim_next("w2", ["testcard"], 10)
    assert retaken is not None and retaken.id == run.id and retaken.attempts == 2
    assert await store.heartbeat("dead", [run.id], 10) == set()
    assert await store.heartbeat("w2", [run.id], 10) == {run.id}
    assert await store.transition(run.id, Status.COMPLETED, owner="dead") is None
    done = await store.transition(run.id, Status.COMPLETED, owner="w2", progress=100.0)
    assert done is not None and done.status is Status.COMPLETED
    assert done.lease_owner is None and done.completed_at is not None


async def test_release_hands_runs_back_without_counting_an_attempt(store: SQLStore) -> None:
    run = (await store.submit(new_run(), idempotency_ttl_s=60))[0]
    await store.claim_next("w1", ["testcard"], 60)
    await store.release("w1", [run.id])
    again = await store.claim_next("w2", ["testcard"], 60)
    assert again is not None and again.id == run.id and again.attempts == 1


async def test_transitions_follow_the_state_machine(store: SQLStore) -> None:
    run = (await store.submit(new_run(), idempotency_ttl_s=60))[0]
    assert await store.transition(run.id, Status.COMPLETED) is None  # not from IN_QUEUE
    failed = await store.transition(run.id, Status.FAILED, error="boom")
    assert failed is not None and failed.error == "boom"
    for target in Status:
        assert await store.transition(run.id, target) is None  # terminal stays terminal
    assert (await store.get(run.id)).status is Status.FAILED


async def test_cancel_queued_running_and_terminal(store: SQLStore) -> None:
    queued = (await store.submit(new_run(), idempotency_ttl_s=60))[0]
    assert (await store.cancel(queued.id, "key_a")).status is Status.CANCELLED
    running = (await store.submit(new_run(), idempotency_ttl_s=60))[0]
    await store.claim_next("w", ["testcard"], 60)
    assert (await store.cancel(running.id, "key_a")).status is Status.CANCELLED
    assert await store.heartbeat("w", [running.id], 60) == set()  # the worker learns of it
    with pytest.raises(NotFound):
        await store.cancel(running.id, "key_b")
    done = (await store.submit(new_run(), idempotency_ttl_s=60))[0]
    await store.claim_next("w", ["testcard"], 60)
    await store.transition(done.id, Status.COMPLETED, owner="w")
    assert (await store.cancel(done.id, "key_a")).status is Status.COMPLETED


async def test_cancel_and_completion_race_has_one_winner(store: SQLStore) -> None:
    for _ in range(25):
        run = (await store.submit(new_run(), idempotency_ttl_s=60))[0]
        await store.claim_next("w", ["testcard"], 60)
        completed, cancelled = await asyncio.gather(
            store.transition(run.id, Status.COMPLETED, owner="w"),
            store.cancel(run.id, "key_a"),
        )
        final = await store.get(run.id)
        if completed is not None:
            assert cancelled.status is Status.COMPLETED and final.status is Status.COMPLETED
        else:
            assert cancelled.status is Status.CANCELLED and final.status is Status.CANCELLED


async def test_renew_extends_leases_in_any_status(store: SQLStore) -> None:
    queued = (await store.submit(new_run(backend="fal"), idempotency_ttl_s=60))[0]
    [leased] = await store.claim_remote("poller", ["fal"], 10, 0.2)
    assert leased.id == queued.id and leased.status is Status.IN_QUEUE
    await store.renew("poller", [queued.id], 60)
    await asyncio.sleep(0.3)
    assert await store.claim_remote("other", ["fal"], 10, 60) == []  # still held
    await store.renew("someone-else", [queued.id], 0)  # only the owner can renew
    assert (await store.get(queued.id)).lease_owner == "poller"


async def test_remote_claims_submit_then_poll_by_due_time(store: SQLStore) -> None:
    run = (await store.submit(new_run(backend="fal"), idempotency_ttl_s=60))[0]
    assert await store.claim_remote("p", ["testcard"], 10, 30) == []  # other backend
    [claimed] = await store.claim_remote("p", ["fal"], 10, 30)
    assert await store.remote_update(
        run.id, "p", provider_request_id="req-1", next_poll_at=time.time() + 60
    )
    assert (await store.get(run.id)).lease_owner is None
    assert await store.claim_remote("p", ["fal"], 10, 30) == []  # not due for a minute
    assert not await store.remote_update(run.id, "nobody", next_poll_at=0)  # not the owner
    assert (await store.get(run.id)).next_poll_at > time.time()
    cancelled = await store.cancel(run.id, "key_a")
    assert cancelled.status is Status.CANCELLED
    assert cancelled.next_poll_at is not None and cancelled.next_poll_at <= time.time()
    [to_cancel] = await store.claim_remote("p", ["fal"], 10, 30)  # due at once
    assert to_cancel.id == run.id and claimed.id == run.id
    never_submitted = (await store.submit(new_run(backend="fal"), idempotency_ttl_s=60))[0]
    assert (await store.cancel(never_submitted.id, "key_a")).next_poll_at is None


async def test_an_aiosqlite_url_names_the_same_sqlite_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Configs written for an async driver keep working: the store opens the same file."""
    plain = await SQLStore.open(f"sqlite:///{tmp_path / 'same.db'}")
    run, _ = await plain.submit(new_run(), idempotency_ttl_s=60)
    await plain.close()
    spelled = await SQLStore.open(f"sqlite+aiosqlite:///{tmp_path / 'same.db'}")
    assert (await spelled.get(run.id)).id == run.id
    await spelled.close()
