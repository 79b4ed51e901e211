"""Shared fixtures. ``live_server`` is one real ``vidgate serve`` process for the session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults import PrivatePostgres
from tests.s3 import Bucket, S3Server
from tests.servers import TEST_CONFIG, LiveServer, reap_all, running_server


@pytest.fixture(scope="session", autouse=True)
def _reap_processes() -> Iterator[None]:
    """Whatever a test started (even one that timed out) does not outlive the session."""
    yield
    reap_all()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with running_server(tmp_path_factory.mktemp("live") / "data") as server:
        yield server


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start extra servers with their own config (e.g. a low rate limit); stopped after."""
    started: list[LiveServer] = []
    counter = iter(range(1000))

    def start(config_text: str = TEST_CONFIG, extra_args: tuple[str, ...] = ()) -> LiveServer:
        server = LiveServer(tmp_path / f"data{next(counter)}", config_text, extra_args)
        server.api_key = server.create_key("test")
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def png_data_url() -> str:
    """A small real PNG as a data URL."""
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (200, 40, 40)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _postgres_url() -> str | None:
    import os

    url = os.environ.get("VIDGATE_TEST_DATABASE_URL")
    if not url and os.environ.get("CI"):
        raise RuntimeError(
            "CI must run the PostgreSQL tests: VIDGATE_TEST_DATABASE_URL is unset "
            "(run the suite with `make test`)"
        )
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A fresh, empty database: SQLite in a temp dir, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    async for url in _fresh_postgres():
        yield url


@pytest.fixture
async def postgres_url():  # type: ignore[no-untyped-def]
    """A fresh, empty PostgreSQL database."""
    async for url in _fresh_postgres():
        yield url


@pytest.fixture(scope="module")
def module_postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database shared by a module's tests (for a module-scoped
    server process)."""
    import asyncio

    url = asyncio.run(_create_postgres())
    try:
        yield url
    finally:
        asyncio.run(_drop_postgres(url))


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of the outage tests' own, which they stop and start again."""
    if _postgres_url() is None:
        pytest.skip("PostgreSQL not configured: run the suite with `make test`")
    server = PrivatePostgres.start()
    try:
        yield server
    finally:
        server.stop()


async def _fresh_postgres():  # type: ignore[no-untyped-def]
    url = await _create_postgres()
    try:
        yield url
    finally:
        await _drop_postgres(url)


async def _admin(url: str, statement: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = await asyncpg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database
    )
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


async def _create_postgres() -> str:
    base = _postgres_url()
    if base is None:
        pytest.skip("PostgreSQL not configured: run the suite with `make test`")
    import secrets

    from sqlalchemy.engine import make_url

    name = "t_" + secrets.token_hex(6)
    await _admin(base, f'CREATE DATABASE "{name}"')
    return make_url(base).set(database=name).render_as_string(hide_password=False)


async def _drop_postgres(url: str) -> None:
    from sqlalchemy.engine import make_url

    base = _postgres_url()
    assert base is not None
    name = make_url(url).database
    await _admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The S3 emulator (moto's server mode), started once for the session."""
    server = S3Server.start(tmp_path_factory.mktemp("s3") / "moto.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Bucket:
    """A new, empty bucket on the session's S3 emulator."""
    return s3_server.new_bucket()
