"""The ``durability`` setting reaches every connection the store commits on: SQLite's
``synchronous`` (NORMAL is 1, FULL is 2), PostgreSQL's ``synchronous_commit``."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.servers import serving
from vidgate.config import Settings
from vidgate.server.app import create_app
from vidgate.store.sql import SQLStore


async def _on_store_connections(store: SQLStore, statement: str) -> set[object]:
    """What ``statement`` answers on the connection a write commits on and on a read's."""
    # The store's own transaction paths: private, as nothing else needs to ask.
    written = await store._write(lambda tx: tx.conn.exec_driver_sql(statement).scalar())
    read = await store._read(lambda conn: conn.exec_driver_sql(statement).scalar())
    return {written, read}


@pytest.mark.parametrize(("durability", "synchronous"), [("normal", 1), ("full", 2)])
async def test_sqlite_syncs_as_the_setting_says(
    tmp_path: Path, durability: str, synchronous: int
) -> None:
    settings = Settings.model_validate({"data_dir": tmp_path / "data", "durability": durability})
    app = create_app(settings)
    async with serving(app):
        store = app.state.vidgate.store
        assert await _on_store_connections(store, "PRAGMA synchronous") == {synchronous}


async def test_postgresql_full_commits_synchronously_whatever_the_server_default(
    postgres_url: str,
) -> None:
    url = make_url(postgres_url)
    plain = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    try:
        server_default = await plain.fetchval("SHOW synchronous_commit")
    finally:
        await plain.close()
    normal = await SQLStore.open(postgres_url)
    full = await SQLStore.open(postgres_url, durability="full")
    try:
        # The suite's server (scripts/postgres-for-tests.sh) runs with it off.
        assert await _on_store_connections(normal, "SHOW synchronous_commit") == {server_default}
        assert await _on_store_connections(full, "SHOW synchronous_commit") == {"on"}
    finally:
        await normal.close()
        await full.close()
