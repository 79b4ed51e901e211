"""Many remote runs in flight: claims read no requests but a submit's, come earliest due
first, quiet polls are handed back in bulk, and a few hundred provider jobs all complete.
SQLite and PostgreSQL (the ``database_url`` fixture)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.emulators import fal
from tests.emulators.harness import LoopbackServer
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
from vidgate.worker.provider_http import ShardedTransport, provider_client
from vidgate.worker.remote import RemotePoller

IMAGE = "data:image/png;base64," + "A" * 2_000_000  # a request of megabytes


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SQLStore]:
    opened = await SQLStore.open(database_url)
    yield opened
    await opened.close()


async def in_flight(store: SQLStore, dues: list[float | None], *, image: bool = False) -> list[str]:
    """fal runs: those with a due time already submitted and next polled then, the others
    still to submit."""
    request: dict[str, object] = {"model": "m", "prompt": "p", "extra": {}}
    if image:
        request["image_data_url"] = IMAGE
    ids = []
    for _ in dues:
        run, _ = await store.submit(
            NewRun(
                id=new_run_id(),
                api_key_id="k",
                model="m",
                backend="fal",
                request=request,
                cost=0,
                available_at=time.time(),
            ),
            idempotency_ttl_s=60,
        )
        ids.append(run.id)
    claimed = await store.claim_remote("setup", ["fal"], len(ids), 30)
    assert sorted(run.id for run in claimed) == sorted(ids)
    for run_id, due in zip(ids, dues, strict=True):
        extra = {} if due is None else {"provider_request_id": f"r-{run_id}", "next_poll_at": due}
        assert await store.remote_update(run_id, "setup", **extra)
    return ids


async def test_only_a_submit_claim_reads_the_request(store: SQLStore) -> None:
    polled, to_submit = await in_flight(store, [time.time() - 1, None], image=True)
    claimed = {run.id: run for run in await store.claim_remote("p", ["fal"], 10, 30)}
    assert set(claimed) == {polled, to_submit}
    assert claimed[polled].request is None  # a poll leaves the megabytes in the database
    with pytest.raises(ValueError, match="not loaded"):
        claimed[polled].generation_request  # noqa: B018
    assert claimed[to_submit].generation_request.image_data_url == IMAGE


async def test_polls_are_claimed_earliest_due_first(store: SQLStore) -> None:
    now = time.time()
    *ids, _not_due = await in_flight(store, [now - 5, now - 50, now - 20, now - 1, now + 60])
    first = await store.claim_remote("p", ["fal"], 2, 30)
    assert [run.id for run in first] == [ids[1], ids[2]]
    rest = await store.claim_remote("p", ["fal"], 10, 30)
    assert sorted(run.id for run in rest) == sorted([ids[0], ids[3]])
    assert await store.claim_remote("p", ["fal"], 10, 30) == []  # leased, or not due


async def test_quiet_polls_are_handed_back_with_the_next_claim(store: SQLStore) -> None:
    quiet, cancelled = await in_flight(store, [0.0, 0.0])
    assert len(await store.claim_remote("p", ["fal"], 10, 30)) == 2
    await store.cancel(cancelled, "k")
    later = time.time() + 600
    assert await store.claim_remote("p", ["fal"], 0, 30, reschedule={quiet: later}) == []
    after = await store.get(quiet)
    assert after.lease_owner is None and after.next_poll_at == later
    assert after.status is Status.IN_QUEUE
    # The cancelled run is due at once, to tell the provider, and not pushed back.
    [due] = await store.claim_remote("p", ["fal"], 10, 30, reschedule={cancelled: later})
    assert due.id == cancelled and due.status is Status.CANCELLED


async def test_provider_connections_are_spread_over_small_pools() -> None:
    assert ShardedTransport(200).connections == 200
    assert ShardedTransport(10).connections == 10
    assert ShardedTransport(1).connections == 1


RUNS = 300


async def test_one_poller_follows_hundreds_of_jobs_to_completion(
    store: SQLStore, tmp_path: Path
) -> None:
    state = fal.FalState(queue_s=0.5, run_s=1.0)
    spec = ModelSpec(
        slug="m",
        backend="fal",
        name="m",
        provider="fal",
        provider_model="fal-ai/veo2",
        parameters=catalog_module.generic_parameters(),
    )
    ids = await in_flight(store, [None] * RUNS)
    with LoopbackServer(fal.create_app(state)) as emulator:
        async with provider_client(20, [emulator.base_url]) as http:
            backend = fal_backend.build(
                http,
                ProviderSettings(
                    name="fal",
                    base_url=emulator.base_url,
                    api_key=fal.API_KEY,
                    timeout_s=30,
                    options={"min_poll_interval_s": 0.1},
                ),
            )
            poller = RemotePoller(
                store,
                LocalStorage(tmp_path / "files", b"s" * 32),
                Catalog({"m": spec}),
                {"fal": backend},
                {"fal": 0.2},
                WorkerSettings(idle_poll_s=0.05, remote_concurrency=20),
                "p1",
            )
            stop = asyncio.Event()
            task = asyncio.create_task(poller.run(stop))
            try:
                for _ in range(1200):  # up to 120 s on a slow machine; ~5 s usually
                    runs = [await store.get(run_id) for run_id in ids]
                    if all(run.status.is_terminal for run in runs):
                        break
                    assert not task.done(), task
                    await asyncio.sleep(0.1)
            finally:
                stop.set()
                await asyncio.wait_for(task, timeout=60)
    assert {run.status for run in runs} == {Status.COMPLETED}
    assert all(run.output_size and run.lease_owner is None for run in runs)
    assert state.submits == RUNS  # one provider job per run
    assert not poller._quiet  # every quiet poll was handed back


async def test_reschedule_ends_only_its_owners_leases(store: SQLStore) -> None:
    [run_id] = await in_flight(store, [0.0])
    [run] = await store.claim_remote("p", ["fal"], 1, 30)
    later = time.time() + 60
    await store.reschedule("someone-else", {run.id: later})
    assert (await store.get(run_id)).lease_owner == "p"
    await store.reschedule("p", {run.id: later})
    after = await store.get(run_id)
    assert after.lease_owner is None and after.next_poll_at == later
