"""Run events between processes: an API without a worker hears of the changes a separate
``vidgate worker`` makes, on a shared SQLite file and on PostgreSQL (two API processes)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.api_helpers import submit_ok
from tests.servers import TEST_CONFIG, VIDGATE, LiveServer, free_port, run_cli, spawn
from tests.sse import read_events


@contextlib.contextmanager
def worker_process(
    server: LiveServer, log: Path, extra_args: Sequence[str] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = spawn(
            [
                *VIDGATE,
                "worker",
                "--data-dir",
                str(server.data_dir),
                "--config",
                str(server.config),
                *extra_args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server.env,
        )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def long_poll_to_the_end(server: LiveServer, run_id: str) -> list[tuple[str, float]]:
    """Held polls until COMPLETED; each answer must carry news (none waits out its hold)."""
    seen: list[tuple[str, float]] = []
    for _ in range(200):
        response = httpx.get(
            f"{server.base_url}/api/video/status",
            params={"requestId": run_id, "waitSeconds": 50},
            headers=server.headers(),
            timeout=60,
        )
        body = response.json()
        state = (body["status"], body["progress"] or 0)
        assert not seen or state != seen[-1], seen  # answered because something changed
        seen.append(state)
        if body["status"] == "completed":
            return seen
    raise AssertionError(seen)


def stream_to_the_end(server: LiveServer, run_id: str) -> list[str]:
    with httpx.stream(
        "GET",
        f"{server.base_url}/api/video/status/stream",
        params={"requestId": run_id},
        headers=server.headers(),
        timeout=60,
    ) as response:
        return [e.data["status"] for e in read_events(response) if e.data]


def test_api_hears_a_separate_worker_on_sqlite(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", TEST_CONFIG, extra_args=["--no-worker"])
    server.api_key = server.create_key("test")
    server.start()
    port = free_port()
    try:
        with worker_process(server, tmp_path / "worker.log", ["--metrics-port", str(port)]):
            run_id = submit_ok(server, "sandbox:slow=1 across processes")
            states = long_poll_to_the_end(server, run_id)
            assert states[-1] == ("completed", 100)
            other = submit_ok(server, "sandbox:slow=1 streamed across processes")
            statuses = stream_to_the_end(server, other)
            assert statuses[-1] == "completed" and "processing" in statuses
            # Each process counts what it committed, and is scraped on its own.
            worker = _samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10))
            api = _samples(httpx.get(f"{server.base_url}/metrics", timeout=10))
    finally:
        server.stop()
    finished = ("vidgate_runs_finished_total", "testcard-video", "COMPLETED")
    assert worker.get(finished) == 2 and finished not in api
    submitted = ("vidgate_runs_submitted_total", "testcard-video", None)
    assert api.get(submitted) == 2 and submitted not in worker
    assert ("vidgate_runs_queued", None, None) in api
    assert ("vidgate_runs_queued", None, None) not in worker  # the API tells the system's


def _samples(response: httpx.Response) -> dict[tuple[str, str | None, str | None], float]:
    assert response.status_code == 200, response.text
    return {
        (s.name, s.labels.get("model"), s.labels.get("status")): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_two_api_processes_and_a_worker_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    env = {"VIDGATE_DATABASE_URL": postgres_url}
    servers = [
        LiveServer(tmp_path / f"api{i}", TEST_CONFIG, extra_args=["--no-worker"], env=env)
        for i in range(2)
    ]
    shared_dir = servers[0].data_dir
    for server in servers:  # one data dir (the URL-signing secret), two processes
        server.data_dir = shared_dir
    key = (
        run_cli(
            ["keys", "create", "pg-events"], data_dir=shared_dir, config=servers[0].config, env=env
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    for server in servers:
        server.api_key = key
        server.start()
    try:
        with worker_process(servers[0], tmp_path / "worker.log"):
            submitter, waiter = servers
            run_id = submit_ok(submitter, "sandbox:slow=1 submitted on one, awaited on the other")
            states = long_poll_to_the_end(waiter, run_id)
            assert states[-1] == ("completed", 100)
            other = submit_ok(submitter, "sandbox:slow=1 streamed on the other")
            statuses = stream_to_the_end(waiter, other)
            assert statuses[-1] == "completed" and "processing" in statuses
    finally:
        for server in servers:
            server.stop()
