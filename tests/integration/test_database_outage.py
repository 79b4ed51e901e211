"""The database goes away mid-run: PostgreSQL restarted, a SQLite file locked by another
process for longer than the busy timeout. Meanwhile the API answers ``503`` with
``Retry-After`` in each route's own error shape (the fast path as the routes do) and stays
up; afterwards the API, the worker and the event feed recover by themselves, and every run
accepted before completes, rendered once.

The apps run in this process (real databases, the real renderer), as ``vidgate serve``
composes them: processes of their own would cost seconds each to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.faults import PrivatePostgres, sqlite_locked
from tests.servers import child_processes
from vidgate.config import Settings
from vidgate.server.app import create_app
from vidgate.store.schema import runs as runs_table
from vidgate.store.sql import SQLStore
from vidgate.worker.runtime import run_worker

pytestmark = pytest.mark.timeout(120)
OUTAGE_S = 2.5
"""The shortest outage; it lasts until a finished render's outcome waits for it, too."""
BODY = {"model": "testcard-video", "resolution": "240p", "duration": 1}
LEGACY = "/api/generate-video/status"
UNIFIED = "/api/video/status"


async def test_postgres_restarted_mid_run(
    tmp_path: Path, private_postgres: PrivatePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vidgate")
    url = await private_postgres.fresh_database()
    secret = await _key(url)
    # The routes answer everything on the second app; it has no worker, so it learns of
    # the worker's changes through its event feed only.
    async with (
        _app(tmp_path / "fast", url, secret, worker=True) as fast,
        _app(tmp_path / "routes", url, secret, fast_path=False) as routes,
    ):
        runs = [await _submit_ok(fast, f"sandbox:slow=1.5 outage {i}") for i in range(2)]
        await _rendering()
        await asyncio.to_thread(private_postgres.halt)
        try:
            began = time.monotonic()
            for client in (fast, routes):
                response = await client.post("/api/generate-video", json={**BODY, "prompt": "x"})
                _assert_submit_unavailable(response)
            for path, params in (
                (LEGACY, {"runId": runs[1], "modelSlug": "testcard-video"}),
                (UNIFIED, {"requestId": runs[1]}),
            ):
                answer = await _answer(fast, path, params)
                assert answer == await _answer(routes, path, params), path  # the same bytes
                _assert_status_unavailable(
                    httpx.Response(answer[0], headers=answer[1], content=answer[2])
                )
            held = await fast.get(UNIFIED, params={"runId": runs[1], "waitSeconds": 1})
            _assert_status_unavailable(held)  # a long-poll: the route answers it
            _assert_status_unavailable(await fast.get("/healthz"))
            await _outcome_waiting(caplog, runs[0], began)
        finally:
            await asyncio.to_thread(private_postgres.resume)
        for run_id in runs:
            assert await _finished(fast, run_id) == "completed"
        late = await _submit_ok(routes, "after the outage")
        started = time.monotonic()
        assert await _long_poll_until_done(routes, late) == "completed"
        assert time.monotonic() - started < 15, "the event feed did not tell the end"
        assert (await routes.get("/healthz")).json()["runs"] == {}
        await _assert_each_rendered_once(url, [*runs, late])


async def test_sqlite_locked_by_another_process_mid_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vidgate")
    path = tmp_path / "vidgate.db"
    url = f"sqlite:///{path}"
    secret = await _key(url)
    async with _app(tmp_path / "data", url, secret, worker=True) as client:
        runs = [await _submit_ok(client, f"sandbox:slow=1.5 locked {i}") for i in range(2)]
        await _rendering()
        with sqlite_locked(path):
            began = time.monotonic()
            response = await client.post("/api/generate-video", json={**BODY, "prompt": "x"})
            assert "locked by another process" in _assert_submit_unavailable(response)
            polled = await client.get(UNIFIED, params={"requestId": runs[1]})
            assert polled.status_code == 200  # readers go on
            assert (await client.get("/healthz")).status_code == 200
            await _outcome_waiting(caplog, runs[0], began)
        for run_id in runs:
            assert await _finished(client, run_id) == "completed"
        assert (await _submit(client, "after the lock")).status_code == 202
    await _assert_each_rendered_once(url, runs, submitted=3)


@contextlib.asynccontextmanager
async def _app(
    data_dir: Path, url: str, secret: str, *, worker: bool = False, fast_path: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """The app as ``vidgate serve`` runs it (with its worker, or ``--no-worker``)."""
    settings = Settings.model_validate(
        {
            "data_dir": str(data_dir),
            "database_url": url,
            "database_busy_timeout_s": 0.5,
            "server": {"unavailable_retry_after_s": 7, "fast_path": fast_path},
            "limits": {"submits_per_minute": 100000},
            "worker": {"concurrency": 2, "lease_s": 1.5, "heartbeat_s": 0.2},
        }
    )
    app = create_app(settings, background=run_worker if worker else None)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://vidgate.test",
            headers={"x-api-key": secret},
            timeout=30,
        ) as client,
    ):
        yield client


async def _key(url: str) -> str:
    store = await SQLStore.open(url)
    try:
        return (await store.create_key("outage"))[1]
    finally:
        await store.close()


async def _submit(client: httpx.AsyncClient, prompt: str) -> httpx.Response:
    return await client.post("/api/generate-video", json={**BODY, "prompt": prompt})


async def _submit_ok(client: httpx.AsyncClient, prompt: str) -> str:
    response = await _submit(client, prompt)
    assert response.status_code == 202, response.text
    return str(response.json()["runId"])


async def _answer(client: httpx.AsyncClient, path: str, params: dict[str, Any]) -> tuple[Any, ...]:
    # The same request id on both paths, which each echoes.
    response = await client.get(path, params=params, headers={"X-Request-ID": "outage-1"})
    assert response.headers["x-request-id"] == "outage-1"
    return response.status_code, response.headers.multi_items(), response.content


def _assert_unavailable(response: httpx.Response, message: str, ending: str = "") -> str:
    assert message.startswith("the database is unavailable: "), message
    assert message.endswith("; retry in 7 s" + ending), message
    assert "127.0.0.1" not in message  # the database's address is not for clients
    assert response.headers["retry-after"] == "7"
    return message


def _assert_submit_unavailable(response: httpx.Response) -> str:
    assert response.status_code == 503, response.text
    body = response.json()
    assert set(body) == {"error", "status"} and body["status"] == 503, body
    assert body["error"]["type"] == "service_unavailable", body
    ending = " with the same Idempotency-Key header, so that the run is not made twice"
    return _assert_unavailable(response, body["error"]["message"], ending)


def _assert_status_unavailable(response: httpx.Response) -> str:
    assert response.status_code == 503, response.text
    body = response.json()
    assert set(body) == {"error", "message"} and body["error"] == 503, body
    return _assert_unavailable(response, body["message"])


async def _rendering() -> None:
    """Until a render of this process's worker is under way."""
    deadline = time.monotonic() + 30
    while not child_processes(os.getpid(), "testcard_render"):
        assert time.monotonic() < deadline, "no render started"
        await asyncio.sleep(0.05)


async def _outcome_waiting(caplog: pytest.LogCaptureFixture, run_id: str, began: float) -> None:
    """Until the worker has finished rendering ``run_id`` and waits for the database to
    write the outcome (and the outage has lasted OUTAGE_S)."""
    deadline = time.monotonic() + 30
    while not any(f"run.write_waiting run_id={run_id}" in m for m in caplog.messages):
        assert time.monotonic() < deadline, f"no outcome of {run_id} waits for the database"
        await asyncio.sleep(0.05)
    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - began)))


async def _finished(client: httpx.AsyncClient, run_id: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = await client.get(UNIFIED, params={"requestId": run_id})
        assert response.status_code == 200, response.text
        if response.json()["status"] in ("completed", "failed", "cancelled"):
            return str(response.json()["status"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish")


async def _long_poll_until_done(client: httpx.AsyncClient, run_id: str) -> str:
    """Held polls only (``waitSeconds``): the run's end must reach this app as an event."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = await client.get(UNIFIED, params={"runId": run_id, "waitSeconds": 20})
        if response.json()["status"] in ("completed", "failed", "cancelled"):
            return str(response.json()["status"])
    raise AssertionError(f"run {run_id} did not finish")


async def _assert_each_rendered_once(
    url: str, run_ids: list[str], submitted: int | None = None
) -> None:
    """Every run claimed once (``attempts``), and no run but those accepted exists."""
    store = await SQLStore.open(url)
    try:
        for run_id in run_ids:
            run = await store.get(run_id)
            assert run.attempts == 1, (run_id, run.attempts)  # rendered once
        query = select(func.count()).select_from(runs_table)
        total = await store._read(lambda conn: conn.execute(query).scalar_one())
        assert total == (submitted or len(run_ids))  # nothing lost, nothing doubled
    finally:
        await store.close()
