"""The storage port: what the worker and the API need from wherever finished videos live.

Two implementations sit behind it: :class:`vidgate.storage.local.LocalStorage` (a directory,
files served by ``GET /files/<key>`` with HMAC-signed URLs) and
:class:`vidgate.storage.s3.S3Storage` (an S3-compatible bucket, files served by the bucket
itself through presigned GETs)."""

from __future__ import annotations

import mimetypes
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class StorageError(Exception):
    """Storage failed."""


class BadSignature(StorageError):
    """The file URL's signature is wrong or has expired."""


class StorageWriteFailed(StorageError):
    """A video could not be written to storage (a full disk, a directory that is not
    writable, a bucket that refuses the write); the message says what an operator can do
    about it."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    content_type: str


class Storage(Protocol):
    """Where finished videos live. Keys look like ``<run id>/<attempt>.mp4``."""

    async def put_file(self, key: str, source: Path, content_type: str) -> StoredObject:
        """Move the file ``source`` into storage under ``key``: all of it or nothing
        (StorageWriteFailed, the source left intact)."""
        ...

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str
    ) -> StoredObject:
        """Write a stream of chunks under ``key``, never holding it whole in memory; a
        failure of the stream itself is raised as it is, a failure to write as
        StorageWriteFailed."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens if it is not there."""
        ...

    async def check(self) -> None:
        """A cheap check that videos can be stored (readiness): StorageError if not."""
        ...

    def signed_url(
        self,
        key: str,
        base_url: str,
        ttl_s: int,
        *,
        issued_from: float | None = None,
        now: float | None = None,
    ) -> tuple[str, int]:
        """An absolute URL that downloads ``key`` without an API key (``Range`` works), and
        when it expires (:func:`url_expiry`): polls within half the TTL get the same URL.
        ``base_url`` is this server's, for storage that serves files through it."""
        ...


def url_expiry(ttl_s: int, *, issued_from: float | None = None, now: float | None = None) -> int:
    """When a signed URL made now expires.

    The expiry moves in steps of half the TTL counted from ``issued_from``, so repeated
    polls get the same URL for a while, and every URL handed out stays valid for at least
    half the TTL (and at most the TTL)."""
    now = time.time() if now is None else now
    origin = now if issued_from is None else min(issued_from, now)
    half = ttl_s / 2
    return int(origin + ttl_s + half * ((now - origin) // half))


def content_type_for(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"
