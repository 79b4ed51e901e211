"""vidgate benchmarks. Every figure is a ratio against a baseline measured in the same run.

* HTTP: requests per second of vidgate's status and submit routes, against a trivial FastAPI
  route served by the same uvicorn on the same machine (1.0 would mean vidgate's work per
  request costs nothing).
* Rendering: testcard's frames per second, against a bare PyAV H.264 encode of the same
  number of flat frames at the same size (the cost of drawing text and patterns).

Run with ``make bench``. Absolute numbers vary with the machine; the ratios are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from tests.servers import VIDGATE, free_port, run_cli

from bench import push


@contextlib.contextmanager
def server(args: list[str], port: int, ready_path: str) -> Iterator[str]:
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + ready_path, timeout=1).status_code < 500:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server {args} did not start")
            time.sleep(0.1)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)


async def load(
    method: str,
    url: str,
    seconds: float,
    concurrency: int,
    headers: dict[str, str] | None = None,
    json: object = None,
) -> float:
    """Requests per second completed with ``concurrency`` connections for ``seconds``."""
    done = 0
    async with httpx.AsyncClient(
        headers=headers, timeout=30, limits=httpx.Limits(max_connections=concurrency)
    ) as client:
        stop_at = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                response = await client.request(method, url, json=json)
                assert response.status_code < 300, response.text
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.monotonic() - started)


def http_bench(seconds: float, concurrency: int) -> None:
    port = free_port()
    baseline_cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.baseline_app:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with server(baseline_cmd, port, "/ping") as base:
        baseline = asyncio.run(load("GET", base + "/ping", seconds, concurrency))
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        config = Path(tmp) / "bench.toml"
        config.write_text("[limits]\nsubmits_per_minute = 100000000\n")
        key = run_cli(["keys", "create", "bench"], data_dir=data_dir, config=config).stdout.split()[
            -1
        ]
        port = free_port()
        cmd = [
            *VIDGATE,
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--config",
            str(config),
            "--no-worker",
            "--log-level",
            "warning",
        ]
        with server(cmd, port, "/healthz") as base:
            headers = {"x-api-key": key}
            run_id = httpx.post(
                base + "/api/generate-video",
                headers=headers,
                json={"model": "testcard-video", "prompt": "x"},
            ).json()["runId"]
            status = asyncio.run(
                load(
                    "GET", f"{base}/api/video/status?runId={run_id}", seconds, concurrency, headers
                )
            )
            submit = asyncio.run(
                load(
                    "POST",
                    base + "/api/generate-video",
                    seconds,
                    concurrency,
                    headers,
                    {"model": "testcard-video", "prompt": "bench"},
                )
            )
    print(f"http  baseline GET /ping               {baseline:8.0f} req/s  1.00")
    print(f"http  GET /api/video/status (SQLite)   {status:8.0f} req/s  {status / baseline:.2f}")
    print(f"http  POST /api/generate-video (SQLite){submit:8.0f} req/s  {submit / baseline:.2f}")


def render_bench() -> None:
    import av
    import numpy as np

    from vidgate.backends.testcard_render import TestcardSpec, render

    spec = TestcardSpec(text="a benchmark", width=854, height=480, duration_s=5, fps=24)
    frames = round(spec.duration_s * spec.fps)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        render(spec, Path(tmp) / "out.mp4")
        ours = frames / (time.perf_counter() - started)
    started = time.perf_counter()
    with av.open(io.BytesIO(), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.options = {"preset": "veryfast"}
        stream.codec_context.thread_count = 1
        pixels = np.zeros((spec.height, spec.width, 3), dtype=np.uint8)
        for i in range(frames):
            pixels[:] = i % 256
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    baseline = frames / (time.perf_counter() - started)
    print(f"render baseline bare H.264 encode 480p {baseline:8.1f} fps    1.00")
    print(f"render testcard 480p                   {ours:8.1f} fps    {ours / baseline:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per HTTP measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=200, help="runs per push latency setup")
    parser.add_argument(
        "--only", choices=["http", "render", "push", "idle"], action="append", help="repeatable"
    )
    args = parser.parse_args()
    chosen = set(args.only or ["http", "render", "push", "idle"])
    print("benchmark                               result         ratio to baseline")
    if "http" in chosen:
        http_bench(args.seconds, args.concurrency)
    if "render" in chosen:
        render_bench()
    if "push" in chosen:
        push.latency_bench(args.runs, os.environ.get("VIDGATE_BENCH_DATABASE_URL"))
    if "idle" in chosen:
        push.idle_bench(waiters=2000, streams=500)


if __name__ == "__main__":
    main()
