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


def _start(command: str, data_dir: Path, config: Path | None = None) -> subprocess.Popen[bytes]:
    args = [command, "--data-dir", str(data_dir)]
    if config is not None:
        args += ["--config", str(config)]
    if command == "serve":
        args += ["--port", str(free_port())]
    return spawn([*VIDGATE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _refusal(process: subprocess.Popen[bytes], command: str) -> tuple[int, str]:
    try:
        out, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`vidgate {command}` started on what it should have refused")
    assert b"Traceback" not in err, err.decode()
    return process.returncode, out.decode() + err.decode()


def test_what_no_worker_can_run_is_refused_at_start_by_every_command(tmp_path: Path) -> None:
    cases = [  # each command, each with another check
        ("serve", TYPO, "models.fox.backend: unknown backend 'fall' (did you mean 'fal'?)"),
        (
            "worker",
            "[worker]\nlease_s = 2\nheartbeat_s = 5\n",
            "worker.heartbeat_s (5) must be below worker.lease_s (2)",
        ),
        (
            "migrate",
            '[models.fox]\nbackend = "runway"\n',
            "models.fox: backend 'runway' needs a [providers.runway] section with its base_url",
        ),
    ]
    started = []
    for number, (command, text, _) in enumerate(cases):  # at once: each pays its imports
        config = tmp_path / f"{number}.toml"
        config.write_text(text)
        started.append((_start(command, tmp_path / f"data{number}", config), config))
    damaged = tmp_path / "damaged"  # a secret.key truncated by a crash of an older version
    damaged.mkdir()
    (damaged / "secret.key").write_text("")
    on_damaged = _start("serve", damaged)
    for (process, config), (command, _, needle) in zip(started, cases, strict=True):
        code, output = _refusal(process, command)
        assert code == 2, (command, output)
        assert f"error: invalid configuration in {config}: {needle}" in output, output
        assert output.count("error:") == 1, output
    code, output = _refusal(on_damaged, "serve")
    assert code == 1, output
    assert f"error: {damaged / 'secret.key'} does not hold a 32-byte signing secret" in output
    assert "API key" not in output  # none was made: it would never have been shown


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
