"""``stream_status``, ``Run.stream``, ``wait_for_video`` and ``vidgate watch`` against a server
that speaks the status stream's wire format, over real loopback HTTP
(``tests.emulators.status_stream``); every SDK call on ``Client`` and ``AsyncClient``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from tests.client_helpers import call, collect
from tests.emulators.harness import Fault, LoopbackServer
from tests.emulators.status_stream import KEY, OTHER_KEY, StreamState, create_app
from vidgate import (
    AsyncClient,
    AuthenticationError,
    Client,
    GenerationFailed,
    NotFoundError,
    RunStatus,
    VideoStatus,
    WaitTimeout,
)

QUEUED = {"status": "IN_QUEUE", "queuePosition": 0}
RUNNING = {"status": "IN_PROGRESS", "progress": 50}
DONE = {"status": "COMPLETED", "progress": 100, "videoUrl": "/files/vid_a.mp4"}
FAILED = {"status": "FAILED", "error": "boom", "userFriendlyError": "Try again."}


@pytest.fixture
def state() -> StreamState:
    return StreamState(keepalive_s=0.05)


@pytest.fixture
def server(state: StreamState) -> Iterator[LoopbackServer]:
    with LoopbackServer(create_app(state)) as running:
        yield running


@pytest.fixture(params=["sync", "async"])
async def make_client(
    request: pytest.FixtureRequest, server: LoopbackServer
) -> AsyncIterator[Callable[..., Any]]:
    made: list[Any] = []

    def make(api_key: str = KEY, **kwargs: Any) -> Any:
        cls = Client if request.param == "sync" else AsyncClient
        client = cls(server.base_url, api_key, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await call(client.close if isinstance(client, Client) else client.aclose)


@pytest.fixture
def client(make_client: Callable[..., Any]) -> Any:
    return make_client()


def timeline(*states: dict[str, Any], step_s: float = 0.2) -> list[tuple[float, dict[str, Any]]]:
    return [(i * step_s, s) for i, s in enumerate(states)]


async def test_a_run_is_followed_to_its_end(client: Any, state: StreamState) -> None:
    state.add("vid_a", *timeline(QUEUED, RUNNING, DONE))
    started = time.monotonic()
    statuses = await collect(client.stream_status("vid_a", timeout_s=10))
    assert time.monotonic() - started < 2
    assert [s.status for s in statuses] == [
        RunStatus.IN_QUEUE,
        RunStatus.IN_PROGRESS,
        RunStatus.COMPLETED,
    ]
    assert statuses[1].progress == 50
    assert statuses[-1].video_url == f"{client.base_url}/files/vid_a.mp4"
    ((headers, query),) = state.requests("stream")
    assert query == {"requestId": "vid_a"}
    assert headers["x-api-key"] == KEY and headers["authorization"] == f"Bearer {KEY}"
    assert headers["accept"] == "text/event-stream"
    assert "last-event-id" not in headers
    # The handle streams the same.
    again = await collect(client.run("vid_a").stream(timeout_s=10))
    assert [s.status for s in again] == [RunStatus.COMPLETED]


async def test_a_dropped_connection_resumes_from_the_last_event(
    client: Any, state: StreamState
) -> None:
    state.add("vid_a", *timeline(QUEUED, RUNNING, DONE, step_s=0.3))
    state.drop_after["vid_a"] = {2}  # the first connection breaks after the second state
    state.faults.push("stream", Fault(kind="delay", delay_s=0))  # the first answers normally
    state.faults.push("stream", Fault(status=503))  # the first reconnect meets a 503
    statuses = await collect(client.stream_status("vid_a", timeout_s=10))
    # No state is seen twice or lost.
    assert [s.status for s in statuses] == [
        RunStatus.IN_QUEUE,
        RunStatus.IN_PROGRESS,
        RunStatus.COMPLETED,
    ]
    resumes = [headers.get("last-event-id") for headers, _ in state.requests("stream")]
    assert resumes == [None, "2", "2"]


async def test_the_deadline_ends_a_stream_that_keeps_talking(
    client: Any, state: StreamState
) -> None:
    state.add("vid_a", (0, QUEUED))  # queued for ever; keep-alives every 50 ms
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        await collect(client.stream_status("vid_a", timeout_s=1.5))
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 2.0, elapsed
    assert caught.value.last_status is not None
    assert caught.value.last_status.status is RunStatus.IN_QUEUE
    # Connections were cut to fit the deadline and resumed where they were.
    resumes = [headers.get("last-event-id") for headers, _ in state.requests("stream")]
    assert resumes[0] is None and len(resumes) >= 2 and set(resumes[1:]) == {"1"}


async def test_the_deadline_ends_a_silent_stream(client: Any, state: StreamState) -> None:
    state.keepalive_s = 3600
    state.add("vid_a", (0, QUEUED))
    started = time.monotonic()
    with pytest.raises(WaitTimeout):
        await collect(client.stream_status("vid_a", timeout_s=1.5))
    assert 1.4 <= time.monotonic() - started < 2.0


async def test_another_keys_run_an_unknown_run_and_a_bad_key(
    make_client: Callable[..., Any], state: StreamState
) -> None:
    state.add("vid_a", (0, QUEUED))
    with pytest.raises(NotFoundError):
        await collect(make_client(OTHER_KEY).stream_status("vid_a", timeout_s=5))
    with pytest.raises(NotFoundError):
        await collect(make_client().stream_status("vid_nope", timeout_s=5))
    with pytest.raises(AuthenticationError):
        await collect(make_client("not-a-key").stream_status("vid_a", timeout_s=5))
    with pytest.raises(NotFoundError):
        await call(make_client(OTHER_KEY).wait_for_video, "vid_a", timeout_s=5)
    assert len(state.requests("stream")) == 3  # no retries of answers that will not change


async def test_wait_follows_the_stream(client: Any, state: StreamState) -> None:
    state.add("vid_a", *timeline(QUEUED, RUNNING, DONE))
    seen: list[VideoStatus] = []
    done = await call(client.wait_for_video, "vid_a", timeout_s=10, on_update=seen.append)
    assert done.is_completed and seen[-1] is done
    assert RunStatus.IN_PROGRESS in [s.status for s in seen]
    assert len(state.requests("status")) == 1  # read once, then pushed
    assert len(state.requests("stream")) == 1

    state.add("vid_f", *timeline(QUEUED, FAILED))
    with pytest.raises(GenerationFailed) as caught:
        await call(client.run("vid_f").wait, timeout_s=10)
    assert caught.value.user_friendly_error == "Try again."


async def test_wait_long_polls_where_no_stream_is_offered(client: Any, state: StreamState) -> None:
    state.offers_stream = False
    state.add("vid_a", *timeline(QUEUED, RUNNING, DONE, step_s=0.4))
    done = await call(client.wait_for_video, "vid_a", timeout_s=10)
    assert done.is_completed
    assert len(state.requests("stream")) == 1
    first, *later = state.requests("status")
    assert "waitSeconds" not in first[1]
    assert later and all(int(query["waitSeconds"]) > 0 for _, query in later)


# -- vidgate watch -----------------------------------------------------------------------


def watch(server: LoopbackServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vidgate.client.cli", "watch", *args],
        env={"VIDGATE_BASE_URL": server.base_url, "VIDGATE_API_KEY": KEY, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_watch_prints_one_json_line_per_state(server: LoopbackServer, state: StreamState) -> None:
    state.add("vid_a", *timeline(QUEUED, RUNNING, DONE))
    result = watch(server, "vid_a", "--json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["status"] for line in lines] == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    assert lines[-1]["video_url"] == f"{server.base_url}/files/vid_a.mp4"


def test_watch_exit_codes(server: LoopbackServer, state: StreamState) -> None:
    state.add("vid_f", *timeline(QUEUED, FAILED))
    state.add("vid_q", (0, QUEUED))
    failed = watch(server, "vid_f")
    assert failed.returncode == 4
    assert "Try again." in failed.stderr
    assert "vid_f IN_QUEUE" in failed.stderr  # progress lines on stderr when not a terminal
    timed_out = watch(server, "vid_q", "--timeout", "0.5", "--json")
    assert timed_out.returncode == 6
    *events, error = [json.loads(line) for line in timed_out.stdout.splitlines()]
    assert [e["status"] for e in events] == ["IN_QUEUE"]
    assert error["error"]["exit_code"] == 6
    assert watch(server, "vid_nope").returncode == 7
