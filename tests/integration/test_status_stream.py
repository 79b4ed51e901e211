"""The run's event stream: ``GET /api/video/status/stream`` over real HTTP."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator

import httpx

from tests.api_helpers import assert_status_error, submit_ok, wait_terminal
from tests.servers import TEST_CONFIG, LiveServer
from tests.sse import Event, read_events

ORDER = ["queued", "processing", "completed"]


@contextlib.contextmanager
def stream(server: LiveServer, run_id: str, **headers: str) -> Iterator[httpx.Response]:
    with httpx.stream(
        "GET",
        f"{server.base_url}/api/video/status/stream",
        params={"requestId": run_id},
        headers={**server.headers(), **headers},
        timeout=30,
    ) as response:
        yield response


def test_a_stream_follows_the_run_to_its_end(live_server: LiveServer) -> None:
    run_id = submit_ok(live_server, "sandbox:queue=1 sandbox:slow=1 follow me")
    with stream(live_server, run_id) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [e for e in read_events(response) if e.data is not None]
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)), ids  # each state once, in order
    statuses = [e.data["status"] for e in events if e.data]
    assert statuses[0] == "queued" and statuses[-1] == "completed", statuses
    assert events[-1].data and events[-1].data["videoUrl"]
    assert any(e.data and 0 < (e.data["progress"] or 0) < 100 for e in events)  # progress too


def test_a_cut_stream_resumes_with_last_event_id_and_sees_each_change_once(
    live_server: LiveServer,
) -> None:
    run_id = submit_ok(live_server, "sandbox:slow=2 cut me off")
    first: list[Event] = []
    with stream(live_server, run_id) as response:
        for item in read_events(response):
            if item.data is not None:
                first.append(item)
                if item.data["status"] == "processing" and (item.data["progress"] or 0) > 0:
                    break  # the client drops the connection mid-run
    assert first, "no event before the cut"
    last_id = first[-1].id
    second: list[Event] = []
    with stream(live_server, run_id, **{"Last-Event-ID": str(last_id)}) as response:
        second = [e for e in read_events(response) if e.data is not None]
    events = first + second
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)), ids  # nothing twice, nothing out of order
    statuses = [
        status for status, _ in itertools.groupby(e.data["status"] for e in events if e.data)
    ]
    assert statuses[-1] == "completed", statuses
    assert statuses == [s for s in ORDER if s in statuses], statuses  # each change once
    # Resuming at the end of a finished run has nothing more to tell: 204, which tells a
    # browser's EventSource to stop reconnecting.
    with stream(live_server, run_id, **{"Last-Event-ID": str(ids[-1])}) as response:
        assert response.status_code == 204
        assert [e for e in read_events(response) if e.data is not None] == []


def test_a_stale_or_foreign_last_event_id_gets_the_current_state(live_server: LiveServer) -> None:
    run_id = submit_ok(live_server, "done before we look")
    final = wait_terminal(live_server, run_id)
    for header in ("0", "999999", "not-a-number"):
        with stream(live_server, run_id, **{"Last-Event-ID": header}) as response:
            events = [e for e in read_events(response) if e.data is not None]
        assert [e.data["status"] for e in events if e.data] == ["completed"], header
        assert events[0].data and events[0].data["data"]["status"] == final["status"]


def test_heartbeats_keep_an_idle_stream_open(server_factory: Callable[..., LiveServer]) -> None:
    server = server_factory(TEST_CONFIG + "\n[server]\nsse_heartbeat_s = 0.3\n")
    run_id = submit_ok(server, "sandbox:queue=30 wait in line")
    comments = 0
    with stream(server, run_id) as response:
        for item in read_events(response):
            if item.comment == "keep-alive":
                comments += 1
                if comments == 2:
                    break
    assert comments == 2
    httpx.post(
        f"{server.base_url}/api/generate-video/cancel",
        json={"runId": run_id},
        headers=server.headers(),
    )


def test_another_keys_run_and_bad_requests_are_refused(live_server: LiveServer) -> None:
    run_id = submit_ok(live_server, "mine")
    other = live_server.create_key("stream-other")
    url = f"{live_server.base_url}/api/video/status/stream"
    response = httpx.get(url, params={"requestId": run_id}, headers={"x-api-key": other})
    assert_status_error(response, 404)
    response = httpx.get(url, params={"runId": "vid_missing"}, headers=live_server.headers())
    assert_status_error(response, 404)
    assert_status_error(httpx.get(url, headers=live_server.headers()), 400)
    assert_status_error(httpx.get(url, params={"requestId": run_id}), 401)
    # runId is accepted as well as requestId
    ok = httpx.get(url, params={"runId": run_id}, headers=live_server.headers(), timeout=30)
    assert ok.status_code == 200 and "data:" in ok.text


def test_the_stream_is_documented(live_server: LiveServer) -> None:
    spec = httpx.get(f"{live_server.base_url}/openapi.json").json()
    operation = spec["paths"]["/api/video/status/stream"]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert {p["name"] for p in operation["parameters"]} >= {"requestId", "runId", "Last-Event-ID"}
