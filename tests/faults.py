"""Real faults for tests: a PostgreSQL server of their own to stop and start, a SQLite file
locked by another connection, a small file system that fills up."""

from __future__ import annotations

import contextlib
import errno
import secrets
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

SCRIPT = Path(__file__).parents[1] / "scripts" / "postgres-for-tests.sh"


class PrivatePostgres:
    """A PostgreSQL server that only the tests that stop it use (never the shared one)."""

    def __init__(self, directory: Path, url: str) -> None:
        self.directory = directory
        self.url = url

    @classmethod
    def start(cls) -> PrivatePostgres:
        directory = Path(tempfile.mkdtemp(prefix="vidgate-pg-outage-"))
        result = subprocess.run(
            [str(SCRIPT), "start", str(directory)], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"could not start a PostgreSQL server: {result.stderr}")
        return cls(directory, result.stdout.strip())

    def stop(self) -> None:
        subprocess.run([str(SCRIPT), "stop", str(self.directory)], timeout=60, check=False)

    def halt(self) -> None:
        """Stop the server (its clients' connections end); the data stays."""
        subprocess.run([str(SCRIPT), "halt", str(self.directory)], timeout=60, check=True)

    def resume(self) -> None:
        """Start it again on the same port; returns once it accepts connections."""
        subprocess.run([str(SCRIPT), "resume", str(self.directory)], timeout=60, check=True)

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """The server is stopped inside the block, and running again after it."""
        self.halt()
        try:
            yield
        finally:
            self.resume()

    async def fresh_database(self) -> str:
        url = make_url(self.url)
        name = "outage_" + secrets.token_hex(4)
        admin = await asyncpg.connect(
            host=url.host, port=url.port, user=url.username, database=url.database
        )
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return url.set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def sqlite_locked(path: Path) -> Iterator[None]:
    """Another connection holds the database's write lock (``BEGIN EXCLUSIVE``; in WAL
    mode readers go on) until the block ends."""
    holder = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


@contextlib.contextmanager
def small_filesystem(path: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (needs root); unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"a full disk is made with a small tmpfs, which needs root: {mounted.stderr}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write a file into ``directory`` until its file system is full; returns the file
    (delete it to free the space)."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)  # a part of it once little space is left
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler
