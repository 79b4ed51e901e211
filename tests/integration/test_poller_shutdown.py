"""A graceful stop lets a submit that is waiting for the provider's answer record the job."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.emulators import fal
from tests.emulators.harness import Fault, LoopbackServer
from vidgate.backends import fal as fal_backend
from vidgate.backends.base import ProviderSettings
from vidgate.config import WorkerSettings
from vidgate.runs import catalog as catalog_module
from vidgate.runs.catalog import Catalog, ModelSpec
from vidgate.runs.ids import new_run_id
from vidgate.storage.local import LocalStorage
from vidgate.store.records import NewRun
from vidgate.store.sql import SQLStore
from vidgate.worker.remote import RemotePoller


async def test_stop_during_a_slow_submit_still_records_the_provider_job(tmp_path: Path) -> None:
    state = fal.FalState()
    state.queue_s = 60.0
    state.faults.push("submit_response", Fault(kind="delay", delay_s=1.5))  # job exists
    store = await SQLStore.open(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    catalog = Catalog(
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
    run, _ = await store.submit(
        NewRun(
            id=new_run_id(),
            api_key_id="k",
            model="m",
            backend="fal",
            request={"model": "m", "prompt": "slow answer", "extra": {}},
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
                catalog,
                {"fal": backend},
                {"fal": 0.2},
                WorkerSettings(idle_poll_s=0.05),
                "p1",
            )
            stop = asyncio.Event()
            task = asyncio.create_task(poller.run(stop))
            for _ in range(100):
                if (await store.get(run.id)).submit_started_at is not None:
                    break
                await asyncio.sleep(0.02)
            stop.set()  # while the provider is still answering the submit
            await asyncio.wait_for(task, timeout=20)
    after = await store.get(run.id)
    await store.close()
    assert after.provider_request_id is not None, after
    assert after.status.value == "IN_QUEUE" and after.error is None
    assert state.submits == 1
