"""Real ``vidgate`` processes for tests: a server on a free loopback port, keys via the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn

VIDGATE = [sys.executable, "-m", "vidgate.cli"]
_SPAWNED: list[subprocess.Popen[bytes]] = []


def spawn(args: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a process in its own group; :func:`reap_all` kills it if a test could not."""
    process = subprocess.Popen(list(args), start_new_session=True, **kwargs)
    _SPAWNED.append(process)
    return process


def reap_all() -> None:
    """Kill every process group the tests started that is still alive."""
    for process in _SPAWNED:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    _SPAWNED.clear()


def child_processes(parent: int, marker: str) -> list[int]:
    """PIDs of the live children of ``parent`` whose command line contains ``marker``.

    Reads ``/proc`` directly: ``ps`` truncates long command lines to ``$COLUMNS``, so a long
    interpreter path could hide the marker.
    """
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process exited while we looked
            continue
        # Fields after the ")" that closes the command name: state, ppid, ...
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == parent and state != "Z" and marker in cmdline:
            pids.append(int(entry.name))
    return pids


# Settings that keep tests quick and independent of the defaults' rate limit.
TEST_CONFIG = """
[limits]
submits_per_minute = 100000

[worker]
concurrency = 2
heartbeat_s = 0.2
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(
    args: Sequence[str],
    *,
    data_dir: Path,
    config: Path | None = None,
    timeout: float = 60,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    cmd = [*VIDGATE, *args, "--data-dir", str(data_dir)]
    if config is not None:
        cmd += ["--config", str(config)]
    result = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env} if env else None,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}: {result.stderr}")
    return result


class LiveServer:
    """``vidgate serve`` as a child process on 127.0.0.1."""

    def __init__(
        self,
        data_dir: Path,
        config_text: str = TEST_CONFIG,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        program: Sequence[str] = VIDGATE,
    ) -> None:
        self.data_dir = data_dir
        self.program = list(program)
        """What runs ``serve``: the CLI, or a script that calls it after setting up a fault."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config = data_dir.parent / f"{data_dir.name}.toml"
        self.config.write_text(config_text)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.extra_args = list(extra_args)
        self.env = {**os.environ, **(env or {})}
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.api_key = ""

    def create_key(self, name: str) -> str:
        result = run_cli(["keys", "create", name], data_dir=self.data_dir, config=self.config)
        return result.stdout.strip().splitlines()[-1]

    def start(self, timeout: float = 30) -> LiveServer:
        with self.log_path.open("ab") as log:
            self.process = spawn(
                [
                    *self.program,
                    "serve",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    "--config",
                    str(self.config),
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vidgate serve exited early:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"vidgate serve did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup runs, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"x-api-key": key or self.api_key}


@contextlib.contextmanager
def running_server(
    data_dir: Path, config_text: str = TEST_CONFIG, extra_args: Sequence[str] = ()
) -> Iterator[LiveServer]:
    server = LiveServer(data_dir, config_text, extra_args)
    server.api_key = server.create_key("test")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app, its lifespan too, on a free loopback port from this event loop;
    yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the app did not start")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
