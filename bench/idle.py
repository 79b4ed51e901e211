"""Idle cost: CPU time of one API process over 20 s while it holds 2,000 long-poll waiters
and 500 event streams, and answers a status poll every second meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from tests.servers import VIDGATE, free_port, run_cli

from bench.push import BODY, CONFIG, wait_ready
from bench.report import Figure

CPU_GOAL_PERCENT = 5.0


MEASURE_S = 20.0
"""How long the CPU time is measured, once every waiter is in place."""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


@contextlib.asynccontextmanager
async def held(client: httpx.AsyncClient, base: str, run_ids: list[str]) -> AsyncIterator[None]:
    """Hold one long-poll per id (re-sent when it answers) until the block ends."""

    async def hold(run_id: str) -> None:
        while True:
            await client.get(
                base + "/api/video/status", params={"requestId": run_id, "waitSeconds": 60}
            )

    tasks = [asyncio.create_task(hold(r)) for r in run_ids]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def streams_open(
    client: httpx.AsyncClient, base: str, run_ids: list[str]
) -> list[asyncio.Task[None]]:
    """Open one event stream per id and keep reading it in the background."""

    async def follow(run_id: str) -> None:
        url = base + "/api/video/status/stream"
        async with client.stream("GET", url, params={"requestId": run_id}) as response:
            async for _ in response.aiter_lines():
                pass

    return [asyncio.create_task(follow(r)) for r in run_ids]


async def settle(client: httpx.AsyncClient, base: str, expected: int, limit_s: float = 40) -> float:
    """Wait until the server holds every waiter (``/healthz`` counts them); returns the
    seconds that took."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        if (await client.get(base + "/healthz")).json()["waiting"] >= expected:
            await asyncio.sleep(1)  # let the last answers' bookkeeping finish
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the server did not hold {expected} waiters within {limit_s} s")


async def idle_cost(base: str, key: str, pid: int, waiters: int, streams: int) -> Figure:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(headers={"x-api-key": key}, timeout=90, limits=limits) as client:
        run_ids = []
        for i in range(waiters + streams):  # queued forever: this process runs no worker
            response = await client.post(
                base + "/api/generate-video", json={**BODY, "prompt": f"idle {i}"}
            )
            run_ids.append(response.json()["runId"])
        stream_tasks = await streams_open(client, base, run_ids[waiters:])
        async with held(client, base, run_ids[:waiters]):
            settled = await settle(client, base, waiters + streams)
            before, started = cpu_seconds(pid), time.monotonic()
            poll_times = []
            while time.monotonic() - started < MEASURE_S:
                sent = time.perf_counter()
                response = await client.get(
                    base + "/api/video/status", params={"requestId": run_ids[0]}
                )
                assert response.status_code == 200
                poll_times.append(time.perf_counter() - sent)
                await asyncio.sleep(1)
            used = cpu_seconds(pid) - before
            elapsed = time.monotonic() - started
        for task in stream_tasks:
            task.cancel()
        await asyncio.gather(*stream_tasks, return_exceptions=True)
    percent = 100 * used / elapsed
    return Figure(
        "Idle cost (`serve --no-worker`, SQLite)",
        f"CPU of one API process holding {waiters:,} long-polls + {streams:,} event streams",
        percent,
        "% of a core",
        goal=f"< {CPU_GOAL_PERCENT:g}% of a core",
        met=percent < CPU_GOAL_PERCENT,
        detail=f"CPU {used:.2f} s over {elapsed:.1f} s (all in place after {settled:.0f} s); "
        f"{len(poll_times)} status polls meanwhile, median "
        f"{1000 * statistics.median(poll_times):.1f} ms, max {1000 * max(poll_times):.1f} ms",
    )


def idle_bench(waiters: int, streams: int) -> Figure:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, config = Path(tmp) / "data", Path(tmp) / "bench.toml"
        config.write_text(CONFIG)
        key = run_cli(["keys", "create", "bench"], data_dir=data_dir, config=config)
        port = free_port()
        args = ["--data-dir", str(data_dir), "--config", str(config), "--log-level", "warning"]
        process = subprocess.Popen(
            [*VIDGATE, "serve", "--port", str(port), "--no-worker", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base)
            return asyncio.run(
                idle_cost(base, key.stdout.split()[-1], process.pid, waiters, streams)
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
