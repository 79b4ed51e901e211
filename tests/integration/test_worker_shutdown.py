"""A worker stopped gracefully hands its runs back at once, without counting an attempt."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from vidgate.backends.testcard import TestcardBackend
from vidgate.config import WorkerSettings
from vidgate.runs import catalog as catalog_module
from vidgate.runs.catalog import Catalog, ModelSpec
from vidgate.runs.ids import new_run_id
from vidgate.runs.status import Status
from vidgate.storage.local import LocalStorage
from vidgate.store.records import NewRun
from vidgate.store.sql import SQLStore
from vidgate.worker.local import LocalWorker


async def test_graceful_stop_releases_leases(tmp_path: Path) -> None:
    store = await SQLStore.open(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    catalog = Catalog(
        {
            "testcard-video": ModelSpec(
                slug="testcard-video",
                backend="testcard",
                name="t",
                parameters=catalog_module.testcard_parameters(),
                options={"mode": "text"},
            )
        }
    )
    request = {
        "model": "testcard-video",
        "prompt": "sandbox:slow=30 long",
        "duration_s": 1,
        "resolution": "240p",
        "extra": {},
    }
    run, _ = await store.submit(
        NewRun(
            id=new_run_id(),
            api_key_id="k",
            model="testcard-video",
            backend="testcard",
            request=request,
            cost=0,
            available_at=time.time(),
        ),
        idempotency_ttl_s=60,
    )
    worker = LocalWorker(
        store,
        LocalStorage(tmp_path / "files", b"s" * 32),
        catalog,
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
