"""WAL checkpoints of a SQLite database, off the write path.

By default SQLite checkpoints inside the commit that fills the write-ahead log past 1,000
pages: that commit then copies the log into the database and syncs it, and every write
waiting behind it waits too (tens of milliseconds on a slow disk). vidgate turns that off
for its connections and checkpoints from a thread of its own instead, every
:data:`EVERY_S`, in PASSIVE mode, which never waits for readers or writers. Under a steady
stream of writes a passive checkpoint never catches up with the log's end, so the log
would grow without bound: past :data:`RESTART_BYTES` the thread makes a RESTART
checkpoint, which holds writers back once while it finishes, and the log starts over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading

log = logging.getLogger("vidgate.store")
EVERY_S = 1.0
RESTART_BYTES = 64 << 20


class Checkpointer:
    def __init__(self, path: str) -> None:
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="vidgate-sqlite-checkpoint", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute(f"PRAGMA journal_size_limit={RESTART_BYTES}")  # truncated back to it
            while True:
                stopping = self._stop.wait(EVERY_S)
                wal = 0
                with contextlib.suppress(OSError):
                    wal = os.path.getsize(self.path + "-wal")
                mode = "RESTART" if wal > RESTART_BYTES else "PASSIVE"
                try:
                    conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
                except sqlite3.Error:
                    log.warning("store.checkpoint_failed", exc_info=True)
                if stopping:
                    return
        finally:
            conn.close()
