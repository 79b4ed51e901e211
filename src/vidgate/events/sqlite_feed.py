"""Changes made by other processes sharing one SQLite file (``serve --no-worker`` beside
``vidgate worker``, or the CLI).

One watcher per process, never one per waiter: a thread asks ``PRAGMA data_version`` on its
own connection every ``interval_s`` (it changes only when another connection commits), and
only then reads the runs changed since the last look, by their change order ``rev``. Each
change is handed to the hub on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading

from vidgate.events.hub import RunChange, RunEvents
from vidgate.runs.status import Status

log = logging.getLogger("vidgate.events")
BATCH = 1000


class SQLiteFeed:
    def __init__(self, path: str, events: RunEvents, interval_s: float = 0.02) -> None:
        self.path = path
        self.events = events
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        connection = await asyncio.to_thread(self._connect)
        self._thread = threading.Thread(
            target=self._watch, args=(loop, connection), name="vidgate-sqlite-feed", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA busy_timeout=5000")
        return connection

    def _watch(self, loop: asyncio.AbstractEventLoop, connection: sqlite3.Connection) -> None:
        try:
            version = connection.execute("PRAGMA data_version").fetchone()[0]
            last_rev = connection.execute("SELECT coalesce(max(rev), 0) FROM runs").fetchone()[0]
            while not self._stop.wait(self.interval_s):
                try:
                    now = connection.execute("PRAGMA data_version").fetchone()[0]
                    if now == version:
                        continue
                    last_rev = self._read_since(loop, connection, last_rev)
                    version = now  # only once read: a failed read is tried again
                except sqlite3.Error:
                    log.exception("events.sqlite_feed_failed")
        finally:
            connection.close()

    def _read_since(
        self, loop: asyncio.AbstractEventLoop, connection: sqlite3.Connection, last_rev: int
    ) -> int:
        while True:
            rows = connection.execute(
                "SELECT id, seq, status, backend, rev, webhook_url IS NOT NULL FROM runs "
                "WHERE rev > ? ORDER BY rev LIMIT ?",
                (last_rev, BATCH),
            ).fetchall()
            if not rows:
                return last_rev
            # Whether this change queued a delivery is not kept; a run with a webhook
            # wakes the sender, which finds nothing if nothing is due.
            changes = [RunChange(r[0], r[1], Status(r[2]), r[3], webhook=r[5]) for r in rows]
            last_rev = rows[-1][4]
            loop.call_soon_threadsafe(self.events.publish_many, changes)
            if len(rows) < BATCH:
                return last_rev
