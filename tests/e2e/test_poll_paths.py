"""The status polls: the fast path answers exactly as the documented routes do; what it
caches never hides a change; a revoked key stops working within a second.

Two real servers share one data directory: one answers plain polls on the fast path (the
default), the other with ``fast_path = false``, so FastAPI's routes answer them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_helpers import submit_ok, wait_for
from tests.servers import TEST_CONFIG, LiveServer, run_cli
from vidgate.runs.status import Status
from vidgate.store.sql import SQLStore

pytestmark = pytest.mark.timeout(180)
CONFIG = TEST_CONFIG.replace("concurrency = 2", "concurrency = 1")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    """(fast path, routes only) on the same database; the first runs the worker."""
    fast = LiveServer(tmp_path / "data", CONFIG)
    fast.api_key = fast.create_key("test")
    fast.start()
    routes = LiveServer(tmp_path / "data", CONFIG, ["--no-worker"])
    routes.config = tmp_path / "routes.toml"  # its own config file, the same data directory
    routes.config.write_text(CONFIG + "\n[server]\nfast_path = false\n")
    routes.log_path = tmp_path / "routes.log"
    routes.api_key = fast.api_key
    routes.start()
    try:
        yield fast, routes
    finally:
        routes.stop()
        fast.stop()


REQUEST_ID = "poll-paths-0001"


def _answer(server: LiveServer, path: str, params: Any, headers: Any) -> tuple[Any, ...]:
    # Both servers see the same Host, so video links (made from it) are the same, and the
    # same request id, which both paths echo.
    headers = {"Host": "vidgate.test:8000", "X-Request-ID": REQUEST_ID, **headers}
    response = httpx.get(f"{server.base_url}{path}", params=params, headers=headers, timeout=30)
    assert response.headers["x-request-id"] == REQUEST_ID
    kept = [(k, v) for k, v in response.headers.multi_items() if k != "date"]
    return response.status_code, kept, response.content


def _same_answer(
    fast: LiveServer, routes: LiveServer, path: str, params: Any, headers: Any
) -> tuple[Any, ...]:
    """Both servers' answers, asked back to back until the run held still meanwhile (a
    running run changes its progress)."""
    for _ in range(50):
        first = _answer(fast, path, params, headers)
        reference = _answer(routes, path, params, headers)
        again = _answer(fast, path, params, headers)
        if first == again:
            assert first == reference, (path, params)
            return first
    raise AssertionError(f"{path} {params}: the run never held still")


def test_fast_path_answers_as_the_routes_do(servers: tuple[LiveServer, LiveServer]) -> None:
    fast, routes = servers
    other_key = fast.create_key("other")
    runs = {
        "completed": submit_ok(fast, "done"),
        "failed": submit_ok(fast, "sandbox:fail"),
        "nsfw": submit_ok(fast, "sandbox:nsfw"),
        "cancelled": submit_ok(fast, "sandbox:cancel"),
    }
    for name in ("completed", "failed", "nsfw", "cancelled"):
        wait_for(fast, runs[name], {"COMPLETED", "FAILED", "CANCELLED"})
    runs["running"] = submit_ok(fast, "sandbox:slow=60")
    runs["queued"] = submit_ok(fast, "behind the slow one")
    runs["waiting"] = submit_ok(fast, "sandbox:queue=60")
    runs["user-cancelled"] = submit_ok(fast, "sandbox:queue=60")
    httpx.post(
        f"{fast.base_url}/api/generate-video/cancel",
        json={"runId": runs["user-cancelled"]},
        headers=fast.headers(),
    ).raise_for_status()
    wait_for(fast, runs["running"], {"IN_PROGRESS"})

    key = fast.headers()
    seen = set()
    for name, run_id in runs.items():
        for path, params in (
            ("/api/video/status", {"requestId": run_id}),
            ("/api/video/status", {"runId": run_id}),
            ("/api/generate-video/status", {"runId": run_id, "modelSlug": "testcard-video"}),
            ("/api/generate-video/status", {"runId": run_id, "model": "testcard-video"}),
        ):
            status, _, body = _same_answer(fast, routes, path, params, key)
            assert status == 200, (name, body)
            seen.add(httpx.Response(200, content=body).json().get("status"))
            # Asked twice: a finished run's answer comes from the cache the second time.
            _same_answer(fast, routes, path, params, key)
    assert {"completed", "failed", "cancelled", "processing", "queued"} <= seen

    run_id = runs["completed"]
    bearer = {"Authorization": f"Bearer {fast.api_key}"}
    errors: list[tuple[str, Any, Any]] = [
        ("/api/video/status", {"runId": run_id}, {}),  # no key
        ("/api/video/status", {"runId": run_id}, {"x-api-key": "vg_wrong"}),
        ("/api/video/status", {"runId": run_id}, {"x-api-key": "", "Authorization": "Bearer"}),
        ("/api/video/status", {"runId": run_id}, {"Authorization": "Basic abc"}),
        ("/api/video/status", {"runId": run_id}, bearer),
        ("/api/video/status", {}, key),
        ("/api/video/status", {"requestId": ""}, key),
        ("/api/video/status", {"runId": "vid_nope"}, key),
        ("/api/video/status", {"runId": run_id}, {"x-api-key": other_key}),
        ("/api/video/status", [("runId", "vid_nope"), ("runId", run_id)], key),
        ("/api/video/status", {"runId": "é ü \x00"}, key),
        ("/api/generate-video/status", {"runId": run_id}, key),  # no model
        ("/api/generate-video/status", {"modelSlug": "testcard-video"}, key),
        ("/api/generate-video/status", {"runId": run_id, "modelSlug": "other"}, key),
        ("/api/generate-video/status", {"runId": run_id, "modelSlug": ""}, key),
        ("/api/generate-video/status", {"runId": run_id, "model": "testcard-video"}, bearer),
        (
            "/api/generate-video/status",
            {"runId": run_id, "modelSlug": "testcard-video"},
            {"x-api-key": other_key},
        ),
        ("/api/video/status", {"runId": run_id, "waitSeconds": "x"}, key),  # the route's own
        ("/api/video/status", {"runId": run_id, "waitSeconds": "1"}, key),
    ]
    statuses = set()
    for path, params, headers in errors:
        status, _, _ = _same_answer(fast, routes, path, params, headers)
        statuses.add(status)
    assert statuses == {200, 400, 401, 404}


def test_a_revoked_key_stops_working_within_a_second(live_server: LiveServer) -> None:
    key = live_server.create_key("soon-revoked")
    run_id = submit_ok(live_server, "revoke", key=key)
    url = f"{live_server.base_url}/api/video/status"
    with httpx.Client(headers={"x-api-key": key}, timeout=10) as client:
        assert client.get(url, params={"runId": run_id}).status_code == 200  # key now cached
        run_cli(
            ["keys", "revoke", "soon-revoked"],
            data_dir=live_server.data_dir,
            config=live_server.config,
        )
        revoked_at = time.monotonic()
        while (status := client.get(url, params={"runId": run_id}).status_code) == 200:
            assert time.monotonic() - revoked_at < 1.0, "the revoked key still works after 1 s"
        assert status == 401
        # ... and it stays refused.
        assert client.get(url, params={"runId": run_id}).status_code == 401


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_change_shows_on_the_very_next_poll(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Another process (here, the test) changes a run; the poll right after its commit
    shows the change, on both routes, however often the run was polled before."""
    env = {}
    if backend == "postgresql":
        env["VIDGATE_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    server = LiveServer(tmp_path / "data", CONFIG, ["--no-worker"], env=env)
    created = run_cli(
        ["keys", "create", "test"], data_dir=server.data_dir, config=server.config, env=env
    )
    server.api_key = created.stdout.strip().splitlines()[-1]
    server.start()
    try:
        asyncio.run(_change_and_poll(server, env.get("VIDGATE_DATABASE_URL")))
    finally:
        server.stop()


async def _change_and_poll(server: LiveServer, database_url: str | None) -> None:
    store = await SQLStore.open(database_url or f"sqlite:///{server.data_dir / 'vidgate.db'}")
    url = server.base_url
    try:
        async with httpx.AsyncClient(headers=server.headers(), timeout=10) as client:

            async def both(run_id: str) -> tuple[str, str]:
                unified = await client.get(f"{url}/api/video/status", params={"runId": run_id})
                legacy = await client.get(
                    f"{url}/api/generate-video/status",
                    params={"runId": run_id, "modelSlug": "testcard-video"},
                )
                return unified.json()["status"], legacy.json()["data"]["status"]

            for _ in range(10):
                run_id = submit_ok(server, "next poll")
                for _ in range(3):
                    assert await both(run_id) == ("queued", "IN_QUEUE")
                running = await store.transition(run_id, Status.IN_PROGRESS, progress=10.0)
                assert running is not None
                assert await both(run_id) == ("processing", "IN_PROGRESS")
                done = await store.transition(
                    run_id, Status.COMPLETED, progress=100.0, output_key=f"{run_id}.mp4"
                )
                assert done is not None
                assert await both(run_id) == ("completed", "COMPLETED")
    finally:
        await store.close()


def _posted(server: LiveServer, content: bytes, headers: dict[str, str]) -> tuple[Any, ...]:
    headers = {"X-Request-ID": REQUEST_ID, **headers}
    response = httpx.post(
        f"{server.base_url}/api/generate-video", content=content, headers=headers, timeout=30
    )
    assert response.headers["x-request-id"] == REQUEST_ID
    kept = [(k, v) for k, v in response.headers.multi_items() if k != "date"]
    return response.status_code, kept, response.content


def test_fast_path_submits_as_the_route_does(servers: tuple[LiveServer, LiveServer]) -> None:
    fast, routes = servers
    key = {**fast.headers(), "Content-Type": "application/json"}
    body = b'{"model": "testcard-video", "prompt": "twice", "duration": 1}'
    # A replayed submit answers the first run: both paths must answer it identically.
    first = _posted(fast, body, {**key, "Idempotency-Key": "same-run"})
    assert first[0] == 202
    replays = [
        _posted(server, body, {**key, "Idempotency-Key": "same-run"}) for server in (routes, fast)
    ]
    assert replays[0] == replays[1]
    assert ("idempotent-replayed", "true") in replays[0][1]
    assert replays[0][2] == first[2]
    cases: list[tuple[bytes, dict[str, str]]] = [
        (body, {"Content-Type": "application/json"}),  # no key
        (body, {**key, "x-api-key": "vg_wrong"}),
        (b"", key),
        (b"{not json", key),
        (b"[1, 2]", key),
        (b'{"model": "no-such-model", "prompt": "x"}', key),
        (b'{"model": "testcard-video"}', key),
        (b'{"model": "testcard-video", "prompt": "sandbox:blocked"}', key),
        (b'{"model": "testcard-video", "prompt": "x", "duration": "long"}', key),
        (b'{"model": "testcard-video", "prompt": NaN}', key),
        (b"\xff\xfe", key),
        (b"[" * 100_000 + b"]" * 100_000, key),
        (b'{"model": "testcard-video", "prompt": "' + b"x" * (9 << 20) + b'"}', key),
        (body, {**key, "Idempotency-Key": "x" * 201}),
        (b'{"model": "testcard-video", "prompt": "other"}', {**key, "Idempotency-Key": "same-run"}),
        (
            b'{"model": "testcard-video", "prompt": "x", "webhookUrl": "http://127.0.0.1/hook"}',
            key,
        ),
        (
            b'{"model": "testcard-image-video", "imageUrl": "http://169.254.169.254/a.png"}',
            key,
        ),
    ]
    statuses = set()
    for content, headers in cases:
        answers = [_posted(server, content, headers) for server in (fast, routes)]
        assert answers[0] == answers[1], (content[:80], headers)
        statuses.add(answers[0][0])
    assert statuses == {400, 401, 409}
