"""Cancel: queued runs never start, rendering runs stop within a second, terminal runs stay."""

from __future__ import annotations

import random
import threading
import time

import httpx

from tests.api_helpers import SMALL, status, submit, submit_ok, wait_for, wait_terminal
from tests.servers import LiveServer, child_processes


def cancel(server: LiveServer, run_id: str) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/api/generate-video/cancel",
        json={"runId": run_id},
        headers=server.headers(),
        timeout=30,
    )


def render_processes(server: LiveServer) -> list[int]:
    """PIDs of testcard render subprocesses started by this server."""
    assert server.process is not None
    return child_processes(server.process.pid, "testcard_render")


def test_cancel_a_queued_run_it_never_starts(live_server: LiveServer) -> None:
    run_id = submit_ok(live_server, "sandbox:queue=1 queued")
    response = cancel(live_server, run_id)
    assert response.status_code == 200
    body = response.json()
    # The cancel answer is the unified route's body: one L in the nested status.
    assert body["status"] == "cancelled" and body["data"]["status"] == "CANCELED"
    time.sleep(2)  # past the queue delay: a worker would have claimed it by now
    data = status(live_server, run_id)
    assert data["status"] == "CANCELLED"
    assert "startedAt" not in data and "output" not in data


def test_cancel_a_rendering_run_stops_it_within_a_second(live_server: LiveServer) -> None:
    run_id = submit_ok(live_server, "sandbox:slow=30 long render")
    wait_for(live_server, run_id, {"IN_PROGRESS"})
    deadline = time.monotonic() + 10
    while not render_processes(live_server):
        assert time.monotonic() < deadline, "the render never started"
        time.sleep(0.05)
    started = time.monotonic()
    response = cancel(live_server, run_id)
    assert response.json()["data"]["status"] == "CANCELED"
    while render_processes(live_server):
        assert time.monotonic() - started < 1.0, "render still running 1 s after cancel"
        time.sleep(0.02)
    time.sleep(0.5)
    data = status(live_server, run_id)
    assert data["status"] == "CANCELLED" and "output" not in data


def test_cancel_a_completed_run_changes_nothing(live_server: LiveServer) -> None:
    run_id = submit_ok(live_server, "done")
    before = wait_terminal(live_server, run_id)
    assert before["status"] == "COMPLETED"
    response = cancel(live_server, run_id)
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    after = status(live_server, run_id)
    assert after["status"] == "COMPLETED"
    assert httpx.get(after["output"]["video"]["url"]).status_code == 200


def test_cancel_racing_completion_ends_in_exactly_one_terminal_status(
    live_server: LiveServer,
) -> None:
    """Cancels fired around the moment runs finish: whatever the cancel call answered is the
    status the run keeps, and a cancelled run never exposes a video."""
    rng = random.Random(1234)
    runs = [submit_ok(live_server, f"race {i}") for i in range(12)]
    answers: dict[str, str] = {}

    def fire(run_id: str, delay: float) -> None:
        time.sleep(delay)
        answers[run_id] = cancel(live_server, run_id).json()["status"]  # flat: lower case

    threads = [threading.Thread(target=fire, args=(r, rng.uniform(0.2, 2.5))) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcomes = set()
    for run_id in runs:
        final = wait_terminal(live_server, run_id)
        outcomes.add(final["status"])
        assert answers[run_id] in ("cancelled", "completed"), answers[run_id]
        assert final["status"] == answers[run_id].upper(), (run_id, answers[run_id], final)
        for _ in range(3):  # terminal means terminal
            assert status(live_server, run_id)["status"] == final["status"]
        assert ("output" in final) == (final["status"] == "COMPLETED")
    assert outcomes <= {"CANCELLED", "COMPLETED"}, outcomes


def test_sandbox_cancel_outcome(live_server: LiveServer) -> None:
    response = submit(live_server, {"model": "testcard-video", "prompt": "sandbox:cancel", **SMALL})
    final = wait_terminal(live_server, response.json()["runId"])
    assert final["status"] == "CANCELLED"
