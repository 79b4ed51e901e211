"""Group commit, the key cache and checkpoints, against real SQLite (and PostgreSQL where the
store behaves the same)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from vidgate.store.group_commit import GroupCommit
from vidgate.store.sql import SQLStore


async def test_a_failing_write_fails_alone_and_the_others_commit(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'g.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
    group = GroupCommit(engine)

    def insert(k: int, hold_s: float = 0.0) -> Callable[[Connection], int]:
        def work(conn: Connection) -> int:
            time.sleep(hold_s)  # the first write holds the writer: the others queue up
            conn.execute(text("INSERT INTO t VALUES (:k)"), {"k": k})
            return k

        return work

    try:
        first = asyncio.ensure_future(group.run(insert(0, hold_s=0.3)))
        await asyncio.sleep(0.05)
        rest = [group.run(insert(k)) for k in (1, 2, 2, 3)]
        results = await asyncio.gather(first, *rest, return_exceptions=True)
    finally:
        group.shutdown()
    assert results[:3] == [0, 1, 2] and results[4] == 3
    assert isinstance(results[3], IntegrityError)
    with engine.connect() as conn:
        assert [r[0] for r in conn.execute(text("SELECT k FROM t ORDER BY k"))] == [0, 1, 2, 3]
    engine.dispose()


async def test_a_key_revoked_here_is_refused_at_once(database_url: str) -> None:
    store = await SQLStore.open(database_url)
    try:
        _, secret = await store.create_key("soon-revoked")
        assert await store.authenticate(secret) is not None  # now cached
        await store.revoke_key("soon-revoked")
        assert await store.authenticate(secret) is None
    finally:
        await store.close()


@pytest.mark.timeout(120)
async def test_the_log_is_checkpointed_and_started_over(tmp_path: Path) -> None:
    """Commits leave checkpoints to the store's own thread, which catches up with the log
    once the writes stop."""
    path = tmp_path / "store.db"
    store = await SQLStore.open(f"sqlite:///{path}")
    try:
        _, secret = await store.create_key("k")
        key = await store.authenticate(secret)
        assert key is not None
        from tests.integration.test_store import new_run  # the suite's run factory

        for _ in range(40):
            await asyncio.gather(
                *(store.submit(new_run(key.id), idempotency_ttl_s=60) for _ in range(50))
            )
        await asyncio.sleep(2.5)  # a checkpoint or two
        conn = sqlite3.connect(path)
        busy, pages, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        conn.close()
        assert (busy, pages - done) == (0, 0)  # everything was checkpointed already
    finally:
        await store.close()
