"""Following a run's status stream: the reconnect and deadline rules with a fake clock, and
both clients over in-memory transports (no sockets): resuming with ``Last-Event-ID``,
falling back to long-poll where the server offers no stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from vidgate import (
    APIConnectionError,
    APIStatusError,
    AsyncClient,
    AuthenticationError,
    Client,
    GenerationFailed,
    NotFoundError,
    RateLimitError,
    RunStatus,
    UnexpectedResponseError,
    VideoStatus,
    WaitTimeout,
)
from vidgate.client._parse import normalise_status
from vidgate.client._retry import Backoff
from vidgate.client._stream import (
    CUT_SLACK_S,
    READ_TIMEOUT_S,
    NotAnEventStream,
    Streamer,
    offers_no_stream,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def st(status: str) -> VideoStatus:
    return VideoStatus("vid_x", normalise_status(status), status)


def make_streamer(clock: FakeClock, timeout_s: float = 600) -> Streamer:
    return Streamer(
        "vid_x",
        timeout_s=timeout_s,
        request_timeout_s=10,
        backoff=Backoff(base_s=0.5, cap_s=10),
        clock=clock,
        rand=lambda: 0.5,
    )


# -- the rules ---------------------------------------------------------------------------


def test_connections_resume_after_the_last_event_read() -> None:
    streamer = make_streamer(FakeClock())
    first = streamer.next_connection()
    assert first.last_event_id is None
    assert (first.timeout_s, first.read_timeout_s) == (10, READ_TIMEOUT_S)
    events = streamer.feed(b'retry: 250\nid: 3\ndata: {"status": "IN_QUEUE"}\n\n: keep-alive\n\n')
    assert [e.id for e in events] == ["3"]
    assert streamer.retry_s == 0.25
    assert streamer.on_status(st("IN_QUEUE"), "3") is False
    assert streamer.on_end() == 0.25  # a connection that brought news: the server's retry
    assert streamer.next_connection().last_event_id == "3"
    assert streamer.on_status(st("COMPLETED"), "4") is True


def test_an_unread_event_is_not_skipped_on_reconnect() -> None:
    streamer = make_streamer(FakeClock())
    streamer.next_connection()
    streamer.feed(b"id: 9\ndata: not json\n\n")  # the client could not read it
    assert streamer.on_error(UnexpectedResponseError()) == pytest.approx(0.375)
    assert streamer.next_connection().last_event_id is None  # asked for again


def test_failures_back_off_and_news_resets_them() -> None:
    streamer = make_streamer(FakeClock())
    streamer.next_connection()
    assert streamer.on_error(APIConnectionError("reset")) == pytest.approx(0.375)
    streamer.next_connection()
    assert streamer.on_error(APIStatusError(status_code=503)) == pytest.approx(0.75)
    streamer.next_connection()
    assert streamer.on_end() == pytest.approx(1.5)  # closed at once, nothing new
    streamer.next_connection()
    assert streamer.on_error(RateLimitError(status_code=429, retry_after_s=7)) == 7
    streamer.next_connection()
    streamer.on_status(st("IN_PROGRESS"), "1")
    assert streamer.on_error(APIConnectionError("reset")) == 0  # news, then a drop
    streamer.next_connection()
    streamer.on_status(st("IN_PROGRESS"), "1")  # the same event again is no news
    assert streamer.on_error(APIConnectionError("reset")) == pytest.approx(0.375)


def test_the_servers_retry_is_a_floor_for_backoff() -> None:
    streamer = make_streamer(FakeClock())
    streamer.next_connection()
    streamer.feed(b"retry: 3000\n\n")
    assert streamer.on_error(APIConnectionError("reset")) == 3
    streamer.next_connection()
    streamer.feed(b"retry: 100\n\n")
    assert streamer.on_error(APIConnectionError("reset")) == pytest.approx(0.75)


def test_errors_that_end_the_stream() -> None:
    streamer = make_streamer(FakeClock())
    streamer.next_connection()
    assert streamer.on_error(NotFoundError(status_code=404)) is None
    assert streamer.on_error(AuthenticationError(status_code=401)) is None
    assert streamer.on_error(NotAnEventStream()) is None
    assert streamer.on_error(WaitTimeout("vid_x", 1, None)) is None


def test_what_means_no_stream_is_offered() -> None:
    assert offers_no_stream(NotFoundError(status_code=404))
    assert offers_no_stream(APIStatusError(status_code=405))
    assert offers_no_stream(NotAnEventStream())
    assert not offers_no_stream(AuthenticationError(status_code=401))
    assert not offers_no_stream(APIStatusError(status_code=503))
    assert not offers_no_stream(UnexpectedResponseError())


def test_the_deadline_holds() -> None:
    clock = FakeClock()
    streamer = make_streamer(clock, timeout_s=5)
    step = streamer.next_connection()
    assert step.timeout_s == 5 and step.read_timeout_s == 5
    streamer.on_status(st("IN_QUEUE"), "1")
    clock.advance(4)
    limited = RateLimitError(status_code=429, retry_after_s=30)
    assert streamer.on_error(limited) == 1  # cut to the time left
    clock.advance(1)
    with pytest.raises(WaitTimeout) as caught:
        streamer.next_connection()
    assert caught.value.__cause__ is limited
    assert caught.value.last_status == st("IN_QUEUE")
    assert "within 5 s" in str(caught.value)


def test_a_connection_that_could_block_past_the_deadline_is_cut() -> None:
    clock = FakeClock()
    streamer = make_streamer(clock, timeout_s=100)
    assert streamer.next_connection().read_timeout_s == READ_TIMEOUT_S
    clock.advance(50)  # 50 s left: a read of up to 45 s ends in time
    assert streamer.cut() is False
    clock.advance(10)  # 40 s left: it could end 5 s late
    assert streamer.cut() is True
    assert streamer.on_end() == 0  # a cut is no failure: the next connection opens at once
    assert streamer.failures == 0
    assert streamer.next_connection().read_timeout_s == 40
    clock.advance(CUT_SLACK_S / 2)
    assert streamer.cut() is False  # late by less than the slack
    clock.advance(40)
    with pytest.raises(WaitTimeout):
        streamer.cut()


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="run_id"):
        Streamer("", timeout_s=1, request_timeout_s=1)
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="timeout_s"):
            Streamer("vid_x", timeout_s=bad, request_timeout_s=1)


# -- both clients over in-memory transports -----------------------------------------------


def status_body(status: str, **extra: Any) -> dict[str, Any]:
    return {"requestId": "vid_x", "status": status, "data": {"status": status}, **extra}


def event(seq: int, status: str, **extra: Any) -> bytes:
    return f"id: {seq}\ndata: {json.dumps(status_body(status, **extra))}\n\n".encode()


class Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that sends ``chunks``, then breaks when ``broken``."""

    def __init__(self, chunks: list[bytes], broken: bool = False) -> None:
        self.chunks = chunks
        self.broken = broken

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.broken:
            raise httpx.ReadError("connection reset by peer")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.broken:
            raise httpx.ReadError("connection reset by peer")


class Server:
    """The status routes of a server: ``streams`` scripts the stream route's answers."""

    def __init__(self, streams: list[httpx.Response], status: str = "IN_QUEUE") -> None:
        self.streams = streams
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/api/video/status/stream":
            return self.streams.pop(0)
        if request.url.path == "/api/video/status":
            return httpx.Response(200, json=status_body(self.status))
        return httpx.Response(404, json={"error": 404, "message": "Not found"})

    def paths(self) -> list[str]:
        return [r.url.path.rsplit("/", 1)[-1] for r in self.requests]


def sse(chunks: list[bytes], broken: bool = False) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, stream=Body(chunks, broken)
    )


@pytest.fixture(params=["sync", "async"])
def make(request: pytest.FixtureRequest) -> Callable[[Server], Any]:
    def build(server: Server) -> Any:
        cls = Client if request.param == "sync" else AsyncClient
        return cls("http://vidgate.test", "key", transport=httpx.MockTransport(server))

    return build


async def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    result = fn(*args, **kwargs)
    return await result if hasattr(result, "__await__") else result


async def collect(client: Any, run_id: str, **kwargs: Any) -> list[VideoStatus]:
    statuses = client.stream_status(run_id, **kwargs)
    if isinstance(client, Client):
        return list(statuses)
    return [s async for s in statuses]


async def test_a_broken_stream_resumes_from_the_last_event(make: Callable[[Server], Any]) -> None:
    server = Server(
        [
            sse([b"retry: 0\n", event(1, "IN_QUEUE"), event(2, "IN_PROGRESS", progress=40)], True),
            httpx.Response(503, json={"error": "busy"}),
            sse([b": keep-alive\n\n", event(3, "COMPLETED", progress=100)]),
        ]
    )
    client = make(server)
    statuses = await collect(client, "vid_x", timeout_s=30)
    assert [s.status for s in statuses] == [
        RunStatus.IN_QUEUE,
        RunStatus.IN_PROGRESS,
        RunStatus.COMPLETED,
    ]
    assert statuses[1].progress == 40
    streams = [r for r in server.requests if r.url.path.endswith("/stream")]
    assert [r.headers.get("last-event-id") for r in streams] == [None, "2", "2"]
    assert all(r.url.params["requestId"] == "vid_x" for r in streams)
    assert all(r.headers["accept"] == "text/event-stream" for r in streams)
    assert streams[0].headers["x-api-key"] == "key"


async def test_errors_before_the_stream_are_raised(make: Callable[[Server], Any]) -> None:
    server = Server([httpx.Response(404, json={"error": 404, "message": "Request not found"})])
    with pytest.raises(NotFoundError):
        await collect(make(server), "vid_x")
    server = Server([httpx.Response(401, json={"error": "Invalid API key"})])
    with pytest.raises(AuthenticationError):
        await collect(make(server), "vid_x")
    server = Server([httpx.Response(200, json=status_body("IN_QUEUE"))])
    with pytest.raises(NotAnEventStream):
        await collect(make(server), "vid_x")


async def test_wait_reads_once_then_follows_the_stream(make: Callable[[Server], Any]) -> None:
    server = Server([sse([event(1, "IN_QUEUE"), event(2, "FAILED", error="boom")])])
    client = make(server)
    seen: list[VideoStatus] = []
    with pytest.raises(GenerationFailed) as caught:
        await run(client.wait_for_video, "vid_x", timeout_s=30, on_update=seen.append)
    assert caught.value.error == "boom"
    assert server.paths() == ["status", "stream"]
    assert [s.status for s in seen] == [RunStatus.IN_QUEUE, RunStatus.IN_QUEUE, RunStatus.FAILED]


@pytest.mark.parametrize(
    ("code", "body"),
    [
        (404, {"error": 404, "message": "Not found"}),
        (405, {"error": "Method Not Allowed"}),
        (200, status_body("IN_QUEUE")),
    ],
)
async def test_wait_long_polls_where_no_stream_is_offered(
    make: Callable[[Server], Any], code: int, body: dict[str, Any]
) -> None:
    server = Server([httpx.Response(code, json=body)])
    client = make(server)

    def complete(status: VideoStatus) -> None:
        server.status = "COMPLETED"  # the next poll finds the run done

    done = await run(client.wait_for_video, "vid_x", timeout_s=30, on_update=complete)
    assert done.is_completed
    assert server.paths() == ["status", "stream", "status"]
    assert "waitSeconds" in server.requests[-1].url.params  # a long-poll, not a timer
    # The client remembers: the next wait does not ask for a stream again.
    server.status = "IN_QUEUE"
    again = await run(client.wait_for_video, "vid_x", timeout_s=30, on_update=complete)
    assert again.is_completed
    assert server.paths()[3:] == ["status", "status"]


async def test_a_terminal_first_read_needs_no_stream(make: Callable[[Server], Any]) -> None:
    server = Server([], status="COMPLETED")
    assert (await run(make(server).wait_for_video, "vid_x", timeout_s=30)).is_completed
    assert server.paths() == ["status"]
