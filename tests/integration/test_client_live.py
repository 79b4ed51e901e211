"""Every SDK operation, on ``Client`` and on ``AsyncClient``, against a real ``vidgate serve``
process; faults (503, 429, dropped connections, unknown statuses) come from a loopback
proxy in front of it (``tests.client_helpers.FaultProxy``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.client_helpers import (
    FRIENDLY_FAILURE,
    SMALL,
    FaultProxy,
    call,
    collect,
    mp4_frames,
    unknown_status_body,
)
from tests.emulators.harness import Fault
from tests.servers import LiveServer
from vidgate import (
    APIConnectionError,
    APIStatusError,
    AsyncClient,
    AuthenticationError,
    Client,
    ContentPolicyError,
    GenerationCancelled,
    GenerationFailed,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    RunStatus,
    VideoNotReady,
    VideoStatus,
    WaitTimeout,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"
MODEL = "testcard-video"


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_client(kind: str, live_server: LiveServer) -> AsyncIterator[Callable[..., Any]]:
    """Build clients of this test's kind; all are closed after the test."""
    made: list[Any] = []

    def make(base_url: str | None = None, api_key: str | None = None, **kwargs: Any) -> Any:
        cls = Client if kind == "sync" else AsyncClient
        client = cls(base_url or live_server.base_url, api_key or live_server.api_key, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        if isinstance(client, Client):
            client.close()
        else:
            await client.aclose()


@pytest.fixture
def client(make_client: Callable[..., Any]) -> Any:
    return make_client()


@pytest.fixture
def proxy(live_server: LiveServer) -> Iterator[FaultProxy]:
    with FaultProxy(live_server.base_url) as running:
        yield running


@pytest.fixture
def proxied(make_client: Callable[..., Any], proxy: FaultProxy) -> Any:
    return make_client(proxy.base_url)


async def wait_until(client: Any, run_id: str, status: RunStatus, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while (await call(client.get_video_status, run_id)).status is not status:
        assert time.monotonic() < deadline, f"{run_id} never reached {status}"
        await asyncio.sleep(0.05)


# -- the happy path ------------------------------------------------------------------


async def test_generate_wait_download_and_rebuild(client: Any, tmp_path: Path) -> None:
    models = await call(client.list_models)
    testcard = next(m for m in models if m.id == MODEL)
    assert testcard.text_to_video and "resolution" in testcard.parameters

    run = await call(client.generate_video, MODEL, "a red fox", **SMALL)
    assert run.id.startswith("vid_") and run.model == MODEL
    assert run.submission.raw_status == "pending" and run.submission.cost == 0

    seen: list[VideoStatus] = []
    done = await call(client.wait_for_video, run.id, timeout_s=60, on_update=seen.append)
    assert done.is_completed and done.progress == 100
    assert seen[-1] is done
    assert done.video_url is not None and done.video_url.startswith(client.base_url)
    assert done.completed_at is not None and done.expires_at is not None

    progress: list[tuple[int, int | None]] = []
    path = await call(
        client.download_video,
        done,
        tmp_path / "fox.mp4",
        on_progress=lambda *a: progress.append(a),
    )
    assert path == tmp_path / "fox.mp4"
    assert mp4_frames(path) > 0
    assert progress[-1] == (path.stat().st_size, path.stat().st_size)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fox.mp4"]  # no .part left

    # A handle rebuilt from the bare id, in a new client, sees the same run.
    rebuilt = client.run(run.id)
    assert (await call(rebuilt.status)).is_completed
    legacy = await call(client.get_video_status, run.id, MODEL)
    assert legacy.is_completed and legacy.provider_request_id == run.id
    again = await call(rebuilt.download, tmp_path / "again.mp4", timeout_s=30)
    assert again.read_bytes() == path.read_bytes()
    # Cancelling a finished run changes nothing.
    assert (await call(rebuilt.cancel)).is_completed


async def test_run_handle_waits_and_downloads(client: Any, tmp_path: Path) -> None:
    run = await call(client.generate_video, MODEL, "a handle", **SMALL)
    path = await call(run.download, tmp_path / "handle.mp4", timeout_s=60)
    assert mp4_frames(path) > 0
    done = await call(run.wait, timeout_s=5)
    assert done.is_completed


async def test_download_from_a_relative_url(client: Any, tmp_path: Path) -> None:
    run = await call(client.generate_video, MODEL, "relative", **SMALL)
    done = await call(run.wait, timeout_s=60)
    relative = done.video_url.removeprefix(client.base_url)
    assert relative.startswith("/files/")
    path = await call(client.download_video, relative, tmp_path / "rel.mp4")
    assert mp4_frames(path) > 0


async def test_download_before_completion_is_refused(client: Any, tmp_path: Path) -> None:
    run = await call(client.generate_video, MODEL, "later sandbox:queue=30", **SMALL)
    queued = await call(run.status)
    assert queued.status is RunStatus.IN_QUEUE
    with pytest.raises(VideoNotReady):
        await call(client.download_video, queued, tmp_path / "early.mp4")
    await call(run.cancel)
    assert not list(tmp_path.iterdir())


# -- runs that end otherwise -----------------------------------------------------------


async def test_failed_run_carries_the_nsfw_fields(client: Any) -> None:
    run = await call(client.generate_video, MODEL, "a fox sandbox:nsfw", **SMALL)
    with pytest.raises(GenerationFailed) as caught:
        await call(run.wait, timeout_s=60)
    failure = caught.value
    assert failure.is_nsfw is True
    assert failure.error and failure.user_friendly_error
    assert failure.status.is_failed and failure.run_id == run.id
    assert str(failure) == failure.user_friendly_error


async def test_failed_run_carries_the_user_friendly_error(client: Any) -> None:
    run = await call(client.generate_video, MODEL, "a fox sandbox:fail", **SMALL)
    with pytest.raises(GenerationFailed) as caught:
        await call(client.wait_for_video, run.id, MODEL, timeout_s=60)
    assert caught.value.is_nsfw is False
    assert caught.value.user_friendly_error == FRIENDLY_FAILURE
    assert caught.value.error


async def test_cancel_a_queued_run(client: Any) -> None:
    run = await call(client.generate_video, MODEL, "never sandbox:queue=60", **SMALL)
    cancelled = await call(client.cancel, run.id)
    assert cancelled.status is RunStatus.CANCELLED
    with pytest.raises(GenerationCancelled) as caught:
        await call(run.wait, timeout_s=10)
    assert caught.value.status.is_cancelled


async def test_cancel_a_running_run(client: Any) -> None:
    run = await call(client.generate_video, MODEL, "long sandbox:slow=60", **SMALL)
    await wait_until(client, run.id, RunStatus.IN_PROGRESS)
    await call(run.cancel)
    started = time.monotonic()
    with pytest.raises(GenerationCancelled):
        await call(run.wait, timeout_s=30)
    assert time.monotonic() - started < 10


async def test_the_sandbox_cancelled_outcome(client: Any) -> None:
    run = await call(client.generate_video, MODEL, "a fox sandbox:cancel", **SMALL)
    with pytest.raises(GenerationCancelled):
        await call(client.wait_for_video, run.id, timeout_s=60)


async def test_a_wait_that_times_out_keeps_its_deadline(client: Any) -> None:
    run = await call(client.generate_video, MODEL, "slow sandbox:queue=60", **SMALL)
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        await call(run.wait, timeout_s=1.5)
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 2.2, elapsed
    assert caught.value.run_id == run.id
    assert caught.value.last_status is not None
    assert caught.value.last_status.status is RunStatus.IN_QUEUE
    assert (await call(run.status)).status is RunStatus.IN_QUEUE  # the run goes on
    await call(run.cancel)


# -- errors ------------------------------------------------------------------------------


async def test_content_policy_refusal_at_submit(client: Any) -> None:
    with pytest.raises(ContentPolicyError) as caught:
        await call(client.generate_video, MODEL, "sandbox:blocked please", **SMALL)
    assert caught.value.status_code == 400
    assert caught.value.error_type == "CONTENT_POLICY_VIOLATION"


async def test_invalid_request(client: Any) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await call(client.generate_video, "no-such-model", "x")
    assert caught.value.status_code == 400


async def test_bad_key_and_another_keys_run(
    make_client: Callable[..., Any], live_server: LiveServer
) -> None:
    owner = make_client()
    run = await call(owner.generate_video, MODEL, "mine sandbox:queue=60", **SMALL)
    stranger = make_client(api_key=live_server.create_key(f"other-{uuid.uuid4().hex[:8]}"))
    with pytest.raises(NotFoundError):
        await call(stranger.get_video_status, run.id)
    with pytest.raises(NotFoundError):
        await call(stranger.cancel, run.id)
    with pytest.raises(NotFoundError):
        await call(stranger.wait_for_video, run.id, timeout_s=5)
    nobody = make_client(api_key="not-a-key")
    with pytest.raises(AuthenticationError) as caught:
        await call(nobody.generate_video, MODEL, "x", **SMALL)
    assert caught.value.status_code == 401
    with pytest.raises(AuthenticationError):
        await call(nobody.wait_for_video, run.id, timeout_s=5)
    await call(owner.cancel, run.id)


async def test_idempotency_key_returns_the_first_run(client: Any) -> None:
    key = f"order-{uuid.uuid4()}"
    first = await call(client.generate_video, MODEL, "once", idempotency_key=key, **SMALL)
    again = await call(client.generate_video, MODEL, "once", idempotency_key=key, **SMALL)
    assert again.id == first.id
    with pytest.raises(InvalidRequestError) as caught:
        await call(client.generate_video, MODEL, "changed", idempotency_key=key, **SMALL)
    assert caught.value.status_code == 409


async def test_a_real_rate_limit_reports_retry_after(
    kind: str, server_factory: Callable[..., LiveServer]
) -> None:
    server = server_factory("[limits]\nsubmits_per_minute = 1\nsubmit_burst = 1\n")
    cls = Client if kind == "sync" else AsyncClient
    limited = cls(server.base_url, server.api_key)
    try:
        await call(limited.generate_video, MODEL, "first", **SMALL)
        with pytest.raises(RateLimitError) as caught:
            await call(limited.generate_video, MODEL, "second", **SMALL)
        assert caught.value.retry_after_s is not None and caught.value.retry_after_s >= 1
        assert caught.value.error_type == "RATE_LIMITED"
    finally:
        await call(limited.close if isinstance(limited, Client) else limited.aclose)


# -- faults between client and server ---------------------------------------------------


NO_ROUTE = Fault(status=404, body={"error": 404, "message": "Not found"})
"""What a server without the status stream answers on its route."""


async def test_wait_follows_the_stream_and_learns_of_completion_at_once(
    proxied: Any, proxy: FaultProxy
) -> None:
    run = await call(proxied.generate_video, MODEL, "a slow fox sandbox:slow=2", **SMALL)
    seen: list[VideoStatus] = []
    done = await call(run.wait, timeout_s=60, on_update=seen.append)
    learned = datetime.now(UTC)
    assert done.completed_at is not None
    assert (learned - done.completed_at).total_seconds() < 1.0
    (poll,) = proxy.requests("status")  # one read, then the server pushes
    assert "waitSeconds" not in poll.query
    (stream,) = proxy.requests("stream")
    assert stream.query == {"requestId": run.id} and stream.answered == "200"
    assert RunStatus.IN_PROGRESS in {s.status for s in seen}


async def test_without_a_stream_the_wait_long_polls(proxied: Any, proxy: FaultProxy) -> None:
    """The server answers a held poll at the run's next event, progress included, and says
    so (``Vidgate-Long-Poll``): the waiter asks again at once and learns of completion as
    it happens, never sleeping a poll interval."""
    proxy.push("stream", NO_ROUTE)  # a server without the stream: the wait long-polls
    run = await call(proxied.generate_video, MODEL, "a slow fox sandbox:slow=2", **SMALL)
    done = await call(run.wait, timeout_s=60)
    learned = datetime.now(UTC)
    assert done.is_completed and done.completed_at is not None
    assert (learned - done.completed_at).total_seconds() < 1.0
    assert len(proxy.requests("stream")) == 1
    first, *later = proxy.requests("status")
    assert "waitSeconds" not in first.query  # the first poll reads the state at once
    assert later and all(1 <= int(p.query["waitSeconds"]) <= 30 for p in later)
    gaps = [b.at - a.at for a, b in itertools.pairwise(later)]
    assert len(later) < 100 and all(gap < 1.5 for gap in gaps), gaps  # no interval sleeps


async def test_429_with_retry_after_is_honoured(proxied: Any, proxy: FaultProxy) -> None:
    run = await call(proxied.generate_video, MODEL, "a limited fox", **SMALL)
    limited = {"error": 429, "message": "slow down"}
    proxy.push("status", Fault(status=429, headers={"Retry-After": "1"}, body=limited))
    done = await call(run.wait, timeout_s=60)
    assert done.is_completed
    polls = proxy.requests("status")
    assert polls[0].answered == "fault 429"
    assert polls[1].at - polls[0].at >= 1.0

    # A single status read honours it too.
    proxy.push("status", Fault(status=429, headers={"Retry-After": "1"}, body=limited))
    started = time.monotonic()
    assert (await call(proxied.get_video_status, run.id)).is_completed
    assert time.monotonic() - started >= 1.0


async def test_429_on_submit(proxied: Any, proxy: FaultProxy) -> None:
    limited = {"error": {"message": "slow down", "type": "RATE_LIMITED"}, "status": 429}
    fault = Fault(status=429, headers={"Retry-After": "1"}, body=limited)
    proxy.push("submit", fault)
    with pytest.raises(RateLimitError) as caught:  # no key: never re-sent
        await call(proxied.generate_video, MODEL, "limited", **SMALL)
    assert caught.value.retry_after_s == 1
    assert len(proxy.requests("submit")) == 1

    proxy.push("submit", fault)
    started = time.monotonic()
    run = await call(
        proxied.generate_video, MODEL, "limited", idempotency_key=str(uuid.uuid4()), **SMALL
    )
    assert time.monotonic() - started >= 1.0
    assert run.id.startswith("vid_")
    assert len(proxy.requests("submit")) == 3


async def test_503s_drops_and_garbage_during_a_wait_are_retried(
    proxied: Any, proxy: FaultProxy
) -> None:
    run = await call(proxied.generate_video, MODEL, "a patient fox sandbox:slow=1", **SMALL)
    proxy.push("status", Fault(status=503))
    proxy.push("status", Fault(status=503, headers={"Retry-After": "0"}))
    proxy.push("status", Fault(kind="drop"))
    proxy.push("status", Fault(kind="malformed"))
    done = await call(run.wait, timeout_s=60)
    assert done.is_completed
    answered = [p.answered for p in proxy.requests("status")]
    assert answered[:4] == ["fault 503", "fault 503", "dropped 200", "fault malformed"]


async def test_503s_on_single_calls(make_client: Callable[..., Any], proxy: FaultProxy) -> None:
    proxied = make_client(proxy.base_url, max_retries=2)
    run = await call(proxied.generate_video, MODEL, "x", **SMALL)
    proxy.push("status", Fault(status=503), times=2)
    assert (await call(proxied.get_video_status, run.id)).run_id == run.id
    proxy.push("models", Fault(kind="drop"))
    assert await call(proxied.list_models)
    proxy.push("status", Fault(status=503), times=3)
    with pytest.raises(APIStatusError) as caught:  # out of retries
        await call(proxied.get_video_status, run.id)
    assert caught.value.status_code == 503
    proxy.push("cancel", Fault(status=503))
    assert (await call(proxied.cancel, run.id)).run_id == run.id


async def test_dropped_submit_without_a_key_is_not_sent_again(
    proxied: Any, proxy: FaultProxy
) -> None:
    proxy.push("submit", Fault(kind="drop"))
    with pytest.raises(APIConnectionError) as caught:
        await call(proxied.generate_video, MODEL, "lost answer", **SMALL)
    assert caught.value.request_sent is True
    (submit,) = proxy.requests("submit")  # exactly one: a retry could start a second run
    assert submit.answered == "dropped 202"


async def test_dropped_submit_with_a_key_is_resent_without_a_second_run(
    proxied: Any, proxy: FaultProxy
) -> None:
    proxy.push("submit", Fault(kind="drop"))
    proxy.push("submit", Fault(status=503))
    key = str(uuid.uuid4())
    run = await call(proxied.generate_video, MODEL, "lost answer", idempotency_key=key, **SMALL)
    first, second, third = proxy.requests("submit")
    assert (first.answered, second.answered, third.answered) == ("dropped 202", "fault 503", "202")
    assert {s.headers["idempotency-key"] for s in (first, second, third)} == {key}
    assert run.id == json.loads(first.body)["runId"]  # the run the lost answer named


async def test_an_unknown_status_does_not_hang(proxied: Any, proxy: FaultProxy) -> None:
    proxy.push("stream", NO_ROUTE)
    run = await call(proxied.generate_video, MODEL, "mystery sandbox:queue=60", **SMALL)
    proxy.push("status", Fault(status=200, body=unknown_status_body(run.id, "expired")), 100)
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        await call(run.wait, timeout_s=1.5, poll_interval_s=0.2)
    assert time.monotonic() - started < 2.2
    last = caught.value.last_status
    assert last is not None and last.raw_status == "expired"
    assert last.status is RunStatus.UNKNOWN
    proxy.faults.clear()
    await call(run.cancel)


async def test_a_dropped_download_is_retried(
    proxied: Any, proxy: FaultProxy, tmp_path: Path
) -> None:
    run = await call(proxied.generate_video, MODEL, "download me", **SMALL)
    done = await call(run.wait, timeout_s=60)
    assert done.video_url.startswith(proxy.base_url)
    proxy.push("download", Fault(kind="drop"))
    proxy.push("download", Fault(status=503))
    path = await call(proxied.download_video, done, tmp_path / "v.mp4")
    assert mp4_frames(path) > 0
    assert [d.answered for d in proxy.requests("download")] == ["dropped 200", "fault 503", "200"]


async def test_a_download_that_keeps_failing_leaves_no_file(
    make_client: Callable[..., Any], proxy: FaultProxy, tmp_path: Path
) -> None:
    proxied = make_client(proxy.base_url, max_retries=1)
    run = await call(proxied.generate_video, MODEL, "download me", **SMALL)
    done = await call(run.wait, timeout_s=60)
    proxy.push("download", Fault(kind="drop"), times=2)
    with pytest.raises(APIConnectionError):
        await call(proxied.download_video, done, tmp_path / "v.mp4")
    assert not list(tmp_path.iterdir())


# -- the status stream ------------------------------------------------------------------


async def test_stream_status_follows_a_run_to_its_end(client: Any) -> None:
    run = await call(client.generate_video, MODEL, "a streamed fox sandbox:slow=1", **SMALL)
    statuses = await collect(client.stream_status(run.id, timeout_s=60))
    assert statuses[-1].is_completed and statuses[-1].video_url
    assert not any(s.is_terminal for s in statuses[:-1])
    assert RunStatus.IN_PROGRESS in {s.status for s in statuses}
    progress = [s.progress for s in statuses if s.progress is not None]
    assert progress == sorted(progress)
    # A finished run's stream is its terminal state alone.
    again = await collect(run.stream(timeout_s=10))
    assert [s.status for s in again] == [RunStatus.COMPLETED]


async def test_a_dropped_stream_resumes_with_last_event_id(proxied: Any, proxy: FaultProxy) -> None:
    run = await call(proxied.generate_video, MODEL, "a dropped fox sandbox:slow=2", **SMALL)
    proxy.push("stream", Fault(kind="drop"))  # broken right after the first event
    statuses = await collect(proxied.stream_status(run.id, timeout_s=60))
    assert statuses[-1].is_completed
    first, *resumed = proxy.requests("stream")
    assert first.answered == "dropped 200" and "last-event-id" not in first.headers
    (sent_id,) = re.findall(r"^id: (\d+)$", first.body, flags=re.MULTILINE)
    assert resumed and resumed[0].headers["last-event-id"] == sent_id
    ids = [int(i) for r in resumed for i in re.findall(r"^id: (\d+)$", r.body, re.MULTILINE)]
    assert ids and min(ids) > int(sent_id)  # nothing sent twice


async def test_a_stream_keeps_its_deadline(client: Any) -> None:
    run = await call(client.generate_video, MODEL, "slow sandbox:queue=60", **SMALL)
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        await collect(client.stream_status(run.id, timeout_s=1.5))
    assert 1.4 <= time.monotonic() - started < 2.2
    assert caught.value.last_status is not None
    assert caught.value.last_status.status is RunStatus.IN_QUEUE
    await call(run.cancel)


async def test_another_keys_stream_is_not_found(
    make_client: Callable[..., Any], live_server: LiveServer
) -> None:
    owner = make_client()
    run = await call(owner.generate_video, MODEL, "mine sandbox:queue=60", **SMALL)
    stranger = make_client(api_key=live_server.create_key(f"other-{uuid.uuid4().hex[:8]}"))
    with pytest.raises(NotFoundError):
        await collect(stranger.stream_status(run.id, timeout_s=5))
    with pytest.raises(AuthenticationError):
        await collect(make_client(api_key="not-a-key").stream_status(run.id, timeout_s=5))
    await call(owner.cancel, run.id)


# -- docs/sdk.md ---------------------------------------------------------------------------


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.DOTALL | re.MULTILINE)


def test_sdk_docs_python_examples_run(live_server: LiveServer, tmp_path: Path) -> None:
    blocks = python_blocks(DOCS.read_text())
    assert len(blocks) >= 4
    env = {
        **os.environ,
        "VIDGATE_BASE_URL": live_server.base_url,
        "VIDGATE_API_KEY": live_server.api_key,
        "PYTHONWARNINGS": "error",
    }
    for number, block in enumerate(blocks, 1):
        result = subprocess.run(
            [sys.executable, "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, (
            f"docs/sdk.md python block {number}:\n{block}\n{result.stderr}"
        )
