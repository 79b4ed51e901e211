"""SIGKILL with runs in flight at several providers: after a restart every run completes, and
every provider saw exactly one submit per run (the poller resumes, it never resubmits)."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.api_helpers import decode_mp4, status, wait_terminal
from tests.providers import all_cases, emulators_running, provider_env, vidgate_config
from tests.servers import LiveServer

RUNS_PER_PROVIDER = 3


@pytest.mark.serial  # under load its jobs may finish before the kill
def test_sigkill_with_provider_jobs_in_flight(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cases = [c for c in all_cases() if c.name != "runway"] + [
        c for c in all_cases() if c.name == "runway"
    ]
    with emulators_running(cases):
        for case in cases:
            case.state.queue_s, case.state.run_s = 4.0, 1.0  # still running at the kill
        server = LiveServer(tmp_path / "data", vidgate_config(cases), env=provider_env(cases))
        server.api_key = server.create_key("crash")
        server.start()
        runs: dict[str, str] = {}  # run id -> model
        try:
            for case in cases:
                for i in range(RUNS_PER_PROVIDER):
                    response = httpx.post(
                        f"{server.base_url}/api/generate-video",
                        headers=server.headers(),
                        json={"model": case.model, "prompt": f"crash {i}", "duration": 5},
                    )
                    assert response.status_code == 202, response.text
                    runs[response.json()["runId"]] = case.model
            # Kill once every run has its provider job recorded (request_id is the provider's).
            deadline = time.monotonic() + 30
            while any(status(server, r, model=m)["request_id"] == r for r, m in runs.items()):
                assert time.monotonic() < deadline, "runs were not all submitted"
                time.sleep(0.05)
            unfinished = [
                r for r, m in runs.items() if status(server, r, model=m)["status"] != "COMPLETED"
            ]
            assert len(unfinished) == len(runs), "kill came too late to test anything"
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)
        finally:
            server.kill()

        server.start()
        try:
            for run_id, model in runs.items():
                final = wait_terminal(server, run_id, timeout=120, model=model)
                assert final["status"] == "COMPLETED", (model, final)
                video = httpx.get(final["output"]["video"]["url"])  # type: ignore[index]
                assert decode_mp4(video.content).frames > 0
        finally:
            server.stop()
        for case in cases:
            assert case.state.submits == RUNS_PER_PROVIDER, (case.name, case.state.submits)
