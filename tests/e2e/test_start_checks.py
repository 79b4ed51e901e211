"""vidgate does not accept runs that no one will run: a configuration no worker could run is
refused at start by every command, and ``vidgate serve`` exits non-zero when its worker
stops, so that a supervisor restarts it; the runs it had accepted are then done."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.api_helpers import submit_ok, wait_terminal
from tests.servers import TEST_CONFIG, VIDGATE, LiveServer, free_port, spawn

TYPO = """
[models.fox]
backend = "fall"
provider = "fal"

[providers.fal]
base_url = "http://127.0.0.1:9"
"""


def test_a_configuration_no_worker_can_run_is_refused_by_every_command(tmp_path: Path) -> None:
    cases = [  # each command, each with another check
        ("serve", TYPO, "models.fox.backend: unknown backend 'fall' (did you mean 'fal'?)"),
        (
            "worker",
            "[worker]\nlease_s = 2\nheartbeat_s = 5\n",
            "worker.heartbeat_s (5) must be below worker.lease_s (2)",
        ),
        ("migrate", '[models.fox]\nbackend = "runway"\n', "no [providers.runway] section"),
    ]
    started = []
    for number, (command, text, _) in enumerate(cases):  # at once: each pays its imports
        config = tmp_path / f"{number}.toml"
        config.write_text(text)
        args = [command, "--data-dir", str(tmp_path / f"data{number}"), "--config", str(config)]
        if command == "serve":
            args += ["--port", str(free_port())]
        process = spawn([*VIDGATE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        started.append((process, config))
    for (process, config), (command, _, needle) in zip(started, cases, strict=True):
        try:
            _, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`vidgate {command}` started on a configuration that no worker can run")
        stderr = err.decode()
        assert process.returncode == 2, (command, stderr)
        assert f"error: invalid configuration in {config}: " in stderr, (command, stderr)
        assert needle in stderr, (command, stderr)
        assert "Traceback" not in stderr, stderr


FAULTY_SERVE = """
from vidgate.worker.local import LocalWorker

def broken(self, run):
    raise RuntimeError("injected fault: cannot start a run")

LocalWorker._start = broken
from vidgate.cli import main
main()
"""
"""``vidgate serve`` whose worker fails on its first run (a fault no check at start finds)."""
QUICK_LEASES = TEST_CONFIG.replace("heartbeat_s = 0.2", "heartbeat_s = 0.2\nlease_s = 1")


def test_serve_exits_non_zero_when_its_worker_stops(tmp_path: Path) -> None:
    server = LiveServer(
        tmp_path / "data", QUICK_LEASES, program=[sys.executable, "-c", FAULTY_SERVE]
    )
    server.start()
    first_key = re.search(r"shown once; keep it\):\n\s+(\S+)", server.log())
    assert first_key is not None, server.log()
    server.api_key = first_key.group(1)
    run_id = submit_ok(server, "accepted before the worker stopped")
    assert server.process is not None
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        health = httpx.get(f"{server.base_url}/healthz", timeout=5)
        pytest.fail(
            f"serve runs on without its worker; /healthz: {health.status_code} {health.text}"
        )
    finally:
        server.stop()
    log = server.log()
    assert server.process.returncode == 1, log[-3000:]
    assert "worker.died reason='RuntimeError: injected fault: cannot start a run'" in log
    assert (
        "error: the worker in this process stopped (RuntimeError: injected fault: cannot start "
        "a run), so vidgate exited" in log
    )
    # Restarted (as a supervisor would), vidgate does the run it had accepted.
    again = LiveServer(tmp_path / "data", QUICK_LEASES)
    again.log_path = tmp_path / "again.log"
    again.api_key = server.api_key
    again.start()
    try:
        started = time.monotonic()
        assert wait_terminal(again, run_id, timeout=30)["status"] == "COMPLETED"
        assert time.monotonic() - started < 15
    finally:
        again.stop()
