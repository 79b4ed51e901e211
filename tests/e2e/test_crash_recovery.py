"""A server killed with SIGKILL mid-render loses nothing: after a restart every run completes."""

from __future__ import annotations

import os
import signal
import time

import httpx

from tests.api_helpers import decode_mp4, status, submit_ok, wait_terminal
from tests.servers import LiveServer, child_processes

CRASH_CONFIG = """
[limits]
submits_per_minute = 100000

[worker]
concurrency = 2
lease_s = 3
heartbeat_s = 0.2
"""


def test_sigkill_while_rendering_then_restart_completes_every_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = LiveServer(tmp_path / "data", CRASH_CONFIG)
    server.api_key = server.create_key("crash")
    server.start()
    try:
        runs = [submit_ok(server, f"sandbox:slow=3 crash {i}", duration=2) for i in range(5)]
        deadline = time.monotonic() + 20
        while sum(status(server, r)["status"] == "IN_PROGRESS" for r in runs) < 2:
            assert time.monotonic() < deadline, "runs never started rendering"
            time.sleep(0.1)
        assert server.process is not None
        renders = render_children(server.process.pid)
        assert renders, "expected render processes to be running"
        os.kill(server.process.pid, signal.SIGKILL)  # the server only: renders are orphaned
        server.process.wait(timeout=10)
    finally:
        server.kill()

    # Orphaned render processes notice their parent is gone and exit.
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in renders):
        assert time.monotonic() < deadline, "render processes outlived the killed server"
        time.sleep(0.1)

    server.start()
    try:
        for run_id in runs:
            final = wait_terminal(server, run_id, timeout=90)
            assert final["status"] == "COMPLETED", (run_id, final, server.log()[-3000:])
            info = decode_mp4(httpx.get(final["output"]["video"]["url"]).content)
            assert abs(info.duration_s - 2.0) < 0.1 and info.frames == 48
        health = httpx.get(f"{server.base_url}/healthz").json()
        assert not any(health["runs"].values()), health  # nothing left in flight
    finally:
        server.stop()


def render_children(parent: int) -> list[int]:
    return child_processes(parent, "testcard_render")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
