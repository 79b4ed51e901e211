"""Push benchmark: how soon a client learns that its video is ready.

From a run's completion (its ``completedAt``, stamped just before the commit) to
  the moment a client has the COMPLETED state, over N runs, by long-poll (``waitSeconds``),
  server-sent events and webhook, beside a client that polls every 5 s (the upstream
  sample's cadence), all measured in the same run. Two setups: SQLite with plain
  ``vidgate serve``; PostgreSQL with two ``serve --no-worker`` and one ``vidgate worker``,
  the waiters on the API process that did not take the submit. These are latencies of
  single events, read by a Python client on loopback; throughput figures come from wrk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import secrets
import subprocess
import tempfile
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import uvicorn
import uvloop
from tests.providers import all_cases, provider_env, vidgate_config
from tests.servers import VIDGATE, free_port, run_cli

from bench.rawhttp import Connection
from bench.report import Figure, percentile, percentile_rank

BODY = {"model": "testcard-video", "resolution": "480p", "duration": 1}
WEBHOOKS = """
[webhooks]
allow_private_hosts = true
"""
CONFIG = (
    """
[limits]
submits_per_minute = 100000000
"""
    + WEBHOOKS
)
METHODS = ("long-poll", "sse", "webhook", "poll every 5 s")


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def p99_rank(count: int) -> str:
    """Which of ``count`` values :func:`percentile` takes for p99, in words."""
    from_top = count - percentile_rank(count, 0.99)
    return {1: "largest", 2: "second largest", 3: "third largest"}.get(
        from_top, f"{from_top}th largest"
    )


@dataclass
class Processes:
    """vidgate processes started for one setup; stopped (SIGTERM) at the end."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, args: list[str], env: dict[str, str]) -> None:
        self.started.append(
            subprocess.Popen(
                args,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, **env},
                start_new_session=True,
            )
        )

    def stop(self) -> None:
        for process in self.started:
            process.terminate()
        for process in self.started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_ready(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{base} did not start")


@dataclass(frozen=True)
class Workload:
    """What the runs are: testcard renders on this machine's CPU, or provider jobs (the
    fal emulator, following fal's documented queue protocol) that cost vidgate no CPU."""

    name: str
    model: str
    config: str
    env: dict[str, str]
    resolution: str = "480p"


def _serve_fal(port: int) -> None:
    """The fal emulator, in a process of its own (so that it does not share the measuring
    client's interpreter): jobs queue 0.2 s and run 0.3 s."""
    (case,) = [c for c in all_cases() if c.name == "fal"]
    app, state = case.make()
    state.queue_s, state.run_s = 0.2, 0.3
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="critical")


@contextlib.contextmanager
def workload(name: str) -> Iterator[Workload]:
    if name == "testcard":
        yield Workload("testcard (240p)", "testcard-video", CONFIG, {}, "240p")
        return
    (case,) = [c for c in all_cases() if c.name == "fal"]
    port = free_port()
    emulator = multiprocessing.get_context("spawn").Process(target=_serve_fal, args=(port,))
    emulator.start()
    try:
        for _ in range(100):
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            time.sleep(0.1)
        case.server = types.SimpleNamespace(base_url=f"http://127.0.0.1:{port}")  # type: ignore[assignment]
        config = vidgate_config([case], poll_s=5.0, extra=WEBHOOKS)  # vidgate's default
        for quick in ("idle_poll_s = 0.05\n", "heartbeat_s = 0.2\n", "lease_s = 5\n"):
            config = config.replace(quick, "")  # the test suite's settings; use the defaults
        yield Workload("provider jobs (fal emulator)", case.model, config, provider_env([case]))
    finally:
        emulator.terminate()
        emulator.join(timeout=10)


@contextlib.contextmanager
def setup(
    tmp: Path, work: Workload, database_url: str | None, api_processes: int, separate: bool
) -> Iterator[tuple[list[str], str]]:
    """Start the servers; yields their base URLs and an API key."""
    data_dir, config = tmp / "data", tmp / "bench.toml"
    config.write_text(work.config)
    env = {**work.env, **({"VIDGATE_DATABASE_URL": database_url} if database_url else {})}
    name = f"bench-{secrets.token_hex(4)}"  # the PostgreSQL database is shared by setups
    key = run_cli(["keys", "create", name], data_dir=data_dir, config=config, env=env)
    common = ["--data-dir", str(data_dir), "--config", str(config), "--log-level", "warning"]
    processes = Processes()
    bases = []
    try:
        for _ in range(api_processes):
            port = free_port()
            extra = ["--no-worker"] if separate else []
            processes.start([*VIDGATE, "serve", "--port", str(port), *common, *extra], env)
            bases.append(f"http://127.0.0.1:{port}")
        if separate:
            processes.start([*VIDGATE, "worker", *common], env)
        for base in bases:
            wait_ready(base)
        yield bases, key.stdout.split()[-1]
    finally:
        processes.stop()


class Receiver:
    """A minimal HTTP server that notes when each run's ``video.completed`` webhook came."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.port = free_port()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(
            ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError
        ):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                body = json.loads(await reader.readexactly(length))
                if body["type"] == "video.completed":
                    self.arrived[body["data"]["requestId"]] = time.time()
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        writer.close()


def connect(base: str, key: str) -> Connection:
    host, port = base.removeprefix("http://").split(":")
    return Connection(host, int(port), {"x-api-key": key})


async def long_poll(base: str, key: str, run_id: str) -> tuple[float, float]:
    client = connect(base, key)
    try:
        while True:
            _, body = await client.request(
                "GET", "/api/video/status", {"requestId": run_id, "waitSeconds": 50}
            )
            if body["status"] == "completed":
                return time.time(), epoch(body["completedAt"])
    finally:
        client.close()


async def plain_poll(base: str, key: str, run_id: str) -> tuple[float, float]:
    client = connect(base, key)
    try:
        while True:
            _, body = await client.request("GET", "/api/video/status", {"requestId": run_id})
            if body["status"] == "completed":
                return time.time(), epoch(body["completedAt"])
            await asyncio.sleep(5)
    finally:
        client.close()


async def sse(base: str, key: str, run_id: str) -> tuple[float, float]:
    client = connect(base, key)
    try:
        async for line in client.lines("/api/video/status/stream", {"requestId": run_id}):
            if line.startswith("data:"):
                body = json.loads(line[5:])
                if body["status"] == "completed":
                    return time.time(), epoch(body["completedAt"])
    finally:
        client.close()
    raise RuntimeError("the stream ended before the run completed")


async def latencies(
    work: Workload, submit_base: str, wait_base: str, key: str, runs: int, every_s: float
) -> dict[str, list[float]]:
    """Submit ``runs`` runs, one every ``every_s`` (steady arrivals, as clients send them,
    rather than waves that all finish at once), and follow each by every method."""
    found: dict[str, list[float]] = {method: [] for method in METHODS}
    async with Receiver() as receiver:
        webhook_url = f"http://127.0.0.1:{receiver.port}/hook"

        async def one(i: int) -> None:
            await asyncio.sleep(i * every_s)
            submitter = connect(submit_base, key)
            status, body = await submitter.request(
                "POST",
                "/api/generate-video",
                body={
                    **BODY,
                    "model": work.model,
                    "resolution": work.resolution,
                    "prompt": f"push {i}",
                    "webhookUrl": webhook_url,
                },
            )
            submitter.close()
            assert status == 202, body
            run_id = body["runId"]
            waits = await asyncio.gather(
                long_poll(wait_base, key, run_id),
                sse(wait_base, key, run_id),
                plain_poll(wait_base, key, run_id),
            )
            for method, (arrived, completed) in zip(
                ("long-poll", "sse", "poll every 5 s"), waits, strict=True
            ):
                found[method].append(arrived - completed)
            for _ in range(100):
                if run_id in receiver.arrived:
                    break
                await asyncio.sleep(0.1)
            found["webhook"].append(receiver.arrived[run_id] - waits[0][1])

        await asyncio.gather(*(one(i) for i in range(runs)))
    return found


def latency_figures(title: str, found: dict[str, list[float]]) -> list[Figure]:
    """p50 of each method, as a ratio to the p50 of polling every 5 s."""
    section = f"Push latency, completion to client: {title}, {len(found['sse'])} runs"
    poll_p50 = percentile(found["poll every 5 s"], 0.5) * 1000
    figures = []
    for method in METHODS:
        values = found[method]
        p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
        figures.append(
            Figure(
                section,
                f"{method}, p50",
                p50,
                "ms",
                "poll every 5 s, p50",
                poll_p50,
                detail=f"p99 {p99:.1f} ms, max {max(values) * 1000:.1f} ms",
            )
        )
    return figures


WORKLOADS = {"provider": 0.1, "testcard": 0.15}
"""Seconds between two submits: provider jobs take about 5.5 s (the emulator's queue and
run, and vidgate's default 5 s poll), so about 55 are in flight at once; a testcard render
of 1 s at 240p takes about 0.1 s of one core, and the worker renders two at a time."""


def latency_bench(runs: int, postgres_url: str | None) -> list[Figure]:
    figures: list[Figure] = []
    for name, every_s in WORKLOADS.items():
        with workload(name) as work:
            with (
                tempfile.TemporaryDirectory() as tmp,
                setup(Path(tmp), work, None, 1, False) as (
                    bases,
                    key,
                ),
            ):
                found = uvloop.run(latencies(work, bases[0], bases[0], key, runs, every_s))
            figures += latency_figures(f"{work.name}, SQLite, plain `vidgate serve`", found)
            if postgres_url is None:
                continue
            with (
                tempfile.TemporaryDirectory() as tmp,
                setup(Path(tmp), work, postgres_url, 2, True) as (bases, key),
            ):
                found = uvloop.run(latencies(work, bases[0], bases[1], key, runs, every_s))
            figures += latency_figures(
                f"{work.name}, PostgreSQL, 2 x `serve --no-worker` + `vidgate worker`, "
                "waiting on the API that did not take the submit",
                found,
            )
    return figures
