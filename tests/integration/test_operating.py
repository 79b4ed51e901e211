"""Operating vidgate: ``/metrics`` adds up to what happened, ``/readyz`` names the part that
is not ready, every answer carries an ``X-Request-ID``, and log lines name their run.

The apps run in this process as ``vidgate serve`` composes them (API and worker), over real
HTTP on loopback, with a real SQLite or PostgreSQL database, the real renderer and fal's
emulator: processes of their own would cost seconds each to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.emulators import fal
from tests.emulators.harness import LoopbackServer
from tests.faults import PrivatePostgres
from tests.webhook_receiver import WebhookReceiver
from vidgate import logs
from vidgate.config import Settings
from vidgate.server.app import create_app
from vidgate.services import Services
from vidgate.store.sql import SQLStore
from vidgate.worker.runtime import run_worker

pytestmark = pytest.mark.timeout(60)
SMALL = {"model": "testcard-video", "resolution": "240p", "duration": 1}
TERMINAL = {"completed", "failed", "cancelled"}
QUICK_WORKER = {"heartbeat_s": 0.2, "idle_poll_s": 0.05, "lease_s": 5, "concurrency": 2}


def _settings(data_dir: Path, url: str | None = None, **extra: Any) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": str(data_dir),
            "database_url": url,
            "worker": QUICK_WORKER,
            "limits": {"submits_per_minute": 10_000},
            **extra,
        }
    )


async def _key(url: str) -> str:
    store = await SQLStore.open(url)
    try:
        return (await store.create_key("operating"))[1]
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def _app(settings: Settings, *, worker: Any = run_worker) -> AsyncIterator[httpx.AsyncClient]:
    from tests.servers import serving

    secret = await _key(settings.resolved_database_url)
    app = create_app(settings, background=worker)
    async with (
        serving(app) as url,
        httpx.AsyncClient(base_url=url, headers={"x-api-key": secret}, timeout=30) as client,
    ):
        yield client


async def _submit(client: httpx.AsyncClient, prompt: str, **body: Any) -> str:
    response = await client.post("/api/generate-video", json={**SMALL, "prompt": prompt, **body})
    assert response.status_code == 202, response.text
    return str(response.json()["runId"])


async def _until(client: httpx.AsyncClient, run_id: str, statuses: set[str]) -> str:
    for _ in range(600):
        status = (await client.get("/api/video/status", params={"runId": run_id})).json()
        if status["status"] in statuses:
            return str(status["status"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} still {status} after 30 s")


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def _scrape(client: httpx.AsyncClient) -> Samples:
    """Every sample of ``/metrics``: (name, sorted labels) -> value."""
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _total(samples: Samples, name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == name)


@pytest.fixture
def fal_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[fal.FalState, str]]:
    state = fal.FalState(queue_s=0.1, run_s=0.2)
    monkeypatch.setenv("VIDGATE_TEST_FAL_KEY", fal.API_KEY)
    with LoopbackServer(fal.create_app(state)) as server:
        yield state, server.base_url


async def test_metrics_add_up_to_a_mixed_workload(
    tmp_path: Path, fal_emulator: tuple[fal.FalState, str]
) -> None:
    emulator, fal_url = fal_emulator
    settings = _settings(
        tmp_path / "data",
        providers={
            "fal": {
                "base_url": fal_url,
                "api_key_env": "VIDGATE_TEST_FAL_KEY",
                "poll_interval_s": 0.1,
                "options": {"min_poll_interval_s": 0.1},
            }
        },
        models={"fal-video": {"backend": "fal", "provider_model": "fal-ai/veo2"}},
        webhooks={"allow_private_hosts": True},
    )
    with WebhookReceiver() as receiver:
        async with _app(settings) as client:
            # A run that renders until cancelled, and one that waits in the queue.
            rendering = await _submit(client, "sandbox:slow=20 cancelled while rendering")
            queued = await _submit(client, "sandbox:queue=30 cancelled while queued")
            await _until(client, rendering, {"processing"})
            during = await _scrape(client)
            assert _value(during, "vidgate_runs_queued") == 1
            assert _value(during, "vidgate_runs_in_progress") == 1
            for run_id in (rendering, queued):
                cancel = await client.post("/api/generate-video/cancel", json={"runId": run_id})
                assert cancel.json()["status"] == "cancelled", cancel.text
            refused = await client.post(
                "/api/generate-video", json={**SMALL, "prompt": "sandbox:blocked please"}
            )
            assert refused.json()["error"]["type"] == "CONTENT_POLICY_VIOLATION", refused.text
            done = [
                await _submit(client, "completed", webhookUrl=receiver.url("/hook")),
                await _submit(client, "completed too"),
                await _submit(client, "remote", model="fal-video", duration=5, resolution="480p"),
            ]
            failed = await _submit(client, "sandbox:fail")
            for run_id in done:
                assert await _until(client, run_id, TERMINAL) == "completed"
            assert await _until(client, failed, TERMINAL) == "failed"
            receiver.wait_for(lambda got: len(got) >= 1, timeout=10)
            await asyncio.sleep(0.2)  # the delivery's outcome is recorded after the answer
            stored = 0
            for run_id in done:
                video = await client.get(
                    "/api/generate-video/content", params={"runId": run_id}, follow_redirects=True
                )
                assert video.status_code == 200
                stored += len(video.content)
            after = await _scrape(client)

    testcard = {"model": "testcard-video", "backend": "testcard"}
    remote = {"model": "fal-video", "backend": "fal"}
    assert _value(after, "vidgate_runs_submitted_total", **testcard) == 5
    assert _value(after, "vidgate_runs_submitted_total", **remote) == 1
    assert _total(after, "vidgate_runs_submitted_total") == 6
    assert _value(after, "vidgate_submits_refused_total", reason="CONTENT_POLICY_VIOLATION") == 1
    assert _total(after, "vidgate_submits_refused_total") == 1
    finished = {
        (labels["model"], labels["status"]): value
        for (name, pairs), value in after.items()
        if name == "vidgate_runs_finished_total"
        for labels in [dict(pairs)]
    }
    assert finished == {
        ("testcard-video", "COMPLETED"): 2,
        ("testcard-video", "FAILED"): 1,
        ("testcard-video", "CANCELLED"): 2,
        ("fal-video", "COMPLETED"): 1,
    }
    # Durations: the runs that started (not the one cancelled in the queue).
    duration = "vidgate_run_duration_seconds_count"
    assert _value(after, duration, **testcard, status="COMPLETED") == 2
    assert _value(after, duration, **testcard, status="FAILED") == 1
    assert _value(after, duration, **testcard, status="CANCELLED") == 1
    assert _value(after, duration, **remote, status="COMPLETED") == 1
    assert _total(after, duration) == 5
    assert _value(after, "vidgate_run_queue_wait_seconds_count", **testcard) == 4
    assert _value(after, "vidgate_run_queue_wait_seconds_count", **remote) == 1
    # What the provider saw, operation by operation.
    calls = {"submit": emulator.submits, "poll": emulator.counters["status"], "download": 1}
    for operation, count in calls.items():
        labels = {"provider": "fal", "operation": operation}
        assert _value(after, "vidgate_provider_requests_total", **labels) == count, operation
        latency = "vidgate_provider_request_duration_seconds_count"
        assert _value(after, latency, **labels) == count, operation
    assert emulator.counters["download"] == 1
    assert _total(after, "vidgate_provider_requests_total") == sum(calls.values())
    assert _total(after, "vidgate_provider_errors_total") == 0
    assert len(receiver.received()) == 1
    assert _value(after, "vidgate_webhook_attempts_total", outcome="delivered") == 1
    assert _total(after, "vidgate_webhook_attempts_total") == 1
    assert _total(after, "vidgate_storage_bytes_written_total") == stored
    assert _value(after, "vidgate_runs_queued") == _value(after, "vidgate_runs_in_progress") == 0


async def test_readyz_says_which_part_is_not_ready(tmp_path: Path) -> None:
    go = asyncio.Event()

    async def worker(_services: Services, _stop: asyncio.Event) -> None:
        await go.wait()
        raise RuntimeError("injected fault")

    settings = _settings(tmp_path / "data", storage={"path": str(tmp_path / "files")})
    async with _app(settings, worker=worker) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready",
            "checks": {"store": "ok", "storage": "ok", "worker": "ok"},
        }
        (tmp_path / "files").rmdir()
        (tmp_path / "files").write_text("a file where the storage directory should be")
        go.set()
        await asyncio.sleep(0.05)
        answer = await client.get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["error"] == 503
    assert body["checks"]["store"] == "ok"
    assert body["checks"]["storage"].startswith("unreachable: ")
    assert str(tmp_path / "files") in body["checks"]["storage"]
    assert body["checks"]["worker"] == "stopped: RuntimeError: injected fault"
    assert body["message"].startswith("not ready: storage unreachable: ")
    assert "worker stopped: RuntimeError: injected fault" in body["message"]


async def test_readyz_fails_while_the_database_is_down(
    tmp_path: Path, private_postgres: PrivatePostgres
) -> None:
    url = await private_postgres.fresh_database()
    async with _app(_settings(tmp_path / "data", url), worker=None) as client:
        assert (await client.get("/readyz")).json()["checks"]["worker"] == "none in this process"
        with private_postgres.down():
            down = await client.get("/readyz")
        assert down.status_code == 503, down.text
        assert down.json()["checks"]["store"].startswith("unreachable: ")
        assert down.json()["message"].startswith("not ready: store unreachable: ")
        assert set(down.json()["checks"]) == {"store", "storage", "worker"}
        assert (await client.get("/readyz")).status_code == 200


async def test_every_answer_carries_a_request_id(tmp_path: Path) -> None:
    async with _app(_settings(tmp_path / "data"), worker=None) as client:
        run_id = await _submit(client, "ids")
        poll = {"runId": run_id, "modelSlug": "testcard-video"}
        answers = {
            "fast-path poll": ("GET", "/api/generate-video/status", poll),
            "fast-path error": ("GET", "/api/generate-video/status", {"runId": "vid_none"}),
            "route": ("GET", "/api/v1/video-models", None),
            "route error": ("GET", "/api/no-such-route", None),
            "readiness": ("GET", "/readyz", None),
        }
        for what, (method, path, params) in answers.items():
            given = await client.request(
                method, path, params=params, headers={"X-Request-ID": f"req-{what[:4]}.1"}
            )
            assert given.headers["x-request-id"] == f"req-{what[:4]}.1", what
            made = await client.request(method, path, params=params)
            assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"]), what
            again = await client.request(method, path, params=params)
            assert again.headers["x-request-id"] != made.headers["x-request-id"], what
        assert (await client.get("/api/no-such-route")).status_code == 404
        for unusable in (b"has space", b"x" * 129, "é".encode(), b"tab\there"):
            answer = await client.get(
                "/api/generate-video/status", params=poll, headers={"X-Request-ID": unusable}
            )
            assert answer.status_code == 200
            assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"]), unusable
        longest = "a" * 128
        echoed = await client.get("/readyz", headers={"X-Request-ID": longest})
        assert echoed.headers["x-request-id"] == longest


async def test_json_log_lines_name_their_run_and_request(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter([]))
    vidgate_log = logging.getLogger("vidgate")
    vidgate_log.addHandler(handler)
    level = vidgate_log.level
    vidgate_log.setLevel(logging.INFO)
    try:
        async with _app(_settings(tmp_path / "data")) as client:
            run_id = await _submit(client, "logged")
            assert await _until(client, run_id, TERMINAL) == "completed"
        token = logs.request_id.set("req-42")
        try:
            logs.event(logging.getLogger("vidgate.test"), "test.answered", code=200)
        finally:
            logs.request_id.reset(token)
    finally:
        vidgate_log.removeHandler(handler)
        vidgate_log.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    about_run = [line for line in lines if run_id in line["message"]]
    events = {line["event"] for line in about_run}
    assert {"run.claimed", "run.completed"} <= events, about_run
    for line in about_run:
        assert line["run_id"] == run_id, line
        assert line["level"] in {"info", "warning"} and line["ts"].endswith("+00:00")
    answered = lines[-1]
    assert answered["event"] == "test.answered" and answered["request_id"] == "req-42"
    assert answered["code"] == 200 and answered["message"] == "test.answered code=200"


async def test_metrics_can_ask_for_a_token_or_be_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDGATE_TEST_METRICS_TOKEN", "scrape-token-1")
    guarded = _settings(tmp_path / "a", metrics={"token_env": "VIDGATE_TEST_METRICS_TOKEN"})
    async with _app(guarded, worker=None) as client:
        for sent in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "scrape-token-1"},
            {"Authorization": "Bearer caf\u00e9".encode("latin-1")},  # not ASCII: still a 401
        ):
            refused = await client.get("/metrics", headers=sent)
            assert refused.status_code == 401, sent
            assert refused.headers["www-authenticate"] == "Bearer"
            assert "Authorization: Bearer TOKEN" in refused.json()["message"]
        allowed = await client.get("/metrics", headers={"Authorization": "Bearer scrape-token-1"})
        assert allowed.status_code == 200 and "vidgate_runs_queued 0.0" in allowed.text
    async with _app(_settings(tmp_path / "b", metrics={"enabled": False}), worker=None) as client:
        off = await client.get("/metrics")
        assert off.status_code == 404
        assert off.json()["message"] == (
            "metrics are off on this server ([metrics] enabled = false in its config)"
        )
