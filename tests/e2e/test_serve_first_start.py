"""`vidgate serve` on an empty data dir: prints a key and curl examples that work as pasted."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.servers import VIDGATE, free_port, run_cli, spawn


def _commands(output: str) -> list[str]:
    """The shell commands printed after 'Try it:' (continuation lines joined)."""
    commands, current = [], ""
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith("curl ") or current:
            current += stripped.removesuffix("\\").strip() + " "
            if not stripped.endswith("\\"):
                commands.append(current.strip())
                current = ""
    return commands


def _serve(port: int, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    """``vidgate serve`` on ``data_dir``, its output (both streams) written to ``log``."""
    with log.open("wb") as out:
        return spawn(
            [*VIDGATE, "serve", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_first_start_prints_a_working_curl_example(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "fresh"
    log = tmp_path / "serve.log"
    process = _serve(port, data_dir, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        output = log.read_text()
        key = re.search(r"shown once; keep it\):\n\s+(\S+)", output)
        assert key is not None, output
        submit_cmd, poll_cmd = _commands(output)
        assert key.group(1) in submit_cmd
        submitted = subprocess.run(
            ["bash", "-c", submit_cmd], capture_output=True, text=True, check=True
        )
        body = json.loads(submitted.stdout)
        assert body["status"] == "pending" and body["runId"].startswith("vid_")
        poll = poll_cmd.replace("RUN_ID", body["runId"])
        deadline = time.monotonic() + 60
        while True:
            data = json.loads(
                subprocess.run(
                    ["bash", "-c", poll], capture_output=True, text=True, check=True
                ).stdout
            )["data"]
            if data["status"] == "COMPLETED":
                break
            assert data["status"] in ("IN_QUEUE", "IN_PROGRESS"), data
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert httpx.get(data["output"]["video"]["url"]).status_code == 200

        # Keys can be managed while the server runs on the same data dir.
        second = run_cli(["keys", "create", "second"], data_dir=data_dir).stdout.splitlines()[-1]
        assert (
            httpx.get(
                f"http://127.0.0.1:{port}/api/video/status",
                params={"runId": body["runId"]},
                headers={"x-api-key": second},
            ).status_code
            == 404
        )
        listed = run_cli(["keys", "list"], data_dir=data_dir).stdout
        assert "default" in listed and "second" in listed and second not in listed
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    assert process.returncode in (0, -signal.SIGTERM), log.read_text()[-2000:]

    # A second start does not make another key, and says how to get one.
    again = _serve(port, data_dir, log)
    try:
        deadline = time.monotonic() + 30
        while "API keys exist already" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        os.killpg(again.pid, signal.SIGTERM)
        again.wait(timeout=15)


def test_keys_create_prints_the_key_on_its_last_line(tmp_path: Path) -> None:
    result = run_cli(["keys", "create", "ci"], data_dir=tmp_path / "d")
    key = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"vg_[A-Za-z0-9_-]{43}", key)
    again = run_cli(["keys", "create", "ci"], data_dir=tmp_path / "d", check=False)
    assert again.returncode != 0 and "exists already" in again.stderr
    gone = run_cli(["keys", "revoke", "nobody"], data_dir=tmp_path / "d", check=False)
    assert gone.returncode != 0 and "no API key" in gone.stderr


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[worker]\nconcurrency = 'lots'\n")
    result = run_cli(["keys", "list"], data_dir=tmp_path / "d", config=config, check=False)
    assert result.returncode == 2
    assert "worker.concurrency" in result.stderr
    config.write_text("[models.x]\nbackend = 'fal'\n")
    result = run_cli(["keys", "list"], data_dir=tmp_path / "d", config=config, check=False)
    assert "[providers.fal]" in result.stderr
