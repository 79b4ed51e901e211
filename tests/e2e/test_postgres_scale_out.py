"""Scale-out on PostgreSQL: an API process without a worker, and two worker processes that
share the queue through the database without ever taking the same run twice."""

from __future__ import annotations

import re
import subprocess
from collections import Counter

import httpx

from tests.api_helpers import decode_mp4, submit_ok, wait_terminal
from tests.servers import TEST_CONFIG, VIDGATE, LiveServer, spawn


def test_api_and_two_workers_on_postgres(tmp_path, postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    env = {"VIDGATE_DATABASE_URL": postgres_url}
    server = LiveServer(tmp_path / "data", TEST_CONFIG, extra_args=["--no-worker"], env=env)
    server.api_key = run_key(server)
    server.start()
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = []
    for log in logs:
        with log.open("wb") as out:
            workers.append(
                spawn(
                    [
                        *VIDGATE,
                        "worker",
                        "--data-dir",
                        str(server.data_dir),
                        "--config",
                        str(server.config),
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=server.env,
                )
            )
    try:
        runs = [submit_ok(server, f"scale {i}") for i in range(12)]
        cancelled = submit_ok(server, "sandbox:queue=30 cancel me")
        response = httpx.post(
            f"{server.base_url}/api/generate-video/cancel",
            json={"runId": cancelled},
            headers=server.headers(),
        )
        assert response.json()["data"]["status"] == "CANCELED"
        for run_id in runs:
            final = wait_terminal(server, run_id, timeout=120)
            assert final["status"] == "COMPLETED", final
        video = httpx.get(wait_terminal(server, runs[0])["output"]["video"]["url"])
        assert decode_mp4(video.content).frames == 24
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=30)
        server.stop()
    claims = Counter()
    per_worker = []
    for log in logs:
        found = re.findall(r"run\.claimed run_id=(vid_\w+)", log.read_text())
        per_worker.append(len(found))
        claims.update(found)
    assert set(claims) == set(runs)
    assert all(count == 1 for count in claims.values()), claims  # nothing done twice
    assert all(per_worker), per_worker  # both workers took part


def run_key(server: LiveServer) -> str:
    result = subprocess.run(
        [
            *VIDGATE,
            "keys",
            "create",
            "pg",
            "--data-dir",
            str(server.data_dir),
            "--config",
            str(server.config),
        ],
        capture_output=True,
        text=True,
        env=server.env,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]
