"""The reads behind every status poll, the API's hot path.

* A run is one read by primary key of the columns its status view needs (never the
  request, which can hold megabytes of image). On SQLite it runs on the caller's thread,
  outside any transaction: such a read takes a few microseconds, far less than a hand-off
  to a reader thread and back. If SQLite is busy for a moment (another process recovering
  or checkpointing the WAL), the read goes to a reader thread, which waits.
* The API key is cached (see :mod:`vidgate.store.keys`).
* Queue positions come from :class:`~vidgate.store.queue.QueueIndex`, kept by run events,
  instead of a ``COUNT`` per poll.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from vidgate.runs.status import Status
from vidgate.store.base import StoreBase
from vidgate.store.queue import QueueIndex
from vidgate.store.records import RunView, StatusRow
from vidgate.store.schema import runs

_STATUS_QUERY = select(*(runs.c[name] for name in StatusRow._fields)).where(
    runs.c.id == bindparam("run_id")
)
_STATUS_SQL = str(_STATUS_QUERY.compile(dialect=sqlite.dialect()))  # "... WHERE runs.id = ?"
INLINE_MMAP_BYTES = 256 << 20
_KEY_INDEX = StatusRow._fields.index("api_key_id")
_STATUS_INDEX = StatusRow._fields.index("status")
_STATE_INDEX = StatusRow._fields.index("provider_state")
_NSFW_INDEX = StatusRow._fields.index("is_nsfw")
_JSON_INDEXES = (_STATE_INDEX, StatusRow._fields.index("adjusted"))


def _status_row(values: list[Any]) -> StatusRow:
    values[_STATUS_INDEX] = Status(values[_STATUS_INDEX])
    for index in _JSON_INDEXES:
        value = values[index]
        if isinstance(value, str | bytes):  # raw SQLite: JSON as text, as json.dumps wrote it
            values[index] = json.loads(value)
    values[_NSFW_INDEX] = bool(values[_NSFW_INDEX])
    return StatusRow._make(values)


class PollVerbs(StoreBase):
    _queue: QueueIndex | None = None

    def __init__(self, **engines: Any) -> None:
        super().__init__(**engines)
        self._inline = threading.local() if self._sync is not None else None

    async def poll_run(self, run_id: str, api_key_id: str | None = None) -> StatusRow | None:
        """The run as a status poll shows it, or None if it does not exist (or belongs to
        another key)."""
        row = self._read_inline(run_id)
        if row is None:
            row = await self._read(
                lambda conn: conn.execute(_STATUS_QUERY, {"run_id": run_id}).first()
            )
        if row is None or (api_key_id is not None and row[_KEY_INDEX] != api_key_id):
            return None
        return _status_row(list(row))

    def _read_inline(self, run_id: str) -> tuple[Any, ...] | None:
        """The row by a read on this thread, on SQLite; None when not done here."""
        if self._inline is None:
            return None
        try:
            conn = getattr(self._inline, "conn", None)
            if conn is None:
                conn = self._inline.conn = self._connect_inline()
            row: tuple[Any, ...] | None = conn.execute(_STATUS_SQL, (run_id,)).fetchone()
        except sqlite3.OperationalError:  # busy or locked: a reader thread waits instead
            return None
        return row

    def _connect_inline(self) -> sqlite3.Connection:
        assert self._sync is not None and self._sync.url.database is not None
        conn = sqlite3.connect(self._sync.url.database, timeout=0, isolation_level=None)
        conn.execute("PRAGMA query_only=1")
        # Pages read straight from the mapped file, not copied in by a read() each: a
        # random run's read is about a quarter cheaper (it maps, and counts in RSS, no more
        # of the file than polls touch).
        conn.execute(f"PRAGMA mmap_size={INLINE_MMAP_BYTES}")
        return conn

    def _close_inline(self) -> None:
        conn = getattr(self._inline, "conn", None)
        if conn is not None:
            conn.close()
            del self._inline.conn  # type: ignore[union-attr]

    async def queue_position(self, run: RunView) -> int:
        """How many queued runs of the same backend are ahead of this one (0 = next)."""
        if self._queue is not None and self._queue.ready:
            return self._queue.position(run.id, run.backend)
        query = (
            select(func.count())
            .select_from(runs)
            .where(
                runs.c.status == Status.IN_QUEUE.value,
                runs.c.backend == run.backend,
                runs.c.id < run.id,
            )
        )
        return int(await self._read(lambda conn: conn.execute(query).scalar_one()))

    async def _index_queue(self) -> None:
        """Keep queue positions in memory from now on (a process that hears every change
        of a run: see ``listen``)."""
        self._queue = QueueIndex(self.events, self._queued_runs)
        await self._queue.start()

    async def _queued_runs(self) -> list[tuple[str, str]]:
        query = select(runs.c.id, runs.c.backend).where(runs.c.status == Status.IN_QUEUE.value)

        def read(conn: Connection) -> list[tuple[str, str]]:
            return [(row.id, row.backend) for row in conn.execute(query)]

        return await self._read(read)

    async def ping(self) -> None:
        """One cheap read of the runs table (readiness); StoreUnavailable if it fails."""
        query = select(runs.c.id).limit(1)
        await self._read(lambda conn: conn.execute(query).first())

    async def count_in_flight(self) -> dict[str, int]:
        """Queued and running runs by status (by index: cheap however many runs are over)."""
        query = (
            select(runs.c.status, func.count())
            .where(runs.c.status.in_([Status.IN_QUEUE.value, Status.IN_PROGRESS.value]))
            .group_by(runs.c.status)
        )
        rows = await self._read(lambda conn: conn.execute(query).all())
        return {r[0]: int(r[1]) for r in rows}
