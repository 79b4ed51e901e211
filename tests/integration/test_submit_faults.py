"""No provider job paid for twice or lost: the poller against provider emulators that hang,
reset connections, send garbage or cut answers short, or answer 502/504 after creating the
job; and against a database that fails just as a job's id is to be recorded. Every run ends
in the right terminal state and the emulators count the jobs created. SQLite and PostgreSQL
(the ``database_url`` fixture)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from tests.emulators import fal, nanogpt
from tests.emulators.harness import Fault, LoopbackServer
from vidgate.backends import fal as fal_backend
from vidgate.backends import nanogpt as nanogpt_backend
from vidgate.backends.base import ProviderSettings, RemoteBackend
from vidgate.config import WorkerSettings
from vidgate.runs import catalog as catalog_module
from vidgate.runs.catalog import Catalog, ModelSpec
from vidgate.runs.ids import new_run_id
from vidgate.runs.status import Status
from vidgate.storage.local import LocalStorage
from vidgate.store.errors import StoreUnavailable
from vidgate.store.records import NewRun, RunRecord
from vidgate.store.sql import SQLStore
from vidgate.worker.remote import RemotePoller
from vidgate.worker.remote import poller as poller_module

UNKNOWN_OUTCOMES = [
    Fault(kind="delay", delay_s=0.6),  # a hang past the client's timeout
    Fault(kind="reset"),
    Fault(kind="drop"),
    Fault(kind="truncated"),
    Fault(kind="malformed", status=200),  # garbage
    Fault(status=502),
    Fault(status=504),
]
"""Answers lost or unclear after the provider created the job (the ``submit_response``
faults)."""


class FailingRecords(SQLStore):
    """The store, failing the write that records a provider's job id ``failures`` times
    with the error SQLAlchemy raises for a locked SQLite database."""

    failures = 0
    tries = 0

    async def remote_update(self, run_id: str, owner: str, **values: Any) -> bool:
        if "provider_request_id" in values:
            self.tries += 1
            if self.failures > 0:
                self.failures -= 1
                error = sqlite3.OperationalError("database is locked")
                raise OperationalError("UPDATE runs SET provider_request_id=?", {}, error)
        return await super().remote_update(run_id, owner, **values)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[FailingRecords]:
    opened = await FailingRecords.open(database_url)
    yield opened
    await opened.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[FailingRecords]:
    """For what does not depend on the database (the other tests cover both)."""
    opened = await FailingRecords.open(f"sqlite:///{tmp_path / 'store.db'}")
    yield opened
    await opened.close()


def catalog(provider: str, provider_model: str) -> Catalog:
    spec = ModelSpec(
        slug="m",
        backend=provider,
        name="m",
        provider=provider,
        provider_model=provider_model,
        parameters=catalog_module.generic_parameters(),
    )
    return Catalog({"m": spec})


async def add_runs(store: SQLStore, backend: str, count: int) -> list[str]:
    ids = []
    for n in range(count):
        run, _ = await store.submit(
            NewRun(
                id=new_run_id(),
                api_key_id="k",
                model="m",
                backend=backend,
                request={"model": "m", "prompt": f"run {n}", "extra": {}},
                cost=0,
                available_at=time.time(),
                deadline_at=time.time() + 600,
            ),
            idempotency_ttl_s=60,
        )
        ids.append(run.id)
    return ids


@contextlib.asynccontextmanager
async def polling(
    store: SQLStore,
    tmp_path: Path,
    provider: str,
    backend: RemoteBackend,
    provider_model: str,
    *,
    retry_ambiguous: Collection[str] = (),
    record_delays_s: tuple[float, ...] = (0.05, 0.05),
) -> AsyncIterator[RemotePoller]:
    poller = RemotePoller(
        store,
        LocalStorage(tmp_path / "files", b"s" * 32),
        catalog(provider, provider_model),
        {provider: backend},
        {provider: 0.05},
        WorkerSettings(idle_poll_s=0.02, lease_s=5),
        "p1",
        retry_ambiguous=retry_ambiguous,
        record_delays_s=record_delays_s,
        submit_backoff_s=0.02,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    try:
        yield poller
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)


async def terminal(store: SQLStore, ids: list[str], timeout_s: float = 15) -> list[RunRecord]:
    deadline = time.monotonic() + timeout_s
    while True:
        runs = [await store.get(run_id) for run_id in ids]
        if all(run.status.is_terminal for run in runs) or time.monotonic() > deadline:
            return runs
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def fal_provider(
    http: httpx.AsyncClient,
) -> AsyncIterator[tuple[fal.FalState, RemoteBackend]]:
    state = fal.FalState(queue_s=0.05, run_s=0.05)
    with LoopbackServer(fal.create_app(state)) as server:
        settings = ProviderSettings(
            name="fal",
            base_url=server.base_url,
            api_key=fal.API_KEY,
            timeout_s=0.3,
            options={"min_poll_interval_s": 0.05},
        )
        yield state, fal_backend.build(http, settings)


@contextlib.asynccontextmanager
async def nanogpt_provider(
    http: httpx.AsyncClient, *, keys: bool
) -> AsyncIterator[tuple[nanogpt.NanoGPTEmulator, RemoteBackend]]:
    emulator = nanogpt.NanoGPTEmulator(queue_s=0.05, run_s=0.05, idempotency_keys=keys)
    with LoopbackServer(emulator.app) as server:
        settings = ProviderSettings(
            name="nanogpt",
            base_url=server.base_url,
            api_key=emulator.api_key,
            timeout_s=0.3,
            options={"min_poll_interval_s": 0.05, "idempotency_keys": keys},
        )
        yield emulator, nanogpt_backend.build(http, settings)


async def test_unknown_submit_outcomes_fail_their_runs_and_no_job_is_doubled(
    store: FailingRecords, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    async with fal_provider(http) as (state, backend):
        for fault in UNKNOWN_OUTCOMES:
            state.faults.push("submit_response", fault)
        state.faults.push("submit", Fault(status=500))  # created nothing, but who can tell?
        ids = await add_runs(store, "fal", len(UNKNOWN_OUTCOMES) + 1)
        async with polling(store, tmp_path, "fal", backend, "fal-ai/veo2"):
            runs = await terminal(store, ids)
    assert [run.status for run in runs] == [Status.FAILED] * len(ids)
    for run in runs:
        assert run.error is not None and "was lost" in run.error, run.error
        assert "not submitted again to avoid paying twice" in run.error
        assert run.provider_request_id is None
    assert state.submits == len(UNKNOWN_OUTCOMES)  # each run's job created once, none twice
    assert len({body["prompt"] for body in state.submit_bodies}) == state.submits


async def test_with_an_idempotency_key_unknown_outcomes_are_sent_again_and_make_one_job_each(
    store: FailingRecords, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    """Each unknown outcome, and a run whose worker died after the provider accepted its
    submit but before recording the id: sent again with the run's key, one job each."""
    async with nanogpt_provider(http, keys=True) as (emulator, backend):
        (left,) = await add_runs(store, "nanogpt", 1)
        (claimed,) = await store.claim_remote("dead", ["nanogpt"], 1, 30)
        assert await store.remote_update(left, "dead", submit_started_at=time.time())
        await backend.submit(
            claimed.generation_request, "veo2-video", {}, idempotency_key=f"vidgate-{left}"
        )
        for fault in UNKNOWN_OUTCOMES:
            emulator.faults.push("submit_response", fault)
        ids = [left, *await add_runs(store, "nanogpt", len(UNKNOWN_OUTCOMES))]
        async with polling(store, tmp_path, "nanogpt", backend, "veo2-video"):
            runs = await terminal(store, ids)
        assert [run.status for run in runs] == [Status.COMPLETED] * len(ids)
        assert emulator.submits == len(ids)  # exactly one job per run
        assert emulator.requests["submit"] == 2 * len(ids)  # each sent twice
        by_key = {key: job.run_id for (_, key), (_, job) in emulator.keyed.items()}
        assert [by_key[f"vidgate-{run.id}"] for run in runs] == [
            run.provider_request_id for run in runs
        ]


async def test_opting_in_sends_unknown_outcomes_again_and_may_pay_twice(
    sqlite_store: FailingRecords, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    """``retry_ambiguous_submits`` without an idempotency key: what the setting warns of."""
    async with nanogpt_provider(http, keys=False) as (emulator, backend):
        emulator.faults.push("submit_response", Fault(status=502))
        ids = await add_runs(sqlite_store, "nanogpt", 1)
        async with polling(
            sqlite_store, tmp_path, "nanogpt", backend, "veo2-video", retry_ambiguous={"nanogpt"}
        ):
            runs = await terminal(sqlite_store, ids)
    assert runs[0].status is Status.COMPLETED
    assert emulator.submits == 2


async def test_a_job_id_the_database_fails_to_record_is_recorded_on_a_later_try(
    sqlite_store: FailingRecords, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    """(On PostgreSQL, the test with real faults below.)"""
    store = sqlite_store
    store.failures = 2
    async with fal_provider(http) as (state, backend):
        ids = await add_runs(store, "fal", 1)
        async with polling(store, tmp_path, "fal", backend, "fal-ai/veo2"):
            (run,) = await terminal(store, ids)
    assert run.status is Status.COMPLETED, run.error
    assert store.tries == 3
    assert state.submits == 1 and state.counters["cancel"] == 0


async def test_a_job_id_that_cannot_be_recorded_is_cancelled_and_named(
    store: FailingRecords,
    tmp_path: Path,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store.failures = 3
    caplog.set_level(logging.INFO, logger="vidgate.poller")
    async with fal_provider(http) as (state, backend):
        state.run_s = 60.0  # still running when it is cancelled
        ids = await add_runs(store, "fal", 1)
        async with polling(store, tmp_path, "fal", backend, "fal-ai/veo2"):
            (run,) = await terminal(store, ids)
    (job,) = state.jobs.values()
    assert run.status is Status.FAILED
    assert run.error is not None and f"job {job.id!r}" in run.error, run.error
    assert "could not record" in run.error and "asked the provider to cancel it" in run.error
    assert store.tries == 3  # bounded: the two delays give three tries
    assert job.cancelled_at is not None and state.submits == 1
    unrecorded = [r.message for r in caplog.records if "provider.job_unrecorded" in r.message]
    assert len(unrecorded) == 1 and job.id in unrecorded[0]


async def test_postgres_connections_killed_while_recording_the_job_id(
    postgres_url: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    """A real fault: the write that records the id waits on a row lock, and its connection
    is terminated (``pg_terminate_backend``), twice; the third try records the id."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    where = {"host": url.host, "port": url.port, "user": url.username, "database": url.database}
    store = await SQLStore.open(postgres_url)
    locker, admin = await asyncpg.connect(**where), await asyncpg.connect(**where)
    killed: list[int] = []
    try:
        async with fal_provider(http) as (state, backend):
            state.faults.push("submit_response", Fault(kind="delay", delay_s=0.25))
            (run_id,) = await add_runs(store, "fal", 1)
            async with polling(store, tmp_path, "fal", backend, "fal-ai/veo2"):
                while (await store.get(run_id)).submit_started_at is None:
                    await asyncio.sleep(0.01)
                lock = locker.transaction()
                await lock.start()  # hold the run's row while the provider answers
                await locker.execute("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE", run_id)
                deadline = time.monotonic() + 10
                while len(killed) < 2:
                    assert time.monotonic() < deadline, (
                        f"the write was tried {len(killed) + 1} times"
                    )
                    waiting = await admin.fetch(
                        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND "
                        "wait_event_type = 'Lock' AND "
                        "query LIKE 'UPDATE runs SET provider_request_id=%'",
                        url.database,
                    )
                    for (pid,) in waiting:  # one by one: no other connection is touched
                        await admin.execute("SELECT pg_terminate_backend($1)", pid)
                        killed.append(pid)
                    await asyncio.sleep(0.01)
                await lock.rollback()
                (run,) = await terminal(store, [run_id])
    finally:
        await locker.close()
        await admin.close()
        await store.close()
    assert len(killed) == 2
    assert run.status is Status.COMPLETED, run.error
    assert state.submits == 1 and state.counters["cancel"] == 0


class AwayWhileRecording(SQLStore):
    """The store, answering as a database that is away every write that records a
    provider's job id."""

    tries = 0

    async def remote_update(self, run_id: str, owner: str, **values: Any) -> bool:
        if "provider_request_id" in values:
            self.tries += 1
            raise StoreUnavailable("the database is unavailable: it cannot be reached")
        return await super().remote_update(run_id, owner, **values)


async def test_a_stop_while_the_database_is_away_cancels_the_unrecorded_job_and_names_it(
    tmp_path: Path,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(poller_module, "SUBMIT_GRACE_S", 0.3)
    caplog.set_level(logging.INFO, logger="vidgate.poller")
    store = await AwayWhileRecording.open(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        async with fal_provider(http) as (state, backend):
            state.run_s = 60.0
            await add_runs(store, "fal", 1)
            started = time.monotonic()
            async with polling(store, tmp_path, "fal", backend, "fal-ai/veo2"):
                while store.tries < 3:  # the id waits for the database
                    await asyncio.sleep(0.02)
            assert time.monotonic() - started < 10  # the stop was not held up by the wait
            (job,) = state.jobs.values()
    finally:
        await store.close()
    assert job.cancelled_at is not None and state.submits == 1
    unrecorded = [r.message for r in caplog.records if "provider.job_unrecorded" in r.message]
    assert len(unrecorded) == 1 and job.id in unrecorded[0]
