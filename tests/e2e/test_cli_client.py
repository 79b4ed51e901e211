"""The client commands of ``vidgate`` as real processes against a real ``vidgate serve``:
outputs, exit codes, and the shell examples of ``docs/sdk.md``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.client_helpers import FRIENDLY_FAILURE, mp4_frames
from tests.servers import LiveServer
from vidgate.client.cli import ExitCode

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"
BIN = Path(sys.executable).parent
VIDGATE = str(BIN / "vidgate")
SMALL = ["--param", "duration=1", "--param", "resolution=240p"]


def vidgate(
    server: LiveServer,
    *args: str,
    cwd: Path,
    key: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "VIDGATE_BASE_URL": server.base_url,
        "VIDGATE_API_KEY": key or server.api_key,
    }
    return subprocess.run(
        [VIDGATE, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def test_generate_wait_out_writes_a_playable_mp4(live_server: LiveServer, tmp_path: Path) -> None:
    result = vidgate(
        live_server,
        "generate",
        "a red fox",
        "--model",
        "testcard-video",
        "--wait",
        "--out",
        "fox.mp4",
        cwd=tmp_path,
    )
    assert result.returncode == ExitCode.OK == 0, result.stderr
    fox = tmp_path / "fox.mp4"
    assert mp4_frames(fox) > 0
    assert result.stdout.strip() == f"fox.mp4 ({fox.stat().st_size} bytes)"
    assert "COMPLETED" in result.stderr  # the progress lines (not a terminal here)


def test_a_failed_run_exits_non_zero_with_the_friendly_error(
    live_server: LiveServer, tmp_path: Path
) -> None:
    result = vidgate(
        live_server,
        "generate",
        "a red fox sandbox:fail",
        "--model",
        "testcard-video",
        *SMALL,
        "--wait",
        "--out",
        "fox.mp4",
        cwd=tmp_path,
    )
    assert result.returncode == ExitCode.FAILED, result.stderr
    assert FRIENDLY_FAILURE in result.stderr
    assert result.stdout == ""
    assert not list(tmp_path.iterdir())


def test_nsfw_failure_as_json(live_server: LiveServer, tmp_path: Path) -> None:
    result = vidgate(
        live_server,
        "generate",
        "x sandbox:nsfw",
        "-m",
        "testcard-video",
        *SMALL,
        "--wait",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == ExitCode.FAILED
    payload = as_json(result)
    assert payload["error"]["type"] == "GenerationFailed"
    assert payload["error"]["exit_code"] == ExitCode.FAILED
    assert payload["status"]["is_nsfw"] is True
    assert payload["status"]["status"] == "FAILED"
    assert payload["status"]["user_friendly_error"] == payload["error"]["message"]


def test_submit_then_status_wait_download(live_server: LiveServer, tmp_path: Path) -> None:
    submitted = vidgate(
        live_server, "generate", "a fox", "--model", "testcard-video", *SMALL, cwd=tmp_path
    )
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    assert re.fullmatch(r"vid_[0-9a-z]{26}", run_id)
    assert f"vidgate wait {run_id}" in submitted.stderr

    waited = vidgate(live_server, "wait", run_id, "--timeout", "60", cwd=tmp_path)
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.strip().startswith(f"{live_server.base_url}/files/")

    status = vidgate(
        live_server, "status", run_id, "--model", "testcard-video", "--json", cwd=tmp_path
    )
    assert status.returncode == 0
    assert as_json(status)["status"] == "COMPLETED"
    human = vidgate(live_server, "status", run_id, cwd=tmp_path)
    assert human.stdout.startswith(f"{run_id}  COMPLETED")

    downloaded = vidgate(live_server, "download", run_id, "--out", "v.mp4", "--json", cwd=tmp_path)
    assert downloaded.returncode == 0, downloaded.stderr
    info = as_json(downloaded)
    assert info["path"] == "v.mp4" and info["bytes"] == (tmp_path / "v.mp4").stat().st_size
    assert mp4_frames(tmp_path / "v.mp4") > 0


def test_generate_json_without_wait(live_server: LiveServer, tmp_path: Path) -> None:
    result = vidgate(
        live_server,
        "generate",
        "a fox",
        "-m",
        "testcard-video",
        *SMALL,
        "--json",
        "--idempotency-key",
        f"cli-{time.time_ns()}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    payload = as_json(result)
    assert payload["run_id"].startswith("vid_") and payload["status"] == "pending"
    assert result.stderr == ""


def test_timeout_cancel_and_not_ready(live_server: LiveServer, tmp_path: Path) -> None:
    run_id = vidgate(
        live_server,
        "generate",
        "wait for me sandbox:queue=60",
        "-m",
        "testcard-video",
        *SMALL,
        cwd=tmp_path,
    ).stdout.strip()
    started = time.monotonic()
    timed_out = vidgate(live_server, "wait", run_id, "--timeout", "1", cwd=tmp_path)
    assert timed_out.returncode == ExitCode.TIMEOUT
    assert time.monotonic() - started < 15  # a process start plus the 1 s deadline
    assert f"vidgate wait {run_id}" in timed_out.stderr

    not_ready = vidgate(live_server, "download", run_id, "--out", "x.mp4", cwd=tmp_path)
    assert not_ready.returncode == ExitCode.NOT_READY
    assert "IN_QUEUE" in not_ready.stderr

    cancelled = vidgate(live_server, "cancel", run_id, "--json", cwd=tmp_path)
    assert cancelled.returncode == 0
    assert as_json(cancelled)["status"] == "CANCELLED"
    after = vidgate(live_server, "wait", run_id, cwd=tmp_path)
    assert after.returncode == ExitCode.CANCELLED
    assert not list(tmp_path.iterdir())


def test_sandbox_cancel_exit_code(live_server: LiveServer, tmp_path: Path) -> None:
    result = vidgate(
        live_server,
        "generate",
        "x sandbox:cancel",
        "-m",
        "testcard-video",
        *SMALL,
        "--wait",
        cwd=tmp_path,
    )
    assert result.returncode == ExitCode.CANCELLED


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (
            ["generate", "sandbox:blocked", "-m", "testcard-video"],
            ExitCode.FAILED,
            "content policy",
        ),
        (["generate", "x", "-m", "no-such-model"], ExitCode.USAGE, "no-such-model"),
        (
            ["generate", "x", "-m", "testcard-video", "--param", "duration"],
            ExitCode.USAGE,
            "KEY=VALUE",
        ),
        (["status", "vid_00000000000000000000000000"], ExitCode.NOT_FOUND, "not found"),
        (
            ["status", "vid_00000000000000000000000000", "--base-url", "not a url"],
            ExitCode.USAGE,
            "base_url",
        ),
    ],
)
def test_error_exit_codes(
    live_server: LiveServer, tmp_path: Path, args: list[str], code: int, text: str
) -> None:
    result = vidgate(live_server, *args, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert text in result.stderr


def test_bad_key_and_unreachable_server(live_server: LiveServer, tmp_path: Path) -> None:
    bad_key = vidgate(
        live_server, "generate", "x", "-m", "testcard-video", key="nope", cwd=tmp_path
    )
    assert bad_key.returncode == ExitCode.AUTH
    unreachable = vidgate(live_server, "models", "--base-url", "http://127.0.0.1:9", cwd=tmp_path)
    assert unreachable.returncode == ExitCode.ERROR
    assert "127.0.0.1:9" in unreachable.stderr


def test_models(live_server: LiveServer, tmp_path: Path) -> None:
    listed = vidgate(live_server, "models", "--json", cwd=tmp_path)
    assert listed.returncode == 0
    ids = {m["id"] for m in as_json(listed)}
    assert {"testcard-video", "testcard-image-video"} <= ids
    table = vidgate(live_server, "models", cwd=tmp_path)
    assert "testcard-video" in table.stdout


def shell_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.DOTALL | re.MULTILINE)


def test_sdk_docs_shell_examples_run(live_server: LiveServer, tmp_path: Path) -> None:
    blocks = shell_blocks(DOCS.read_text())
    assert len(blocks) >= 2
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIDGATE_BASE_URL": live_server.base_url,
        "VIDGATE_API_KEY": live_server.api_key,
    }
    for number, block in enumerate(blocks, 1):
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"docs/sdk.md bash block {number}:\n{block}\n{result.stderr}"
    assert mp4_frames(tmp_path / "fox.mp4") > 0
