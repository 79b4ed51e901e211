"""A worker stopped gracefully hands its runs back at once, without counting an attempt."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.worker_helpers import CATALOG, submit_testcard_run
from vidgate.backends.testcard import TestcardBackend
from vidgate.config import WorkerSettings
from vidgate.runs.status import Status
from vidgate.storage.local import LocalStorage
from vidgate.store.sql import SQLStore
from vidgate.worker.local import LocalWorker


async def test_graceful_stop_releases_leases(tmp_path: Path) -> None:
    store = await SQLStore.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    run = await submit_testcard_run(store, "sandbox:slow=30 long")
    worker = LocalWorker(
        store,
        LocalStorage(tmp_path / "files", b"s" * 32),
        CATALOG,
        {"testcard": TestcardBackend()},
        WorkerSettings(lease_s=60, heartbeat_s=0.1, idle_poll_s=0.05),
        tmp_path / "work",
        owner="w1",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        for _ in range(100):
            if (await store.get(run.id)).status is Status.IN_PROGRESS:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        after = await store.get(run.id)
        assert after.status is Status.IN_PROGRESS
        assert after.lease_expires_at is not None and after.lease_expires_at < time.time()
        assert after.attempts == 0  # a graceful stop is not an attempt
        again = await store.claim_next("w2", ["testcard"], 60)  # taken over at once
        assert again is not None and again.id == run.id
    finally:
        await store.close()


class _LateBackend:
    """Renders like testcard, then stalls: its worker finishes after losing the lease."""

    name = "testcard"
    max_active = None

    def __init__(self, delay_s: float) -> None:
        self.inner = TestcardBackend()
        self.delay_s = delay_s

    async def generate(self, request, options, workdir, on_progress):  # type: ignore[no-untyped-def]
        output = await self.inner.generate(request, options, workdir, on_progress)
        await asyncio.sleep(self.delay_s)
        return output


async def test_a_worker_that_lost_its_lease_cannot_touch_the_finished_video(
    tmp_path: Path,
) -> None:
    store = await SQLStore.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    storage = LocalStorage(tmp_path / "files", b"s" * 32)
    run = await submit_testcard_run(store, "contested")
    # A holds a 1 s lease it never renews, and finishes 4 s late; B takes over and completes.
    slow = LocalWorker(
        store,
        storage,
        CATALOG,
        {"testcard": _LateBackend(4.0)},
        # One slot, busy with the run: A cannot take the run back itself once its lease lapses.
        WorkerSettings(lease_s=1, heartbeat_s=1000, idle_poll_s=0.05, concurrency=1),
        tmp_path / "work-a",  # two machines sharing storage
        owner="A",
    )
    fast = LocalWorker(
        store,
        storage,
        CATALOG,
        {"testcard": TestcardBackend()},
        WorkerSettings(lease_s=30, heartbeat_s=0.1, idle_poll_s=0.05),
        tmp_path / "work-b",
        owner="B",
    )
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    task_a = asyncio.create_task(slow.run(stop_a))
    for _ in range(100):
        if (await store.get(run.id)).lease_owner == "A":
            break
        await asyncio.sleep(0.02)
    task_b = asyncio.create_task(fast.run(stop_b))
    try:
        for _ in range(300):
            done = await store.get(run.id)
            if done.status is Status.COMPLETED:
                break
            await asyncio.sleep(0.05)
        assert done.status is Status.COMPLETED and done.lease_owner is None, done.error
        await asyncio.sleep(4.5)  # A finishes now, and loses
        final = await store.get(run.id)
        assert final.output_key == done.output_key
        assert final.output_key is not None
        assert (tmp_path / "files" / final.output_key).stat().st_size > 1000
    finally:
        stop_a.set()
        stop_b.set()
        await asyncio.gather(task_a, task_b)
        await store.close()
