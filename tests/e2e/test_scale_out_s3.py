"""The production layout on one machine: PostgreSQL, an S3 bucket (the moto emulator), two
``vidgate serve --no-worker`` API processes and three ``vidgate worker`` processes.

300 testcard runs are submitted through both API processes with three keys while workers
are SIGKILLed mid-render (twice) and SIGTERMed (once), each replaced as a supervisor would.
Every run completes, its video is in the bucket and decodes, its presigned URL downloads
without an API key, no run was completed by two renders (counted from every worker's log),
and both API processes answer the same for every run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.api_helpers import SMALL, decode_mp4
from tests.s3 import Bucket
from tests.servers import VIDGATE, LiveServer, child_processes, run_cli, spawn

RUNS = 300
KEYS = 3
CONFIG = """
[limits]
submits_per_minute = 100000

[worker]
concurrency = 4
lease_s = 3
heartbeat_s = 0.2
"""
PROMPT = "sandbox:slow=0.5 scale-out {i}"
"""Each render takes at least half a second, so that a kill finds renders under way."""


class Workers:
    """Three ``vidgate worker`` processes, each replaced when it is killed or stopped."""

    def __init__(self, tmp_path: Path, server: LiveServer, env: dict[str, str]) -> None:
        self.tmp_path, self.server, self.env = tmp_path, server, env
        self.running: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.ended: list[int | None] = []

    def start(self) -> None:
        log = self.tmp_path / f"worker-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.running.append(
                spawn(
                    [
                        *VIDGATE,
                        "worker",
                        "--data-dir",
                        str(self.server.data_dir),
                        "--config",
                        str(self.server.config),
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                )
            )

    def rendering(self, deadline_s: float = 60) -> subprocess.Popen[bytes]:
        """A worker with renders under way (waits for one)."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            for worker in self.running:
                if worker.poll() is None and child_processes(worker.pid, "testcard_render"):
                    return worker
            time.sleep(0.05)
        raise AssertionError("no worker was rendering")

    def replace(self, worker: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        worker.send_signal(sig)
        self.ended.append(worker.wait(timeout=30))
        self.running.remove(worker)
        self.start()

    def stop(self) -> None:
        for worker in self.running:
            worker.terminate()
        for worker in self.running:
            self.ended.append(worker.wait(timeout=30))

    def events(self) -> list[dict[str, object]]:
        """Every JSON log line of every worker, the killed ones' included."""
        found = []
        for log in self.logs:
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    found.append(json.loads(line))
        return found


async def submit_all(servers: list[LiveServer], keys: list[str]) -> list[tuple[int, str, str]]:
    """Submit RUNS runs, alternating API processes and keys; (server, key, run id) each."""
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(i: int) -> tuple[int, str, str]:
            server, key = i % len(servers), keys[i % len(keys)]
            body = {"model": "testcard-video", "prompt": PROMPT.format(i=i), **SMALL}
            async with gate:
                response = await client.post(
                    f"{servers[server].base_url}/api/generate-video",
                    json=body,
                    headers={"x-api-key": key},
                )
            assert response.status_code == 202, response.text
            return server, key, str(response.json()["runId"])

        return await asyncio.gather(*(one(i) for i in range(RUNS)))


def remaining(server: LiveServer) -> int:
    runs = httpx.get(f"{server.base_url}/healthz", timeout=10).json()["runs"]
    return int(sum(runs.values()))


def wait_remaining(server: LiveServer, at_most: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while (left := remaining(server)) > at_most:
        assert time.monotonic() < deadline, f"{left} runs still unfinished"
        time.sleep(0.2)


def answer(server: LiveServer, key: str, run_id: str) -> dict[str, object]:
    response = httpx.get(
        f"{server.base_url}/api/generate-video/status",
        params={"runId": run_id, "modelSlug": "testcard-video"},
        headers={"x-api-key": key},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()["data"]
    return data


def without_signature(url: str) -> str:
    """A presigned URL without its query: API processes sign at their own moment."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


@pytest.mark.timeout(900)  # 300 renders and uploads: CPU-bound, longer on a busy machine
def test_two_apis_three_workers_postgres_and_s3(  # type: ignore[no-untyped-def]
    tmp_path, postgres_url: str, s3_bucket: Bucket
) -> None:
    env = {"VIDGATE_DATABASE_URL": postgres_url, **s3_bucket.env()}
    apis = [
        LiveServer(tmp_path / f"api{i}", CONFIG, extra_args=["--no-worker"], env=env)
        for i in range(2)
    ]
    cli_env = {**os.environ, **env}
    keys = [
        run_cli(["keys", "create", f"k{i}"], data_dir=apis[0].data_dir, env=cli_env)
        .stdout.strip()
        .splitlines()[-1]
        for i in range(KEYS)
    ]
    for api in apis:
        api.start()
    workers = Workers(tmp_path, apis[0], cli_env)
    try:
        for _ in range(3):
            workers.start()
        submitted = asyncio.run(submit_all(apis, keys))
        workers.replace(workers.rendering(), signal.SIGKILL)
        wait_remaining(apis[0], RUNS * 2 // 3)
        workers.replace(workers.rendering(), signal.SIGKILL)
        wait_remaining(apis[1], RUNS // 3)
        workers.replace(workers.rendering(), signal.SIGTERM)
        wait_remaining(apis[0], 0)
    except BaseException:
        workers.stop()
        for api in apis:
            api.stop()
        raise
    workers.stop()

    try:
        assert workers.ended[:2] == [-signal.SIGKILL, -signal.SIGKILL]
        assert workers.ended[2:] == [0] * 4, workers.ended  # the SIGTERMed one, then the rest

        stored = set(s3_bucket.keys())
        with httpx.Client(timeout=30) as anonymous:
            for _, key, run_id in submitted:
                first, second = (answer(api, key, run_id) for api in apis)
                assert first["status"] == "COMPLETED", (run_id, first)
                video = first["output"]["video"]  # type: ignore[index]
                url = video["url"]
                other = second["output"]["video"]["url"]  # type: ignore[index]
                assert without_signature(url) == without_signature(other)
                assert {**first, "output": None} == {**second, "output": None}
                object_key = urlsplit(url).path.split(f"/{s3_bucket.name}/", 1)[1]
                assert object_key in stored, (object_key, sorted(stored)[:5])
                response = anonymous.get(url)  # presigned: no API key
                assert response.status_code == 200, response.text
                info = decode_mp4(response.content)
                assert (info.codec, info.height, info.frames) == ("h264", 240, 24), info

        events = workers.events()
        completed = Counter(str(e["run_id"]) for e in events if e.get("event") == "run.completed")
        lost = [line for line in events if line.get("event") == "run.finish_lost"]
        claims = sum(line.get("event") == "run.claimed" for line in events)
        # Each run was rendered to completion and recorded by exactly one worker.
        assert set(completed) == {run_id for _, _, run_id in submitted}
        assert set(completed.values()) == {1}, [r for r, n in completed.items() if n != 1]
        assert not lost, lost
        assert claims > RUNS  # the killed workers' runs were claimed again
    finally:
        for api in apis:
            api.stop()
