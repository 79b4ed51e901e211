"""A provider answers a submit while the database is locked by another process, for longer
than the run's lease and than the tries given to other write failures: the job's id is
written once the lock is gone, and the run completes (it is neither failed as a submit whose
outcome is unknown nor cancelled as a job that cannot be recorded; the provider gets one
submit)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.emulators import fal
from tests.emulators.harness import Fault, LoopbackServer
from tests.faults import sqlite_locked
from vidgate.backends import fal as fal_backend
from vidgate.backends.base import ProviderSettings
from vidgate.config import WorkerSettings
from vidgate.runs import catalog as catalog_module
from vidgate.runs.catalog import Catalog, ModelSpec
from vidgate.runs.ids import new_run_id
from vidgate.runs.status import Status
from vidgate.storage.local import LocalStorage
from vidgate.store.records import NewRun
from vidgate.store.sql import SQLStore
from vidgate.worker.remote import RemotePoller

CATALOG = Catalog(
    {
        "m": ModelSpec(
            slug="m",
            backend="fal",
            name="m",
            provider="fal",
            provider_model="fal-ai/veo2",
            parameters=catalog_module.generic_parameters(),
        )
    }
)


async def test_a_job_answered_while_the_database_is_locked_is_recorded(tmp_path: Path) -> None:
    state = fal.FalState()
    state.faults.push("submit_response", Fault(kind="delay", delay_s=1.0))
    path = tmp_path / "db.sqlite"
    store = await SQLStore.open(f"sqlite:///{path}", busy_timeout_s=0.2)
    run, _ = await store.submit(
        NewRun(
            id=new_run_id(),
            api_key_id="k",
            model="m",
            backend="fal",
            request={"model": "m", "prompt": "answered in an outage", "extra": {}},
            cost=0,
            available_at=time.time(),
            deadline_at=time.time() + 600,
        ),
        idempotency_ttl_s=60,
    )
    with LoopbackServer(fal.create_app(state)) as emulator:
        async with httpx.AsyncClient() as http:
            backend = fal_backend.build(
                http,
                ProviderSettings(
                    name="fal",
                    base_url=emulator.base_url,
                    api_key=fal.API_KEY,
                    timeout_s=10,
                    options={"min_poll_interval_s": 0.1},
                ),
            )
            poller = RemotePoller(
                store,
                LocalStorage(tmp_path / "files", b"s" * 32),
                CATALOG,
                {"fal": backend},
                {"fal": 0.2},
                WorkerSettings(idle_poll_s=0.05, lease_s=1.5),
                "p1",
                record_delays_s=(0.05,),  # failures other than an outage: soon given up
            )
            stop = asyncio.Event()
            task = asyncio.create_task(poller.run(stop))
            try:
                while (await store.get(run.id)).submit_started_at is None:
                    await asyncio.sleep(0.02)
                # The provider answers after 1 s; the lease (1.5 s) runs out meanwhile.
                with sqlite_locked(path):
                    await asyncio.sleep(2.5)
                for _ in range(200):
                    final = await store.get(run.id)
                    if final.status.is_terminal:
                        break
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                await asyncio.wait_for(task, timeout=20)
    await store.close()
    assert final.status is Status.COMPLETED, final.error
    assert final.output_key is not None and (tmp_path / "files" / final.output_key).is_file()
    assert state.submits == 1
