"""Servers under load: started as child processes on a free loopback port, stopped with
SIGTERM (the whole process group) at the end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from tests.servers import VIDGATE, free_port, run_cli

__all__ = [
    "VIDGATE",
    "Vidgate",
    "free_port",
    "fresh_database",
    "python_command",
    "run_server",
    "wait_until_ready",
]


def wait_until_ready(
    process: subprocess.Popen[bytes], url: str, log: Path, limit_s: float = 30
) -> None:
    """Wait until ``url`` answers below 500; raises (with the log's end) if the process
    exits or does not answer within ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{process.args!r} did not start:\n{tail}")
        time.sleep(0.1)


@contextlib.contextmanager
def run_server(
    cmd: Sequence[str], ready_url: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(cmd),
            stdout=out,
            stderr=out,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        try:
            wait_until_ready(process, ready_url, log)
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@dataclass(frozen=True)
class Vidgate:
    """A data dir and config for ``vidgate serve``, with an API key made by the CLI."""

    data_dir: Path
    config: Path
    key_name: str
    key: str
    env: dict[str, str]

    @classmethod
    def create(cls, where: Path, config_text: str, env: dict[str, str] | None = None) -> Vidgate:
        where.mkdir(parents=True, exist_ok=True)
        data_dir, config = where / "data", where / "vidgate.toml"
        config.write_text(config_text)
        env = dict(env or {})
        name = f"bench-{where.name}"
        created = run_cli(["keys", "create", name], data_dir=data_dir, config=config, env=env)
        return cls(data_dir, config, name, created.stdout.split()[-1], env)

    def key_command(self) -> list[str]:
        """How the key was made (for the record; :meth:`create` ran it)."""
        where = ["--data-dir", str(self.data_dir), "--config", str(self.config)]
        return [*VIDGATE, "keys", "create", self.key_name, *where]

    def serve_command(self, port: int, *extra: str) -> list[str]:
        return [
            *VIDGATE,
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(self.data_dir),
            "--config",
            str(self.config),
            "--log-level",
            "warning",
            *extra,
        ]

    @contextlib.contextmanager
    def serve(self, *extra: str) -> Iterator[tuple[str, list[str]]]:
        """``vidgate serve`` (with ``extra`` arguments); yields the base URL and the command."""
        port = free_port()
        cmd = self.serve_command(port, *extra)
        base = f"http://127.0.0.1:{port}"
        log = self.data_dir.parent / f"serve-{port}.log"
        with run_server(cmd, base + "/healthz", log, self.env):
            yield base, cmd


def python_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


@contextlib.contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server of ``url`` (dropped at the end), so
    what one bench writes never reaches another."""
    name = f"vidgate_bench_{secrets.token_hex(4)}"
    admin = make_url(url)

    async def execute(statement: str) -> None:
        engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(execute(f"CREATE DATABASE {name}"))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
