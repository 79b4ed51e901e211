"""A baseline for the status routes: the least a status poll with a real read can do.

Raw ASGI, no framework; the API key's SHA-256 looked up in a dict read at start; one
SQLite read by primary key of a few of the run's columns, through a memory map as vidgate's
own poll reads (another key's run is not found); a small JSON body by orjson. No views, no
signed links, no queue positions, no request ids, no caches. It answers any path
(``runId`` or ``requestId`` in the query) from the database named by
``VIDGATE_BENCH_SQLITE``, the status benchmark's own.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from typing import Any
from urllib.parse import parse_qsl

import orjson

_DB = sqlite3.connect(os.environ["VIDGATE_BENCH_SQLITE"], check_same_thread=False)
_DB.execute("PRAGMA query_only=1")
_DB.execute("PRAGMA mmap_size=268435456")  # as vidgate's own poll reads do
_KEYS = dict(_DB.execute("SELECT key_hash, id FROM api_keys WHERE revoked_at IS NULL"))
"""Live keys' ids by the SHA-256 of their secret."""
_READ = (
    "SELECT api_key_id, id, status, progress, cost, error, created_at, completed_at, "
    "output_key FROM runs WHERE id = ?"
)
_NAMES = ("id", "status", "progress", "cost", "error", "createdAt", "completedAt", "video")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    key = next((value for name, value in scope["headers"] if name == b"x-api-key"), b"")
    key_id = _KEYS.get(hashlib.sha256(key).hexdigest())
    status, body = 401, b'{"error":"invalid API key"}'
    if key_id is not None:
        query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        row = _DB.execute(_READ, (query.get("runId") or query.get("requestId"),)).fetchone()
        status, body = 404, b'{"error":"not found"}'
        if row is not None and row[0] == key_id:  # another key's run is not found
            status, body = 200, orjson.dumps({"data": dict(zip(_NAMES, row[1:], strict=True))})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
