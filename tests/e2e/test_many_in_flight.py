"""2,000 provider jobs in flight at once, followed to completion by one worker process.

The API runs as ``vidgate serve --no-worker`` and a single ``vidgate worker`` process does all
the provider work, so the test also covers the split deployment.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter

import httpx
import pytest

from tests.providers import all_cases, emulators_running, provider_env, vidgate_config
from tests.servers import VIDGATE, LiveServer, spawn

RUNS = 2000


async def _statuses(server: LiveServer, run_ids: list[str]) -> Counter[str]:
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=server.headers(), timeout=60
    ) as client:
        gate = asyncio.Semaphore(16)

        async def one(run_id: str) -> str:
            async with gate:
                response = await client.get("/api/video/status", params={"runId": run_id})
            return str(response.json()["status"])

        return Counter(await asyncio.gather(*(one(run_id) for run_id in run_ids)))


QUEUE_S = 45.0  # long enough that every job is in flight before the first one finishes


async def _submit_all(server: LiveServer, model: str) -> list[str]:
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=server.headers(), limits=limits, timeout=60
    ) as client:
        gate = asyncio.Semaphore(16)

        async def one(i: int) -> str:
            async with gate:
                response = await client.post(
                    "/api/generate-video", json={"model": model, "prompt": f"job {i}"}
                )
                assert response.status_code == 202, response.text
                return str(response.json()["runId"])

        return await asyncio.gather(*(one(i) for i in range(RUNS)))


@pytest.mark.serial  # every job must be created before the first finishes
@pytest.mark.timeout(900)
def test_one_worker_follows_2000_concurrent_provider_jobs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cases = [c for c in all_cases() if c.name == "fal"]
    with emulators_running(cases) as (fal,):
        fal.state.queue_s, fal.state.run_s = QUEUE_S, 1.0
        config = vidgate_config(cases, poll_s=8.0, timeout_s=30.0, extra="\n").replace(
            "lease_s = 5", "lease_s = 30"
        )
        config = config.replace("[worker]", "[worker]\nremote_concurrency = 100")
        server = LiveServer(
            tmp_path / "data", config, extra_args=["--no-worker"], env=provider_env(cases)
        )
        server.api_key = server.create_key("load")
        server.start()
        worker_log = (tmp_path / "worker.log").open("wb")
        worker = spawn(
            [
                *VIDGATE,
                "worker",
                "--data-dir",
                str(server.data_dir),
                "--config",
                str(server.config),
                "--log-level",
                "warning",
            ],
            stdout=worker_log,
            stderr=subprocess.STDOUT,
            env=server.env,
        )
        try:
            started = time.monotonic()
            run_ids = asyncio.run(_submit_all(server, fal.model))
            submitted_s = time.monotonic() - started
            deadline = time.monotonic() + 600
            while True:
                in_flight = httpx.get(f"{server.base_url}/healthz").json()["runs"]
                if not any(in_flight.values()):
                    break
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                assert time.monotonic() < deadline, in_flight
                time.sleep(1)
            counts = asyncio.run(_statuses(server, run_ids))
            assert counts == {"completed": RUNS}, counts
            jobs = list(fal.state.jobs.values())
            assert len(jobs) == RUNS == fal.state.submits  # one provider job per run
            # Every job was created before the first one finished: all were in flight at once.
            assert max(j.created for j in jobs) < min(j.finishes for j in jobs)
            sample = httpx.get(
                f"{server.base_url}/api/video/status",
                params={"runId": run_ids[-1]},
                headers=server.headers(),
            ).json()
            assert httpx.get(sample["videoUrl"]).status_code == 200
            print(
                f"submitted {RUNS} runs in {submitted_s:.1f} s; all done after "
                f"{time.monotonic() - started:.1f} s"
            )
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            finally:
                worker_log.close()
                server.stop()
        assert worker.returncode == 0, (tmp_path / "worker.log").read_text()[-3000:]
