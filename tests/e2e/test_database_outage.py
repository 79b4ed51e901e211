"""The database goes away mid-run: PostgreSQL restarted, a SQLite file locked by another
process for longer than the busy timeout. Meanwhile the API answers ``503`` with
``Retry-After`` in each route's own error shape (the fast path as the routes do) and stays
up; afterwards the API, the worker and the event feed recover by themselves, and every run
accepted before ends completed, each rendered once."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from tests.api_helpers import (
    SMALL,
    assert_status_error,
    assert_submit_error,
    status,
    submit,
    submit_ok,
    wait_terminal,
)
from tests.e2e.test_postgres_scale_out import run_key
from tests.faults import PrivatePostgres, sqlite_locked
from tests.servers import LiveServer, child_processes

OUTAGE_S = 2.0
"""The shortest outage; it also lasts until the renders under way have ended."""
WORKER = """
[limits]
submits_per_minute = 100000

[worker]
concurrency = 2
lease_s = 3
heartbeat_s = 0.2

[server]
unavailable_retry_after_s = 7
"""


def test_postgres_restarted_mid_run(tmp_path: Path, private_postgres: PrivatePostgres) -> None:
    url = asyncio.run(private_postgres.fresh_database())
    env = {"VIDGATE_DATABASE_URL": url}
    fast = LiveServer(tmp_path / "data", WORKER, env=env)
    fast.api_key = run_key(fast)
    fast.start()
    # The routes answer everything on this one; it has no worker, so it learns of the
    # worker's changes through the event feed only.
    routes = LiveServer(
        tmp_path / "routes", WORKER + "fast_path = false\n", ["--no-worker"], env=env
    )
    routes.api_key = fast.api_key
    routes.start()
    try:
        runs = [submit_ok(fast, f"sandbox:slow=1.5 outage {i}") for i in range(2)]
        _rendering(fast)
        with private_postgres.down():
            began = time.monotonic()
            for server in (fast, routes):
                response = submit(server, {"model": "testcard-video", "prompt": "x", **SMALL})
                _assert_unavailable(assert_submit_error(response, 503, "service_unavailable"))
                assert response.headers["retry-after"] == "7"
            for path, params in (
                ("/api/generate-video/status", {"runId": runs[1], "modelSlug": "testcard-video"}),
                ("/api/video/status", {"requestId": runs[1]}),
            ):
                answer = _answer(fast, path, params)
                assert answer == _answer(routes, path, params), path  # the same bytes
                assert answer[0] == 503 and ("retry-after", "7") in answer[1]
            held = _get(fast, "/api/video/status", {"runId": runs[1], "waitSeconds": 1})
            _assert_unavailable(assert_status_error(held, 503))  # a long-poll: the route's
            _assert_unavailable(assert_status_error(_get(fast, "/healthz", {}), 503))
            _outcome_waiting(fast, runs[0], began)
        for run_id in runs:
            final = wait_terminal(fast, run_id, timeout=60)
            assert final["status"] == "COMPLETED", (run_id, final, fast.log()[-3000:])
        late = submit_ok(routes, "after the outage")
        assert _long_poll_until_done(routes, late) == "COMPLETED"
        assert httpx.get(f"{routes.base_url}/healthz").json()["runs"] == {}
    finally:
        routes.stop()
        fast.stop()
    claims = Counter(re.findall(r"run\.claimed run_id=(vid_\w+)", fast.log()))
    assert claims == Counter([*runs, late]), claims  # each rendered once
    assert asyncio.run(_statuses(url)) == {"COMPLETED": 3}  # nothing lost, nothing doubled


def test_sqlite_locked_by_another_process_mid_run(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", "database_busy_timeout_s = 0.5\n" + WORKER)
    server.api_key = server.create_key("locked")
    server.start()
    try:
        runs = [submit_ok(server, f"sandbox:slow=1.5 locked {i}") for i in range(2)]
        _rendering(server)
        with sqlite_locked(server.data_dir / "vidgate.db"):
            began = time.monotonic()
            response = submit(server, {"model": "testcard-video", "prompt": "x", **SMALL})
            message = assert_submit_error(response, 503, "service_unavailable")
            _assert_unavailable(message)
            assert "locked by another process" in message
            assert response.headers["retry-after"] == "7"
            assert status(server, runs[1])["status"] in ("IN_QUEUE", "IN_PROGRESS")  # reads go on
            assert _get(server, "/healthz", {}).status_code == 200
            _outcome_waiting(server, runs[0], began)
        for run_id in runs:
            final = wait_terminal(server, run_id, timeout=60)
            assert final["status"] == "COMPLETED", (run_id, final, server.log()[-3000:])
        assert (
            submit(server, {"model": "testcard-video", "prompt": "x", **SMALL}).status_code == 202
        )
    finally:
        server.stop()
    claims = Counter(re.findall(r"run\.claimed run_id=(vid_\w+)", server.log()))
    assert {run_id: claims[run_id] for run_id in runs} == dict.fromkeys(runs, 1), claims


def _renders(server: LiveServer) -> list[int]:
    assert server.process is not None
    return child_processes(server.process.pid, "testcard_render")


def _rendering(server: LiveServer) -> None:
    deadline = time.monotonic() + 30
    while not _renders(server):
        assert time.monotonic() < deadline, "no render started"
        time.sleep(0.05)


def _outcome_waiting(server: LiveServer, run_id: str, began: float) -> None:
    """Wait until the worker has finished rendering ``run_id`` and waits for the database
    to write the outcome (and the outage has lasted OUTAGE_S)."""
    deadline = time.monotonic() + 30
    while f"run.write_waiting run_id={run_id}" not in server.log():
        assert time.monotonic() < deadline, f"no outcome of {run_id} waits for the database"
        time.sleep(0.05)
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - began)))


def _assert_unavailable(message: str) -> None:
    assert message.startswith("the database is unavailable: "), message
    assert message.endswith("; retry in 7 s"), message


def _get(server: LiveServer, path: str, params: dict[str, Any]) -> httpx.Response:
    return httpx.get(
        f"{server.base_url}{path}", params=params, headers=server.headers(), timeout=30
    )


def _answer(server: LiveServer, path: str, params: dict[str, Any]) -> tuple[Any, ...]:
    response = _get(server, path, params)
    kept = [(k, v) for k, v in response.headers.multi_items() if k != "date"]
    return response.status_code, kept, response.content


def _long_poll_until_done(server: LiveServer, run_id: str) -> str:
    """Held polls only (``waitSeconds``): the run's end must reach this server as an event."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = _get(server, "/api/video/status", {"runId": run_id, "waitSeconds": 20}).json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return str(body["status"]).upper()
    raise AssertionError(f"run {run_id} did not finish")


async def _statuses(url: str) -> dict[str, int]:
    parsed = make_url(url)
    conn = await asyncpg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database
    )
    try:
        rows = await conn.fetch("SELECT status, count(*) AS n FROM runs GROUP BY status")
    finally:
        await conn.close()
    return {row["status"]: row["n"] for row in rows}
