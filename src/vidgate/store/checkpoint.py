"""WAL checkpoints of a SQLite database, off the write path.

By default SQLite checkpoints inside the commit that fills the write-ahead log past 1,000
pages: that commit then copies the log into the database and syncs it, and every write
waiting behind it waits too (tens of milliseconds on a slow disk). vidgate turns that off
for its connections and checkpoints from a thread of its own instead, every
:data:`EVERY_S`, in PASSIVE mode, which never waits for readers or writers. Under a steady
stream of writes a passive checkpoint may never catch up with the log's end, and the log
is only started over once a checkpoint has caught up: when the log holds more than
:data:`RESTART_PAGES` pages, the thread makes a RESTART checkpoint, which holds writers
back once while it finishes, so the next write starts the log over (and truncates the file
to ``journal_size_limit``, set on every connection in ``store/sql.py``).
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("vidgate.store")
EVERY_S = 1.0
RESTART_PAGES = 16_384
"""64 MiB of log at SQLite's default page size."""
LOG_LIMIT_BYTES = 64 << 20


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
            conn.execute("PRAGMA busy_timeout=1000")
            restart = False
            while True:
                stopping = self._stop.wait(EVERY_S)
                mode = "RESTART" if restart and not stopping else "PASSIVE"
                try:
                    busy, pages, _ = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
                except sqlite3.Error:
                    log.warning("store.checkpoint_failed", exc_info=True)
                    busy, pages = 1, 0
                # A busy RESTART is not tried again at once: the next look decides.
                restart = not busy and pages > RESTART_PAGES
                if stopping:
                    return
        finally:
            conn.close()
